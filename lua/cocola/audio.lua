-- cocola.audio — the audio front end (C: csrc/audio/, on libsndfile, libsoxr and FFTW3).
-- Waves are float32 tensors (channels, samples) or batches (B, samples); spectra are (..., bins, frames)
-- and complex STFTs (..., n_fft/2+1, frames, 2) with real and imaginary parts last.
--
-- Documented behaviour at the edges:
--  * load: a window reaching past the end of the file (offset + duration) is zero-padded on the right
--    to the requested duration (as the COCOLA data loader pads short windows); an offset past the end
--    gives all zeros. Without a duration the window runs to the end (possibly 0 samples). A file whose
--    data is shorter than its header says loads what could be decoded, then zeros. Missing, non-audio
--    or unreadable files raise an error naming the file and libsndfile's reason.
--  * save: PCM is written as round(x * 2^(bits-1)), clipped to the PCM range; load divides by
--    2^(bits-1), so a wave on the PCM16 grid round-trips exactly (float WAV always does). NaN or
--    infinite samples raise an error.
--  * cocola_features / audioldm_mel: NaN or infinite samples raise an error; a wave needs at least 513
--    samples (reflect padding of n_fft/2).
local core = require "cocola.core"

local audio = {}

local function opt(o, k, d)
  if o == nil or o[k] == nil then return d end
  return o[k]
end

--- info(path) -> {frames, rate, channels, duration (s), format, subtype}, read from the header only.
function audio.info(path) return core.audio_info(path) end

--- load(path, {sr = keep, mono = false, offset = 0, duration = all}) -> wave (channels, samples), rate.
-- Unknown options and bad values (sr = 0, duration = -1, ...) are errors naming the valid ones.
-- Seeks to the window (sf_seek): only the window is decoded. mono averages the channels; sr resamples
-- with soxr (HQ); with a duration the result has exactly round(duration * rate) samples.
local LOAD_OPTIONS = { sr = true, mono = true, offset = true, duration = true }

