-- cocola.models.encodec — the encoder of transformers 4.38.2's EncodecModel (modeling_encodec.py), the
-- continuous EnCodec embeddings that Fréchet Audio Distance libraries compute: model.encoder(audio) before
-- quantisation, (1, hidden_size, T) with T = ceil(samples / prod(upsampling_ratios)); for
-- facebook/encodec_24khz 128 dims at 75 frames a second (hop 320), each frame a row of the embedding.
-- The parts: encodec_encoder.lua (EncodecEncoder), encodec_resnet_block.lua, encodec_conv1d.lua (padding
-- rules, weight_norm / time_group_norm), weight_norm_conv1d.lua, encodec_lstm.lua and lstm.lua.
-- State-dict names are EncodecModel's encoder side: encoder.layers.{i}.conv.{weight_g, weight_v, bias},
--   encoder.layers.{i}.block.{1,3}.conv.*, encoder.layers.{i}.shortcut.conv.*,
--   encoder.layers.{i}.lstm.{weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ..._l1} (time_group_norm
--   models: conv.weight / conv.bias and norm.weight / norm.bias).
-- EncodecModel(cfg): cfg is an EncodecConfig config.json as parsed; missing keys take EncodecModel.DEFAULTS
--   (EncodecConfig's defaults = facebook/encodec_24khz); unsupported values are refused with the key named.
--   Both kinds upstream builds are supported: causal + weight_norm (24 kHz) and non-causal + time_group_norm
--   (48 kHz); pad_mode "reflect" or "constant". The keys of the quantizer, the decoder and
--   EncodecModel.encode's chunking / normalisation (normalize, chunk_length_s, overlap, codebook_size,
--   codebook_dim, target_bandwidths, trim_right_ratio) are accepted and not used: only the encoder is built.
-- EncodecModel.from_pretrained(dir): dir/config.json + dir/model.safetensors written by save_pretrained; the
--   encoder.* tensors are loaded strictly by name (every one present with its shape, no other encoder.*
--   tensor), the quantizer.* and decoder.* tensors of the file are ignored. A folder holding the original
--   facebookresearch checkpoint instead (EncodecModel.ORIGINAL_FILES, e.g. encodec_24khz-d7cc33bc.th, read by
--   the safe PyTorch zip reader cocola.load) is loaded through EncodecModel.original_name; a config.json is
--   then optional (the 24 kHz defaults).
-- model:encode_frames(x (N, C, L)) = model.encoder(x) -> (N, hidden_size, T).
-- model:embed(wave, sr) -> (T, hidden_size): wave (samples) or (channels, samples); a mono model averages
--   the channels, a stereo one takes two channels (a mono wave duplicated); resampled to sampling_rate
--   (cocola.audio.resample, soxr) when sr differs; no gradients. T = ceil(ceil(samples * sampling_rate / sr)
--   / hop).
local cocola = require "cocola"
local cjson = require "cjson"
local nn = require "cocola.nn"
local pretrained = require "cocola.models.audioldm2.pretrained"
local EncodecEncoder = require "cocola.models.encodec.encodec_encoder"

local EncodecModel = nn.Module:extend("EncodecModel")

-- EncodecConfig's defaults (transformers 4.38.2, = facebook/encodec_24khz) for the keys the encoder reads
EncodecModel.DEFAULTS = {
  sampling_rate = 24000, audio_channels = 1, hidden_size = 128, num_filters = 32, num_residual_layers = 1,
  upsampling_ratios = { 8, 5, 4, 2 }, norm_type = "weight_norm", kernel_size = 7, last_kernel_size = 7,
  residual_kernel_size = 3, dilation_growth_rate = 2, use_causal_conv = true, pad_mode = "reflect",
  compress = 2, num_lstm_layers = 2, use_conv_shortcut = true,
}

local P = pretrained
local function positive_integers(v)
  if type(v) ~= "table" or v == cjson.null or #v < 1 then return "expected a non-empty list of positive integers" end
  for _, x in ipairs(v) do
    if math.type(x) ~= "integer" or x < 1 then return "expected a non-empty list of positive integers" end
  end
end

-- EncodecConfig's keys: a rule when the value matters to the encoder, true when accepted and unused
EncodecModel.CONFIG_KEYS = {
  sampling_rate = P.positive_integer, audio_channels = P.positive_integer, hidden_size = P.positive_integer,
  num_filters = P.positive_integer, num_residual_layers = P.non_negative_integer,
  upsampling_ratios = positive_integers, norm_type = P.one_of({ "weight_norm", "time_group_norm" }),
  kernel_size = P.positive_integer, last_kernel_size = P.positive_integer,
  residual_kernel_size = P.positive_integer, dilation_growth_rate = P.positive_integer,
  use_causal_conv = P.boolean, pad_mode = P.one_of({ "reflect", "constant" }), compress = P.positive_integer,
  num_lstm_layers = P.positive_integer, use_conv_shortcut = P.boolean,
  model_type = P.one_of({ "encodec" }),
  -- quantizer, decoder and EncodecModel.encode's chunking: not used by the encoder
  target_bandwidths = true, normalize = true, chunk_length_s = true, overlap = true, trim_right_ratio = true,
  codebook_size = true, codebook_dim = true,
}
P.accept_pretrained_keys(EncodecModel.CONFIG_KEYS, { "initializer_range" })

