-- cocola.models.text.t5_layer_norm — transformers' T5LayerNorm (modeling_t5.py, transformers 4.38.2): an RMS
-- norm with no mean subtraction and no bias, y = weight * x / sqrt(mean(x^2, last dim) + eps), the mean of
-- squares taken in float32 whatever the input dtype (a float64 input is normalised in float64).
-- State: weight (hidden_size,), ones at creation. x (..., hidden_size) -> same shape.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"

local T5LayerNorm = Module:extend("T5LayerNorm")

--- T5LayerNorm(hidden_size, {eps = 1e-6})
function T5LayerNorm:init(hidden_size, opts)
  opts = opts or {}
  if math.type(hidden_size) ~= "integer" or hidden_size < 1 then
    error("T5LayerNorm: hidden_size must be a positive integer", 3)
  end
  self.hidden_size, self.eps = hidden_size, opts.eps or 1e-6
  self:register_parameter("weight", cocola.ones({ hidden_size }):requires_grad(true))
end

function T5LayerNorm:forward(x)
  local d = x:dim()
  if x:size(d) ~= self.hidden_size then
    error(string.format("T5LayerNorm: expected (..., %d), got %s", self.hidden_size, x:shape_string()), 2)
  end
  local h = x:dtype() == "float64" and x or x:to("float32")
  local variance = (h * h):mean(d, true)
  h = h * (variance + self.eps):pow(-0.5)
  if h:dtype() ~= self.weight:dtype() then h = h:to(self.weight:dtype()) end
  return self.weight * h
end

function T5LayerNorm:extra_repr() return string.format("(%d,), eps=%s", self.hidden_size, tostring(self.eps)) end

return T5LayerNorm
