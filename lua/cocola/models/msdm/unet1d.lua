-- cocola.models.msdm.unet1d — the 1-D U-Net of audio-diffusion-pytorch 0.0.43 (modules.py UNet1d), the
-- network AudioDiffusionModel trains and MSDM (multi-source diffusion) uses, with the reference's parameter
-- names, so its state dict loads as it is:
--   to_mapping  Sequential(Linear(4C, 4C), GELU, Linear(4C, 4C), GELU)              C = channels, M = 4C
--   to_time     Sequential(Sequential(LearnedPositionalEmbedding(C), Linear(C + 1, M)), GELU)
--   to_features Sequential(Linear(context_features, M), GELU)                      only with context_features
--   to_in       Patcher(in_channels -> C, patch_blocks, patch_factor)
--   downsamples.{0..n-1}  DownsampleBlock1d(C m_i -> C m_{i+1}, factor f_i)         n = #multipliers - 1
--   bottleneck  BottleneckBlock1d(C m_n)
--   upsamples.{0..n-1}    UpsampleBlock1d(C m_{i+1} -> C m_i), i = n-1 .. 0, num_blocks_i (+1 with attention)
--                         resnet blocks each taking one skip (scaled by 2^-0.5 with use_skip_scale)
--   to_out      Unpatcher(C -> out_channels)
-- forward(x (B, in_channels, L), time (B) or a number, {features = (B, context_features)}) -> (B, out_channels, L),
-- L a multiple of patch_factor^patch_blocks prod(factors). The conditioning mapping is
-- to_mapping(to_time(time) [+ to_features(features)]) and scales/shifts every resnet block. With the EDM
-- preconditioning (cocola.models.msdm.diffusion) time is c_noise = ln(sigma) / 4.
-- kernel_sizes_init is accepted and unused, as in the reference at 0.0.43. Cross-attention
-- (context_embedding_features) and context channels (context_channels) are not supported.
local cocola = require "cocola"
local nn = require "cocola.nn"
local LearnedPositionalEmbedding = require "cocola.models.msdm.learned_positional_embedding"
local Patcher = require "cocola.models.msdm.patcher"
local Unpatcher = require "cocola.models.msdm.unpatcher"
local DownsampleBlock1d = require "cocola.models.msdm.downsample_block1d"
local BottleneckBlock1d = require "cocola.models.msdm.bottleneck_block1d"
local UpsampleBlock1d = require "cocola.models.msdm.upsample_block1d"

local UNet1d = nn.Module:extend("UNet1d")

--- the reference's UNet1d keyword arguments with AudioDiffusionModel's defaults (model.py
--- get_default_model_kwargs); in_channels has none. out_channels nil means in_channels.
UNet1d.DEFAULTS = {
  channels = 128, patch_blocks = 4, patch_factor = 2, kernel_sizes_init = { 1, 3, 7 },
  multipliers = { 1, 2, 4, 4, 4, 4, 4 }, factors = { 4, 4, 4, 2, 2, 2 }, num_blocks = { 2, 2, 2, 2, 2, 2 },
  attentions = { false, false, false, true, true, true }, attention_heads = 8, attention_features = 64,
  attention_multiplier = 2, use_attention_bottleneck = true, resnet_groups = 8, kernel_multiplier_downsample = 2,
  use_nearest_upsample = false, use_skip_scale = true, use_context_time = true,
}
-- keys taken besides the defaults' (all optional except in_channels)
local OTHER_KEYS = { "in_channels", "out_channels", "context_features", "context_channels",
  "context_embedding_features" }

local function fail(fmt, ...) error(string.format("UNet1d: " .. fmt, ...), 4) end

local function positive_int(cfg, key)
  local v = cfg[key]
  if math.type(v) ~= "integer" or v < 1 then fail("%s must be a positive integer, got %s", key, tostring(v)) end
  return v
end

