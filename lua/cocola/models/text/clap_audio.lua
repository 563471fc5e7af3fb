-- cocola.models.text.clap_audio — the audio side of transformers' ClapModel (modeling_clap.py, transformers
-- 4.38.2) without feature fusion (enable_fusion false: AudioLDM 2's text_encoder and the LAION "unfused"
-- checkpoints): the HTSAT audio tower (ClapAudioModel: htsat_model.lua and the htsat_*.lua parts), the audio
-- projection (Linear, ReLU, Linear: clap_projection.lua) and the L2 normalisation of get_audio_features,
-- with the ClapFeatureExtractor front end (clap_audio_features.lua) for waves.
-- State-dict names are ClapModel's audio side: audio_model.audio_encoder.{batch_norm, patch_embed.*,
--   layers.{i}.blocks.{j}.*, layers.{i}.downsample.*, norm}, audio_projection.linear1, audio_projection.linear2.
-- forward(input_features (B, 1, T, num_mel_bins), T <= spec_size * freq_ratio) ->
--   {last_hidden_state (B, C, c_freq_bin, n) (see htsat_encoder.lua), pooler_output (B, C),
--    audio_embeds (B, projection_dim) = normalize(audio_projection(pooler_output)), ClapModel.get_audio_features;
--    projected (B, projection_dim) = audio_projection(pooler_output), ClapAudioModelWithProjection's
--    audio_embeds}. Inference only: no dropout, no drop path, BatchNorm on its running statistics.
-- Waves: features(wave, {offset}) -> input_features; embed(wave, {offset}) -> (B, projection_dim) normalised;
--   embed_chunks(wave, {chunk_s = 10, hop_s = 1}) -> (n_chunks, projection_dim), fadtk's clap-laion framing.
-- Config: ClapAudio(cfg [, features_cfg]) takes a ClapModel config.json as parsed (audio_config nested;
--   projection_dim and projection_hidden_act at the top override audio_config's, as ClapConfig does) or a
--   flat ClapAudioModelWithProjection config (model_type "clap_audio_model"); missing keys take
--   ClapAudio.DEFAULTS (ClapAudioConfig's defaults: HTSAT-tiny); unsupported values (enable_fusion true, ...)
--   are refused with the key named. features_cfg: a preprocessor_config.json as parsed (nil: the defaults of
--   clap_audio_features.lua). ClapAudio.from_pretrained(dir) reads dir/config.json + dir/model.safetensors
--   (or a pipeline folder's text_encoder/) strictly by name on the audio side, and preprocessor_config.json
--   from dir (or the pipeline's feature_extractor/) when there is one. The text side of the same folder loads
--   with clap_text.lua; clap_model.lua loads both.
local cocola = require "cocola"
local nn = require "cocola.nn"
local pretrained = require "cocola.models.audioldm2.pretrained"
local HtsatModel = require "cocola.models.text.htsat_model"
local ClapProjection = require "cocola.models.text.clap_projection"
local ClapAudioFeatures = require "cocola.models.text.clap_audio_features"

local ClapAudio = nn.Module:extend("ClapAudio")

-- ClapAudioConfig's defaults (transformers 4.38.2) for the keys this port reads, and ClapConfig's
-- projection_dim / projection_hidden_act
ClapAudio.DEFAULTS = {
  window_size = 8, num_mel_bins = 64, spec_size = 256, hidden_act = "gelu", patch_size = 4, patch_stride = { 4, 4 },
  hidden_size = 768, depths = { 2, 2, 6, 2 }, num_attention_heads = { 4, 8, 16, 32 }, enable_fusion = false,
  patch_embed_input_channels = 1, flatten_patch_embeds = true, patch_embeds_hidden_size = 96,
  enable_patch_layer_norm = true, qkv_bias = true, mlp_ratio = 4.0, layer_norm_eps = 1e-5,
  projection_dim = 512, projection_hidden_act = "relu",
}

local positive_integer = pretrained.positive_integer
local function int_or_pair(v)
  if math.type(v) == "integer" and v > 0 then return nil end
  if type(v) == "table" and #v == 2 and math.type(v[1]) == "integer" and math.type(v[2]) == "integer"
    and v[1] > 0 and v[2] > 0 then return nil end
  return "expected a positive integer or a pair of them"
end
local function integer_list(v)
  if type(v) ~= "table" or #v < 1 then return "expected a non-empty list of positive integers" end
  for _, x in ipairs(v) do if math.type(x) ~= "integer" or x < 1 then return "expected positive integers" end end
end
local number = pretrained.number
local positive_number = pretrained.positive_number
local boolean = pretrained.boolean
local must_be = pretrained.must_be

-- ClapAudioConfig's keys: a rule when the value matters here, true when accepted and unused (dropout rates
-- and drop_path_rate: inference; num_classes, num_hidden_layers, aff_block_r: not used by the tower's
-- outputs; fusion_type: only read with enable_fusion)
ClapAudio.AUDIO_CONFIG_KEYS = {
  window_size = positive_integer, num_mel_bins = positive_integer, spec_size = positive_integer,
  hidden_act = pretrained.one_of({ "gelu" }), patch_size = int_or_pair, patch_stride = int_or_pair,
  hidden_size = positive_integer, projection_dim = positive_integer, depths = integer_list,
  num_attention_heads = integer_list,
  enable_fusion = function(v)
    if v ~= false then return "feature fusion (the fused checkpoints) is not supported; only false is" end
  end,
  patch_embed_input_channels = must_be(1), flatten_patch_embeds = must_be(true),
  patch_embeds_hidden_size = positive_integer, enable_patch_layer_norm = boolean, qkv_bias = boolean,
  mlp_ratio = positive_number, layer_norm_eps = number, projection_hidden_act = pretrained.one_of({ "relu" }),
  model_type = pretrained.one_of({ "clap_audio_model" }),
  num_classes = true, num_hidden_layers = true, aff_block_r = true, fusion_type = true, hidden_dropout_prob = true,
  attention_probs_dropout_prob = true, drop_path_rate = true,
}
-- ClapConfig's top-level keys. text_config is accepted whatever it holds: that side is clap_text.lua's.
ClapAudio.CONFIG_KEYS = {
  audio_config = function(v) if type(v) ~= "table" then return "expected an object" end end,
  text_config = true, logit_scale_init_value = true, hidden_size = true, num_hidden_layers = true,
  projection_dim = positive_integer, projection_hidden_act = pretrained.one_of({ "relu" }),
  model_type = pretrained.one_of({ "clap" }),
}
-- PretrainedConfig's own keys and the text-model keys an audio config may carry are accepted, unused
local ACCEPTED = { "pad_token_id", "is_decoder", "add_cross_attention", "pruned_heads" }
pretrained.accept_pretrained_keys(ClapAudio.AUDIO_CONFIG_KEYS, ACCEPTED)
pretrained.accept_pretrained_keys(ClapAudio.CONFIG_KEYS, ACCEPTED)

local function pair(v) if type(v) == "table" then return { v[1], v[2] } end return { v, v } end

-- the audio settings of a ClapModel (or flat ClapAudioModelWithProjection) config, checked, with defaults
-- and the derived sizes (freq_ratio, grid, num_features)
local function audio_settings(cfg)
  local where = cfg._path or "ClapAudio config"
  local ac
  if cfg.model_type == "clap_audio_model" then
    ac = cfg
  else
    pretrained.check_keys(cfg, ClapAudio.CONFIG_KEYS, "ClapAudio (ClapModel audio side)")
    ac = cfg.audio_config or {}
    ac._path = where .. " audio_config"
    where = ac._path
  end
  pretrained.check_keys(ac, ClapAudio.AUDIO_CONFIG_KEYS, "ClapAudio (ClapModel audio side)")
  local c = {}
  for k, v in pairs(ClapAudio.DEFAULTS) do c[k] = v end
  for k, v in pairs(ac) do if k:sub(1, 1) ~= "_" then c[k] = v end end
  if ac ~= cfg then
    -- ClapConfig overrides audio_config's projection settings with its own (or its defaults)
    c.projection_dim = cfg.projection_dim or ClapAudio.DEFAULTS.projection_dim
    c.projection_hidden_act = cfg.projection_hidden_act or ClapAudio.DEFAULTS.projection_hidden_act
  end
  local function fail(fmt, ...) error(where .. ": " .. string.format(fmt, ...), 4) end
  c.patch_size, c.patch_stride = pair(c.patch_size), pair(c.patch_stride)
  local n = #c.depths
  if #c.num_attention_heads ~= n then
    fail("num_attention_heads has %d entries, depths %d: one per stage", #c.num_attention_heads, n)
  end
  if c.num_mel_bins > c.spec_size then fail("num_mel_bins (%d) must not exceed spec_size (%d)", c.num_mel_bins, c.spec_size) end
  c.freq_ratio = c.spec_size // c.num_mel_bins
  if c.spec_size % c.freq_ratio ~= 0 then
    fail("spec_size (%d) must be a multiple of spec_size // num_mel_bins (%d)", c.spec_size, c.freq_ratio)
  end
  for d = 1, 2 do
    if c.patch_size[d] < c.patch_stride[d] then
      fail("patch_size (%d) must not be smaller than patch_stride (%d)", c.patch_size[d], c.patch_stride[d])
    end
    if c.spec_size % c.patch_stride[d] ~= 0 then
      fail("spec_size (%d) must be a multiple of patch_stride (%d)", c.spec_size, c.patch_stride[d])
    end
  end
  c.grid = { c.spec_size // c.patch_stride[1], c.spec_size // c.patch_stride[2] }
  local down = 1 << (n - 1)
  for d = 1, 2 do
    if c.grid[d] % down ~= 0 then
      fail("the %d-patch grid must halve evenly over the %d patch mergings (spec_size / patch_stride = %d)", c.grid[d],
        n - 1, c.grid[d])
    end
  end
  for i = 1, n do
    local dim, h, w = c.patch_embeds_hidden_size << (i - 1), c.grid[1] >> (i - 1), c.grid[2] >> (i - 1)
    if dim % c.num_attention_heads[i] ~= 0 then
      fail("stage %d: the hidden size (%d) is not a multiple of num_attention_heads (%d)", i, dim,
        c.num_attention_heads[i])
    end
    if math.min(h, w) < c.window_size then
      fail("stage %d works on a %d x %d grid, smaller than window_size (%d)", i, h, w, c.window_size)
    end
  end
  c.num_features = c.patch_embeds_hidden_size << (n - 1)
  if c.hidden_size ~= c.num_features then
    fail("hidden_size (%d) must equal patch_embeds_hidden_size * 2^(stages - 1) = %d: the projection takes the "
      .. "pooled output", c.hidden_size, c.num_features)
  end
  local fh = c.grid[1] >> (n - 1)
  if fh % c.freq_ratio ~= 0 or fh < c.freq_ratio then
    fail("the last stage's %d rows must be a multiple of freq_ratio (%d)", fh, c.freq_ratio)
  end
  return c
end

--- ClapAudio(cfg, features_cfg): cfg is a ClapModel config.json as parsed (missing keys take
--- ClapAudio.DEFAULTS), features_cfg a preprocessor_config.json as parsed or nil
function ClapAudio:init(cfg, features_cfg)
  cfg = cfg or {}
  if type(cfg) ~= "table" then error("ClapAudio: expected a config table", 3) end
  local c = audio_settings(cfg)
  self.config = c
  self.projection_dim = c.projection_dim
  self.audio_model = HtsatModel(c)
  self.audio_projection = ClapProjection(c.hidden_size, c.projection_dim)
  local ok, fe = pcall(ClapAudioFeatures.new, features_cfg)
  if not ok then error(tostring(fe):gsub("^.-%.lua:%d+: ", ""), 3) end
  rawset(self, "feature_extractor", fe)
  -- settings given with the model must fit it now; the defaults only when waves are embedded
  if features_cfg ~= nil then
    local problem = self:extractor_mismatch()
    if problem then error(problem, 3) end
  end
end

--- nil when the feature extractor's output fits the model, else a message saying why not
function ClapAudio:extractor_mismatch()
  local c, fc = self.config, self.feature_extractor.config
  if fc.feature_size ~= c.num_mel_bins then
    return string.format("ClapAudio: the feature extractor gives %d mel bins (feature_size), the model takes "
      .. "num_mel_bins = %d", fc.feature_size, c.num_mel_bins)
  end
  if fc.frames > c.spec_size * c.freq_ratio then
    return string.format("ClapAudio: the feature extractor gives %d frames (max_length_s %s), the model takes at "
      .. "most %d (spec_size * freq_ratio)", fc.frames, tostring(fc.max_length_s), c.spec_size * c.freq_ratio)
  end
  if fc.frames < c.spec_size * c.freq_ratio and c.num_mel_bins < c.spec_size // c.freq_ratio then
    return string.format("ClapAudio: the feature extractor gives %d frames, fewer than the model's %d, and its %d mel "
      .. "bins are fewer than %d: both axes would need resizing, which transformers 4.38.2 cannot do", fc.frames,
      c.spec_size * c.freq_ratio, c.num_mel_bins, c.spec_size // c.freq_ratio)
  end
end

ClapAudio.from_config = ClapAudio

local function is_audio_key(name)
  return name:sub(1, 12) == "audio_model." or name:sub(1, 17) == "audio_projection."
end

--- loads the audio-side weights of a ClapModel model.safetensors strictly: every audio_model.* /
--- audio_projection.* tensor of the model (parameters and the persistent buffers: BatchNorm statistics,
--- relative_position_index) must be in the file with its shape, and the file may hold no other audio-side
--- tensor. The text side and logit_scale_a / logit_scale_t are left to clap_text.lua / clap_model.lua.
function ClapAudio.load_weights(model, path)
  local f = io.open(path, "rb")
  if not f then error(string.format("%s: no such file", path), 2) end
  f:close()
  return pretrained.load_safetensors(model, path, { ignore = function(name) return not is_audio_key(name) end })
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

--- the preprocessor_config.json of a model folder, or of its pipeline's feature_extractor/, or nil
local function features_config(dir, folder)
  for _, d in ipairs({ folder, dir .. "/feature_extractor" }) do
    if exists(d .. "/preprocessor_config.json") then return pretrained.read_config(d, "preprocessor_config.json") end
  end
end

--- ClapAudio.from_pretrained(dir): a ClapModel folder (config.json + model.safetensors, optional
--- preprocessor_config.json) or a pipeline folder holding text_encoder/ (and feature_extractor/); audio side
--- loaded strictly, eval mode
function ClapAudio.from_pretrained(dir)
  local ok, model = pcall(function()
    local folder = pretrained.component_dir(dir, "text_encoder")
    local m = ClapAudio(pretrained.read_config(folder), features_config(dir:gsub("/+$", ""), folder))
    ClapAudio.load_weights(m, folder .. "/model.safetensors")
    return m
  end)
  if not ok then error(tostring(model):gsub("^.-%.lua:%d+: ", ""), 2) end
  return model:eval()
end

local function shape_of(t)
  return cocola.is_tensor(t) and (t:dtype() .. " " .. t:shape_string()) or type(t)
end

function ClapAudio:forward(input_features)
  local c = self.config
  local x = input_features
  if not cocola.is_tensor(x) or x:dim() ~= 4 or x:size(2) ~= 1 or x:size(4) ~= c.num_mel_bins then
    error(string.format("ClapAudio: input_features must be a float tensor (batch, 1, frames, %d), got %s",
      c.num_mel_bins, shape_of(x)), 2)
  end
  if x:dtype() ~= "float32" then
    error("ClapAudio: input_features must be float32, got " .. x:dtype(), 2)
  end
  if x:size(1) < 1 or x:size(3) < 1 then error("ClapAudio: input_features is empty (" .. x:shape_string() .. ")", 2) end
  if x:size(3) > c.spec_size * c.freq_ratio then
    error(string.format("ClapAudio: %d frames are more than the model takes (%d = spec_size * freq_ratio)", x:size(3),
      c.spec_size * c.freq_ratio), 2)
  end
  local ok, h, pooled = pcall(self.audio_model.forward, self.audio_model, x)
  if not ok then error(tostring(h):gsub("^.-%.lua:%d+: ", ""), 2) end
  local proj = self.audio_projection(pooled)
  -- F.normalize(p = 2, dim = -1, eps = 1e-12): x / max(||x||, eps)
  local embeds = proj / proj:norm(2, 2, true):clamp(1e-12, math.huge)
  return { last_hidden_state = h, pooler_output = pooled, projected = proj, audio_embeds = embeds }
end

--- get_audio_features(input_features) -> (B, projection_dim), as ClapModel.get_audio_features
function ClapAudio:get_audio_features(input_features)
  local ok, out = pcall(self.forward, self, input_features)
  if not ok then error(tostring(out):gsub("^.-%.lua:%d+: ", ""), 2) end
  return out.audio_embeds
end

--- features(wave, {offset = 0}) -> input_features (B, 1, frames, num_mel_bins): clap_audio_features.lua with
--- this model's extractor settings; wave (samples), (B, samples) or a list of 1-D waves at 48 kHz
function ClapAudio:features(wave, opts)
  local problem = self:extractor_mismatch()
  if problem then error(problem, 2) end
  local ok, out = pcall(self.feature_extractor.features, self.feature_extractor, wave, opts)
  if not ok then error(tostring(out):gsub("^.-%.lua:%d+: ", ""), 2) end
  return out
end

--- embed(wave, {offset = 0, batch_size = 8}) -> (B, projection_dim) L2-normalised audio embeddings of
--- 48 kHz waves ((samples), (B, samples) or a list of 1-D waves): features, then get_audio_features, in
--- batches of batch_size clips, without recording a graph. Clips longer than max_length_s are cropped at
--- offset (samples; the reference crops at random), shorter ones filled as the extractor's padding says.
function ClapAudio:embed(wave, opts)
  opts = opts or {}
  if type(opts) ~= "table" or cocola.is_tensor(opts) then
    error("ClapAudio:embed: the second argument is an options table {offset =, batch_size =}", 2)
  end
  for k in pairs(opts) do
    if k ~= "offset" and k ~= "batch_size" then
      error(string.format("ClapAudio:embed: unknown option '%s' (known: offset, batch_size)", k), 2)
    end
  end
  local bs = opts.batch_size or 8
  if math.type(bs) ~= "integer" or bs < 1 then error("ClapAudio:embed: batch_size must be a positive integer", 2) end
  local list = wave
  if cocola.is_tensor(wave) and wave:dim() == 1 then list = { wave }
  elseif cocola.is_tensor(wave) and wave:dim() == 2 then
    list = {}
    for i = 1, wave:size(1) do list[i] = wave:select(1, i) end
  end
  if type(list) ~= "table" or cocola.is_tensor(list) or #list == 0 then
    error("ClapAudio:embed: expected a mono wave (samples), a batch (B, samples) or a list of waves, got "
      .. shape_of(wave), 2)
  end
  local problem = self:extractor_mismatch()
  if problem then error(problem, 2) end
  local parts = {}
  local ok, err = pcall(cocola.no_grad, function()
    for i = 1, #list, bs do
      local group = {}
      for j = i, math.min(#list, i + bs - 1) do group[#group + 1] = list[j] end
      local x = self.feature_extractor:features(group, { offset = opts.offset })
      parts[#parts + 1] = self:forward(x).audio_embeds
    end
  end)
  if not ok then error(tostring(err):gsub("^.-%.lua:%d+: ", ""), 2) end
  return #parts == 1 and parts[1] or cocola.cat(parts, 1)
end

--- chunk_starts(n_samples, chunk, hop) -> the 0-based starts of the chunks of embed_chunks: 0, hop, 2 hop, ...
--- while below n_samples (fadtk's range(0, n, hop)), so ceil(n / hop) chunks
function ClapAudio.chunk_starts(n, chunk, hop)
  local starts = {}
  for s = 0, n - 1, hop do starts[#starts + 1] = s end
  return starts
end

--- embed_chunks(wave (samples) 48 kHz, {chunk_s = 10, hop_s = 1, batch_size = 8}) -> (n_chunks,
--- projection_dim): fadtk's clap-laion framing for FAD: a chunk of chunk_s seconds starts every hop_s seconds
--- from 0 while the start is inside the wave (ceil(samples / hop) chunks), each chunk zero-padded to chunk_s
--- at the end of the wave, each embedded as embed does (L2-normalised). fadtk also rounds the wave to int16
--- first; pass a wave already so rounded to reproduce that.
function ClapAudio:embed_chunks(wave, opts)
  opts = opts or {}
  if type(opts) ~= "table" or cocola.is_tensor(opts) then
    error("ClapAudio:embed_chunks: the second argument is an options table {chunk_s =, hop_s =, batch_size =}", 2)
  end
  for k in pairs(opts) do
    if k ~= "chunk_s" and k ~= "hop_s" and k ~= "batch_size" then
      error(string.format("ClapAudio:embed_chunks: unknown option '%s' (known: chunk_s, hop_s, batch_size)", k), 2)
    end
  end
  if not cocola.is_tensor(wave) or wave:dim() ~= 1 then
    error("ClapAudio:embed_chunks: expected a mono wave tensor (samples), got " .. shape_of(wave), 2)
  end
  local sr = self.feature_extractor.config.sampling_rate
  local chunk_s, hop_s = opts.chunk_s or 10, opts.hop_s or 1
  if type(chunk_s) ~= "number" or not (chunk_s > 0) then error("ClapAudio:embed_chunks: chunk_s must be positive", 2) end
  if type(hop_s) ~= "number" or not (hop_s > 0) then error("ClapAudio:embed_chunks: hop_s must be positive", 2) end
  local chunk, hop = math.floor(chunk_s * sr + 0.5), math.floor(hop_s * sr + 0.5)
  if chunk < 1 or hop < 1 then error("ClapAudio:embed_chunks: chunk_s and hop_s must be at least one sample", 2) end
  local n = wave:size(1)
  if n < 1 then error("ClapAudio:embed_chunks: the wave is empty", 2) end
  local chunks = {}
  for _, s in ipairs(ClapAudio.chunk_starts(n, chunk, hop)) do
    local len = math.min(chunk, n - s)
    local piece = wave:narrow(1, s + 1, len)
    if len < chunk then
      piece = cocola.cat({ piece, cocola.zeros({ chunk - len }, { dtype = wave:dtype(), device = wave:device() }) }, 1)
    end
    chunks[#chunks + 1] = piece
  end
  local ok, out = pcall(self.embed, self, chunks, { batch_size = opts.batch_size })
  if not ok then error(tostring(out):gsub("^.-%.lua:%d+: ", ""), 2) end
  return out
end

function ClapAudio:extra_repr()
  local c = self.config
  return string.format("spec_size=%d, num_mel_bins=%d, patch_embeds_hidden_size=%d, depths=%s, window_size=%d, "
    .. "projection_dim=%d", c.spec_size, c.num_mel_bins, c.patch_embeds_hidden_size, table.concat(c.depths, ","),
    c.window_size, c.projection_dim)
end

return ClapAudio
