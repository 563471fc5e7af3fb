-- cocola.models.text.roberta_layer — transformers' ClapTextLayer (RoBERTa encoder layer, post-norm):
-- attention, then intermediate (dense + GELU) and output (dense + residual + LayerNorm). State-dict names:
-- attention.*, intermediate.dense, output.{dense,LayerNorm}. forward(x (B, L, hidden), bias or nil) ->
-- (B, L, hidden)
local Module = require "cocola.nn.Module"
local RobertaAttention = require "cocola.models.text.roberta_attention"
local RobertaIntermediate = require "cocola.models.text.roberta_intermediate"
local RobertaOutput = require "cocola.models.text.roberta_output"

local RobertaLayer = Module:extend("RobertaLayer")

--- RobertaLayer(hidden, heads, intermediate, eps)
function RobertaLayer:init(hidden, heads, intermediate, eps)
  self.attention = RobertaAttention(hidden, heads, eps)
  self.intermediate = RobertaIntermediate(hidden, intermediate)
  self.output = RobertaOutput(intermediate, hidden, eps)
end

function RobertaLayer:forward(x, bias)
  local a = self.attention(x, bias)
  return self.output(self.intermediate(a), a)
end

return RobertaLayer