local function list_of(cfg, key, n, kind)
  local v = cfg[key]
  if type(v) ~= "table" or (n and #v ~= n) then
    fail("%s must be a list of %s%s, got %s", key, n and (n .. " ") or "", kind, type(v) == "table"
      and ("a list of " .. #v) or tostring(v))
  end
  for i, e in ipairs(v) do
    local ok = kind == "booleans" and type(e) == "boolean" or kind ~= "booleans" and math.type(e) == "integer"
      and e >= 1
    if not ok then fail("%s[%d] must be a %s, got %s", key, i, kind == "booleans" and "boolean" or
      "positive integer", tostring(e)) end
  end
  return v
end

--- UNet1d(config): config keys as the reference's UNet1d arguments; missing ones take UNet1d.DEFAULTS
function UNet1d:init(config)
  if type(config) ~= "table" then fail("expected a config table, got %s", type(config)) end
  local cfg = {}
  for k, v in pairs(UNet1d.DEFAULTS) do cfg[k] = v end
  for k, v in pairs(config) do cfg[k] = v end
  local in_channels = positive_int(cfg, "in_channels")
  local channels = positive_int(cfg, "channels")
  local patch_blocks, patch_factor = positive_int(cfg, "patch_blocks"), positive_int(cfg, "patch_factor")
  local multipliers = list_of(cfg, "multipliers", nil, "positive integers")
  local num_layers = #multipliers - 1
  if num_layers < 1 then fail("multipliers must have at least 2 entries, got %d", #multipliers) end
  local factors = list_of(cfg, "factors", num_layers, "positive integers")
  local num_blocks = list_of(cfg, "num_blocks", num_layers, "positive integers")
  local attentions = list_of(cfg, "attentions", num_layers, "booleans")
  local heads, head_features = positive_int(cfg, "attention_heads"), positive_int(cfg, "attention_features")
  local attention_multiplier = positive_int(cfg, "attention_multiplier")
  local groups = positive_int(cfg, "resnet_groups")
  local kernel_multiplier = positive_int(cfg, "kernel_multiplier_downsample")
  if cfg.out_channels ~= nil then positive_int(cfg, "out_channels") end
  local out_channels = cfg.out_channels or in_channels
  if cfg.context_embedding_features ~= nil then
    fail("context_embedding_features (cross-attention conditioning) is not supported")
  end
  if cfg.context_channels ~= nil and #cfg.context_channels > 0 then
    fail("context_channels (channel conditioning) is not supported")
  end
  if cfg.context_features ~= nil then positive_int(cfg, "context_features") end

  self.config = cfg
  self.in_channels, self.out_channels, self.num_layers = in_channels, out_channels, num_layers
  self.use_context_time = cfg.use_context_time and true or false
  self.use_context_features = cfg.context_features ~= nil
  local downsampling = patch_factor ^ patch_blocks
  for _, f in ipairs(factors) do downsampling = downsampling * f end
  self.total_downsampling = math.tointeger(downsampling)

  local mapping_features
  if self.use_context_time or self.use_context_features then
    mapping_features = channels * 4
    self.to_mapping = nn.Sequential({ nn.Linear(mapping_features, mapping_features), nn.GELU(),
      nn.Linear(mapping_features, mapping_features), nn.GELU() })
  end
  if self.use_context_time then
    self.to_time = nn.Sequential({
      nn.Sequential({ LearnedPositionalEmbedding(channels), nn.Linear(channels + 1, mapping_features) }),
      nn.GELU() })
  end
  if self.use_context_features then
    self.to_features = nn.Sequential({ nn.Linear(cfg.context_features, mapping_features), nn.GELU() })
  end
  self.to_in = Patcher(in_channels, channels, { blocks = patch_blocks, factor = patch_factor,
    context_mapping_features = mapping_features })
  local downsamples = {}
  for i = 1, num_layers do
    downsamples[i] = DownsampleBlock1d(channels * multipliers[i], channels * multipliers[i + 1], {
      factor = factors[i], num_groups = groups, num_layers = num_blocks[i], kernel_multiplier = kernel_multiplier,
      use_attention = attentions[i], attention_heads = heads, attention_features = head_features,
      attention_multiplier = attention_multiplier, context_mapping_features = mapping_features })
  end
  self.downsamples = nn.ModuleList(downsamples)
  self.bottleneck = BottleneckBlock1d(channels * multipliers[num_layers + 1], { num_groups = groups,
    use_attention = cfg.use_attention_bottleneck and true or false, attention_heads = heads,
    attention_features = head_features, context_mapping_features = mapping_features })
  local upsamples = {}
  for i = num_layers, 1, -1 do
    upsamples[#upsamples + 1] = UpsampleBlock1d(channels * multipliers[i + 1], channels * multipliers[i], {
      factor = factors[i], num_layers = num_blocks[i] + (attentions[i] and 1 or 0), num_groups = groups,
      use_nearest = cfg.use_nearest_upsample, use_skip_scale = cfg.use_skip_scale,
      skip_channels = channels * multipliers[i + 1], use_attention = attentions[i], attention_heads = heads,
      attention_features = head_features, attention_multiplier = attention_multiplier,
      context_mapping_features = mapping_features })
  end
  self.upsamples = nn.ModuleList(upsamples)
  self.to_out = Unpatcher(channels, out_channels, { blocks = patch_blocks, factor = patch_factor,
    context_mapping_features = mapping_features })
end

--- UNet1d.from_config(t): t holds the reference's UNet1d arguments (e.g. configs.msdm()); keys starting with
--- "_" are ignored, any other unknown key is an error that lists them all
function UNet1d.from_config(t)
  if type(t) ~= "table" then error(string.format("UNet1d.from_config: expected a table, got %s", type(t)), 2) end
  local known, unknown, cfg = {}, {}, {}
  for k in pairs(UNet1d.DEFAULTS) do known[k] = true end
  for _, k in ipairs(OTHER_KEYS) do known[k] = true end
  for k, v in pairs(t) do
    if type(k) == "string" and k:sub(1, 1) == "_" then
      -- metadata
    elseif known[k] then
      cfg[k] = v
    else
      unknown[#unknown + 1] = tostring(k)
    end
  end
  if #unknown > 0 then
    table.sort(unknown)
    error(string.format("UNet1d.from_config: unknown config key(s): %s", table.concat(unknown, ", ")), 2)
  end
  if cfg.in_channels == nil then error("UNet1d.from_config: in_channels is required", 2) end
  return UNet1d(cfg)
end

--- UNet1d.from_state_dict(sd, config, {prefix = ""}): builds UNet1d.from_config(config) and loads the
--- prefix.* entries of sd strictly by name (other keys of sd that do not start with prefix are ignored)
function UNet1d.from_state_dict(sd, config, opts)
  opts = opts or {}
  local prefix = opts.prefix or ""
  local net = UNet1d.from_config(config)
  local own = {}
  for k, v in pairs(sd) do
    if type(k) == "string" and k:sub(1, #prefix) == prefix then own[k:sub(#prefix + 1)] = v end
  end
  local ok, err = pcall(net.load_state_dict, net, own)
  if not ok then
    error(string.format("UNet1d.from_state_dict%s: %s", prefix ~= "" and (" (prefix '" .. prefix .. "')") or "",
      tostring(err):gsub("^[^:\n]+:%d+: ", "")), 2)
  end
  return net:eval()
end

local function shape_of(t) return cocola.is_tensor(t) and t:shape_string() or type(t) end

--- the conditioning mapping (B, 4 channels) from time (B) and features (B, context_features), or nil; a number
--- time becomes a (B) tensor on x's device and in its dtype
function UNet1d:get_mapping(time, features, x)
  local batch = x:size(1)
  local items = {}
  if self.use_context_time then
    if time == nil then error("UNet1d: use_context_time is set, so a time input (B) is needed", 3) end
    if type(time) == "number" then time = cocola.full({ batch }, time, { dtype = x:dtype() }):to(x:device()) end
    if not cocola.is_tensor(time) or time:dim() ~= 1 or time:size(1) ~= batch then
      error(string.format("UNet1d: time must be a number or a tensor of shape (%d), got %s", batch, shape_of(time)), 3)
    end
    items[#items + 1] = self.to_time(time)
  end
  if self.use_context_features then
    if features == nil then error("UNet1d: context_features is set, so the features input is needed", 3) end
    items[#items + 1] = self.to_features(features)
  end
  if #items == 0 then return nil end
  local mapping = items[1]
  for i = 2, #items do mapping = mapping + items[i] end
  return self.to_mapping(mapping)
end

--- forward(x (B, in_channels, L), time (B) | number, {features}) -> (B, out_channels, L)
function UNet1d:forward(x, time, opts)
  opts = opts or {}
  if not cocola.is_tensor(x) or x:dim() ~= 3 then
    error(string.format("UNet1d: expected input x of shape (B, %d, L), got %s", self.in_channels, shape_of(x)), 2)
  end
  if x:size(2) ~= self.in_channels then
    error(string.format("UNet1d: expected %d input channels, got %d (input %s)", self.in_channels, x:size(2),
      x:shape_string()), 2)
  end
  local L = x:size(3)
  if L % self.total_downsampling ~= 0 then
    error(string.format("UNet1d: the input length %d is not a multiple of the total downsampling %d "
      .. "(patch_factor^patch_blocks times the product of factors)", L, self.total_downsampling), 2)
  end
  local mapping = self:get_mapping(time, opts.features, x)
  x = self.to_in(x, mapping)
  local skips_list = { x }
  for _, down in ipairs(self.downsamples:children()) do
    local skips
    x, skips = down(x, mapping)
    skips_list[#skips_list + 1] = skips
  end
  x = self.bottleneck(x, mapping)
  for _, up in ipairs(self.upsamples:children()) do
    x = up(x, table.remove(skips_list), mapping)
  end
  x = x + table.remove(skips_list)
  return self.to_out(x, mapping)
end

return UNet1d
