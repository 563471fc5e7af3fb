-- cocola.models.msdm.einops_to_and_from — einops_exts' EinopsToAndFrom("b c l", "b l c", fn) as the reference
-- uses it: a (B, C, L) input is given to fn as (B, L, C) and fn's output is turned back into (B, C, L).
-- The wrapped module is the child `fn`, so its parameters are named fn.* as in the reference.
local nn = require "cocola.nn"

local EinopsToAndFrom = nn.Module:extend("EinopsToAndFrom")

--- EinopsToAndFrom(fn)
function EinopsToAndFrom:init(fn)
  self.fn = fn
end

function EinopsToAndFrom:forward(x)
  return self.fn(x:transpose(2, 3)):transpose(2, 3)
end

return EinopsToAndFrom
