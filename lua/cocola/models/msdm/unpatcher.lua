-- cocola.models.msdm.unpatcher — audio-diffusion-pytorch 0.0.43 Unpatcher: `blocks` UnpatchBlocks in a row
-- (children under module_list.{0..}), in_channels -> out f^(blocks-1) -> ... -> out_channels, each multiplying
-- the length by factor f. x (B, in, L), mapping -> (B, out, L f^blocks).
local nn = require "cocola.nn"
local UnpatchBlock = require "cocola.models.msdm.unpatch_block"

local Unpatcher = nn.Module:extend("Unpatcher")

--- Unpatcher(in_channels, out_channels, {blocks, factor, context_mapping_features = nil})
function Unpatcher:init(in_channels, out_channels, opts)
  local blocks, factor = opts.blocks, opts.factor
  local list = {}
  for i = 0, blocks - 1 do
    local pre = i == 0 and in_channels or out_channels * factor ^ (blocks - i)
    local post = out_channels * factor ^ (blocks - 1 - i)
    list[#list + 1] = UnpatchBlock(math.tointeger(pre), math.tointeger(post), { patch_size = factor,
      context_mapping_features = opts.context_mapping_features })
  end
  self.module_list = nn.ModuleList(list)
end

function Unpatcher:forward(x, mapping)
  for _, block in ipairs(self.module_list:children()) do x = block(x, mapping) end
  return x
end

return Unpatcher
