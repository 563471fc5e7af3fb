-- cocola.models.audioldm2.vae_encoder — diffusers' Encoder of AutoencoderKL: conv_in 3x3 -> down blocks
-- (ResNets without time embedding, eps 1e-6; all but the last halve H and W after a right/bottom zero pad)
-- -> middle block (ResNet, single-head self-attention, ResNet) -> GroupNorm -> SiLU -> conv_out to
-- 2 * latent_channels (mean and log-variance). (B, in, H, W) -> (B, 2 latent, H / 2^(n-1), W / 2^(n-1)).
local nn = require "cocola.nn"
local DownBlock2D = require "cocola.models.audioldm2.down_block2d"
local MidBlock2D = require "cocola.models.audioldm2.mid_block2d"

local Encoder = nn.Module:extend("Encoder")

--- Encoder{in_channels, out_channels (2 latent), block_out_channels, layers_per_block, groups, mid_attention}
function Encoder:init(o)
  local ch = o.block_out_channels
  self.conv_in = nn.Conv2d(o.in_channels, ch[1], 3, { padding = 1 })
  local blocks, out = {}, ch[1]
  for i = 1, #ch do
    local input = out
    out = ch[i]
    blocks[i] = DownBlock2D({ in_channels = input, out_channels = out, num_layers = o.layers_per_block, eps = 1e-6,
      groups = o.groups, add_downsample = i < #ch, downsample_padding = 0 })
  end
  self.down_blocks = nn.ModuleList(blocks)
  self.mid_block = MidBlock2D({ channels = ch[#ch], eps = 1e-6, groups = o.groups, attention = o.mid_attention })
  self.conv_norm_out = nn.GroupNorm(o.groups, ch[#ch], { eps = 1e-6 })
  self.conv_out = nn.Conv2d(ch[#ch], o.out_channels, 3, { padding = 1 })
end

function Encoder:forward(x)
  local h = self.conv_in(x)
  for _, block in ipairs(self.down_blocks) do h = block(h) end
  h = self.mid_block(h)
  return self.conv_out(self.conv_norm_out(h):silu())
end

return Encoder
