-- cocola.models.text.t5_layer_self_attention — transformers' T5LayerSelfAttention (modeling_t5.py,
-- transformers 4.38.2), pre-norm self-attention with a residual:
--   SelfAttention  T5Attention,   layer_norm  T5LayerNorm(d_model)
-- forward(x (B, L, d_model), position_bias (1 or B, H, L, L)) = x + SelfAttention(layer_norm(x), position_bias).
local Module = require "cocola.nn.Module"
local T5Attention = require "cocola.models.text.t5_attention"
local T5LayerNorm = require "cocola.models.text.t5_layer_norm"

local T5LayerSelfAttention = Module:extend("T5LayerSelfAttention")

--- T5LayerSelfAttention(attention_opts (see T5Attention), {eps = 1e-6})
function T5LayerSelfAttention:init(attention_opts, opts)
  opts = opts or {}
  self.SelfAttention = T5Attention(attention_opts)
  self.layer_norm = T5LayerNorm(attention_opts.d_model, { eps = opts.eps })
end

function T5LayerSelfAttention:forward(x, position_bias)
  return x + self.SelfAttention(self.layer_norm(x), position_bias)
end

return T5LayerSelfAttention
