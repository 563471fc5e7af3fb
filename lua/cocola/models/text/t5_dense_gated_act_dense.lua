-- cocola.models.text.t5_dense_gated_act_dense — transformers' T5DenseGatedActDense (modeling_t5.py,
-- transformers 4.38.2), the feed-forward of feed_forward_proj "gated-gelu" (T5 v1.1, FLAN-T5, AudioLDM 2):
--   wi_0  Linear(d_model -> d_ff, no bias)   the gate, through the activation (gelu_new for "gated-gelu")
--   wi_1  Linear(d_model -> d_ff, no bias)   the linear branch
--   wo    Linear(d_ff -> d_model, no bias)
-- forward(x (..., d_model)) = wo(act(wi_0(x)) * wi_1(x)). Dropout (eval) is left out.
local Module = require "cocola.nn.Module"
local Linear = require "cocola.nn.Linear"
local T5DenseActDense = require "cocola.models.text.t5_dense_act_dense"

local T5DenseGatedActDense = Module:extend("T5DenseGatedActDense")

--- T5DenseGatedActDense(d_model, d_ff, {act = "gelu_new"})
function T5DenseGatedActDense:init(d_model, d_ff, opts)
  opts = opts or {}
  self.act_name = opts.act or "gelu_new"
  self.act = T5DenseActDense.activation(self.act_name)
  if not self.act then
    error("T5DenseGatedActDense: unsupported activation '" .. tostring(self.act_name) .. "'", 3)
  end
  self.wi_0 = Linear(d_model, d_ff, { bias = false })
  self.wi_1 = Linear(d_model, d_ff, { bias = false })
  self.wo = Linear(d_ff, d_model, { bias = false })
end

function T5DenseGatedActDense:forward(x) return self.wo(self.act(self.wi_0(x)) * self.wi_1(x)) end

function T5DenseGatedActDense:extra_repr() return "act=" .. self.act_name end

return T5DenseGatedActDense
