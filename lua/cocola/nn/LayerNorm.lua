-- cocola.nn.LayerNorm — normalisation over the trailing normalized_shape dims with an optional
-- elementwise affine (weight 1, bias 0 at start), as torch.nn.LayerNorm.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local F = require "cocola.nn.functional"

local LayerNorm = Module:extend("LayerNorm")

--- LayerNorm(normalized_shape (integer or table), {eps = 1e-5, elementwise_affine = true, dtype})
function LayerNorm:init(normalized_shape, opts)
  opts = opts or {}
  local shape
  if math.type(normalized_shape) == "integer" then
    shape = { normalized_shape }
  elseif type(normalized_shape) == "table" and #normalized_shape > 0 then
    shape = {}
    for i, s in ipairs(normalized_shape) do
      if math.type(s) ~= "integer" or s < 1 then error("LayerNorm: normalized_shape entries must be positive integers", 3) end
      shape[i] = s
    end
  else
    error("LayerNorm: normalized_shape must be an integer or a table of integers", 3)
  end
  self.normalized_shape = shape
  self.eps = opts.eps or 1e-5
  self.elementwise_affine = opts.elementwise_affine ~= false
  local dtype = opts.dtype or "float32"
  if self.elementwise_affine then
    self:register_parameter("weight", cocola.ones(shape, { dtype = dtype }):requires_grad(true))
    self:register_parameter("bias", cocola.zeros(shape, { dtype = dtype }):requires_grad(true))
  else
    self:register_parameter("weight", nil)
    self:register_parameter("bias", nil)
  end
end

function LayerNorm:forward(x)
  return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
end

function LayerNorm:extra_repr()
  local r = Module.pyrepr
  return string.format("%s, eps=%s, elementwise_affine=%s", r(self.normalized_shape), r(self.eps + 0.0),
    r(self.elementwise_affine))
end

return LayerNorm
