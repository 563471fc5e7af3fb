-- cocola.nn.GELU — elementwise activation x * Phi(x), or its tanh approximation
-- (GELU{approximate = "tanh"}, GPT-2's and T5's "gelu_new"), as a module.
local Module = require "cocola.nn.Module"

local GELU = Module:extend("GELU")

--- GELU([{approximate = "none" | "tanh"}]) (or the string itself)
function GELU:init(opts)
  local approximate = type(opts) == "table" and opts.approximate or opts or "none"
  if approximate ~= "none" and approximate ~= "tanh" then
    error('GELU: approximate must be "none" or "tanh", got ' .. tostring(approximate), 3)
  end
  self.approximate = approximate
end

function GELU:forward(x) return x:gelu(self.approximate) end

function GELU:extra_repr() return self.approximate == "none" and "" or "approximate='tanh'" end

return GELU
