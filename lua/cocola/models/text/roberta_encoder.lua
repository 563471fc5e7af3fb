-- cocola.models.text.roberta_encoder — transformers' ClapTextEncoder (RoBERTa): a stack of layers.
-- State-dict names: layer.{i}.* (0-based). forward(x (B, L, hidden), bias or nil) -> (B, L, hidden)
local Module = require "cocola.nn.Module"
local nn = require "cocola.nn"
local RobertaLayer = require "cocola.models.text.roberta_layer"

local RobertaEncoder = Module:extend("RobertaEncoder")

--- RobertaEncoder(num_layers, hidden, heads, intermediate, eps)
function RobertaEncoder:init(num_layers, hidden, heads, intermediate, eps)
  local layers = {}
  for i = 1, num_layers do layers[i] = RobertaLayer(hidden, heads, intermediate, eps) end
  self.num_layers = num_layers
  self.layer = nn.ModuleList(layers)
end

function RobertaEncoder:forward(x, bias)
  for i = 1, self.num_layers do x = self.layer[i](x, bias) end
  return x
end

return RobertaEncoder
