-- cocola.models.audioldm2.controlnet — CompoNet's ControlNet for the AudioLDM 2 U-Net
-- (ControlNetAudioLDM2Model): a copy of the U-Net's input half (conv_in, time embedding, down blocks,
-- middle block) whose conv_in output gets controlnet_cond_embedding(w), one 3x3 conv of the control latent
-- w (B, in_channels, H, W) to block_out_channels[1] channels (default init, not zero); zero-initialised 1x1
-- convs (controlnet_down_blocks, one per skip, and controlnet_mid_block) map the skips and the middle
-- output to the residuals the U-Net adds, scaled by conditioning_scale.
-- controlnet(z_t, t, w, {conditioning_scale = 1, encoder_hidden_states, ...as the U-Net}) -> down, mid.
local cocola = require "cocola"
local nn = require "cocola.nn"
local P = require "cocola.models.audioldm2.pretrained"
local config = require "cocola.models.audioldm2.unet_config"
local parts = require "cocola.models.audioldm2.unet_parts"

local ControlNet = nn.Module:extend("ControlNetAudioLDM2Model")

local function zero_conv(c)
  local conv = nn.Conv2d(c, c, 1)
  cocola.no_grad(function()
    conv.weight:fill_(0)
    conv.bias:fill_(0)
  end)
  return conv
end

--- ControlNet(config): the ControlNet's config.json table (the U-Net's keys plus its own)
function ControlNet:init(cfg)
  local s = config.read(cfg, config.CONTROLNET_KNOWN, "CompoNet ControlNet")
  self.settings = s
  self.config = cfg
  local c0 = s.block_out_channels[1]
  parts.build_input_half(self, s)
  self.controlnet_cond_embedding = nn.Conv2d(s.in_channels, c0, 3, { padding = 1 })
  local zero, n = { zero_conv(c0) }, #s.block_out_channels
  for i = 1, n do
    for _ = 1, s.layers_per_block do zero[#zero + 1] = zero_conv(s.block_out_channels[i]) end
    if i < n then zero[#zero + 1] = zero_conv(s.block_out_channels[i]) end
  end
  self.controlnet_down_blocks = nn.ModuleList(zero)
  self.controlnet_mid_block = zero_conv(s.block_out_channels[n])
end

--- forward(sample, timestep, controlnet_cond, opts) -> {down residuals}, mid residual
function ControlNet:forward(sample, timestep, cond, opts)
  opts = opts or {}
  local s, what = self.settings, "ControlNetAudioLDM2Model"
  local ctx = parts.context(s, sample, opts, what)
  if not cocola.is_tensor(cond) or cond:dim() ~= 4 or cond:size(1) ~= sample:size(1) or cond:size(2) ~= s.in_channels
      or cond:size(3) ~= sample:size(3) or cond:size(4) ~= sample:size(4) then
    error(string.format("%s: the control latent must have the latent's shape %s, got %s", what, sample:shape_string(),
      cocola.is_tensor(cond) and cond:shape_string() or type(cond)), 2)
  end
  local scale = opts.conditioning_scale or 1.0
  local h, skips, temb = parts.run_input_half(self, s, sample, timestep, ctx, self.controlnet_cond_embedding(cond), what)
  h = self.mid_block(h, temb, ctx)
  local down = {}
  for i, skip in ipairs(skips) do
    down[i] = self.controlnet_down_blocks[i](skip)
    if scale ~= 1 then down[i] = down[i] * scale end
  end
  local mid = self.controlnet_mid_block(h)
  if scale ~= 1 then mid = mid * scale end
  return down, mid
end

--- ControlNet.from_unet(unet): a ControlNet with the U-Net's config and a copy of its input half
function ControlNet.from_unet(unet)
  local cfg = {}
  for k, v in pairs(unet.config) do cfg[k] = v end
  cfg._class_name = "ControlNetAudioLDM2Model"
  local cn = ControlNet(cfg)
  for _, name in ipairs({ "conv_in", "time_embedding", "down_blocks", "mid_block" }) do
    local sd = {}
    for k, t in pairs(unet[name]:state_dict()) do sd[k] = t:clone() end
    cn[name]:load_state_dict(sd)
  end
  return cn
end

--- recompute the activations of every block during backward (less memory, one more forward)
function ControlNet:enable_gradient_checkpointing(on) return parts.set_gradient_checkpointing(self, on) end

--- ControlNet.from_pretrained(dir): a folder with config.json and diffusion_pytorch_model.safetensors
function ControlNet.from_pretrained(dir) return P.from_pretrained(ControlNet, dir, "controlnet") end

return ControlNet
