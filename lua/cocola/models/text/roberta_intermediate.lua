-- cocola.models.text.roberta_intermediate — transformers' ClapTextIntermediate (RoBERTa): exact (erf) GELU
-- of dense(x). State-dict name: dense (Linear hidden -> intermediate). forward(x (B, L, hidden)) ->
-- (B, L, intermediate)
local Module = require "cocola.nn.Module"
local nn = require "cocola.nn"
local F = require "cocola.nn.functional"

local RobertaIntermediate = Module:extend("RobertaIntermediate")

function RobertaIntermediate:init(hidden, intermediate)
  self.dense = nn.Linear(hidden, intermediate)
end

function RobertaIntermediate:forward(x)
  return F.gelu(self.dense(x), "none")
end

return RobertaIntermediate
