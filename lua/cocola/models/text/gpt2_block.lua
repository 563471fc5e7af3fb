-- cocola.models.text.gpt2_block — transformers' GPT2Block (modeling_gpt2.py, transformers 4.38.2), pre-norm:
--   x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))
-- State-dict names: ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj.
-- forward(x (B, L, E), bias, past) -> (B, L, E), the layer's new {k, v} cache (see gpt2_attention.lua).
local nn = require "cocola.nn"
local GPT2Attention = require "cocola.models.text.gpt2_attention"
local GPT2MLP = require "cocola.models.text.gpt2_mlp"

local GPT2Block = nn.Module:extend("GPT2Block")

--- GPT2Block(n_embd, n_head, {inner = 4 n_embd, eps = 1e-5, layer_idx = 0, scale_by_inverse_layer_idx = false})
function GPT2Block:init(n_embd, n_head, opts)
  opts = opts or {}
  local eps = opts.eps or 1e-5
  self.ln_1 = nn.LayerNorm(n_embd, { eps = eps })
  self.attn = GPT2Attention(n_embd, n_head, { layer_idx = opts.layer_idx,
    scale_by_inverse_layer_idx = opts.scale_by_inverse_layer_idx })
  self.ln_2 = nn.LayerNorm(n_embd, { eps = eps })
  self.mlp = GPT2MLP(opts.inner or 4 * n_embd, n_embd)
end

function GPT2Block:forward(x, bias, past)
  local a, cache = self.attn(self.ln_1(x), bias, past)
  x = x + a
  return x + self.mlp(self.ln_2(x)), cache
end

return GPT2Block
