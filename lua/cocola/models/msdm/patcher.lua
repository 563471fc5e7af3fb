-- cocola.models.msdm.patcher — audio-diffusion-pytorch 0.0.43 Patcher: `blocks` PatchBlocks in a row (the
-- reference's ConditionedSequential, children under module_list.{0..}), in_channels -> in f -> in f^2 -> ... ->
-- out_channels, each dividing the length by factor f. x (B, in, L), mapping -> (B, out, L / f^blocks).
local nn = require "cocola.nn"
local PatchBlock = require "cocola.models.msdm.patch_block"

local Patcher = nn.Module:extend("Patcher")

--- Patcher(in_channels, out_channels, {blocks, factor, context_mapping_features = nil})
function Patcher:init(in_channels, out_channels, opts)
  local blocks, factor = opts.blocks, opts.factor
  local list = {}
  for i = 0, blocks - 1 do
    local pre = in_channels * factor ^ i
    local post = i < blocks - 1 and in_channels * factor ^ (i + 1) or out_channels
    list[#list + 1] = PatchBlock(math.tointeger(pre), math.tointeger(post), { patch_size = factor,
      context_mapping_features = opts.context_mapping_features })
  end
  self.module_list = nn.ModuleList(list)
end

function Patcher:forward(x, mapping)
  for _, block in ipairs(self.module_list:children()) do x = block(x, mapping) end
  return x
end

return Patcher
