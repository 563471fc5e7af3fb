-- cocola.models.msdm.attention — audio-diffusion-pytorch 0.0.43 Attention (self-attention): x = norm(x)
-- (LayerNorm, no bias); q = to_q(x); k, v = the two halves of to_kv(x); AttentionBase(q, k, v). No residual.
-- x (B, N, features) -> (B, N, features). Parameters: norm.g, to_q.weight, to_kv.weight,
-- attention.to_out.0.weight, attention.to_out.1.g.
local nn = require "cocola.nn"
local LayerNorm = require "cocola.models.msdm.layer_norm"
local AttentionBase = require "cocola.models.msdm.attention_base"

local Attention = nn.Module:extend("Attention")

--- Attention(features, {head_features = 64, num_heads = 8, out_features = features})
function Attention:init(features, opts)
  opts = opts or {}
  local head_features, num_heads = opts.head_features or 64, opts.num_heads or 8
  local mid_features = head_features * num_heads
  self.features, self.mid_features = features, mid_features
  self.norm = LayerNorm(features, { bias = false })
  self.to_q = nn.Linear(features, mid_features, { bias = false })
  self.to_kv = nn.Linear(features, mid_features * 2, { bias = false })
  self.attention = AttentionBase(features, { head_features = head_features, num_heads = num_heads,
    out_features = opts.out_features })
end

function Attention:forward(x)
  x = self.norm(x)
  local kv = self.to_kv(x)
  return self.attention(self.to_q(x), kv:narrow(3, 1, self.mid_features),
    kv:narrow(3, self.mid_features + 1, self.mid_features))
end

return Attention
