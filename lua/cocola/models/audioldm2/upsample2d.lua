-- cocola.models.audioldm2.upsample2d — diffusers' Upsample2D with a convolution: nearest-neighbour x2
-- (or to a given size, which the U-Net forwards when the latent is not a multiple of its total
-- downsampling) then a 3x3 conv. (B, C, H, W) -> (B, C, 2H, 2W) or (B, C, size).
local nn = require "cocola.nn"
local F = require "cocola.nn.functional"

local Upsample2D = nn.Module:extend("Upsample2D")

function Upsample2D:init(channels)
  self.conv = nn.Conv2d(channels, channels, 3, { padding = 1 })
end

--- forward(x[, size = {h, w}])
function Upsample2D:forward(x, size)
  if size then x = F.interpolate(x, { size = size }) else x = F.interpolate(x, { scale_factor = 2 }) end
  return self.conv(x)
end

return Upsample2D