--- the checked config with defaults
function EncodecModel.settings(cfg)
  P.check_keys(cfg, EncodecModel.CONFIG_KEYS, "EnCodec encoder")
  local c = {}
  for k, v in pairs(EncodecModel.DEFAULTS) do c[k] = v end
  for k, v in pairs(cfg) do
    if EncodecModel.DEFAULTS[k] ~= nil and not P.is_null(v) then c[k] = v end
  end
  c.upsampling_ratios = { table.unpack(c.upsampling_ratios) }
  if c.num_filters // c.compress < 1 then
    error(string.format("%s: num_filters (%d) // compress (%d) must be at least 1", cfg._path or "EncodecModel config",
      c.num_filters, c.compress), 3)
  end
  return c
end

--- EncodecModel(cfg): the encoder of an EncodecConfig (missing keys take DEFAULTS)
function EncodecModel:init(cfg)
  cfg = cfg or {}
  if type(cfg) ~= "table" then error("EncodecModel: expected a config table", 3) end
  local c = EncodecModel.settings(cfg)
  self.config = c
  self.sampling_rate, self.audio_channels, self.hidden_size = c.sampling_rate, c.audio_channels, c.hidden_size
  self.encoder = EncodecEncoder(c)
  self.hop_length = self.encoder.hop_length
end

EncodecModel.from_config = EncodecModel

-- the original facebookresearch checkpoint files this loader recognises in a folder
EncodecModel.ORIGINAL_FILES = { "encodec_24khz-d7cc33bc.th", "encodec_48khz-7e698e3e.th" }

-- renaming rules from the original facebookresearch layout (encodec/modules/seanet.py, conv.py) to
-- transformers' names, as convert_encodec_checkpoint_to_pytorch.py's MAPPING_ENCODER / _48K tables:
-- encoder.model.{i}. -> encoder.layers.{i}., SConv1d's NormConv1d .conv.conv. -> .conv., its norm
-- .conv.norm. -> .norm.; the LSTM keeps its names (encoder.model.{i}.lstm.* -> encoder.layers.{i}.lstm.*)
EncodecModel.ORIGINAL_RENAMES = {
  { "^encoder%.model%.(%d+)%.", "encoder.layers.%1." },
  { "%.conv%.conv%.([%w_]+)$", ".conv.%1" },
  { "%.conv%.norm%.([%w_]+)$", ".norm.%1" },
}

--- the transformers name of an original facebookresearch checkpoint key (nil for a key outside the encoder)
function EncodecModel.original_name(key)
  if key:sub(1, 14) ~= "encoder.model." then return nil end
  for _, r in ipairs(EncodecModel.ORIGINAL_RENAMES) do key = key:gsub(r[1], r[2]) end
  return key
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

--- loads an original facebookresearch checkpoint (.th: a PyTorch zip state dict, or {best_state = ...})
--- into model strictly on the encoder side; errors name the file
function EncodecModel.load_original(model, path)
  local ok, sd = pcall(cocola.load, path)
  if not ok then error(string.format("%s: %s", path, tostring(sd)), 2) end
  if type(sd) == "table" and type(sd.best_state) == "table" then sd = sd.best_state end
  if type(sd) ~= "table" then error(path .. ": not a state dict", 2) end
  local renamed, from = {}, {}
  for k, v in pairs(sd) do
    local name = type(k) == "string" and EncodecModel.original_name(k)
    if name then
      if from[name] then
        error(string.format("%s: keys %s and %s both map to %s", path, from[name], k, name), 2)
      end
      renamed[name], from[name] = v, k
    end
  end
  local ok2, err = pcall(model.load_state_dict, model, renamed, { strict = true })
  if not ok2 then error(string.format("%s (original EnCodec layout): %s", path, tostring(err)), 2) end
  return path
end

--- loads the encoder.* tensors of a save_pretrained model.safetensors strictly (quantizer.* and decoder.*
--- ignored)
function EncodecModel.load_weights(model, path)
  if not exists(path) then error(string.format("%s: no such file", path), 2) end
  return P.load_safetensors(model, path, {
    ignore = function(name) return name:sub(1, 8) ~= "encoder." end })
end

