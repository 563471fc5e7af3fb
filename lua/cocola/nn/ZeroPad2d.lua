-- cocola.nn.ZeroPad2d — zero padding of the last two dims: an integer (all sides) or
-- {left, right, top, bottom} (torch's order).
local Module = require "cocola.nn.Module"
local F = require "cocola.nn.functional"

local ZeroPad2d = Module:extend("ZeroPad2d")

function ZeroPad2d:init(padding)
  if math.type(padding) == "integer" then
    self.padding = { padding, padding, padding, padding }
  elseif type(padding) == "table" and #padding == 4 then
    self.padding = { padding[1], padding[2], padding[3], padding[4] }
  else
    error("ZeroPad2d: padding must be an integer or {left, right, top, bottom}", 3)
  end
end

function ZeroPad2d:forward(x) return F.pad(x, self.padding, 0) end

function ZeroPad2d:extra_repr() return Module.pyrepr(self.padding) end

return ZeroPad2d
