-- cocola.nn.Flatten — merges dims start_dim..end_dim into one. Dims are 1-based in cocola, so
-- the default (2, -1) keeps the batch dim, like torch's Flatten(1, -1).
local Module = require "cocola.nn.Module"

local Flatten = Module:extend("Flatten")

--- Flatten(start_dim = 2, end_dim = -1)
function Flatten:init(start_dim, end_dim)
  self.start_dim = start_dim or 2
  self.end_dim = end_dim or -1
end

function Flatten:forward(x) return x:flatten(self.start_dim, self.end_dim) end

function Flatten:extra_repr() return string.format("start_dim=%d, end_dim=%d", self.start_dim, self.end_dim) end

return Flatten
