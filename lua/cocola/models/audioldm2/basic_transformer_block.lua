-- cocola.models.audioldm2.basic_transformer_block — diffusers' BasicTransformerBlock (layer norms, no
-- ada-norm): x += attn1(norm1(x)) (self-attention); x += attn2(norm2(x), context, mask) (cross-attention
-- on context of width cross_attention_dim, or a second self-attention when that is nil); x += ff(norm3(x))
-- with a GEGLU feed-forward. x (B, L, dim).
local nn = require "cocola.nn"
local Attention = require "cocola.models.audioldm2.attention"
local FeedForward = require "cocola.models.audioldm2.feed_forward"

local BasicTransformerBlock = nn.Module:extend("BasicTransformerBlock")

--- BasicTransformerBlock(dim, heads, dim_head, {cross_attention_dim = n | nil})
function BasicTransformerBlock:init(dim, heads, dim_head, opts)
  opts = opts or {}
  self.norm1 = nn.LayerNorm(dim, { eps = 1e-5 })
  self.attn1 = Attention(dim, { heads = heads, dim_head = dim_head })
  self.norm2 = nn.LayerNorm(dim, { eps = 1e-5 })
  self.attn2 = Attention(dim, { heads = heads, dim_head = dim_head, cross_attention_dim = opts.cross_attention_dim })
  self.norm3 = nn.LayerNorm(dim, { eps = 1e-5 })
  self.ff = FeedForward(dim)
end

--- forward(x, context, mask): context nil for the second self-attention
function BasicTransformerBlock:forward(x, context, mask)
  x = self.attn1(self.norm1(x)) + x
  x = self.attn2(self.norm2(x), context, context and mask or nil) + x
  return self.ff(self.norm3(x)) + x
end

return BasicTransformerBlock
