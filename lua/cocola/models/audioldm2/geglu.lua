-- cocola.models.audioldm2.geglu — diffusers' GEGLU: proj Linear(dim_in, 2 dim_out) split into (h, gate)
-- along the last dim -> h * gelu(gate). x (..., dim_in) -> (..., dim_out).
local nn = require "cocola.nn"

local GEGLU = nn.Module:extend("GEGLU")

function GEGLU:init(dim_in, dim_out)
  self.dim_out = dim_out
  self.proj = nn.Linear(dim_in, dim_out * 2)
end

function GEGLU:forward(x)
  local p = self.proj(x)
  local d = p:dim()
  return p:narrow(d, 1, self.dim_out) * p:narrow(d, self.dim_out + 1, self.dim_out):gelu()
end

return GEGLU
