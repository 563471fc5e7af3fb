-- cocola.models.audioldm2.attention — diffusers' Attention (the default processor): multi-head
-- attention with to_q / to_k / to_v (bias optional) and to_out.0 (bias), an optional GroupNorm on the
-- input (the VAE's mid-block attention) and an optional residual connection.
-- x (B, L, query_dim) or (B, C, H, W) (then tokens are the H*W positions); context (B, S, cross_dim) or
-- nil (self-attention); mask: an additive bias (B, 1, S) (0 keep, -10000 drop) or nil.
local nn = require "cocola.nn"
local F = require "cocola.nn.functional"

local Attention = nn.Module:extend("Attention")

--- Attention(query_dim, {cross_attention_dim, heads = 8, dim_head = 64, bias = false, out_bias = true,
--- norm_num_groups, eps = 1e-5, residual_connection = false, rescale_output_factor = 1})
function Attention:init(query_dim, opts)
  opts = opts or {}
  self.heads, self.dim_head = opts.heads or 8, opts.dim_head or 64
  self.query_dim = query_dim
  self.cross_attention_dim = opts.cross_attention_dim or query_dim
  local inner = self.heads * self.dim_head
  self.residual_connection = opts.residual_connection or false
  self.rescale_output_factor = opts.rescale_output_factor or 1
  if opts.norm_num_groups then
    self.group_norm = nn.GroupNorm(opts.norm_num_groups, query_dim, { eps = opts.eps or 1e-5 })
  end
  local bias = opts.bias or false
  self.to_q = nn.Linear(query_dim, inner, { bias = bias })
  self.to_k = nn.Linear(self.cross_attention_dim, inner, { bias = bias })
  self.to_v = nn.Linear(self.cross_attention_dim, inner, { bias = bias })
  self.to_out = nn.ModuleList({ nn.Linear(inner, query_dim, { bias = opts.out_bias ~= false }) })
end

-- (B, L, heads * d) -> (B, heads, L, d)
local function split_heads(t, heads)
  local B, L = t:size(1), t:size(2)
  return t:reshape({ B, L, heads, t:size(3) // heads }):transpose(2, 3)
end

function Attention:forward(x, context, mask)
  local residual, spatial = x, nil
  if x:dim() == 4 then
    spatial = x.shape
    x = x:reshape({ spatial[1], spatial[2], spatial[3] * spatial[4] }):transpose(2, 3)
  end
  if x:dim() ~= 3 or x:size(3) ~= self.query_dim then
    error(string.format("Attention: expected input (B, L, %d) or (B, %d, H, W), got %s", self.query_dim,
      self.query_dim, residual:shape_string()), 2)
  end
  if self.group_norm then x = self.group_norm(x:transpose(2, 3)):transpose(2, 3) end
  local kv = context or x
  if context ~= nil and (context:dim() ~= 3 or context:size(3) ~= self.cross_attention_dim or context:size(1) ~= x:size(1)) then
    error(string.format("Attention: expected context states (%d, S, %d), got %s", x:size(1),
      self.cross_attention_dim, context:shape_string()), 2)
  end
  local q = split_heads(self.to_q(x), self.heads)
  local k = split_heads(self.to_k(kv), self.heads)
  local v = split_heads(self.to_v(kv), self.heads)
  local attn_mask
  if mask ~= nil then
    if mask:dim() ~= 3 or mask:size(1) ~= x:size(1) or mask:size(3) ~= kv:size(2) then
      error(string.format("Attention: the attention mask must be (%d, 1, %d) for %d keys, got %s", x:size(1),
        kv:size(2), kv:size(2), mask:shape_string()), 2)
    end
    attn_mask = mask:unsqueeze(2) -- (B, 1, 1, S) over (B, heads, L, S)
  end
  local o = F.scaled_dot_product_attention(q, k, v, { attn_mask = attn_mask })
  o = o:transpose(2, 3):reshape({ x:size(1), x:size(2), self.heads * self.dim_head })
  o = self.to_out[1](o)
  if spatial then o = o:transpose(2, 3):reshape(spatial) end
  if self.residual_connection then o = o + residual end
  if self.rescale_output_factor ~= 1 then o = o * (1 / self.rescale_output_factor) end
  return o
end

return Attention
