-- cocola.models.text.gpt2_attention — transformers' GPT2Attention (modeling_gpt2.py, transformers 4.38.2),
-- self-attention only (no cross-attention), eager path. State-dict names: c_attn (Conv1D n_embd -> 3 n_embd,
-- q | k | v along the last dim), c_proj (Conv1D n_embd -> n_embd); the causal `bias` buffer of the reference
-- is not persistent and is not kept here.
-- forward(x (B, L, E), bias (B or 1, 1, L, P + L) additive, past {k, v} or nil) -> (B, L, E), {k, v} with
-- k, v (B, heads, P + L, head_dim): the cache extended by this call's keys and values.
-- Scores are q k^T / sqrt(head_dim) (scale_attn_weights), further / (layer_idx + 1) when
-- scale_attn_by_inverse_layer_idx; the caller builds `bias` the way the reference masks (see gpt2.lua).
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local F = require "cocola.nn.functional"
local Conv1D = require "cocola.models.text.conv1d"

local GPT2Attention = Module:extend("GPT2Attention")

--- GPT2Attention(n_embd, n_head, {layer_idx = 0, scale_by_inverse_layer_idx = false})
function GPT2Attention:init(n_embd, n_head, opts)
  opts = opts or {}
  if n_embd % n_head ~= 0 then
    error(string.format("GPT2Attention: n_embd (%d) must be divisible by n_head (%d)", n_embd, n_head), 3)
  end
  self.embed_dim, self.num_heads, self.head_dim = n_embd, n_head, n_embd // n_head
  self.scale = 1 / math.sqrt(self.head_dim)
  if opts.scale_by_inverse_layer_idx then self.scale = self.scale / ((opts.layer_idx or 0) + 1) end
  self.c_attn = Conv1D(3 * n_embd, n_embd)
  self.c_proj = Conv1D(n_embd, n_embd)
end

-- (B, L, heads * d) -> (B, heads, L, d)
local function split_heads(t, heads, d)
  return t:reshape({ t:size(1), t:size(2), heads, d }):transpose(2, 3)
end

function GPT2Attention:forward(x, bias, past)
  local B, L, E = x:size(1), x:size(2), self.embed_dim
  local qkv = self.c_attn(x)
  local q = split_heads(qkv:narrow(3, 1, E), self.num_heads, self.head_dim)
  local k = split_heads(qkv:narrow(3, E + 1, E), self.num_heads, self.head_dim)
  local v = split_heads(qkv:narrow(3, 2 * E + 1, E), self.num_heads, self.head_dim)
  if past ~= nil then
    k = cocola.cat({ past[1], k }, 3)
    v = cocola.cat({ past[2], v }, 3)
  end
  local o = F.scaled_dot_product_attention(q, k, v, { attn_mask = bias, scale = self.scale })
  o = o:transpose(2, 3):reshape({ B, L, E })
  return self.c_proj(o), { k, v }
end

return GPT2Attention
