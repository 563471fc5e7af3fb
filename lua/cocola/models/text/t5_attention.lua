-- cocola.models.text.t5_attention — transformers' T5Attention (modeling_t5.py, transformers 4.38.2), the
-- encoder's self-attention, with its state-dict names:
--   q, k, v                  Linear(d_model -> inner = num_heads * d_kv, no bias)
--   o                        Linear(inner -> d_model, no bias)
--   relative_attention_bias  Embedding(relative_attention_num_buckets, num_heads), only when
--                            has_relative_attention_bias (block 0 of the stack; its bias is shared by all blocks)
-- forward(x (B, L, d_model), position_bias (1 or B, H, L, L)) -> (B, L, d_model):
--   softmax(q k^T + position_bias) v over heads, then o. There is NO 1/sqrt(d_kv) scaling: T5 folds it
--   into the initialisation of q, so scaled_dot_product_attention gets scale = 1. The attention mask
--   arrives already added into position_bias (see T5Stack).
-- compute_bias(q_len, k_len) -> (1, H, q_len, k_len): the bias of bucket(key position - query position).
-- T5Attention.relative_position_bucket(rel, bidirectional, num_buckets, max_distance) is the bucket rule.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local Linear = require "cocola.nn.Linear"
local Embedding = require "cocola.nn.Embedding"
local F = require "cocola.nn.functional"

local T5Attention = Module:extend("T5Attention")

--- T5Attention{d_model =, d_kv =, num_heads =, has_relative_attention_bias = false,
---   relative_attention_num_buckets = 32, relative_attention_max_distance = 128}
function T5Attention:init(opts)
  for _, k in ipairs({ "d_model", "d_kv", "num_heads" }) do
    if math.type(opts[k]) ~= "integer" or opts[k] < 1 then
      error("T5Attention: " .. k .. " must be a positive integer", 3)
    end
  end
  self.d_model, self.d_kv, self.n_heads = opts.d_model, opts.d_kv, opts.num_heads
  self.inner_dim = self.n_heads * self.d_kv
  self.num_buckets = opts.relative_attention_num_buckets or 32
  self.max_distance = opts.relative_attention_max_distance or 128
  self.has_relative_attention_bias = opts.has_relative_attention_bias == true
  self.q = Linear(self.d_model, self.inner_dim, { bias = false })
  self.k = Linear(self.d_model, self.inner_dim, { bias = false })
  self.v = Linear(self.d_model, self.inner_dim, { bias = false })
  self.o = Linear(self.inner_dim, self.d_model, { bias = false })
  if self.has_relative_attention_bias then
    self.relative_attention_bias = Embedding(self.num_buckets, self.n_heads)
  end
  self.bucket_cache = {}
end

-- x rounded to float32 (T5's bucket arithmetic runs on float32 tensors in the reference)
local f32 = cocola.to_f32

--- The bucket of a relative position rel = key position - query position (an integer), as
--- T5Attention._relative_position_bucket: bidirectional (the encoder) splits num_buckets in two halves,
--- the upper half for rel > 0; within a half, |rel| < max_exact = half/2 is its own bucket and larger
--- distances are log-spaced up to max_distance, beyond which they share the last bucket. The log-spaced
--- value is computed with float32 rounding at each step, as the reference's float32 tensors do, so
--- bucket boundaries land where they land there.
function T5Attention.relative_position_bucket(rel, bidirectional, num_buckets, max_distance)
  local bucket = 0
  if bidirectional then
    num_buckets = num_buckets // 2
    if rel > 0 then bucket = num_buckets end
    rel = math.abs(rel)
  else
    rel = -math.min(rel, 0)
  end
  local max_exact = num_buckets // 2
  if rel < max_exact then return bucket + rel end
  -- max_exact + long(log(rel / max_exact) / log(max_distance / max_exact) * (num_buckets - max_exact))
  local v = f32(math.log(f32(rel / max_exact)))
  v = f32(v / f32(math.log(max_distance / max_exact)))
  v = f32(v * (num_buckets - max_exact))
  local large = max_exact + math.floor(v) -- v >= 0 here, so floor is the reference's truncation
  return bucket + math.min(large, num_buckets - 1)
end

--- (q_len, k_len) int64 tensor of the encoder's (bidirectional) buckets, cached per size
function T5Attention:buckets(q_len, k_len)
  local key = q_len .. "x" .. k_len
  local cached = self.bucket_cache[key]
  if cached then return cached end
  local rows = {}
  for i = 0, q_len - 1 do
    local row = {}
    for j = 0, k_len - 1 do
      row[j + 1] = T5Attention.relative_position_bucket(j - i, true, self.num_buckets, self.max_distance)
    end
    rows[i + 1] = row
  end
  local t = cocola.tensor(rows, { dtype = "int64" })
  self.bucket_cache[key] = t
  return t
end

--- the position bias (1, H, q_len, k_len) of this layer's relative_attention_bias
function T5Attention:compute_bias(q_len, k_len)
  if not self.has_relative_attention_bias then
    error("T5Attention:compute_bias: this layer has no relative_attention_bias (only block 0 has one)", 2)
  end
  local w = self.relative_attention_bias.weight
  local idx = self:buckets(q_len, k_len)
  if idx:device() ~= w:device() then idx = idx:to(w:device()) end
  local values = self.relative_attention_bias(idx)          -- (q, k, H)
  return values:permute(3, 1, 2):unsqueeze(1):contiguous()   -- (1, H, q, k)
end

function T5Attention:forward(x, position_bias)
  local B, L = x:size(1), x:size(2)
  local H, dk = self.n_heads, self.d_kv
  local function heads(t) return t:reshape({ B, L, H, dk }):transpose(2, 3) end -- (B, H, L, dk)
  local q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
  local out = F.scaled_dot_product_attention(q, k, v, { attn_mask = position_bias, scale = 1 })
  return self.o(out:transpose(2, 3):contiguous():reshape({ B, L, self.inner_dim }))
end

function T5Attention:extra_repr()
  return string.format("d_model=%d, d_kv=%d, num_heads=%d, relative_attention_bias=%s", self.d_model, self.d_kv,
    self.n_heads, Module.pyrepr(self.has_relative_attention_bias))
end

return T5Attention
