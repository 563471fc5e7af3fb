-- cocola.models.msdm.conv_block1d — audio-diffusion-pytorch 0.0.43 ConvBlock1d: GroupNorm (eps 1e-5) ->
-- [x (scale + 1) + shift] -> SiLU -> Conv1d. x (B, in, L), scale and shift (B, in, 1) or nil -> (B, out, L').
-- Submodule names are the reference's: groupnorm, activation, project.
local nn = require "cocola.nn"

local ConvBlock1d = nn.Module:extend("ConvBlock1d")

--- ConvBlock1d(in_channels, out_channels, {kernel_size = 3, stride = 1, padding = 1, dilation = 1, num_groups = 8,
--- use_norm = true})
function ConvBlock1d:init(in_channels, out_channels, opts)
  opts = opts or {}
  if opts.use_norm ~= false then
    self.groupnorm = nn.GroupNorm(opts.num_groups or 8, in_channels)
  end
  self.activation = nn.SiLU()
  self.project = nn.Conv1d(in_channels, out_channels, opts.kernel_size or 3, { stride = opts.stride or 1,
    padding = opts.padding or 1, dilation = opts.dilation or 1 })
end

--- forward(x, scale_shift) with scale_shift = {scale, shift} or nil
function ConvBlock1d:forward(x, scale_shift)
  if self.groupnorm then x = self.groupnorm(x) end
  if scale_shift ~= nil then x = x * (scale_shift[1] + 1) + scale_shift[2] end
  return self.project(self.activation(x))
end

return ConvBlock1d
