-- cocola.nn.GELU — elementwise activation x * Phi(x), as a module.
local Module = require "cocola.nn.Module"

local GELU = Module:extend("GELU")

function GELU:forward(x) return x:gelu() end

return GELU
