-- cocola.nn.Upsample — nearest-neighbour upsampling of (N,C,H,W) or (N,C,L) by a scale factor or to a
-- size, as torch.nn.Upsample(mode = "nearest") (see nn.functional.interpolate).
local Module = require "cocola.nn.Module"
local F = require "cocola.nn.functional"

local Upsample = Module:extend("Upsample")

--- Upsample{scale_factor = s | size = n | {h, w}, mode = "nearest"}
function Upsample:init(opts)
  opts = opts or {}
  if (opts.size == nil) == (opts.scale_factor == nil) then error("Upsample: give exactly one of size and scale_factor", 3) end
  if (opts.mode or "nearest") ~= "nearest" then error('Upsample: only mode = "nearest" is supported', 3) end
  self.size, self.scale_factor, self.mode = opts.size, opts.scale_factor, "nearest"
end

function Upsample:forward(x)
  return F.interpolate(x, { size = self.size, scale_factor = self.scale_factor, mode = self.mode })
end

function Upsample:extra_repr()
  local r = Module.pyrepr
  if self.size then return "size=" .. r(self.size) .. ", mode='nearest'" end
  local sf = self.scale_factor
  return "scale_factor=" .. r(type(sf) == "number" and sf + 0.0 or sf) .. ", mode='nearest'"
end

return Upsample
