-- cocola.models.text.htsat_dense — one Linear named `dense`, optionally followed by an activation: the shape
-- of transformers' ClapAudioSelfOutput (attention.output), ClapAudioIntermediate (intermediate, with the
-- hidden_act) and ClapAudioOutput (output) in the HTSAT audio tower (modeling_clap.py, transformers 4.38.2).
-- State-dict names: dense.weight (out, in), dense.bias (out). forward(x (..., in)) -> (..., out); dropout is
-- not applied (inference).
local Module = require "cocola.nn.Module"
local nn = require "cocola.nn"
local F = require "cocola.nn.functional"

local HtsatDense = Module:extend("HtsatDense")

--- HtsatDense(in_features, out_features, activation): activation nil (none) or "gelu" (exact erf gelu)
function HtsatDense:init(in_features, out_features, activation)
  if activation ~= nil and activation ~= "gelu" then
    error("HtsatDense: activation must be nil or 'gelu', got " .. tostring(activation), 3)
  end
  self.activation = activation
  self.dense = nn.Linear(in_features, out_features)
end

function HtsatDense:forward(x)
  local y = self.dense(x)
  if self.activation == "gelu" then y = F.gelu(y) end
  return y
end

return HtsatDense
