-- cocola.models.msdm.layer_norm1d — audio-diffusion-pytorch 0.0.43 LayerNorm1d: normalisation over the
-- channels of (B, C, L) input, (x - mean) / sqrt(var + eps) g [+ b], biased variance, eps 1e-5.
-- Parameters g (1, C, 1) and, with bias, b (1, C, 1).
local cocola = require "cocola"
local nn = require "cocola.nn"

local LayerNorm1d = nn.Module:extend("LayerNorm1d")

--- LayerNorm1d(channels, {bias = true, eps = 1e-5})
function LayerNorm1d:init(channels, opts)
  opts = opts or {}
  self.channels, self.eps = channels, opts.eps or 1e-5
  self.g = cocola.ones({ 1, channels, 1 }):requires_grad(true)
  if opts.bias ~= false then self.b = cocola.zeros({ 1, channels, 1 }):requires_grad(true) end
end

function LayerNorm1d:forward(x)
  local centred = x - x:mean(2, true)
  local var = (centred * centred):mean(2, true)
  local norm = centred * (var + self.eps):pow(-0.5) * self.g
  return self.b and norm + self.b or norm
end

function LayerNorm1d:extra_repr() return tostring(self.channels) end

return LayerNorm1d
