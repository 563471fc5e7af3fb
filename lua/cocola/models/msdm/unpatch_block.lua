-- cocola.models.msdm.unpatch_block — audio-diffusion-pytorch 0.0.43 UnpatchBlock: channels unfolded into
-- patch_size consecutive samples, "b (c p) l -> b c (l p)", then a ResnetBlock1d from in_channels / patch_size
-- channels (GroupNorm groups min(patch_size, out_channels)). x (B, in, L) -> (B, out, L patch_size).
-- Parameters under block.*.
local nn = require "cocola.nn"
local ResnetBlock1d = require "cocola.models.msdm.resnet_block1d"

local UnpatchBlock = nn.Module:extend("UnpatchBlock")

--- UnpatchBlock(in_channels, out_channels, {patch_size = 2, context_mapping_features = nil})
function UnpatchBlock:init(in_channels, out_channels, opts)
  opts = opts or {}
  local patch_size = opts.patch_size or 2
  if in_channels % patch_size ~= 0 then
    error(string.format("UnpatchBlock: in_channels (%d) must be divisible by patch_size (%d)", in_channels,
      patch_size), 3)
  end
  self.patch_size = patch_size
  self.block = ResnetBlock1d(in_channels // patch_size, out_channels, { num_groups = math.min(patch_size,
    out_channels), context_mapping_features = opts.context_mapping_features })
end

function UnpatchBlock:forward(x, mapping)
  local B, C, L, p = x:size(1), x:size(2), x:size(3), self.patch_size
  x = x:reshape({ B, C // p, p, L }):permute({ 1, 2, 4, 3 }):reshape({ B, C // p, L * p })
  return self.block(x, mapping)
end

return UnpatchBlock
