-- cocola.models.audioldm2.unet_config — the config of AudioLDM 2's U-Net (and of the CompoNet ControlNet
-- built from it) read into the settings the blocks take: per-block attention slot widths (false for a
-- self-attention slot), heads and transformer layers; every other key either has its supported value or
-- is refused with the key named.
local P = require "cocola.models.audioldm2.pretrained"

local M = {}

local BLOCK_TYPES = {
  down = { DownBlock2D = true, CrossAttnDownBlock2D = true },
  up = { UpBlock2D = true, CrossAttnUpBlock2D = true },
}

local function all_false(v)
  if v == false or P.is_null(v) then return nil end
  if type(v) == "table" then
    for _, x in ipairs(v) do if x ~= false then return "only false is supported" end end
    return nil
  end
  return "only false is supported"
end

M.KNOWN = {
  act_fn = P.one_of({ "silu" }), attention_head_dim = true, block_out_channels = true,
  class_embed_type = P.must_be_null, class_embeddings_concat = P.one_of({ false }, true), conv_in_kernel = true,
  conv_out_kernel = true, cross_attention_dim = true, down_block_types = true, downsample_padding = true,
  flip_sin_to_cos = true, freq_shift = true, in_channels = true, out_channels = true, layers_per_block = true,
  mid_block_scale_factor = true, mid_block_type = P.one_of({ "UNetMidBlock2DCrossAttn" }), norm_eps = true,
  norm_num_groups = true, num_attention_heads = true, num_class_embeds = P.must_be_null,
  only_cross_attention = all_false, projection_class_embeddings_input_dim = P.must_be_null,
  resnet_time_scale_shift = P.one_of({ "default" }), sample_size = true, time_cond_proj_dim = P.must_be_null,
  time_embedding_act_fn = P.must_be_null, time_embedding_dim = true,
  time_embedding_type = P.one_of({ "positional" }), timestep_post_act = P.must_be_null,
  transformer_layers_per_block = true, up_block_types = true,
  -- upcast_attention changes nothing in float32, where attention already runs
  upcast_attention = true, use_linear_projection = P.one_of({ false }),
}

-- the ControlNet's own keys (CompoNet keeps diffusers' conditioning settings in its config, unused)
M.CONTROLNET_KNOWN = setmetatable({
  conditioning_channels = true, conditioning_embedding_out_channels = true,
  global_pool_conditions = P.one_of({ false }), controlnet_conditioning_channel_order = P.one_of({ "rgb" }),
}, { __index = M.KNOWN })

local function per_block(v, n, what, path)
  if math.type(v) == "integer" then
    local out = {}
    for i = 1, n do out[i] = v end
    return out
  end
  if type(v) ~= "table" or #v ~= n then
    error(string.format("%s: %s must be an integer or a list of %d", path, what, n), 4)
  end
  return v
end

--- reads a config table (from pretrained.read_config or built in Lua) into settings
function M.read(cfg, known, what)
  P.check_keys(cfg, known or M.KNOWN, what or "AudioLDM 2 U-Net")
  local path = cfg._path or "config"
  local down = cfg.down_block_types
  if type(down) ~= "table" or #down == 0 then error(path .. ": down_block_types must be a non-empty list", 3) end
  local n = #down
  for i, t in ipairs(down) do
    if not BLOCK_TYPES.down[t] then error(string.format("%s: down block type '%s' is not supported", path, tostring(t)), 3) end
    if cfg.up_block_types and cfg.up_block_types ~= P.null then
      local u = cfg.up_block_types[i]
      if u and not BLOCK_TYPES.up[u] then error(string.format("%s: up block type '%s' is not supported", path, tostring(u)), 3) end
    end
  end
  local heads = P.is_null(cfg.num_attention_heads) and cfg.attention_head_dim or cfg.num_attention_heads
  local s = {
    in_channels = cfg.in_channels or 4, out_channels = cfg.out_channels or 4,
    block_out_channels = cfg.block_out_channels, layers_per_block = cfg.layers_per_block or 2,
    down_block_types = down, up_block_types = cfg.up_block_types,
    groups = cfg.norm_num_groups or 32, eps = cfg.norm_eps or 1e-5,
    flip_sin_to_cos = cfg.flip_sin_to_cos ~= false, freq_shift = cfg.freq_shift or 0,
    downsample_padding = cfg.downsample_padding or 1, mid_block_scale_factor = cfg.mid_block_scale_factor or 1,
    conv_in_kernel = cfg.conv_in_kernel or 3, conv_out_kernel = cfg.conv_out_kernel or 3,
  }
  if type(s.block_out_channels) ~= "table" or #s.block_out_channels ~= n then
    error(string.format("%s: block_out_channels must list %d channel counts", path, n), 3)
  end
  s.time_embed_dim = P.is_null(cfg.time_embedding_dim) and s.block_out_channels[1] * 4 or cfg.time_embedding_dim
  s.heads = per_block(heads or 8, n, "num_attention_heads / attention_head_dim", path)
  s.transformer_layers = per_block(cfg.transformer_layers_per_block or 1, n, "transformer_layers_per_block", path)
  -- cross_attention_dim: one width, a width per block, or a list of slot widths per block (null: self-attention)
  local cad = cfg.cross_attention_dim
  if P.is_null(cad) then error(path .. ": cross_attention_dim is required", 3) end
  s.slots = {}
  for i = 1, n do
    local b = type(cad) == "table" and cad[i] or cad
    if type(cad) == "table" and #cad ~= n then
      error(string.format("%s: cross_attention_dim must have one entry per block (%d)", path, n), 3)
    end
    local list = {}
    if type(b) == "table" then
      if #b > 4 then error(string.format("%s: at most 4 attention slots per block, got %d", path, #b), 3) end
      for j, w in ipairs(b) do list[j] = (not P.is_null(w)) and w or false end
      -- ipairs stops at a JSON null only when it is nil; cjson gives cjson.null, so every slot is seen
    elseif math.type(b) == "integer" then
      list[1] = b
    else
      error(string.format("%s: cross_attention_dim entry %d must be a width or a list of widths", path, i), 3)
    end
    s.slots[i] = list
  end
  for i = 1, n do
    if s.block_out_channels[i] % s.heads[i] ~= 0 then
      error(string.format("%s: %d heads do not divide the %d channels of block %d", path, s.heads[i],
        s.block_out_channels[i], i), 3)
    end
  end
  return s
end

return M
