-- cocola.nn.Tanh — elementwise activation tanh(x), as a module.
local Module = require "cocola.nn.Module"

local Tanh = Module:extend("Tanh")

function Tanh:forward(x) return x:tanh() end

return Tanh
