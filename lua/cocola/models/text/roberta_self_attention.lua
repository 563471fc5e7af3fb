-- cocola.models.text.roberta_self_attention — transformers' ClapTextSelfAttention (RoBERTa self-attention,
-- absolute positions, encoder only, transformers 4.38.2). State-dict names: query, key, value (Linear
-- hidden -> hidden). forward(x (B, L, hidden), bias (B, 1, 1, L) additive or nil) -> (B, L, hidden), the
-- heads concatenated; scores q k^T / sqrt(head_dim) + bias, softmax over keys.
local Module = require "cocola.nn.Module"
local nn = require "cocola.nn"
local F = require "cocola.nn.functional"

local RobertaSelfAttention = Module:extend("RobertaSelfAttention")

function RobertaSelfAttention:init(hidden, heads)
  if hidden % heads ~= 0 then
    error(string.format("RobertaSelfAttention: hidden_size (%d) must be divisible by num_attention_heads (%d)",
      hidden, heads), 3)
  end
  self.hidden, self.num_heads, self.head_dim = hidden, heads, hidden // heads
  self.query = nn.Linear(hidden, hidden)
  self.key = nn.Linear(hidden, hidden)
  self.value = nn.Linear(hidden, hidden)
end

-- (B, L, heads * d) -> (B, heads, L, d)
local function split_heads(t, heads, d)
  return t:reshape({ t:size(1), t:size(2), heads, d }):transpose(2, 3)
end

function RobertaSelfAttention:forward(x, bias)
  local B, L = x:size(1), x:size(2)
  local q = split_heads(self.query(x), self.num_heads, self.head_dim)
  local k = split_heads(self.key(x), self.num_heads, self.head_dim)
  local v = split_heads(self.value(x), self.num_heads, self.head_dim)
  local o = F.scaled_dot_product_attention(q, k, v, { attn_mask = bias, scale = 1 / math.sqrt(self.head_dim) })
  return o:transpose(2, 3):reshape({ B, L, self.hidden })
end

return RobertaSelfAttention
