-- cocola.models.audioldm2.unet — AudioLDM2UNet2DConditionModel (diffusers modeling_audioldm2.py) with
-- CompoNet's ControlNet inputs: eps = unet(z_t (B, in, H, W), t, {encoder_hidden_states (B, S, X1),
-- encoder_hidden_states_1 (B, S1, X2), encoder_attention_mask (B, S) 0/1, encoder_attention_mask_1 (B, S1)
-- 0/1, down_block_additional_residuals (list, one per skip), mid_block_additional_residual}) -> (B, out, H, W).
-- Parameter names are diffusers'; UNet.from_pretrained(dir) reads config.json and the weights.
local cocola = require "cocola"
local nn = require "cocola.nn"
local P = require "cocola.models.audioldm2.pretrained"
local config = require "cocola.models.audioldm2.unet_config"
local parts = require "cocola.models.audioldm2.unet_parts"
local UpBlock2D = require "cocola.models.audioldm2.up_block2d"

local UNet = nn.Module:extend("AudioLDM2UNet2DConditionModel")

--- UNet(config): a config table as in unet/config.json (random weights)
function UNet:init(cfg)
  local s = config.read(cfg)
  self.settings = s
  self.config = cfg
  parts.build_input_half(self, s)
  local n = #s.block_out_channels
  local rev = {}
  for i = 1, n do rev[i] = s.block_out_channels[n + 1 - i] end
  local blocks, out = {}, rev[1]
  self.num_upsamplers = 0
  for i = 1, n do
    local prev = out
    out = rev[i]
    local input = rev[math.min(i + 1, n)]
    local j = n + 1 - i -- the settings of the mirrored down block
    local cross = s.up_block_types[i] == "CrossAttnUpBlock2D"
    if i < n then self.num_upsamplers = self.num_upsamplers + 1 end
    blocks[i] = UpBlock2D({ in_channels = input, out_channels = out, prev_output_channel = prev,
      temb_channels = s.time_embed_dim, num_layers = s.layers_per_block + 1, eps = s.eps, groups = s.groups,
      add_upsample = i < n, cross_attention = cross and s.slots[j] or nil, heads = s.heads[j],
      transformer_layers = s.transformer_layers[j] })
  end
  self.up_blocks = nn.ModuleList(blocks)
  local c0 = s.block_out_channels[1]
  self.conv_norm_out = nn.GroupNorm(s.groups, c0, { eps = s.eps })
  self.conv_out = nn.Conv2d(c0, s.out_channels, s.conv_out_kernel, { padding = (s.conv_out_kernel - 1) // 2 })
end

local function check_residual(r, like, what)
  if not cocola.is_tensor(r) or r:dim() ~= like:dim() then
    error(string.format("AudioLDM2UNet2DConditionModel: %s must be a tensor of shape %s", what, like:shape_string()), 4)
  end
  for d = 1, like:dim() do
    if r:size(d) ~= like:size(d) then
      error(string.format("AudioLDM2UNet2DConditionModel: %s has shape %s, the skip it adds to %s", what,
        r:shape_string(), like:shape_string()), 4)
    end
  end
end

--- forward(sample, timestep, opts) -> the prediction (B, out_channels, H, W)
function UNet:forward(sample, timestep, opts)
  opts = opts or {}
  local s, what = self.settings, "AudioLDM2UNet2DConditionModel"
  local ctx = parts.context(s, sample, opts, what)
  local factor = 2 ^ self.num_upsamplers
  local forward_size = sample:size(3) % factor ~= 0 or sample:size(4) % factor ~= 0
  local h, skips, temb = parts.run_input_half(self, s, sample, timestep, ctx, nil, what)
  local residuals = opts.down_block_additional_residuals
  if residuals ~= nil then
    if type(residuals) ~= "table" or #residuals ~= #skips then
      error(string.format("%s: down_block_additional_residuals must be a list of %d tensors (one per skip)", what,
        #skips), 2)
    end
    for i, r in ipairs(residuals) do
      check_residual(r, skips[i], "down_block_additional_residuals[" .. i .. "]")
      skips[i] = skips[i] + r
    end
  end
  h = self.mid_block(h, temb, ctx)
  if opts.mid_block_additional_residual ~= nil then
    check_residual(opts.mid_block_additional_residual, h, "mid_block_additional_residual")
    h = h + opts.mid_block_additional_residual
  end
  for i, block in ipairs(self.up_blocks) do
    local size
    if i < #self.up_blocks and forward_size then
      local next_skip = skips[#skips - #block.resnets]
      size = { next_skip:size(3), next_skip:size(4) }
    end
    h = block(h, temb, skips, ctx, size)
  end
  return self.conv_out(self.conv_norm_out(h):silu())
end

--- the widths of the two text streams the attention slots read: {encoder_hidden_states = X1 or nil,
--- encoder_hidden_states_1 = X2 or nil} (768 and 1024 for AudioLDM 2: GPT-2 and T5)
function UNet:text_widths()
  local out = {}
  for _, slots in ipairs(self.settings.slots) do
    for j, w in ipairs(slots) do
      if w then
        if j <= 2 then out.encoder_hidden_states = w else out.encoder_hidden_states_1 = w end
      end
    end
  end
  return out
end

--- recompute the activations of every block during backward (less memory, one more forward)
function UNet:enable_gradient_checkpointing(on) return parts.set_gradient_checkpointing(self, on) end

--- UNet.from_pretrained(dir): dir is the unet/ folder or a pipeline folder holding unet/
function UNet.from_pretrained(dir) return P.from_pretrained(UNet, dir, "unet") end

return UNet
