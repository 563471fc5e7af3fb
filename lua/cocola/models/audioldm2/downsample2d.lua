-- cocola.models.audioldm2.downsample2d — diffusers' Downsample2D with a convolution: a 3x3 conv of stride
-- 2 with `padding` on every side; padding 0 is the VAE's variant, which first pads one zero column on the
-- right and one zero row at the bottom. (B, C, H, W) -> (B, C, ceil-ish(H / 2), ceil-ish(W / 2)).
local nn = require "cocola.nn"
local F = require "cocola.nn.functional"

local Downsample2D = nn.Module:extend("Downsample2D")

--- Downsample2D(channels, {padding = 1})
function Downsample2D:init(channels, opts)
  self.padding = (opts or {}).padding or 1
  self.conv = nn.Conv2d(channels, channels, 3, { stride = 2, padding = self.padding })
end

function Downsample2D:forward(x)
  if self.padding == 0 then x = F.pad(x, { 0, 1, 0, 1 }, 0) end
  return self.conv(x)
end

return Downsample2D
