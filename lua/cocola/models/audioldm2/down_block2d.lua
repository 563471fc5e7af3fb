-- cocola.models.audioldm2.down_block2d — a U-Net/VAE down block: num_layers ResnetBlock2Ds, each followed
-- (in a cross-attention block) by its attention slots, then an optional Downsample2D. Covers diffusers'
-- DownBlock2D, CrossAttnDownBlock2D (AudioLDM 2 routing) and DownEncoderBlock2D (no time embedding).
-- forward(h (B, in, H, W), temb, ctx) -> h, {the output after every layer and after the downsampler}.
local nn = require "cocola.nn"
local ResnetBlock2D = require "cocola.models.audioldm2.resnet_block2d"
local Downsample2D = require "cocola.models.audioldm2.downsample2d"
local slots = require "cocola.models.audioldm2.cross_attention_slots"

local DownBlock2D = nn.Module:extend("DownBlock2D")

--- DownBlock2D{in_channels, out_channels, temb_channels (nil: none), num_layers, eps, groups,
--- add_downsample, downsample_padding, cross_attention (slot widths, false for self-attention) | nil,
--- heads, transformer_layers}
function DownBlock2D:init(o)
  local resnets = {}
  for i = 1, o.num_layers do
    resnets[i] = ResnetBlock2D(i == 1 and o.in_channels or o.out_channels, o.out_channels,
      { temb_channels = o.temb_channels, groups = o.groups, eps = o.eps })
  end
  self.resnets = nn.ModuleList(resnets)
  self.slots = o.cross_attention
  if self.slots then
    self.attentions = slots.build({ layers = o.num_layers, slots = o.cross_attention, heads = o.heads,
      channels = o.out_channels, transformer_layers = o.transformer_layers, groups = o.groups })
  end
  if o.add_downsample then
    self.downsamplers = nn.ModuleList({ Downsample2D(o.out_channels, { padding = o.downsample_padding }) })
  end
end

function DownBlock2D:forward(h, temb, ctx)
  local outputs = {}
  for i, resnet in ipairs(self.resnets) do
    h = slots.call(self.gradient_checkpointing, resnet, h, temb)
    if self.slots then h = slots.run(self.attentions, self.slots, i - 1, h, ctx, self.gradient_checkpointing) end
    outputs[#outputs + 1] = h
  end
  if self.downsamplers then
    h = self.downsamplers[1](h)
    outputs[#outputs + 1] = h
  end
  return h, outputs
end

return DownBlock2D
