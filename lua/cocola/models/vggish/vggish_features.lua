-- cocola.models.vggish.vggish_features — VGGish's log-mel examples, as torchvggish's
-- vggish_input.waveform_to_examples and mel_features.py define them (harritaylor/torchvggish, the front end of
-- the FAD libraries' default embedding), for a mono wave already at 16 kHz:
--   frames of 400 samples (0.025 s) every 160 (0.010 s), no padding: 1 + floor((N - 400) / 160) frames
--   -> times a periodic Hann window 0.5 - 0.5 cos(2 pi n / 400) -> |rfft| with 512 points (the next power of
--   2, zero-padded at the end) -> 257 bins -> the mel matrix below -> log(mel + 0.01) -> (frames, 64)
--   -> examples of 96 frames (0.96 s), hop 96, the incomplete tail dropped -> (examples, 1, 96, 64) float32.
-- The mel matrix is mel_features.spectrogram_to_mel_matrix: HTK mel 1127 ln(1 + f / 700); 64 bands with edges
-- evenly spaced in mel from 125 to 7500 Hz; the triangles are evaluated in mel on the bin frequencies
-- linspace(0, 8000, 257), and the DC bin's weights are zeroed (no area normalisation).
-- Computed in float32 (torchvggish works in float64 and casts the examples to float32 at the end).
-- The frames' spectra come from audio.stft (periodic Hann of 400 centred in 512 points, center = false) on the
-- wave padded with 56 zeros on each side: frame t then windows exactly samples 160 t .. 160 t + 399, shifted
-- by 56 points inside the FFT frame, which changes the phase only, not the magnitude.
-- A wave shorter than 400 samples has no frame, and one shorter than 96 frames (15600 samples, about 0.975 s)
-- no example: examples(...) is then an empty (0, 1, 96, 64) tensor, as torchvggish's framing gives.
local cocola = require "cocola"
local audio = require "cocola.audio"

local M = {}

M.SAMPLE_RATE = 16000
M.WINDOW = 400 -- samples (0.025 s)
M.HOP = 160 -- samples (0.010 s)
M.FFT = 512
M.NUM_BINS = M.FFT // 2 + 1
M.NUM_MEL_BINS = 64
M.MEL_MIN_HZ = 125
M.MEL_MAX_HZ = 7500
M.LOG_OFFSET = 0.01
M.EXAMPLE_FRAMES = 96 -- 0.96 s
M.EXAMPLE_HOP = 96

local function hertz_to_mel(f) return 1127.0 * math.log(1.0 + f / 700.0) end

--- the (64, 257) mel matrix (mel_features.spectrogram_to_mel_matrix transposed), float32
function M.mel_matrix()
  if M._mel then return M._mel end
  local bins, mels = M.NUM_BINS, M.NUM_MEL_BINS
  local nyquist = M.SAMPLE_RATE / 2
  local bin_mel = {}
  for j = 1, bins do bin_mel[j] = hertz_to_mel(nyquist * (j - 1) / (bins - 1)) end
  local lo, hi = hertz_to_mel(M.MEL_MIN_HZ), hertz_to_mel(M.MEL_MAX_HZ)
  local edges = {}
  for i = 0, mels + 1 do edges[i + 1] = lo + (hi - lo) * i / (mels + 1) end
  local rows = {}
  for i = 1, mels do
    local l, c, u = edges[i], edges[i + 1], edges[i + 2]
    local row = { 0.0 } -- the DC bin is zeroed
    for j = 2, bins do
      local m = bin_mel[j]
      row[j] = math.max(0.0, math.min((m - l) / (c - l), (u - m) / (u - c)))
    end
    rows[i] = row
  end
  M._mel = cocola.tensor(rows):to("float32")
  return M._mel
end

local function check_wave(wave, where)
  if not cocola.is_tensor(wave) then error(where .. ": expected a wave tensor, got " .. type(wave), 3) end
  local dt = wave:dtype()
  if dt ~= "float32" and dt ~= "float64" then error(where .. ": the wave must be float32 or float64, got " .. dt, 3) end
  if wave:dim() == 2 and wave:size(1) == 1 then wave = wave:select(1, 1) end
  if wave:dim() ~= 1 then
    error(where .. ": expected a mono wave (samples) or (1, samples), got " .. wave:shape_string(), 3)
  end
  if wave:numel() > 0 and wave:isfinite():all():item() == 0 then
    error(where .. ": the wave holds NaN or infinite samples", 3)
  end
  return wave:to("cpu"):to("float32"):contiguous()
end

--- log_mel(wave) -> (frames, 64) float32: mel_features.log_mel_spectrogram of a mono 16 kHz wave
--- ((samples) or (1, samples)); 1 + floor((N - 400) / 160) frames, none (a (0, 64) tensor) below 400 samples
function M.log_mel(wave)
  local w = check_wave(wave, "vggish_features.log_mel")
  local n = w:size(1)
  if n < M.WINDOW then return cocola.zeros({ 0, M.NUM_MEL_BINS }) end
  local pad = (M.FFT - M.WINDOW) // 2
  local z = cocola.zeros({ pad })
  local x = cocola.cat({ z, w, z }, 1)
  local X = audio.stft(x, { n_fft = M.FFT, hop_length = M.HOP, win_length = M.WINDOW, center = false })
  local re, im = X:select(3, 1), X:select(3, 2)
  local mag = (re * re + im * im):sqrt() -- (257, frames)
  local mel = M.mel_matrix():matmul(mag) -- (64, frames)
  return (mel + M.LOG_OFFSET):log():t():contiguous()
end

--- number_of_examples(samples) -> the examples a 16 kHz wave of that many samples gives
function M.number_of_examples(samples)
  if samples < M.WINDOW then return 0 end
  local frames = 1 + (samples - M.WINDOW) // M.HOP
  if frames < M.EXAMPLE_FRAMES then return 0 end
  return 1 + (frames - M.EXAMPLE_FRAMES) // M.EXAMPLE_HOP
end

--- examples(wave) -> (examples, 1, 96, 64) float32: vggish_input.waveform_to_examples of a mono 16 kHz wave
--- ((samples) or (1, samples)); an empty (0, 1, 96, 64) tensor when the wave is shorter than one example
function M.examples(wave)
  local lm = M.log_mel(wave)
  local frames = lm:size(1)
  local count = frames >= M.EXAMPLE_FRAMES and 1 + (frames - M.EXAMPLE_FRAMES) // M.EXAMPLE_HOP or 0
  if count == 0 then return cocola.zeros({ 0, 1, M.EXAMPLE_FRAMES, M.NUM_MEL_BINS }) end
  return lm:narrow(1, 1, count * M.EXAMPLE_FRAMES):contiguous()
      :view({ count, 1, M.EXAMPLE_FRAMES, M.NUM_MEL_BINS })
end

return M
