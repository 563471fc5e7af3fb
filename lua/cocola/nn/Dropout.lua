-- cocola.nn.Dropout — zeroes elements with probability p and scales the rest by 1/(1-p) in
-- training; the identity in eval. With `row_subset` set ({index = int64 rows (0-based), total = rows}:
-- a data-parallel rank's rows of the global batch) the mask is drawn for the whole batch and these
-- rows take theirs, so that N ranks drop what one process with the whole batch would.
local cocola = require "cocola"
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

function Dropout:forward(x)
  local subset = self.row_subset
  if subset and self.training and self.p > 0 then
    local shape = table.move(x.shape, 1, x:dim(), 1, {})
    shape[1] = subset.total
    local mask = F.dropout(cocola.ones(shape, { dtype = x:dtype() }), self.p, true):index_select(1, subset.index)
    if x:device() ~= "cpu" then mask = mask:to(x:device()) end
    return x * mask
  end
  return F.dropout(x, self.p, self.training)
end

function Dropout:extra_repr() return "p=" .. Module.pyrepr(self.p + 0.0) .. ", inplace=False" end

return Dropout
