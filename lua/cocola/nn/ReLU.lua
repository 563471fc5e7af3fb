-- cocola.nn.ReLU — elementwise activation max(x, 0), as a module.
local Module = require "cocola.nn.Module"

local ReLU = Module:extend("ReLU")

function ReLU:forward(x) return x:relu() end

return ReLU
