-- cocola.models.audioldm2.vae_decoder — diffusers' Decoder of AutoencoderKL: conv_in 3x3 from the latent
-- -> middle block -> up blocks over the reversed channels (layers_per_block + 1 ResNets each; all but the
-- last double H and W) -> GroupNorm -> SiLU -> conv_out. (B, latent, h, w) -> (B, out, h 2^(n-1), w 2^(n-1)).
local nn = require "cocola.nn"
local UpBlock2D = require "cocola.models.audioldm2.up_block2d"
local MidBlock2D = require "cocola.models.audioldm2.mid_block2d"

local Decoder = nn.Module:extend("Decoder")

--- Decoder{in_channels (latent), out_channels, block_out_channels, layers_per_block, groups, mid_attention}
function Decoder:init(o)
  local ch, n = o.block_out_channels, #o.block_out_channels
  self.conv_in = nn.Conv2d(o.in_channels, ch[n], 3, { padding = 1 })
  self.mid_block = MidBlock2D({ channels = ch[n], eps = 1e-6, groups = o.groups, attention = o.mid_attention })
  local blocks, out = {}, ch[n]
  for i = 1, n do
    local prev = out
    out = ch[n + 1 - i]
    blocks[i] = UpBlock2D({ in_channels = prev, out_channels = out, num_layers = o.layers_per_block + 1, eps = 1e-6,
      groups = o.groups, add_upsample = i < n })
  end
  self.up_blocks = nn.ModuleList(blocks)
  self.conv_norm_out = nn.GroupNorm(o.groups, ch[1], { eps = 1e-6 })
  self.conv_out = nn.Conv2d(ch[1], o.out_channels, 3, { padding = 1 })
end

function Decoder:forward(z)
  local h = self.mid_block(self.conv_in(z))
  for _, block in ipairs(self.up_blocks) do h = block(h) end
  return self.conv_out(self.conv_norm_out(h):silu())
end

return Decoder
