-- cocola.models.text.roberta_pooler — transformers' ClapTextPooler (RoBERTa): tanh(dense(h[:, 0])), the
-- first token (<s>) of the last hidden state. State-dict name: dense (Linear hidden -> hidden).
-- forward(h (B, L, hidden)) -> (B, hidden)
local Module = require "cocola.nn.Module"
local nn = require "cocola.nn"
local F = require "cocola.nn.functional"

local RobertaPooler = Module:extend("RobertaPooler")

function RobertaPooler:init(hidden)
  self.dense = nn.Linear(hidden, hidden)
end

function RobertaPooler:forward(h)
  local first = h:narrow(2, 1, 1):reshape({ h:size(1), h:size(3) })
  return F.tanh(self.dense(first))
end

return RobertaPooler
