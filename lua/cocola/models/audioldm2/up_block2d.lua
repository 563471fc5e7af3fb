-- cocola.models.audioldm2.up_block2d — a U-Net/VAE up block: num_layers ResnetBlock2Ds (in the U-Net each
-- takes cat(h, skip) along channels, skips popped from the end), each followed (in a cross-attention
-- block) by its attention slots, then an optional Upsample2D. Covers diffusers' UpBlock2D,
-- CrossAttnUpBlock2D (AudioLDM 2 routing) and UpDecoderBlock2D (no skips, no time embedding).
local cocola = require "cocola"
local nn = require "cocola.nn"
local ResnetBlock2D = require "cocola.models.audioldm2.resnet_block2d"
local Upsample2D = require "cocola.models.audioldm2.upsample2d"
local slots = require "cocola.models.audioldm2.cross_attention_slots"

local UpBlock2D = nn.Module:extend("UpBlock2D")

--- UpBlock2D{in_channels, out_channels, prev_output_channel (nil: no skips, a decoder block),
--- temb_channels, num_layers, eps, groups, add_upsample, cross_attention | nil, heads, transformer_layers}
function UpBlock2D:init(o)
  local resnets = {}
  self.with_skips = o.prev_output_channel ~= nil
  for i = 1, o.num_layers do
    local cin
    if self.with_skips then
      local skip = i == o.num_layers and o.in_channels or o.out_channels
      cin = (i == 1 and o.prev_output_channel or o.out_channels) + skip
    else
      cin = i == 1 and o.in_channels or o.out_channels
    end
    resnets[i] = ResnetBlock2D(cin, o.out_channels, { temb_channels = o.temb_channels, groups = o.groups, eps = o.eps })
  end
  self.resnets = nn.ModuleList(resnets)
  self.slots = o.cross_attention
  if self.slots then
    self.attentions = slots.build({ layers = o.num_layers, slots = o.cross_attention, heads = o.heads,
      channels = o.out_channels, transformer_layers = o.transformer_layers, groups = o.groups })
  end
  if o.add_upsample then self.upsamplers = nn.ModuleList({ Upsample2D(o.out_channels) }) end
end

--- forward(h, temb, skips (a list; this block pops its own from the end) | nil, ctx, upsample_size)
function UpBlock2D:forward(h, temb, skips, ctx, upsample_size)
  for i, resnet in ipairs(self.resnets) do
    if self.with_skips then
      local skip = table.remove(skips)
      h = cocola.cat({ h, skip }, 2)
    end
    h = slots.call(self.gradient_checkpointing, resnet, h, temb)
    if self.slots then h = slots.run(self.attentions, self.slots, i - 1, h, ctx, self.gradient_checkpointing) end
  end
  if self.upsamplers then h = self.upsamplers[1](h, upsample_size) end
  return h
end

return UpBlock2D
