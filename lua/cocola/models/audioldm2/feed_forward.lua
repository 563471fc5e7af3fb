-- cocola.models.audioldm2.feed_forward — diffusers' FeedForward with the GEGLU activation: net.0 GEGLU
-- (net.0.proj Linear(dim, 2 inner)) -> net.2 Linear(inner, dim), inner = mult * dim (net.1 is a dropout,
-- without parameters). x (..., dim) -> (..., dim).
local nn = require "cocola.nn"
local GEGLU = require "cocola.models.audioldm2.geglu"

local FeedForward = nn.Module:extend("FeedForward")

--- FeedForward(dim, {mult = 4})
function FeedForward:init(dim, opts)
  local inner = dim * ((opts or {}).mult or 4)
  self.net = nn.ModuleList({ GEGLU(dim, inner), nn.Dropout(0), nn.Linear(inner, dim) })
end

function FeedForward:forward(x)
  return self.net[3](self.net[1](x))
end

return FeedForward
