-- cocola.models.msdm.transformer_block1d — audio-diffusion-pytorch 0.0.43 TransformerBlock1d over (B, C, L):
-- x = attention(x) + x (Attention over the L positions, through EinopsToAndFrom); x = feed_forward(x) + x, with
-- FeedForward1d = Sequential(LayerNorm1d(C, no bias), Conv1d(C, C m, 1, no bias), GELU, LayerNorm1d(C m, no bias),
-- Conv1d(C m, C, 1, no bias)). Parameters: attention.fn.*, feed_forward.{0.g, 1.weight, 3.g, 4.weight}.
local nn = require "cocola.nn"
local Attention = require "cocola.models.msdm.attention"
local EinopsToAndFrom = require "cocola.models.msdm.einops_to_and_from"
local LayerNorm1d = require "cocola.models.msdm.layer_norm1d"

local TransformerBlock1d = nn.Module:extend("TransformerBlock1d")

--- the reference's FeedForward1d(channels, multiplier): a Sequential, so its keys are 0 .. 4
function TransformerBlock1d.FeedForward1d(channels, multiplier)
  local mid_channels = math.tointeger(channels * multiplier)
  return nn.Sequential({
    LayerNorm1d(channels, { bias = false }),
    nn.Conv1d(channels, mid_channels, 1, { bias = false }),
    nn.GELU(),
    LayerNorm1d(mid_channels, { bias = false }),
    nn.Conv1d(mid_channels, channels, 1, { bias = false }),
  })
end

--- TransformerBlock1d(channels, {num_heads = 8, head_features = 32, multiplier = 2})
function TransformerBlock1d:init(channels, opts)
  opts = opts or {}
  self.attention = EinopsToAndFrom(Attention(channels, { num_heads = opts.num_heads or 8,
    head_features = opts.head_features or 32 }))
  self.feed_forward = TransformerBlock1d.FeedForward1d(channels, opts.multiplier or 2)
end

function TransformerBlock1d:forward(x)
  x = self.attention(x) + x
  return self.feed_forward(x) + x
end

return TransformerBlock1d
