-- cocola.models.text.htsat_stage — transformers' ClapAudioStage (modeling_clap.py, transformers 4.38.2): depth
-- Swin blocks (htsat_layer.lua) at one resolution, every second one shifted by window_size // 2, then patch
-- merging (htsat_patch_merging.lua) except after the last stage.
-- State-dict names: blocks.{i}.*, downsample.{reduction,norm} (all stages but the last).
-- forward(x (B, H * W, dim), H, W) -> (B, H' * W', dim'), with H' = ceil(H / 2), W' = ceil(W / 2),
--   dim' = 2 dim after merging, else unchanged.
local Module = require "cocola.nn.Module"
local nn = require "cocola.nn"
local HtsatLayer = require "cocola.models.text.htsat_layer"
local HtsatPatchMerging = require "cocola.models.text.htsat_patch_merging"

local HtsatStage = Module:extend("HtsatStage")

--- HtsatStage(c, dim, depth, heads, downsample)
function HtsatStage:init(c, dim, depth, heads, downsample)
  self.blocks = nn.ModuleList()
  for i = 0, depth - 1 do
    self.blocks:append(HtsatLayer(c, dim, heads, i % 2 == 0 and 0 or c.window_size // 2))
  end
  if downsample then self.downsample = HtsatPatchMerging(dim) end
end

function HtsatStage:forward(x, H, W)
  for _, block in ipairs(self.blocks) do x = block(x, H, W) end
  if self.downsample then return self.downsample(x, H, W) end
  return x
end

return HtsatStage
