-- cocola.models.text.clap_audio_features — the non-fusion front end of transformers' ClapFeatureExtractor
-- (feature_extraction_clap.py, transformers 4.38.2) for the HTSAT audio tower (clap_audio.lua):
--   mono 48 kHz wave -> fitted to max_length_s * sampling_rate samples (see below) -> STFT (periodic Hann
--   window of fft_window_size 1024, hop 480, centred with reflect padding: 1 + samples // hop frames, 1001
--   for 10 s) -> power |X|^2 -> Slaney-scale, Slaney-normalised mel filterbank (feature_size 64 bins over
--   frequency_min 50 to frequency_max 14000 Hz: the reference's mel_filters_slaney, used whenever truncation
--   is not "fusion") -> max(mel, 1e-10) -> 10 log10 (power to dB, reference 1, no top_db clipping).
--   features(wave, opts) -> (B, 1, frames, feature_size), the reference's input_features.
-- Fitting a clip of n samples to max_length m:
--   n > m: truncation "rand_trunc" crops m samples; the reference draws the start at random, here it is the
--     explicit opts.offset (samples, default 0; 0 <= offset <= n - m, else an error);
--   n < m: padding "repeatpad" (default) repeats the clip floor(m / n) times then zero-pads to m; "repeat"
--     repeats it floor(m / n) + 1 times and cuts to m; "pad" zero-pads.
--   truncation "fusion" (stacked crops for fused checkpoints) is not supported: the non-fusion tower takes
--   one mel channel.
-- Settings: ClapAudioFeatures(cfg) with a preprocessor_config.json as parsed, missing keys from
--   ClapAudioFeatures.DEFAULTS: the settings of the LAION "unfused" checkpoints and AudioLDM 2
--   (frequency_min 50 and truncation "rand_trunc", where the class's own defaults are 0 and "fusion").
local cocola = require "cocola"
local audio = require "cocola.audio"
local pretrained = require "cocola.models.audioldm2.pretrained"

local ClapAudioFeatures = {}
ClapAudioFeatures.__index = ClapAudioFeatures

ClapAudioFeatures.DEFAULTS = {
  feature_size = 64, sampling_rate = 48000, hop_length = 480, max_length_s = 10, fft_window_size = 1024,
  frequency_min = 50, frequency_max = 14000, truncation = "rand_trunc", padding = "repeatpad",
}

local positive_integer = pretrained.positive_integer
local non_negative_number = pretrained.non_negative_number
local positive_number = pretrained.positive_number
local must_be = pretrained.must_be

-- preprocessor_config.json keys: a rule when the value matters here, true when accepted and unused
ClapAudioFeatures.CONFIG_KEYS = {
  feature_size = positive_integer, sampling_rate = positive_integer, hop_length = positive_integer,
  max_length_s = positive_number, fft_window_size = positive_integer, frequency_min = non_negative_number,
  frequency_max = positive_number,
  truncation = function(v)
    if v == "fusion" then return "the fusion crops are for enable_fusion checkpoints; only \"rand_trunc\" is supported" end
    if v ~= "rand_trunc" then return "expected \"rand_trunc\"" end
  end,
  padding = pretrained.one_of({ "repeatpad", "repeat", "pad" }),
  padding_value = function(v) if v ~= 0 then return "only 0 is supported" end end,
  padding_side = pretrained.one_of({ "right" }),
  return_attention_mask = must_be(false),
  feature_extractor_type = pretrained.one_of({ "ClapFeatureExtractor" }),
  -- derived or unused by the reference's extraction
  nb_frequency_bins = true, nb_max_samples = true, nb_max_frames = true, top_db = true, n_fft = true,
  chunk_length_s = true, processor_class = true,
}

--- ClapAudioFeatures(cfg): cfg a preprocessor_config.json as parsed (or nil: the defaults)
function ClapAudioFeatures.new(cfg)
  cfg = cfg or {}
  if type(cfg) ~= "table" then error("ClapAudioFeatures: expected a settings table", 2) end
  pretrained.check_keys(cfg, ClapAudioFeatures.CONFIG_KEYS, "ClapAudioFeatures (ClapFeatureExtractor)")
  local c = {}
  for k, v in pairs(ClapAudioFeatures.DEFAULTS) do c[k] = v end
  for k, v in pairs(cfg) do if k:sub(1, 1) ~= "_" then c[k] = v end end
  local where = cfg._path or "ClapAudioFeatures"
  c.max_length = math.floor(c.max_length_s * c.sampling_rate)
  if c.max_length < c.fft_window_size // 2 + 1 then
    error(string.format("%s: max_length_s * sampling_rate = %d samples is shorter than a reflect-padded frame (%d)",
      where, c.max_length, c.fft_window_size // 2 + 1), 2)
  end
  if not (c.frequency_max > c.frequency_min) or c.frequency_max > c.sampling_rate / 2 then
    error(string.format("%s: frequency_min (%s) and frequency_max (%s) must satisfy min < max <= sampling_rate / 2",
      where, tostring(c.frequency_min), tostring(c.frequency_max)), 2)
  end
  if cfg.nb_max_samples ~= nil and cfg.nb_max_samples ~= c.max_length then
    error(string.format("%s: nb_max_samples (%s) is not max_length_s * sampling_rate (%d)", where,
      tostring(cfg.nb_max_samples), c.max_length), 2)
  end
  if cfg.nb_frequency_bins ~= nil and cfg.nb_frequency_bins ~= c.fft_window_size // 2 + 1 then
    error(string.format("%s: nb_frequency_bins (%s) is not fft_window_size / 2 + 1 (%d)", where,
      tostring(cfg.nb_frequency_bins), c.fft_window_size // 2 + 1), 2)
  end
  c.frames = 1 + c.max_length // c.hop_length
  local self = setmetatable({ config = c }, ClapAudioFeatures)
  self.mel_filters = audio.mel_filterbank({ sr = c.sampling_rate, n_fft = c.fft_window_size, n_mels = c.feature_size,
    f_min = c.frequency_min, f_max = c.frequency_max, htk = false, norm = "slaney" })
  return self
end
setmetatable(ClapAudioFeatures, { __call = function(_, cfg) return ClapAudioFeatures.new(cfg) end })

--- ClapAudioFeatures.from_pretrained(dir): dir/preprocessor_config.json, or that of a pipeline folder's
--- feature_extractor/
function ClapAudioFeatures.from_pretrained(dir)
  local folder = pretrained.component_dir(dir, "feature_extractor", "preprocessor_config.json")
  return ClapAudioFeatures.new(pretrained.read_config(folder, "preprocessor_config.json"))
end

local function shape_of(t)
  return cocola.is_tensor(t) and (t:dtype() .. " " .. t:shape_string()) or type(t)
end

-- the clips of a wave argument as a list of 1-D float32 tensors
local function clips(wave)
  local list = {}
  if cocola.is_tensor(wave) then
    if wave:dim() == 1 then
      list[1] = wave
    elseif wave:dim() == 2 then
      for i = 1, wave:size(1) do list[i] = wave:select(1, i) end
    else
      error("ClapAudioFeatures: expected a mono wave (samples), a batch (B, samples) or a list of waves, got "
        .. wave:shape_string(), 3)
    end
  elseif type(wave) == "table" and #wave > 0 then
    for i, w in ipairs(wave) do
      if not cocola.is_tensor(w) or w:dim() ~= 1 then
        error(string.format("ClapAudioFeatures: entry %d of the list must be a 1-D wave tensor, got %s", i,
          shape_of(w)), 3)
      end
      list[i] = w
    end
  else
    error("ClapAudioFeatures: expected a mono wave (samples), a batch (B, samples) or a list of waves, got "
      .. shape_of(wave), 3)
  end
  for i, w in ipairs(list) do
    local dt = w:dtype()
    if dt ~= "float32" and dt ~= "float64" then
      error(string.format("ClapAudioFeatures: waves must be float32 or float64 tensors, got %s", dt), 3)
    end
    if w:size(1) < 1 then error(string.format("ClapAudioFeatures: wave %d is empty", i), 3) end
    if w:isfinite():all():item() == 0 then
      error(string.format("ClapAudioFeatures: wave %d holds NaN or infinite samples", i), 3)
    end
    list[i] = w:to("float32"):contiguous()
  end
  return list
end

-- the clip fitted to m samples (crop at offset, or padding)
function ClapAudioFeatures:fit(w, offset, i)
  local c = self.config
  local n, m = w:size(1), c.max_length
  if n > m then
    if math.type(offset) ~= "integer" or offset < 0 or offset > n - m then
      error(string.format("ClapAudioFeatures: offset must be an integer in [0, %d] for wave %d (%d samples, %d kept), "
        .. "got %s", n - m, i, n, m, tostring(offset)), 3)
    end
    return w:narrow(1, offset + 1, m)
  end
  if n == m then return w end
  if c.padding == "repeatpad" or c.padding == "repeat" then
    local reps = m // n + (c.padding == "repeat" and 1 or 0)
    local parts = {}
    for k = 1, reps do parts[k] = w end
    w = reps > 1 and cocola.cat(parts, 1) or w
    if w:size(1) > m then return w:narrow(1, 1, m) end
    n = w:size(1)
  end
  if n == m then return w end
  return cocola.cat({ w, cocola.zeros({ m - n }, { dtype = w:dtype(), device = w:device() }) }, 1)
end

--- features(wave, {offset = 0}) -> input_features (B, 1, frames, feature_size) float32.
--- wave: (samples), (B, samples) or a list of 1-D waves of any lengths, at sampling_rate (not checked: the
--- caller resamples). offset: the start (samples) of the crop of clips longer than max_length (the
--- reference's random rand_trunc start, made explicit); the same offset for every such clip.
function ClapAudioFeatures:features(wave, opts)
  opts = opts or {}
  if type(opts) ~= "table" or cocola.is_tensor(opts) then
    error("ClapAudioFeatures: the second argument is an options table {offset = ...}", 2)
  end
  for k in pairs(opts) do
    if k ~= "offset" then error(string.format("ClapAudioFeatures: unknown option '%s' (known: offset)", k), 2) end
  end
  local offset = opts.offset or 0
  local c = self.config
  local ok, list = pcall(clips, wave)
  if not ok then error(tostring(list):gsub("^.-%.lua:%d+: ", ""), 2) end
  local rows = {}
  for i, w in ipairs(list) do
    local fitted
    ok, fitted = pcall(self.fit, self, w, offset, i)
    if not ok then error(tostring(fitted):gsub("^.-%.lua:%d+: ", ""), 2) end
    rows[i] = fitted
  end
  local x = cocola.stack(rows, 1) -- (B, m)
  local X = audio.stft(x, { n_fft = c.fft_window_size, hop_length = c.hop_length, win_length = c.fft_window_size,
    center = true, pad_mode = "reflect" })
  local re, im = X:select(4, 1), X:select(4, 2)
  local power = re * re + im * im -- (B, bins, frames)
  local fb = self.mel_filters
  if fb:device() ~= power:device() then fb = fb:to(power:device()) end
  local mel = fb:matmul(power) -- (B, mels, frames)
  local db = audio.power_to_db(mel:contiguous(), { ref = 1, amin = 1e-10, top_db = false })
  return db:transpose(2, 3):unsqueeze(2):contiguous()
end

return ClapAudioFeatures
