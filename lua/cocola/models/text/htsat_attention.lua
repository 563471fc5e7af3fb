-- cocola.models.text.htsat_attention — transformers' ClapAudioAttention: window self-attention
-- (htsat_self_attention.lua) and its output projection (modeling_clap.py, transformers 4.38.2).
-- State-dict names: self.{query,key,value,relative_position_bias_table,relative_position_index},
--   output.dense. forward(x (B * nW, N, dim), mask (nW, N, N) or nil) -> (B * nW, N, dim).
local Module = require "cocola.nn.Module"
local HtsatSelfAttention = require "cocola.models.text.htsat_self_attention"
local HtsatDense = require "cocola.models.text.htsat_dense"

local HtsatAttention = Module:extend("HtsatAttention")

function HtsatAttention:init(dim, heads, window_size, qkv_bias)
  self.self = HtsatSelfAttention(dim, heads, window_size, qkv_bias)
  self.output = HtsatDense(dim, dim)
end

function HtsatAttention:forward(x, mask)
  return self.output(self.self(x, mask))
end

return HtsatAttention
