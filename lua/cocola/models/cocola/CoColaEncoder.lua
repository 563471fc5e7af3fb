-- cocola.models.cocola.CoColaEncoder — the reference's CoColaEncoder: `encoder` (an
-- EfficientNetEncoder: B0, dropout, flatten) then `projection` = Linear(1280 -> embedding_dim).
-- (N, in_channels, H, W) -> (N, embedding_dim), before the model's LayerNorm and tanh.
local Module = require "cocola.nn.Module"
local Linear = require "cocola.nn.Linear"
local EfficientNetEncoder = require "cocola.models.cocola.EfficientNetEncoder"

local CoColaEncoder = Module:extend("CoColaEncoder")

--- CoColaEncoder{in_channels = 2, embedding_dim = 512, dropout = 0.1, drop_connect_rate = 0.2}
function CoColaEncoder:init(opts)
  opts = opts or {}
  self.embedding_dim = opts.embedding_dim or 512
  self.encoder = EfficientNetEncoder(opts)
  self.projection = Linear(1280, self.embedding_dim)
end

function CoColaEncoder:forward(x) return self.projection(self.encoder(x)) end

return CoColaEncoder
