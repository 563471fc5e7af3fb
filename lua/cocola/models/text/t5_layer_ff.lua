-- cocola.models.text.t5_layer_ff — transformers' T5LayerFF (modeling_t5.py, transformers 4.38.2), pre-norm
-- feed-forward with a residual:
--   DenseReluDense  T5DenseGatedActDense (gated) or T5DenseActDense,   layer_norm  T5LayerNorm(d_model)
-- forward(x (..., d_model)) = x + DenseReluDense(layer_norm(x)).
local Module = require "cocola.nn.Module"
local T5DenseActDense = require "cocola.models.text.t5_dense_act_dense"
local T5DenseGatedActDense = require "cocola.models.text.t5_dense_gated_act_dense"
local T5LayerNorm = require "cocola.models.text.t5_layer_norm"

local T5LayerFF = Module:extend("T5LayerFF")

--- T5LayerFF(d_model, d_ff, {gated = true, act = "gelu_new", eps = 1e-6})
function T5LayerFF:init(d_model, d_ff, opts)
  opts = opts or {}
  local Dense = opts.gated == false and T5DenseActDense or T5DenseGatedActDense
  self.DenseReluDense = Dense(d_model, d_ff, { act = opts.act })
  self.layer_norm = T5LayerNorm(d_model, { eps = opts.eps })
end

function T5LayerFF:forward(x) return x + self.DenseReluDense(self.layer_norm(x)) end

return T5LayerFF
