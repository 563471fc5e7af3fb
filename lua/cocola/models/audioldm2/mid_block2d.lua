-- cocola.models.audioldm2.mid_block2d — the middle block: ResnetBlock2D, then for each further layer its
-- attention and a ResnetBlock2D. Covers diffusers' UNetMidBlock2DCrossAttn (AudioLDM 2 routing, slots
-- per layer) and the VAE's UNetMidBlock2D (one single-head self-attention with its own GroupNorm, bias
-- on q/k/v and a residual connection). (B, C, H, W) -> (B, C, H, W).
local nn = require "cocola.nn"
local ResnetBlock2D = require "cocola.models.audioldm2.resnet_block2d"
local Attention = require "cocola.models.audioldm2.attention"
local slots = require "cocola.models.audioldm2.cross_attention_slots"

local MidBlock2D = nn.Module:extend("MidBlock2D")

--- MidBlock2D{channels, temb_channels, eps, groups, output_scale_factor = 1, num_layers = 1,
--- cross_attention (slot widths) | nil: the VAE's attention (attention = false: none), heads, transformer_layers}
function MidBlock2D:init(o)
  local layers = o.num_layers or 1
  local resnets = {}
  for i = 1, layers + 1 do
    resnets[i] = ResnetBlock2D(o.channels, o.channels, { temb_channels = o.temb_channels, groups = o.groups,
      eps = o.eps, output_scale_factor = o.output_scale_factor })
  end
  self.resnets = nn.ModuleList(resnets)
  self.slots = o.cross_attention
  if self.slots then
    self.attentions = slots.build({ layers = layers, slots = o.cross_attention, heads = o.heads,
      channels = o.channels, transformer_layers = o.transformer_layers, groups = o.groups })
  elseif o.attention ~= false then
    local attns = {}
    for i = 1, layers do
      attns[i] = Attention(o.channels, { heads = 1, dim_head = o.channels, bias = true, norm_num_groups = o.groups,
        eps = o.eps, residual_connection = true, rescale_output_factor = o.output_scale_factor or 1 })
    end
    self.attentions = nn.ModuleList(attns)
  end
end

function MidBlock2D:forward(h, temb, ctx)
  h = slots.call(self.gradient_checkpointing, self.resnets[1], h, temb)
  for i = 2, #self.resnets do
    if self.slots then
      h = slots.run(self.attentions, self.slots, i - 2, h, ctx, self.gradient_checkpointing)
    elseif self.attentions then
      h = self.attentions[i - 1](h)
    end
    h = slots.call(self.gradient_checkpointing, self.resnets[i], h, temb)
  end
  return h
end

return MidBlock2D
