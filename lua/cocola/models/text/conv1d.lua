-- cocola.models.text.conv1d — transformers' Conv1D (pytorch_utils.py, transformers 4.38.2), the linear
-- layer of GPT-2: despite the name it is a dense layer whose weight is stored (in, out), transposed
-- against nn.Linear, so y = x W + b. State-dict names: weight (nx, nf), bias (nf).
-- x (..., nx) -> (..., nf).
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local init = require "cocola.nn.init_weights"

local Conv1D = Module:extend("Conv1D")

--- Conv1D(nf (out features), nx (in features)) — transformers' argument order
function Conv1D:init(nf, nx)
  if math.type(nf) ~= "integer" or nf < 1 or math.type(nx) ~= "integer" or nx < 1 then
    error("Conv1D: nf and nx must be positive integers", 3)
  end
  self.nf, self.nx = nf, nx
  self:register_parameter("weight", cocola.zeros({ nx, nf }):requires_grad(true))
  self:register_parameter("bias", cocola.zeros({ nf }):requires_grad(true))
  self:reset_parameters()
end

--- transformers' init: weight N(0, 0.02), bias 0
function Conv1D:reset_parameters()
  init.normal_(self.weight, 0, 0.02)
  cocola.no_grad(function() self.bias:fill_(0) end)
end

function Conv1D:forward(x)
  if x:size(x:dim()) ~= self.nx then
    error(string.format("Conv1D: expected input (..., %d), got %s", self.nx, x:shape_string()), 2)
  end
  local shape = x.shape
  local flat = x:reshape({ -1, self.nx })
  local y = flat:matmul(self.weight) + self.bias
  shape[#shape] = self.nf
  return y:reshape(shape)
end

function Conv1D:extra_repr() return string.format("nf=%d, nx=%d", self.nf, self.nx) end

return Conv1D
