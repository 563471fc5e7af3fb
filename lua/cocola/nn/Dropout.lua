-- cocola.nn.Dropout — zeroes elements with probability p and scales the rest by 1/(1-p) in
-- training; the identity in eval.
local Module = require "cocola.nn.Module"
local F = require "cocola.nn.functional"

local Dropout = Module:extend("Dropout")

--- Dropout(p = 0.5)
function Dropout:init(p)
  p = p or 0.5
  if type(p) ~= "number" or p < 0 or p > 1 then
    error("dropout probability has to be between 0 and 1, but got " .. tostring(p), 3)
  end
  self.p = p
end

function Dropout:forward(x) return F.dropout(x, self.p, self.training) end

function Dropout:extra_repr() return "p=" .. Module.pyrepr(self.p + 0.0) .. ", inplace=False" end

return Dropout
