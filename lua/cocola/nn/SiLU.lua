-- cocola.nn.SiLU — elementwise activation x * sigmoid(x) (swish), as a module.
local Module = require "cocola.nn.Module"

local SiLU = Module:extend("SiLU")

function SiLU:forward(x) return x:silu() end

return SiLU
