-- cocola.nn.AdaptiveAvgPool2d — average pooling of NCHW input to a fixed output size (an integer
-- or {h, w}); AdaptiveAvgPool2d(1) is global average pooling.
local Module = require "cocola.nn.Module"
local F = require "cocola.nn.functional"

local AdaptiveAvgPool2d = Module:extend("AdaptiveAvgPool2d")

function AdaptiveAvgPool2d:init(output_size)
  if math.type(output_size) ~= "integer" and not (type(output_size) == "table" and #output_size == 2) then
    error("AdaptiveAvgPool2d: output_size must be an integer or {h, w}", 3)
  end
  self.output_size = output_size
end

function AdaptiveAvgPool2d:forward(x) return F.adaptive_avg_pool2d(x, self.output_size) end

function AdaptiveAvgPool2d:extra_repr() return "output_size=" .. Module.pyrepr(self.output_size) end

return AdaptiveAvgPool2d
