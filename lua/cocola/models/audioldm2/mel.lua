-- cocola.models.audioldm2.mel — the AudioLDM 2 / CompoNet log-mel front end (AudioLDM 2's
-- utilities/audio/stft.py TacotronSTFT with its default preprocessing config), over the engine's fused
-- C implementation (cocola.audio.audioldm_mel, csrc/audio/features.c):
--   16 kHz mono wave -> periodic Hann window 1024, reflect padding 512 both sides, hop 160 ->
--   |rfft| (513 bins, magnitude, not power) -> Slaney-scale, Slaney-normalised mel filterbank, 64 bins over
--   0-8000 Hz (librosa.filters.mel defaults) -> ln(max(mel, 1e-5)).
-- frames = 1 + samples // 160 (163680 samples = 10.23 s -> 1024 frames).
--   log_mel(wave (samples) | (B, samples)) -> (64, frames) | (B, 64, frames)   (the reference's layout)
--   vae_input(wave (samples) | (B, samples)) -> (B, 1, frames, 64)             (what the VAE encodes)
--   magnitude(wave) -> (513, frames) | (B, 513, frames); mel_basis() -> (64, 513)  (the intermediate steps)
-- The reference asserts the wave lies in [-1, 1]; so does log_mel. A wave needs at least 513 samples.
local cocola = require "cocola"
local audio = require "cocola.audio"

local M = {}

M.SAMPLING_RATE = 16000
M.N_FFT = 1024
M.HOP_LENGTH = 160
M.N_MELS = 64
M.F_MIN, M.F_MAX = 0, 8000

local function check_wave(wave, what)
  if not cocola.is_tensor(wave) then error(string.format("audioldm2.mel.%s: expected a tensor wave, got a %s", what,
    type(wave)), 3) end
  local nd = wave:dim()
  if nd ~= 1 and nd ~= 2 then
    error(string.format("audioldm2.mel.%s: expected a wave (samples) or (B, samples), got %s", what,
      wave:shape_string()), 3)
  end
  if wave:size(nd) < M.N_FFT // 2 + 1 then
    error(string.format("audioldm2.mel.%s: the wave has %d samples; at least %d are needed (reflect padding of %d)",
      what, wave:size(nd), M.N_FFT // 2 + 1, M.N_FFT // 2), 3)
  end
  local peak = wave:abs():max():item()
  if peak ~= peak or peak > 1 then
    error(string.format("audioldm2.mel.%s: the wave must lie in [-1, 1] (peak %s)", what, tostring(peak)), 3)
  end
  return nd == 1 and wave:unsqueeze(1) or wave, nd == 1
end

--- vae_input(wave) -> (B, 1, frames, 64) (B = 1 for an unbatched wave).
function M.vae_input(wave)
  local w = check_wave(wave, "vae_input")
  return audio.audioldm_mel(w:float():contiguous())
end

--- log_mel(wave (samples) | (B, samples)) -> (64, frames) | (B, 64, frames).
function M.log_mel(wave)
  local w, single = check_wave(wave, "log_mel")
  local m = audio.audioldm_mel(w:float():contiguous()):select(2, 1):transpose(2, 3):contiguous()
  if single then return m:select(1, 1) end
  return m
end

--- mel_basis() -> (64, 513): librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=0, fmax=8000).
function M.mel_basis()
  return audio.mel_filterbank({ sr = M.SAMPLING_RATE, n_fft = M.N_FFT, n_mels = M.N_MELS, f_min = M.F_MIN,
    f_max = M.F_MAX, htk = false, norm = "slaney" })
end

--- magnitude(wave (samples) | (B, samples)) -> (513, frames) | (B, 513, frames): |STFT| of the front end.
function M.magnitude(wave)
  local w, single = check_wave(wave, "magnitude")
  local X = audio.stft(w:float():contiguous(), { n_fft = M.N_FFT, hop_length = M.HOP_LENGTH, win_length = M.N_FFT,
    center = true, pad_mode = "reflect" })
  local mag = audio.magnitude(X)
  if single then return mag:select(1, 1) end
  return mag
end

return M
