-- cocola.nn.ELU — x for x > 0, alpha (exp(x) - 1) otherwise (default alpha 1), as a module.
local Module = require "cocola.nn.Module"

local ELU = Module:extend("ELU")

--- ELU([alpha = 1])
function ELU:init(alpha)
  if alpha ~= nil and type(alpha) ~= "number" then error("ELU: alpha must be a number", 3) end
  self.alpha = alpha or 1.0
end

function ELU:forward(x) return x:elu(self.alpha) end

function ELU:extra_repr() return "alpha=" .. Module.pyrepr(self.alpha + 0.0) end

return ELU
