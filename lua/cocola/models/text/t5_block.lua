-- cocola.models.text.t5_block — transformers' T5Block (modeling_t5.py, transformers 4.38.2) of an encoder:
--   layer.0  T5LayerSelfAttention   (layer.0.SelfAttention.{q,k,v,o}, layer.0.layer_norm; block 0 also
--            layer.0.SelfAttention.relative_attention_bias)
--   layer.1  T5LayerFF              (layer.1.DenseReluDense.{wi_0,wi_1,wo} or {wi,wo}, layer.1.layer_norm)
-- forward(x (B, L, d_model), position_bias (1 or B, H, L, L), mask already added) -> (B, L, d_model).
-- The float16 clamp of the reference is not needed in float32 and left out.
local Module = require "cocola.nn.Module"
local ModuleList = require "cocola.nn.ModuleList"
local T5LayerSelfAttention = require "cocola.models.text.t5_layer_self_attention"
local T5LayerFF = require "cocola.models.text.t5_layer_ff"

local T5Block = Module:extend("T5Block")

--- T5Block{d_model =, d_ff =, d_kv =, num_heads =, has_relative_attention_bias = false,
---   relative_attention_num_buckets =, relative_attention_max_distance =, gated = true, act = "gelu_new",
---   eps = 1e-6}
function T5Block:init(opts)
  self.layer = ModuleList({
    T5LayerSelfAttention(opts, { eps = opts.eps }),
    T5LayerFF(opts.d_model, opts.d_ff, { gated = opts.gated, act = opts.act, eps = opts.eps }),
  })
end

function T5Block:forward(x, position_bias)
  x = self.layer[1](x, position_bias)
  return self.layer[2](x)
end

return T5Block
