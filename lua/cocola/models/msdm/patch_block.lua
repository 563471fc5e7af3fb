-- cocola.models.msdm.patch_block — audio-diffusion-pytorch 0.0.43 PatchBlock: a ResnetBlock1d to
-- out_channels / patch_size channels (GroupNorm groups min(patch_size, in_channels)), then every patch_size
-- consecutive samples folded into channels, "b c (l p) -> b (c p) l".
-- x (B, in, L) -> (B, out, L / patch_size). Parameters under block.*.
local nn = require "cocola.nn"
local ResnetBlock1d = require "cocola.models.msdm.resnet_block1d"

local PatchBlock = nn.Module:extend("PatchBlock")

--- PatchBlock(in_channels, out_channels, {patch_size = 2, context_mapping_features = nil})
function PatchBlock:init(in_channels, out_channels, opts)
  opts = opts or {}
  local patch_size = opts.patch_size or 2
  if out_channels % patch_size ~= 0 then
    error(string.format("PatchBlock: out_channels (%d) must be divisible by patch_size (%d)", out_channels,
      patch_size), 3)
  end
  self.patch_size = patch_size
  self.block = ResnetBlock1d(in_channels, out_channels // patch_size, { num_groups = math.min(patch_size, in_channels),
    context_mapping_features = opts.context_mapping_features })
end

function PatchBlock:forward(x, mapping)
  x = self.block(x, mapping)
  local B, C, L, p = x:size(1), x:size(2), x:size(3), self.patch_size
  return x:reshape({ B, C, L // p, p }):permute({ 1, 2, 4, 3 }):reshape({ B, C * p, L // p })
end

return PatchBlock
