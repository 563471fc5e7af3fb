-- cocola.nn.Linear — y = x W^T + b with W (out, in); PyTorch's default initialisation
-- (W and b uniform in +-1/sqrt(in_features)).
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local F = require "cocola.nn.functional"
local init = require "cocola.nn.init_weights"

local Linear = Module:extend("Linear")

--- Linear(in_features, out_features, {bias = true, dtype = "float32"})
function Linear:init(in_features, out_features, opts)
  opts = opts or {}
  assert(math.type(in_features) == "integer" and in_features >= 0, "Linear: in_features must be a non-negative integer")
  assert(math.type(out_features) == "integer" and out_features >= 0, "Linear: out_features must be a non-negative integer")
  self.in_features, self.out_features = in_features, out_features
  local dtype = opts.dtype or "float32"
  self:register_weight_and_bias({ out_features, in_features }, opts.bias ~= false, dtype)
end

function Linear:reset_parameters()
  init.linear_default_(self.weight, self.bias)
end

function Linear:forward(x) return F.linear(x, self.weight, self.bias) end

function Linear:extra_repr()
  return string.format("in_features=%d, out_features=%d, bias=%s", self.in_features, self.out_features,
    Module.pyrepr(self.bias ~= nil))
end

return Linear
