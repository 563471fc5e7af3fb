-- cocola.models.msdm.layer_norm — audio-diffusion-pytorch 0.0.43 LayerNorm: normalisation over the last dim,
-- (x - mean) / sqrt(var + eps) g [+ b], biased variance, eps 1e-5. Parameters g (features) and, with bias, b.
-- x (..., features) -> the same shape.
local cocola = require "cocola"
local nn = require "cocola.nn"
local F = require "cocola.nn.functional"

local LayerNorm = nn.Module:extend("LayerNorm")

--- LayerNorm(features, {bias = true, eps = 1e-5})
function LayerNorm:init(features, opts)
  opts = opts or {}
  self.features, self.eps = features, opts.eps or 1e-5
  self.g = cocola.ones({ features }):requires_grad(true)
  if opts.bias ~= false then self.b = cocola.zeros({ features }):requires_grad(true) end
end

function LayerNorm:forward(x)
  return F.layer_norm(x, { self.features }, self.g, self.b, self.eps)
end

function LayerNorm:extra_repr() return tostring(self.features) end

return LayerNorm
