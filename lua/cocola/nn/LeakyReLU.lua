-- cocola.nn.LeakyReLU — x for x > 0, negative_slope * x otherwise (default slope 0.01), as a module.
local Module = require "cocola.nn.Module"

local LeakyReLU = Module:extend("LeakyReLU")

--- LeakyReLU([negative_slope = 0.01])
function LeakyReLU:init(negative_slope)
  if negative_slope ~= nil and type(negative_slope) ~= "number" then error("LeakyReLU: negative_slope must be a number", 3) end
  self.negative_slope = negative_slope or 0.01
end

function LeakyReLU:forward(x) return x:leaky_relu(self.negative_slope) end

function LeakyReLU:extra_repr() return "negative_slope=" .. Module.pyrepr(self.negative_slope + 0.0) end

return LeakyReLU
