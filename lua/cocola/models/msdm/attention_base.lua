-- cocola.models.msdm.attention_base — audio-diffusion-pytorch 0.0.43 AttentionBase: multi-head scaled
-- dot-product attention of given q, k, v (B, N, heads head_features), scale head_features^-0.5, then
-- to_out = Sequential(Linear(heads head_features, out_features, no bias), LayerNorm(out_features, no bias)).
-- -> (B, N, out_features). Parameters: to_out.0.weight, to_out.1.g.
local nn = require "cocola.nn"
local F = require "cocola.nn.functional"
local LayerNorm = require "cocola.models.msdm.layer_norm"

local AttentionBase = nn.Module:extend("AttentionBase")

--- AttentionBase(features, {head_features = 64, num_heads = 8, out_features = features})
function AttentionBase:init(features, opts)
  opts = opts or {}
  self.head_features, self.num_heads = opts.head_features or 64, opts.num_heads or 8
  self.scale = self.head_features ^ -0.5
  local mid_features = self.head_features * self.num_heads
  local out_features = opts.out_features or features
  self.to_out = nn.Sequential({ nn.Linear(mid_features, out_features, { bias = false }),
    LayerNorm(out_features, { bias = false }) })
end

-- (B, N, heads d) -> (B, heads, N, d)
local function split_heads(t, heads)
  local B, N = t:size(1), t:size(2)
  return t:reshape({ B, N, heads, t:size(3) // heads }):transpose(2, 3)
end

function AttentionBase:forward(q, k, v)
  local B, N = q:size(1), q:size(2)
  local h = self.num_heads
  local out = F.scaled_dot_product_attention(split_heads(q, h), split_heads(k, h), split_heads(v, h),
    { scale = self.scale })
  out = out:transpose(2, 3):reshape({ B, N, h * self.head_features })
  return self.to_out(out)
end

return AttentionBase
