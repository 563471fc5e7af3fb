-- cocola.models.text.t5_dense_act_dense — transformers' T5DenseActDense (modeling_t5.py, transformers 4.38.2),
-- the feed-forward of feed_forward_proj "relu" (and other non-gated activations):
--   wi  Linear(d_model -> d_ff, no bias),  wo  Linear(d_ff -> d_model, no bias)
-- forward(x (..., d_model)) = wo(act(wi(x))). Dropout (eval) is left out.
-- T5DenseActDense.ACTIVATIONS: the dense_act_fn names supported (transformers' ACT2FN meanings).
local Module = require "cocola.nn.Module"
local Linear = require "cocola.nn.Linear"

local T5DenseActDense = Module:extend("T5DenseActDense")

T5DenseActDense.ACTIVATIONS = {
  relu = function(x) return x:relu() end,
  gelu = function(x) return x:gelu() end,                    -- exact (erf) GELU
  gelu_new = function(x) return x:gelu("tanh") end,          -- the tanh approximation
  gelu_pytorch_tanh = function(x) return x:gelu("tanh") end,
  silu = function(x) return x:silu() end,
  swish = function(x) return x:silu() end,
}

--- the activation function of a dense_act_fn name, or nil
function T5DenseActDense.activation(name) return T5DenseActDense.ACTIVATIONS[name] end

--- T5DenseActDense(d_model, d_ff, {act = "relu"})
function T5DenseActDense:init(d_model, d_ff, opts)
  opts = opts or {}
  self.act_name = opts.act or "relu"
  self.act = T5DenseActDense.activation(self.act_name)
  if not self.act then error("T5DenseActDense: unsupported activation '" .. tostring(self.act_name) .. "'", 3) end
  self.wi = Linear(d_model, d_ff, { bias = false })
  self.wo = Linear(d_ff, d_model, { bias = false })
end

function T5DenseActDense:forward(x) return self.wo(self.act(self.wi(x))) end

function T5DenseActDense:extra_repr() return "act=" .. self.act_name end

return T5DenseActDense
