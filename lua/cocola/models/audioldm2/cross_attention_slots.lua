-- cocola.models.audioldm2.cross_attention_slots — the attention slots of AudioLDM 2's U-Net blocks: every
-- ResNet layer of a cross-attention block is followed by one Transformer2DModel per entry of the block's
-- cross_attention_dim list, stored flat (attentions[layer * n + slot]). Routing (diffusers
-- modeling_audioldm2.py): slots 0 and 1 with a width read `encoder_hidden_states` (and its mask), slots 2
-- and up read `encoder_hidden_states_1` (and mask_1), a slot without a width (nil) is a second
-- self-attention. Slots are given as a list of widths with `false` for none.
local nn = require "cocola.nn"
local Transformer2DModel = require "cocola.models.audioldm2.transformer2d"
local checkpoint = require "cocola.nn.checkpoint"

local M = {}

--- the Transformer2DModels of `layers` layers: {heads, channels, slots, transformer_layers, groups}
function M.build(o)
  local list = {}
  for _ = 1, o.layers do
    for _, width in ipairs(o.slots) do
      list[#list + 1] = Transformer2DModel(o.heads, o.channels // o.heads, o.channels, {
        num_layers = o.transformer_layers, cross_attention_dim = width or nil, norm_num_groups = o.groups })
    end
  end
  return nn.ModuleList(list)
end

--- fn(...), or checkpoint(fn, ...) when `recompute` (activations recomputed during backward)
function M.call(recompute, fn, ...)
  if recompute then return checkpoint(fn, ...) end
  return fn(...)
end

--- runs the slots of layer `layer` (0-based) on h; ctx = {states, mask, states_1, mask_1}; with `recompute`
--- each transformer is checkpointed (its activations recomputed during backward)
function M.run(attentions, slots, layer, h, ctx, recompute)
  local n = #slots
  for idx, width in ipairs(slots) do
    local context, mask
    if width and idx <= 2 then
      context, mask = ctx.states, ctx.mask
    elseif width then
      context, mask = ctx.states_1, ctx.mask_1
    end
    local attn = attentions[layer * n + idx]
    h = M.call(recompute, attn, h, context, mask)
  end
  return h
end

return M
