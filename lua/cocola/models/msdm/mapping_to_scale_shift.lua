-- cocola.models.msdm.mapping_to_scale_shift — audio-diffusion-pytorch 0.0.43 MappingToScaleShift: the
-- conditioning vector (B, features) -> SiLU -> Linear(features, 2 channels) -> scale, shift, each (B, channels, 1)
-- (the first half of the Linear's outputs is the scale). Parameters: to_scale_shift.1.{weight, bias}.
local nn = require "cocola.nn"

local MappingToScaleShift = nn.Module:extend("MappingToScaleShift")

--- MappingToScaleShift(features, channels)
function MappingToScaleShift:init(features, channels)
  self.channels = channels
  self.to_scale_shift = nn.Sequential({ nn.SiLU(), nn.Linear(features, channels * 2) })
end

--- forward(mapping (B, features)) -> {scale (B, channels, 1), shift (B, channels, 1)}
function MappingToScaleShift:forward(mapping)
  local scale_shift = self.to_scale_shift(mapping)
  scale_shift = scale_shift:reshape({ scale_shift:size(1), 2 * self.channels, 1 })
  return { scale_shift:narrow(2, 1, self.channels), scale_shift:narrow(2, self.channels + 1, self.channels) }
end

return MappingToScaleShift