-- a bad option of audio.load: an error naming it and the valid ones (level: load's caller)
local function bad_load_option(fmt, ...)
  error("audio.load: " .. string.format(fmt, ...) .. " (options: sr, mono, offset, duration)", 3)
end

function audio.load(path, o)
  if o ~= nil and type(o) ~= "table" then bad_load_option("expected an options table, got %s", type(o)) end
  for k in pairs(o or {}) do
    if not LOAD_OPTIONS[k] then bad_load_option("unknown option '%s'", tostring(k)) end
  end
  local sr, mono = opt(o, "sr", nil), opt(o, "mono", false)
  local offset, duration = opt(o, "offset", 0), opt(o, "duration", nil)
  if sr ~= nil and (math.type(sr) == nil or sr <= 0 or sr ~= math.floor(sr)) then
    bad_load_option("sr must be a positive whole number of Hz (or absent: the file's rate), got %s", tostring(sr))
  end
  if type(mono) ~= "boolean" then bad_load_option("mono must be true or false, got %s", tostring(mono)) end
  if type(offset) ~= "number" or offset ~= offset or offset < 0 or offset == math.huge then
    bad_load_option("offset must be a number of seconds >= 0, got %s", tostring(offset))
  end
  if duration ~= nil and (type(duration) ~= "number" or duration ~= duration or duration <= 0 or duration == math.huge) then
    bad_load_option("duration must be a positive number of seconds (or absent: to the end), got %s", tostring(duration))
  end
  return core.audio_load(path, sr and math.tointeger(sr) or 0, mono, offset, duration or -1)
end

--- save(path, wave, sr, {subtype = "pcm16"}) writes .wav / .flac / .ogg / .aiff (by extension).
-- subtype: "pcm16", "pcm24", "pcm32", "float", "double" (WAV/AIFF), "vorbis" (OGG, its default).
function audio.save(path, wave, sr, o)
  core.audio_save(path, wave, sr, opt(o, "subtype", nil))
end

--- resample(wave, from_sr, to_sr) along the last dim (soxr HQ); ceil(n * to / from) samples.
function audio.resample(wave, from, to) return core.audio_resample(wave, from, to) end

--- to_mono(wave (channels, samples)) -> (1, samples), the mean of the channels.
function audio.to_mono(wave) return core.audio_to_mono(wave) end

local function stft_opts(o)
  local n_fft = opt(o, "n_fft", 1024)
  local win = opt(o, "win_length", n_fft)
  local hop = opt(o, "hop_length", win // 4)
  local pad = opt(o, "pad_mode", "constant")
  if pad ~= "constant" and pad ~= "reflect" then error("audio.stft: pad_mode must be 'constant' or 'reflect'", 3) end
  return n_fft, hop, win, opt(o, "center", true), pad == "reflect"
end

--- stft(x (..., samples), {n_fft = 1024, hop_length = win_length // 4, win_length = n_fft,
--  center = true, pad_mode = "constant" | "reflect"}) -> (..., n_fft/2+1, frames, 2).
-- The window is a periodic Hann of win_length, zero-padded (centred) to n_fft; frames are not normalised.
function audio.stft(x, o) return core.audio_stft(x, stft_opts(o)) end

--- istft(X (..., bins, frames, 2), same options as stft plus length) -> (..., samples); window-squared
-- overlap-add normalisation (torch.istft).
function audio.istft(X, o)
  local n_fft, hop, win, center, reflect = stft_opts(o)
  return core.audio_istft(X, n_fft, hop, win, center, reflect, opt(o, "length", -1))
end

--- magnitude(X (..., 2)) -> |X|
function audio.magnitude(X)
  local re, im = X:select(-1, 1), X:select(-1, 2)
  return (re * re + im * im):sqrt()
end

--- median_filter(x (..., rows, cols), size, dim = -1): scipy.ndimage.median_filter along one of the last
-- two dims (mode 'reflect': d c b a | a b c d | d c b a); size odd.
function audio.median_filter(x, size, dim) return core.audio_median_filter(x, size, dim or -1) end

--- hpss(mag (..., bins, frames), {kernel_size = 31, power = 2, margin = 1}) -> harmonic, percussive
-- magnitudes (librosa.decompose.hpss on |S|: soft masks times the magnitude). kernel_size may be a
-- table {harmonic, percussive}.
function audio.hpss(mag, o)
  local k = opt(o, "kernel_size", 31)
  local kh, kp = k, k
  if type(k) == "table" then kh, kp = k[1], k[2] end
  return core.audio_hpss(mag, kh, kp, opt(o, "power", 2), opt(o, "margin", 1))
end

--- mel_filterbank({sr = 16000, n_fft = 1024, n_mels = 128, f_min = 0, f_max = sr / 2,
--  htk = false, norm = "slaney" | false}) -> (n_mels, n_fft/2+1).
-- Defaults are librosa's (Slaney scale and norm); torchaudio's default is {htk = true, norm = false}.
function audio.mel_filterbank(o)
  local sr = opt(o, "sr", 16000)
  local norm = opt(o, "norm", "slaney")
  if norm ~= "slaney" and norm ~= false then error("audio.mel_filterbank: norm must be 'slaney' or false", 2) end
  return core.audio_mel_filterbank(opt(o, "n_fft", 1024) // 2 + 1, sr, opt(o, "n_mels", 128), opt(o, "f_min", 0),
                                   opt(o, "f_max", sr / 2), opt(o, "htk", false), norm == "slaney")
end

local function db_args(o, amin_default)
  local ref = opt(o, "ref", 1.0)
  if ref == "max" then ref = 0
  elseif type(ref) ~= "number" or ref <= 0 then error("audio: ref must be 'max' or a positive number", 3) end
  local top = opt(o, "top_db", 80)
  if top == false then top = -1 end
  return ref, opt(o, "amin", amin_default), top
end

--- power_to_db(S, {ref = 1 | "max", amin = 1e-10, top_db = 80 | false}) as librosa (the max is over
-- the whole tensor).
function audio.power_to_db(S, o) return core.audio_power_to_db(S, db_args(o, 1e-10)) end

--- amplitude_to_db(S, {ref = 1 | "max", amin = 1e-5, top_db = 80 | false}) as librosa.
function audio.amplitude_to_db(S, o) return core.audio_amplitude_to_db(S, db_args(o, 1e-5)) end

--- cocola_features(wave (B, samples) or (samples), {mode = "hpss" | "mel"}) -> (B, 2, 64, frames) for
-- hpss (harmonic, percussive), (B, 1, 64, frames) for mel; frames = 1 + samples // 160 (501 for 5 s).
-- Mono 16 kHz input. OpenMP over the batch (cocola.set_num_threads).
function audio.cocola_features(wave, o)
  local mode = opt(o, "mode", "hpss")
  if mode ~= "hpss" and mode ~= "mel" then error("audio.cocola_features: mode must be 'hpss' or 'mel'", 2) end
  return core.audio_cocola_features(wave, mode == "hpss")
end

--- audioldm_mel(wave (B, samples)) -> (B, 1, frames, 64): the AudioLDM 2 / CompoNet log-mel
-- (16 kHz, n_fft 1024, hop 160, reflect padding, magnitude, Slaney mel 64 over 0-8000 Hz, log(max(x, 1e-5))).
function audio.audioldm_mel(wave) return core.audio_audioldm_mel(wave) end

-- round half to even, as Python's round()
local function round_half_even(x)
  local r = math.floor(x)
  local frac = x - r
  if frac > 0.5 or (frac == 0.5 and r % 2 == 1) then r = r + 1 end
  return r
end

--- pitch_shift(wave (samples) or (B, samples), sr, n_steps, {bins_per_octave = 12, n_fft = 2048,
-- hop_length = n_fft // 4}) -> the wave shifted by n_steps steps (semitones; fractional allowed), same
-- shape. librosa.effects.pitch_shift 0.10.1 (res_type "soxr_hq", scale false): time-stretch by rate =
-- 2^(-n_steps / bins_per_octave) with a phase vocoder (STFT with a periodic Hann, zero centre padding;
-- istft to round(samples / rate) samples), resample from sr / rate to sr (soxr HQ), then cut or
-- zero-pad to the input's length. Batches are shifted row by row, all by the same n_steps.
function audio.pitch_shift(wave, sr, n_steps, o)
  if not core.is_tensor(wave) or wave:dtype() ~= "float32" or wave:dim() < 1 or wave:dim() > 2 then
    error("audio.pitch_shift: expected a float32 wave (samples) or batch (B, samples)", 2)
  end
  if type(sr) ~= "number" or not (sr > 0) or sr == math.huge then
    error("audio.pitch_shift: sr must be a positive number, got " .. tostring(sr), 2)
  end
  if type(n_steps) ~= "number" or n_steps ~= n_steps or math.abs(n_steps) == math.huge then
    error("audio.pitch_shift: n_steps must be a finite number, got " .. tostring(n_steps), 2)
  end
  local per_octave = opt(o, "bins_per_octave", 12)
  if math.type(per_octave) ~= "integer" or per_octave < 1 then
    error("audio.pitch_shift: bins_per_octave must be a positive integer, got " .. tostring(per_octave), 2)
  end
  local n_fft = opt(o, "n_fft", 2048)
  local hop = opt(o, "hop_length", n_fft // 4)
  if math.type(n_fft) ~= "integer" or n_fft < 2 or math.type(hop) ~= "integer" or hop < 1 then
    error("audio.pitch_shift: n_fft and hop_length must be positive integers", 2)
  end
  local samples = wave:size(-1)
  if samples < 1 then error("audio.pitch_shift: the wave has no samples", 2) end
  if (wave - wave):ne(0):sum():item() > 0 then error("audio.pitch_shift: the wave has NaN or infinite samples", 2) end
  local rate = 2.0 ^ (-n_steps / per_octave)
  local spec = core.audio_stft(wave, n_fft, hop, n_fft, true, false)
  local stretched = core.audio_phase_vocoder(spec, rate, hop)
  local y = core.audio_istft(stretched, n_fft, hop, n_fft, true, false, round_half_even(samples / rate))
  y = core.audio_resample(y, sr / rate, sr)
  local n = y:size(-1)
  if n > samples then return y:narrow(-1, 1, samples):contiguous() end
  if n < samples then return core.pad(y, { 0, samples - n }) end
  return y
end

return audio
