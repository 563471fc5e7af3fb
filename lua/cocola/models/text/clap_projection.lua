-- cocola.models.text.clap_projection — transformers' ClapProjectionLayer: linear2(relu(linear1(x))).
-- State-dict names: linear1 (Linear hidden -> projection_dim), linear2 (Linear projection_dim ->
-- projection_dim). forward(x (B, hidden)) -> (B, projection_dim), not normalised.
local Module = require "cocola.nn.Module"
local nn = require "cocola.nn"
local F = require "cocola.nn.functional"

local ClapProjection = Module:extend("ClapProjection")

function ClapProjection:init(hidden, projection_dim)
  self.linear1 = nn.Linear(hidden, projection_dim)
  self.linear2 = nn.Linear(projection_dim, projection_dim)
end

function ClapProjection:forward(x)
  return self.linear2(F.relu(self.linear1(x)))
end

return ClapProjection
