-- cocola.nn.Sigmoid — elementwise activation 1 / (1 + exp(-x)), as a module.
local Module = require "cocola.nn.Module"

local Sigmoid = Module:extend("Sigmoid")

function Sigmoid:forward(x) return x:sigmoid() end

return Sigmoid
