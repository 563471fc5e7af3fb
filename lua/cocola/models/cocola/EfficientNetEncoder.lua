-- cocola.models.cocola.EfficientNetEncoder — the reference's EfficientNetEncoder: `model` =
-- Sequential(EfficientNet-B0 (include_top = false), Dropout(p), Flatten()), so its children are
-- named model.0 (the EfficientNet), model.1, model.2 as in the checkpoint.
-- (N, in_channels, H, W) -> (N, 1280).
local Module = require "cocola.nn.Module"
local Sequential = require "cocola.nn.Sequential"
local Dropout = require "cocola.nn.Dropout"
local Flatten = require "cocola.nn.Flatten"
local EfficientNet = require "cocola.models.efficientnet.EfficientNet"

local EfficientNetEncoder = Module:extend("EfficientNetEncoder")

--- EfficientNetEncoder{in_channels = 2, dropout = 0.1, drop_connect_rate = 0.2, image_size = 224}
function EfficientNetEncoder:init(opts)
  opts = opts or {}
  self.in_channels = opts.in_channels or 2
  local dropout = opts.dropout
  if dropout == nil then dropout = 0.1 end
  self.model = Sequential(
    EfficientNet { in_channels = self.in_channels, drop_connect_rate = opts.drop_connect_rate,
      image_size = opts.image_size },
    Dropout(dropout),
    Flatten())
end

function EfficientNetEncoder:forward(x) return self.model(x) end

return EfficientNetEncoder
