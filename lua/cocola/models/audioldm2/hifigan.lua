-- cocola.models.audioldm2.hifigan — the AudioLDM 2 vocoder, transformers' SpeechT5HifiGan
-- (modeling_speecht5.py, transformers 4.38.2), with the transformers state-dict names:
--   conv_pre                 Conv1d(model_in_dim -> C0 = upsample_initial_channel, k 7, p 3)
--   upsampler.{i}            ConvTranspose1d(C0/2^i -> C0/2^(i+1), k_i, stride u_i, padding (k_i - u_i)//2)
--   resblocks.{i*K + j}      HifiGanResidualBlock(C0/2^(i+1), resblock_kernel_sizes[j], resblock_dilation_sizes[j])
--   conv_post                Conv1d(C0/2^U -> 1, k 7, p 3)
--   mean, scale (buffers)    (model_in_dim,), used only when normalize_before
-- forward(mel): (T, model_in_dim) -> (samples,) or (B, T, model_in_dim) -> (B, samples):
--   [normalize_before: (mel - mean) / scale] -> transpose -> conv_pre -> per upsampler:
--   leaky_relu(slope) -> upsampler -> mean of its K residual blocks -> leaky_relu with torch's DEFAULT
--   slope 0.01 (not leaky_relu_slope: a quirk of the reference kept as is) -> conv_post -> tanh.
-- Length: L0 = T, L_{i+1} = (L_i - 1) u_i - 2 ((k_i - u_i)//2) + k_i; AudioLDM 2's vocoder (u 5,4,2,2,2,
-- k 16,16,8,4,4) gives 160 T + 32 (T = 512 -> 81952). The pipeline's crop to the wave length is not here.
-- Config: HifiGan.from_config(t) takes config.json as parsed (keys = SpeechT5HifiGanConfig's arguments,
-- defaults in HifiGan.DEFAULTS); HifiGan.from_pretrained(dir) reads dir/config.json and dir/model.safetensors
-- (or dir/pytorch_model.bin, a PyTorch zip checkpoint) and loads strictly.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local ModuleList = require "cocola.nn.ModuleList"
local Conv1d = require "cocola.nn.Conv1d"
local ConvTranspose1d = require "cocola.nn.ConvTranspose1d"
local HifiGanResidualBlock = require "cocola.models.audioldm2.hifigan_resblock"
local jc = require "cocola.json_config"
local fs = require "cocola.data.fs"

local HifiGan = Module:extend("SpeechT5HifiGan")

-- SpeechT5HifiGanConfig's arguments and defaults (transformers 4.38.2)
HifiGan.DEFAULTS = {
  model_in_dim = 80,
  sampling_rate = 16000,
  upsample_initial_channel = 512,
  upsample_rates = { 4, 4, 4, 4 },
  upsample_kernel_sizes = { 8, 8, 8, 8 },
  resblock_kernel_sizes = { 3, 7, 11 },
  resblock_dilation_sizes = { { 1, 3, 5 }, { 1, 3, 5 }, { 1, 3, 5 } },
  initializer_range = 0.01,
  leaky_relu_slope = 0.1,
  normalize_before = true,
}

-- keys every transformers config.json may carry (PretrainedConfig bookkeeping): accepted, unused;
-- model_type is checked
local GENERIC_KEYS = {}
for _, k in ipairs({ "architectures", "model_type", "torch_dtype", "transformers_version", "return_dict",
  "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16", "is_encoder_decoder", "is_decoder",
  "tie_word_embeddings", "id2label", "label2id", "problem_type", "pruned_heads", "chunk_size_feed_forward",
  "add_cross_attention", "tf_legacy_loss", "finetuning_task", "task_specific_params" }) do
  GENERIC_KEYS[k] = true
end

-- the config as parsed -> the checked settings (errors name `source`, e.g. the config file)
local function parse_config(cfg, source)
  if type(cfg) ~= "table" then error("SpeechT5HifiGan: expected a config table", 3) end
  local ctx = { what = "SpeechT5HifiGan", source = source }
  local c = jc.merge(cfg, HifiGan.DEFAULTS, { what = ctx.what, source = source or "the config", ignored = GENERIC_KEYS })
  if c.model_type ~= nil and c.model_type ~= "hifigan" then
    jc.one_of(ctx, c, "model_type", { "hifigan" })
  end
  local out = {
    model_in_dim = jc.integer(ctx, c, "model_in_dim", 1),
    sampling_rate = jc.integer(ctx, c, "sampling_rate", 1),
    upsample_initial_channel = jc.integer(ctx, c, "upsample_initial_channel", 1),
    upsample_rates = jc.list_of_integers(ctx, c, "upsample_rates", 1),
    upsample_kernel_sizes = jc.list_of_integers(ctx, c, "upsample_kernel_sizes", 1),
    resblock_kernel_sizes = jc.list_of_integers(ctx, c, "resblock_kernel_sizes", 1),
    initializer_range = jc.number(ctx, c, "initializer_range"),
    leaky_relu_slope = jc.number(ctx, c, "leaky_relu_slope"),
    normalize_before = jc.boolean(ctx, c, "normalize_before"),
  }
  if #out.upsample_kernel_sizes ~= #out.upsample_rates then
    error(string.format("SpeechT5HifiGan: config keys 'upsample_rates' and 'upsample_kernel_sizes'%s must have the "
      .. "same length (%d vs %d)", source and (" in " .. source) or "", #out.upsample_rates,
      #out.upsample_kernel_sizes), 3)
  end
  local dil = c.resblock_dilation_sizes
  if type(dil) ~= "table" or #dil ~= #out.resblock_kernel_sizes then
    error(string.format("SpeechT5HifiGan: config key 'resblock_dilation_sizes'%s must hold one list of dilations "
      .. "per entry of 'resblock_kernel_sizes' (%d)", source and (" in " .. source) or "", #out.resblock_kernel_sizes), 3)
  end
  out.resblock_dilation_sizes = {}
  for j, d in ipairs(dil) do
    out.resblock_dilation_sizes[j] = jc.list_of_integers(ctx, c, "resblock_dilation_sizes", 1, d)
  end
  if out.upsample_initial_channel >> #out.upsample_rates < 1 then
    error(string.format("SpeechT5HifiGan: config key 'upsample_initial_channel'%s (%d) is too small for %d upsamplers",
      source and (" in " .. source) or "", out.upsample_initial_channel, #out.upsample_rates), 3)
  end
  return out
end

--- SpeechT5HifiGan(config): config as parsed from config.json (missing keys take DEFAULTS).
function HifiGan:init(config)
  local c = parse_config(config or {}, rawget(config or {}, "__source"))
  self.config = c
  self.num_kernels = #c.resblock_kernel_sizes
  self.num_upsamples = #c.upsample_rates
  local C0 = c.upsample_initial_channel
  self.conv_pre = Conv1d(c.model_in_dim, C0, 7, { padding = 3 })
  self.upsampler = ModuleList()
  for i, u in ipairs(c.upsample_rates) do
    local k = c.upsample_kernel_sizes[i]
    self.upsampler:append(ConvTranspose1d(C0 >> (i - 1), C0 >> i, k,
      { stride = u, padding = (k - u) // 2 }))
  end
  self.resblocks = ModuleList()
  local channels
  for i = 1, self.num_upsamples do
    channels = C0 >> i
    for j, k in ipairs(c.resblock_kernel_sizes) do
      self.resblocks:append(HifiGanResidualBlock(channels, k, c.resblock_dilation_sizes[j], c.leaky_relu_slope))
    end
  end
  self.conv_post = Conv1d(channels, 1, 7, { padding = 3 })
  self:register_buffer("mean", cocola.zeros({ c.model_in_dim }))
  self:register_buffer("scale", cocola.ones({ c.model_in_dim }))
end

--- HifiGan.from_config(t): the model (random weights) for config.json as parsed.
function HifiGan.from_config(config) return HifiGan(config) end

local function shape_string(x)
  local s = x.shape
  return "(" .. table.concat(s, ", ") .. ")"
end

--- forward(mel (T, model_in_dim) or (B, T, model_in_dim)) -> (samples,) or (B, samples)
function HifiGan:forward(spectrogram)
  local c = self.config
  if not cocola.is_tensor(spectrogram) then
    error("SpeechT5HifiGan: expected a tensor (T, model_in_dim) or (B, T, model_in_dim), got a " .. type(spectrogram), 2)
  end
  local nd = spectrogram:dim()
  if (nd ~= 2 and nd ~= 3) or spectrogram:size(nd) ~= c.model_in_dim then
    error(string.format("SpeechT5HifiGan: expected (T, %d) or (B, T, %d) log-mel input, got %s", c.model_in_dim,
      c.model_in_dim, shape_string(spectrogram)), 2)
  end
  if c.normalize_before then spectrogram = (spectrogram - self.mean) / self.scale end
  local is_batched = nd == 3
  if not is_batched then spectrogram = spectrogram:unsqueeze(1) end
  local h = self.conv_pre(spectrogram:transpose(2, 3))
  local K = self.num_kernels
  for i = 1, self.num_upsamples do
    h = self.upsampler[i](h:leaky_relu(c.leaky_relu_slope))
    local res = self.resblocks[(i - 1) * K + 1](h)
    for j = 2, K do res = res + self.resblocks[(i - 1) * K + j](h) end
    h = res / K
  end
  h = self.conv_post(h:leaky_relu(0.01)):tanh() -- (B, 1, L); torch's default slope, as the reference
  if not is_batched then return h:reshape({ h:size(3) }) end
  return h:select(2, 1)
end

--- HifiGan.from_pretrained(dir): config.json + model.safetensors (or pytorch_model.bin), strict names.
function HifiGan.from_pretrained(dir)
  if type(dir) ~= "string" then error("SpeechT5HifiGan.from_pretrained: expected a folder path", 2) end
  if not fs.is_dir(dir) then error("SpeechT5HifiGan.from_pretrained: no such folder '" .. dir .. "'", 2) end
  -- a pipeline folder: its vocoder/ component
  if not fs.is_file(fs.join(dir, "config.json")) and fs.is_file(fs.join(dir, "vocoder", "config.json")) then
    dir = fs.join(dir, "vocoder")
  end
  local config_path = fs.join(dir, "config.json")
  if not fs.is_file(config_path) then
    error("SpeechT5HifiGan.from_pretrained: missing file '" .. config_path .. "'", 2)
  end
  local cfg = jc.read(config_path, "SpeechT5HifiGan")
  cfg.__source = config_path
  local ok, model = pcall(HifiGan, cfg)
  if not ok then error(model, 2) end
  local weights
  for _, name in ipairs({ "model.safetensors", "pytorch_model.bin" }) do
    local p = fs.join(dir, name)
    if fs.is_file(p) then weights = p break end
  end
  if not weights then
    error("SpeechT5HifiGan.from_pretrained: missing weights in '" .. dir .. "' (model.safetensors or pytorch_model.bin)", 2)
  end
  local sd = cocola.load(weights)
  if type(sd) ~= "table" then error("SpeechT5HifiGan.from_pretrained: '" .. weights .. "' holds no state dict", 2) end
  for k in pairs(sd) do
    if type(k) == "string" and (k:match("%.weight_g$") or k:match("%.weight_v$")) then
      error("SpeechT5HifiGan.from_pretrained: '" .. weights .. "' holds weight-norm parameters ('" .. k
        .. "'); save the model after remove_weight_norm()", 2)
    end
  end
  local lok, why = pcall(model.load_state_dict, model, sd)
  if not lok then error("SpeechT5HifiGan.from_pretrained: " .. weights .. ": " .. tostring(why), 2) end
  model:eval()
  return model
end

return HifiGan
