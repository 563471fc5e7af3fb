-- cocola.models.text.t5_stack — transformers' T5Stack (modeling_t5.py, transformers 4.38.2) as an encoder
-- (no causal mask, no cross-attention, no cache):
--   embed_tokens      Embedding(vocab_size, d_model), the model's `shared` embedding (the same module)
--   block.{i}         T5Block, i = 0 .. num_layers - 1; only block 0 owns relative_attention_bias
--   final_layer_norm  T5LayerNorm(d_model)
-- forward(input_ids int64 (B, L), attention_mask (B, L) or nil) -> (B, L, d_model):
--   h = embed_tokens(ids); bias = block 0's relative position bias (1, H, L, L), plus the mask as
--   (1 - mask) * T5Stack.MASK_VALUE on the keys (B, 1, 1, L); the SAME bias goes to every block;
--   h = block_i(h, bias) for every block; final_layer_norm(h). Dropout (eval) is left out.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local ModuleList = require "cocola.nn.ModuleList"
local T5Block = require "cocola.models.text.t5_block"
local T5LayerNorm = require "cocola.models.text.t5_layer_norm"

local T5Stack = Module:extend("T5Stack")

-- what the reference adds to masked keys: torch.finfo(torch.float32).min (get_extended_attention_mask),
-- not -inf, so a row whose keys are all masked still gets a (uniform) softmax as it does there
T5Stack.MASK_VALUE = -3.4028234663852886e38

--- T5Stack(opts, embed_tokens): opts = T5Block's (without has_relative_attention_bias) plus num_layers
function T5Stack:init(opts, embed_tokens)
  self.embed_tokens = embed_tokens
  local blocks = {}
  for i = 1, opts.num_layers do
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.has_relative_attention_bias = i == 1
    blocks[i] = T5Block(o)
  end
  self.block = ModuleList(blocks)
  self.final_layer_norm = T5LayerNorm(opts.d_model, { eps = opts.eps })
end

--- block 0's relative position bias (1, H, L, L) plus the key mask, (B, H, L, L) when a mask is given
function T5Stack:position_bias(L, attention_mask, like)
  local bias = self.block[1].layer[1].SelfAttention:compute_bias(L, L)
  if attention_mask == nil then return bias end
  local m = attention_mask
  if m:dtype() ~= like:dtype() then m = m:to(like:dtype()) end
  if m:device() ~= like:device() then m = m:to(like:device()) end
  local B = m:size(1)
  return bias + (1 - m):reshape({ B, 1, 1, L }) * T5Stack.MASK_VALUE
end

function T5Stack:forward(input_ids, attention_mask)
  local h = self.embed_tokens(input_ids)
  local bias = self:position_bias(input_ids:size(2), attention_mask, h)
  for i = 1, #self.block do h = self.block[i](h, bias) end
  return self.final_layer_norm(h)
end

return T5Stack
