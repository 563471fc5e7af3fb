-- cocola.models.msdm.bottleneck_block1d — audio-diffusion-pytorch 0.0.43 BottleneckBlock1d: pre_block
-- (ResnetBlock1d), then with use_attention an Attention over the positions (through EinopsToAndFrom, with no
-- residual around it, as in the reference), then post_block. x (B, C, L), mapping (B, M) -> (B, C, L).
-- Submodule names are the reference's: pre_block, attention.fn, post_block.
local nn = require "cocola.nn"
local ResnetBlock1d = require "cocola.models.msdm.resnet_block1d"
local Attention = require "cocola.models.msdm.attention"
local EinopsToAndFrom = require "cocola.models.msdm.einops_to_and_from"

local BottleneckBlock1d = nn.Module:extend("BottleneckBlock1d")

--- BottleneckBlock1d(channels, {num_groups, use_attention = false, attention_heads, attention_features,
--- context_mapping_features})
function BottleneckBlock1d:init(channels, opts)
  self.use_attention = opts.use_attention or false
  local block_opts = { num_groups = opts.num_groups, context_mapping_features = opts.context_mapping_features }
  self.pre_block = ResnetBlock1d(channels, channels, block_opts)
  if self.use_attention then
    self.attention = EinopsToAndFrom(Attention(channels, { num_heads = opts.attention_heads,
      head_features = opts.attention_features }))
  end
  self.post_block = ResnetBlock1d(channels, channels, block_opts)
end

function BottleneckBlock1d:forward(x, mapping)
  x = self.pre_block(x, mapping)
  if self.use_attention then x = self.attention(x) end
  return self.post_block(x, mapping)
end

return BottleneckBlock1d