--- EncodecModel.from_pretrained(dir): config.json + model.safetensors (save_pretrained), or an original
--- facebookresearch .th checkpoint (config.json optional); eval mode
function EncodecModel.from_pretrained(dir)
  if type(dir) ~= "string" then error("EncodecModel.from_pretrained: expected a folder path", 2) end
  dir = dir:gsub("/+$", "")
  local original
  for _, n in ipairs(EncodecModel.ORIGINAL_FILES) do
    if exists(dir .. "/" .. n) then original = dir .. "/" .. n break end
  end
  local model
  if original and not exists(dir .. "/model.safetensors") then
    local cfg = exists(dir .. "/config.json") and P.read_config(dir) or {}
    if not exists(dir .. "/config.json") and original:find("48khz", 1, true) then
      error(dir .. ": the 48 kHz checkpoint needs a config.json (facebook/encodec_48khz's)", 2)
    end
    local ok, m = pcall(EncodecModel, cfg)
    if not ok then error(tostring(m):gsub("^.-%.lua:%d+: ", ""), 2) end
    model = m
    local ok2, err = pcall(EncodecModel.load_original, model, original)
    if not ok2 then error(tostring(err):gsub("^.-%.lua:%d+: ", ""), 2) end
  else
    local ok, m = pcall(function() return EncodecModel(P.read_config(dir)) end)
    if not ok then error(tostring(m):gsub("^.-%.lua:%d+: ", ""), 2) end
    model = m
    local ok2, err = pcall(EncodecModel.load_weights, model, dir .. "/model.safetensors")
    if not ok2 then error(tostring(err):gsub("^.-%.lua:%d+: ", ""), 2) end
  end
  return model:eval()
end

--- model.encoder(x): (N, audio_channels, L) -> (N, hidden_size, ceil(L / hop_length))
function EncodecModel:forward(x)
  local ok, y = pcall(self.encoder.forward, self.encoder, x)
  if not ok then error(tostring(y):gsub("^.-%.lua:%d+: ", ""), 2) end
  return y
end
EncodecModel.encode_frames = EncodecModel.forward

--- frames of the output for `samples` input samples at the model's rate: ceil(samples / hop_length)
function EncodecModel:num_frames(samples) return self.encoder:num_frames(samples) end

local function shape_of(t)
  return cocola.is_tensor(t) and (t:dtype() .. " " .. t:shape_string()) or type(t)
end

-- a wave (samples) or (channels, samples) at sr -> (audio_channels, samples) float32 at the model's rate
local function prepare(self, wave, sr, level)
  if not cocola.is_tensor(wave) or (wave:dim() ~= 1 and wave:dim() ~= 2) then
    error("EncodecModel:embed: expected a wave (samples) or (channels, samples), got " .. shape_of(wave), level)
  end
  if wave:dtype() ~= "float32" and wave:dtype() ~= "float64" then
    error("EncodecModel:embed: expected a float wave, got " .. shape_of(wave), level)
  end
  if type(sr) ~= "number" or not (sr > 0) then
    error("EncodecModel:embed: the sample rate must be a positive number, got " .. tostring(sr), level)
  end
  if wave:size(-1) < 1 then error("EncodecModel:embed: the wave is empty " .. wave:shape_string(), level) end
  local w = wave:to("float32")
  if w:dim() == 1 then w = w:unsqueeze(1) end
  local C = w:size(1)
  if self.audio_channels == 1 then
    if C > 1 then w = w:mean(1, true) end
  elseif C == 1 then
    w = w:expand({ self.audio_channels, w:size(2) })
  elseif C ~= self.audio_channels then
    error(string.format("EncodecModel:embed: the model takes %d channels (or a mono wave), got %d",
      self.audio_channels, C), level)
  end
  if sr ~= self.sampling_rate then w = cocola.audio.resample(w:contiguous(), sr, self.sampling_rate) end
  return w:contiguous()
end

--- embed(wave, sr) -> (T, hidden_size): the FAD embedding rows of a wave (samples) or (channels, samples)
--- at any rate: channels averaged (or a mono wave duplicated for a stereo model), resampled to the model's
--- rate, encoded, one row per frame
function EncodecModel:embed(wave, sr)
  return cocola.no_grad(function()
    local y = self.encoder(prepare(self, wave, sr, 5):unsqueeze(1)) -- (1, hidden, T)
    return y:select(1, 1):t():contiguous()                           -- (T, hidden)
  end)
end

--- embed_batch({{wave, sr}, ...}) -> {(T_i, hidden_size), ...}: embed for several clips, those of the same
--- length (after resampling) encoded together in one batch (the LSTM then steps once for all of them)
function EncodecModel:embed_batch(clips)
  return cocola.no_grad(function()
    local ready, groups, order = {}, {}, {}
    for i, clip in ipairs(clips) do
      ready[i] = prepare(self, clip[1], clip[2], 5)
      local n = ready[i]:size(2)
      if not groups[n] then groups[n] = {}; order[#order + 1] = n end
      table.insert(groups[n], i)
    end
    local out = {}
    for _, n in ipairs(order) do
      local idx = groups[n]
      local batch = {}
      for k, i in ipairs(idx) do batch[k] = ready[i] end
      local y = self.encoder(cocola.stack(batch, 1)) -- (B, hidden, T)
      for k, i in ipairs(idx) do out[i] = y:select(1, k):t():contiguous() end
    end
    return out
  end)
end

function EncodecModel:extra_repr()
  local c = self.config
  return string.format("sampling_rate=%d, hidden_size=%d, hop_length=%d, norm_type=%s, causal=%s",
    c.sampling_rate, c.hidden_size, self.hop_length, c.norm_type, tostring(c.use_causal_conv))
end

return EncodecModel
