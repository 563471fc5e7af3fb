-- cocola.models.text.roberta_output — transformers' ClapTextSelfOutput / ClapTextOutput (RoBERTa, the
-- same shape for both): LayerNorm(dense(x) + residual). State-dict names: dense (Linear in -> hidden),
-- LayerNorm. forward(x (B, L, in), residual (B, L, hidden)) -> (B, L, hidden); no dropout (inference).
local Module = require "cocola.nn.Module"
local nn = require "cocola.nn"

local RobertaOutput = Module:extend("RobertaOutput")

--- RobertaOutput(in_features, hidden, eps)
function RobertaOutput:init(in_features, hidden, eps)
  self.dense = nn.Linear(in_features, hidden)
  self.LayerNorm = nn.LayerNorm(hidden, { eps = eps or 1e-12 })
end

function RobertaOutput:forward(x, residual)
  return self.LayerNorm(self.dense(x) + residual)
end

return RobertaOutput
