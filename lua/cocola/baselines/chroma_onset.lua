-- cocola.baselines.chroma_onset — a non-learned coherence baseline with the COCOLA model's interface:
-- the similarity of two 16 kHz mono windows a, b is
--     0.5 * cos(chroma_a, chroma_b) + 0.5 * pearson(onset_a, onset_b)     (zero lag)
-- so a transposed or time-shifted accompaniment scores lower than the aligned one.
--
-- Features, with librosa 0.10.1's definitions (n_fft 2048, hop 512, periodic Hann window, centred
-- frames with zero padding; 5 s at 16 kHz = 157 frames):
--  * chroma: librosa.feature.chroma_stft(y, sr=16000, n_fft=2048, hop_length=512, tuning=0.0): the power
--    spectrogram |STFT|^2 through the 12 x 1025 chroma filterbank of librosa.filters.chroma (ctroct 5,
--    octwidth 2, columns L2-normalised, C first), each frame divided by its largest pitch class (norm=inf;
--    an all-zero frame stays zero), then averaged over the window's frames -> 12 values. The tuning is
--    fixed at A440 (librosa would estimate it per call), so a transposition is a transposition.
--  * onset envelope: librosa.onset.onset_strength(y, sr=16000, n_fft=2048, hop_length=512): the 128-band
--    Slaney mel power spectrogram (0 - 8 kHz) in dB (power_to_db: ref 1, amin 1e-10, top_db 80 below the
--    window's own maximum), its positive first difference over time averaged over the mel bands, shifted
--    right by lag + n_fft / (2 hop) = 3 frames (zeros first) and cut to the number of frames.
--
-- The correlation leaves out the envelope's first ONSET_SKIP = 5 frames: 3 are librosa's alignment
-- padding (always 0) and 2 compare frames reaching into the zero padding before the window's first
-- sample, a rise every window has at the same place. Kept, they correlate any two windows (two
-- independent white noises: 0.74 on average instead of 0.00). The end needs nothing: librosa's cut
-- already drops the differences that reach into the padding after the last sample.
--
-- Embedding: e = [chroma / |chroma|, (onset - mean) / |onset - mean|] / sqrt(2) (onset: the envelope
-- without its first 5 frames), of size 12 + frames - 5 (164 for 5 s), so e_a . e_b is exactly the
-- similarity above and lies in [-0.5, 1] (the chroma cosine is >= 0). A part whose norm is below a
-- threshold (a silent window, a flat envelope) is zero, never NaN: it then adds 0 to the similarity.
-- Features are the embeddings; embed() is the identity.
--
--   local b = require("cocola.baselines").load("chroma-onset")
--   local e = b:features(waves)                 -- (B, samples) -> (B, 12 + frames - 5)
--   local sim = b.similarity(e1, e2)            -- (N, D), (M, D) -> (N, M)
--   local s = b:score{cond = b:features(y), gen = b:features(x)}   -- (B) per-pair similarities
--
-- Computed on the CPU in float32; the embeddings can be moved to another device afterwards.
local cocola = require "cocola"
local audio = require "cocola.audio"
local score_arguments = require "cocola.models.score_arguments"

local M = {}

M.NAME = "chroma-onset"
M.SAMPLE_RATE = 16000
M.N_FFT = 2048
M.HOP = 512
M.N_CHROMA = 12
M.N_MELS = 128
M.LAG = 1
M.ONSET_SKIP = 5                    -- leading envelope frames left out of the correlation (see above)
M.MIN_SAMPLES = 4096                -- at least 9 frames, 4 of them correlated
M.CHROMA_EPS = 1e-6                 -- chroma norms below this: silent window, zero chroma part
M.ONSET_EPS = 1e-4                  -- centred envelope norms (dB) below this: flat, zero onset part
M.FRAME_TINY = 1.1754943508222875e-38 -- float32's smallest normal: librosa's threshold for norm=inf

local INV_SQRT2 = 1 / math.sqrt(2)

-- ---- filterbanks (built once) -------------------------------------------------------------

--- chroma_filterbank(sr, n_fft, {n_chroma = 12, tuning = 0, ctroct = 5, octwidth = 2}) -> (n_chroma,
-- n_fft/2+1) float32, librosa.filters.chroma (norm 2, base_c) computed in double precision.
function M.chroma_filterbank(sr, n_fft, o)
  o = o or {}
  local n_chroma, tuning = o.n_chroma or 12, o.tuning or 0.0
  local ctroct, octwidth = o.ctroct or 5.0, o.octwidth or 2.0
  local a440 = 440.0 * 2.0 ^ (tuning / n_chroma)
  -- frequency of each FFT bin (0 .. sr, n_fft of them) in chroma bins; bin 0 made up 1.5 octaves below bin 1
  local frqbins = {}
  for k = 1, n_fft - 1 do
    local f = k * sr / n_fft
    frqbins[k + 1] = n_chroma * math.log(f / (a440 / 16), 2)
  end
  frqbins[1] = frqbins[2] - 1.5 * n_chroma
  local width = {}
  for k = 1, n_fft - 1 do width[k] = math.max(frqbins[k + 1] - frqbins[k], 1.0) end
  width[n_fft] = 1.0
  local half = math.floor(n_chroma / 2 + 0.5) -- np.round(n_chroma / 2)
  local n_bins = n_fft // 2 + 1
  local w = {}
  for c = 1, n_chroma do w[c] = {} end
  for k = 1, n_bins do
    local col, sq = {}, 0.0
    for c = 1, n_chroma do
      local d = frqbins[k] - (c - 1)
      d = math.fmod(d + half + 10 * n_chroma, n_chroma)
      if d < 0 then d = d + n_chroma end
      d = d - half
      local v = math.exp(-0.5 * (2 * d / width[k]) ^ 2)
      col[c] = v
      sq = sq + v * v
    end
    local norm = math.sqrt(sq)
    local octave = math.exp(-0.5 * ((frqbins[k] / n_chroma - ctroct) / octwidth) ^ 2)
    for c = 1, n_chroma do
      -- rows rolled by -3 so that row 1 is C (base_c)
      local row = (c - 1 - 3 * (n_chroma // 12)) % n_chroma + 1
      w[row][k] = (norm > 0 and col[c] / norm or col[c]) * octave
    end
  end
  return cocola.tensor(w, { dtype = "float32" })
end

local chroma_fb, mel_fb
local function filterbanks()
  if not chroma_fb then
    chroma_fb = M.chroma_filterbank(M.SAMPLE_RATE, M.N_FFT)
    mel_fb = audio.mel_filterbank { sr = M.SAMPLE_RATE, n_fft = M.N_FFT, n_mels = M.N_MELS }
  end
  return chroma_fb, mel_fb
end

-- ---- features -----------------------------------------------------------------------------

-- (samples) | (B, samples) -> a float32 CPU contiguous (B, samples) batch; errors name the problem
local function as_batch(waves)
  if not cocola.is_tensor(waves) then
    error("chroma-onset features: expected a wave tensor (B, samples) or (samples), got " .. type(waves), 3)
  end
  if waves:device() ~= "cpu" then waves = waves:to("cpu") end
  if waves:dtype() ~= "float32" then waves = waves:float() end
  if waves:dim() == 1 then waves = waves:reshape({ 1, waves:size(1) }) end
  if waves:dim() ~= 2 then
    error("chroma-onset features: expected waves (B, samples) or (samples), got " .. waves:shape_string(), 3)
  end
  if waves:size(1) < 1 then error("chroma-onset features: empty batch", 3) end
  if waves:size(2) < M.MIN_SAMPLES then
    error(string.format("chroma-onset features: a window needs at least %d samples, got %d", M.MIN_SAMPLES,
      waves:size(2)), 3)
  end
  waves = waves:contiguous()
  local peak = waves:abs():max():item()
  if peak ~= peak or peak == math.huge then
    error("chroma-onset features: the waves hold NaN or infinite samples", 3)
  end
  return waves
end

local function power_spectrogram(waves) -- (B, n) -> (B, n_fft/2+1, frames)
  local X = audio.stft(waves, { n_fft = M.N_FFT, hop_length = M.HOP, pad_mode = "constant" })
  local re, im = X:select(-1, 1), X:select(-1, 2)
  return re * re + im * im
end

-- (B, bins, T) power -> (B, 12) frame-averaged chroma (each frame scaled to a maximum of 1)
local function chroma_of(power)
  local fb = filterbanks()
  local raw = fb:matmul(power)               -- (B, 12, T)
  local peak = raw:max(2, true)               -- (B, 1, T)
  peak = peak:masked_fill(peak:lt(M.FRAME_TINY), 1)
  return (raw / peak):mean(3)
end

-- (B, bins, T) power -> (B, T) onset-strength envelope
local function onset_of(power)
  local _, fb = filterbanks()
  local mel = fb:matmul(power)                -- (B, 128, T)
  local B, T = mel:size(1), mel:size(3)
  local rows = {}
  for b = 1, B do rows[b] = audio.power_to_db(mel:select(1, b)) end -- top_db below each window's own max
  local db = cocola.stack(rows, 1)
  local rise = (db:narrow(3, 1 + M.LAG, T - M.LAG) - db:narrow(3, 1, T - M.LAG)):relu():mean(2) -- (B, T - lag)
  local shift = M.LAG + M.N_FFT // (2 * M.HOP)
  return cocola.pad(rise, { shift, 0 }):narrow(2, 1, T):contiguous()
end

--- chroma_onset.inverse_or_zero(norm, eps[, factor]) -> factor / norm elementwise (factor 1 when
-- nil), 0 where norm < eps: a scale for a silent or flat row that is zero, never infinite or NaN
function M.inverse_or_zero(norm, eps, factor)
  local flat = norm:lt(eps)
  local inverse = norm:masked_fill(flat, 1):pow(-1)
  if factor then inverse = inverse * factor end
  return inverse:masked_fill(flat, 0)
end

-- rows scaled to norm 1 / sqrt(2); rows with a norm below eps become zeros
local function half_unit_rows(x, eps)
  return x * M.inverse_or_zero((x * x):sum(2, true):sqrt(), eps, INV_SQRT2)
end

--- chroma_onset.chroma(waves) -> (B, 12) frame-averaged chroma (librosa.feature.chroma_stft with
-- tuning 0, then a mean over frames).
function M.chroma(waves)
  return chroma_of(power_spectrogram(as_batch(waves)))
end

--- chroma_onset.onset_envelope(waves) -> (B, frames) librosa.onset.onset_strength.
function M.onset_envelope(waves)
  return onset_of(power_spectrogram(as_batch(waves)))
end

--- chroma_onset.embeddings(waves) -> (B, 12 + frames - 5): the embedding described at the top.
function M.embeddings(waves)
  local power = power_spectrogram(as_batch(waves))
  local chroma, onset = chroma_of(power), onset_of(power)
  onset = onset:narrow(2, M.ONSET_SKIP + 1, onset:size(2) - M.ONSET_SKIP)
  local centred = onset - onset:mean(2, true)
  return cocola.cat({ half_unit_rows(chroma, M.CHROMA_EPS), half_unit_rows(centred, M.ONSET_EPS) }, 2):contiguous()
end

-- ---- per-frame inputs of the learned chroma-onset model ------------------------------------

M.ONSET_BANDS = 4                   -- onset envelopes of 4 groups of 32 mel bands (low to high)
M.FRAME_CHANNELS = M.N_CHROMA + M.ONSET_BANDS
M.CHROMA_RANGE = 1000               -- chroma compressed as log(1 + 1000 x / window max) / log(1001)

--- chroma_onset.frame_features(waves) -> (B, 16, 1, frames): the per-frame inputs of
-- cocola.models.chroma_onset_cocola, from the same STFT as the baseline's:
--  * channels 1-12: the chroma filterbank's output (before librosa's per-frame normalisation),
--    divided by the window's largest value and compressed to log(1 + 1000 c) / log(1001), in [0, 1];
--    a silent window is all zeros. Loud frames keep more weight than quiet ones.
--  * channels 13-16: onset strength per band group: the window's mel power in dB (as onset_envelope),
--    its positive first difference averaged over mel bands 1-32, 33-64, 65-96 and 97-128, aligned as
--    librosa aligns onset_strength, the first ONSET_SKIP frames zeroed, then divided by the root mean
--    square of the four envelopes plus 1 dB (so a flat window stays near zero).
function M.frame_features(waves)
  local power = power_spectrogram(as_batch(waves))
  local cfb, mfb = filterbanks()
  local raw = cfb:matmul(power)                                  -- (B, 12, T)
  local B, T = raw:size(1), raw:size(3)
  local peak = raw:reshape({ B, M.N_CHROMA * T }):max(2, true):reshape({ B, 1, 1 })
  peak = peak:masked_fill(peak:lt(M.FRAME_TINY), 1)
  local chroma = ((raw / peak) * M.CHROMA_RANGE + 1):log() * (1 / math.log(M.CHROMA_RANGE + 1))
  local mel = mfb:matmul(power)                                  -- (B, 128, T)
  local rows = {}
  for b = 1, B do rows[b] = audio.power_to_db(mel:select(1, b)) end
  local db = cocola.stack(rows, 1)
  local rise = (db:narrow(3, 1 + M.LAG, T - M.LAG) - db:narrow(3, 1, T - M.LAG)):relu()
  local per_band = M.N_MELS // M.ONSET_BANDS
  local bands = rise:contiguous():reshape({ B, M.ONSET_BANDS, per_band, T - M.LAG }):mean(3) -- (B, 4, T - lag)
  -- librosa's alignment shifts right by lag + n_fft / (2 hop); then the first ONSET_SKIP frames become 0
  local aligned = cocola.pad(bands, { M.LAG + M.N_FFT // (2 * M.HOP), 0 }):narrow(3, 1, T)
  local skip = M.ONSET_SKIP
  aligned = cocola.pad(aligned:narrow(3, skip + 1, T - skip), { skip, 0 })
  local rms = ((aligned * aligned):mean(3, true):mean(2, true) + 1):sqrt()
  local onset = aligned / rms
  return cocola.cat({ chroma, onset }, 2):contiguous():reshape({ B, M.FRAME_CHANNELS, 1, T })
end

-- ---- the model-like object ----------------------------------------------------------------

local function check_embeddings(t, what, fn)
  if not cocola.is_tensor(t) then error(string.format("%s: %s must be a tensor of embeddings", fn, what), 4) end
  if t:dim() ~= 2 or t:size(2) <= M.N_CHROMA then
    error(string.format("%s: %s must be chroma-onset embeddings (N, 12 + frames - 5), got %s", fn, what, t:shape_string()), 4)
  end
end

local function check_pair(a, b, fn, wa, wb)
  check_embeddings(a, wa, fn)
  check_embeddings(b, wb, fn)
  if a:size(2) ~= b:size(2) then
    error(string.format("%s: embeddings of windows of different lengths (%d and %d dims); use equal windows",
      fn, a:size(2), b:size(2)), 4)
  end
end

local function check_mode(mode, fn)
  if mode ~= nil and mode ~= "both" then
    error(string.format("%s: the chroma-onset baseline has one embedding mode, 'both'; got '%s'", fn, tostring(mode)), 3)
  end
end

-- the similarity: callable as model.similarity(a, b) or model:similarity(a, b)
local Similarity = {}
Similarity.__index = Similarity
Similarity.__call = function(_, a, b, c)
  if not cocola.is_tensor(a) and type(a) == "table" then a, b = b, c end
  check_pair(a, b, "similarity", "anchors", "positives")
  return a:matmul(b:t())
end

--- similarity:pairwise(a (B, D), b (B, D)) -> (B): a_i . b_i
function Similarity:pairwise(a, b)
  check_pair(a, b, "similarity", "x", "y")
  if a:size(1) ~= b:size(1) then
    error(string.format("similarity: expected as many rows in both, got %d and %d", a:size(1), b:size(1)), 3)
  end
  return (a * b):sum(2)
end

Similarity.__tostring = function() return "ChromaOnsetSimilarity(dot product)" end

local Baseline = {}
Baseline.__index = Baseline
Baseline.__name = "cocola.baselines.ChromaOnset"

--- chroma_onset.new() -> the baseline object (see cocola.baselines).
function M.new()
  return setmetatable({
    name = M.NAME, input = "chroma_onset", embedding_mode = "both", training = false,
    similarity = setmetatable({}, Similarity),
  }, Baseline)
end

--- features(waves (B, samples) or (samples), 16 kHz mono) -> (B, 12 + frames - 5) embeddings.
function Baseline:features(waves) return M.embeddings(waves) end

--- embed(features, mode = "both") -> the features (they are the embeddings).
function Baseline:embed(features, mode)
  check_mode(mode, "embed")
  check_embeddings(features, "features", "embed")
  return features
end

--- score{cond = y, gen = x, mode = "both"} or score(y, x, mode) -> (B) similarities of paired rows:
-- 0.5 cos(chroma) + 0.5 pearson(onset) (symmetric; the names match the models' score).
function Baseline:score(cond, gen, mode_)
  local y, x, mode = score_arguments("score", cond, gen, mode_)
  check_mode(mode, "score")
  check_pair(y, x, "score", "cond", "gen")
  if y:size(1) ~= x:size(1) then
    error(string.format("score: expected as many windows in y and x, got %d and %d", y:size(1), x:size(1)), 2)
  end
  return (y * x):sum(2)
end

--- set_embedding_mode("both") -> self; other modes are an error.
function Baseline:set_embedding_mode(mode)
  check_mode(mode, "set_embedding_mode")
  return self
end

function Baseline:eval() return self end
function Baseline:train() return self end
function Baseline:parameters() return {} end
-- nothing to move: features are computed on the CPU
function Baseline:to() return self end
function Baseline:cpu() return self end
function Baseline:cuda() return self end

function Baseline:extra_repr()
  return string.format("0.5 cos(chroma, 12 x n_fft %d hop %d, tuning 0) + 0.5 pearson(onset strength, %d mels hop %d, first %d frames left out), %d Hz",
    M.N_FFT, M.HOP, M.N_MELS, M.HOP, M.ONSET_SKIP, M.SAMPLE_RATE)
end

Baseline.__tostring = function(self) return "ChromaOnset(" .. self:extra_repr() .. ")" end

M.Baseline = Baseline

return M
