-- cocola.models.text.gpt2_mlp — transformers' GPT2MLP (modeling_gpt2.py, transformers 4.38.2):
-- c_proj(gelu_new(c_fc(x))), c_fc Conv1D n_embd -> inner, c_proj Conv1D inner -> n_embd. gelu_new is the
-- tanh approximation of GELU (x:gelu("tanh")). x (..., n_embd) -> (..., n_embd).
local Module = require "cocola.nn.Module"
local Conv1D = require "cocola.models.text.conv1d"

local GPT2MLP = Module:extend("GPT2MLP")

--- GPT2MLP(inner, n_embd) — transformers' argument order
function GPT2MLP:init(inner, n_embd)
  self.c_fc = Conv1D(inner, n_embd)
  self.c_proj = Conv1D(n_embd, inner)
end

function GPT2MLP:forward(x) return self.c_proj(self.c_fc(x):gelu("tanh")) end

return GPT2MLP
