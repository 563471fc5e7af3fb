-- cocola.models.text.roberta_attention — transformers' ClapTextAttention (RoBERTa): self-attention then its
-- output (dense + residual + LayerNorm). State-dict names: self.{query,key,value}, output.{dense,LayerNorm}.
-- forward(x (B, L, hidden), bias or nil) -> (B, L, hidden)
local Module = require "cocola.nn.Module"
local RobertaSelfAttention = require "cocola.models.text.roberta_self_attention"
local RobertaOutput = require "cocola.models.text.roberta_output"

local RobertaAttention = Module:extend("RobertaAttention")

function RobertaAttention:init(hidden, heads, eps)
  self.self = RobertaSelfAttention(hidden, heads)
  self.output = RobertaOutput(hidden, hidden, eps)
end

function RobertaAttention:forward(x, bias)
  return self.output(self.self(x, bias), x)
end

return RobertaAttention
