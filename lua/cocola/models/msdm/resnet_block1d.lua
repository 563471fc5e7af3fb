-- cocola.models.msdm.resnet_block1d — audio-diffusion-pytorch 0.0.43 ResnetBlock1d without cross-attention
-- (MSDM's U-Net has no context embedding): h = block1(x); h = block2(h, scale_shift(mapping)); h + to_out(x),
-- to_out a 1x1 Conv1d when the channel count changes, else the identity (no parameters).
-- x (B, in, L), mapping (B, context_mapping_features) when configured -> (B, out, L).
-- Submodule names are the reference's: block1, to_scale_shift, block2, to_out.
local nn = require "cocola.nn"
local ConvBlock1d = require "cocola.models.msdm.conv_block1d"
local MappingToScaleShift = require "cocola.models.msdm.mapping_to_scale_shift"

local ResnetBlock1d = nn.Module:extend("ResnetBlock1d")

--- ResnetBlock1d(in_channels, out_channels, {kernel_size = 3, stride = 1, padding = 1, dilation = 1,
--- use_norm = true, num_groups = 8, context_mapping_features = nil})
function ResnetBlock1d:init(in_channels, out_channels, opts)
  opts = opts or {}
  if opts.context_embedding_features ~= nil then
    error("ResnetBlock1d: context_embedding_features (cross-attention) is not supported", 3)
  end
  self.in_channels, self.out_channels = in_channels, out_channels
  self.use_mapping = opts.context_mapping_features ~= nil
  self.block1 = ConvBlock1d(in_channels, out_channels, { kernel_size = opts.kernel_size, stride = opts.stride,
    padding = opts.padding, dilation = opts.dilation, use_norm = opts.use_norm, num_groups = opts.num_groups })
  if self.use_mapping then
    self.to_scale_shift = MappingToScaleShift(opts.context_mapping_features, out_channels)
  end
  self.block2 = ConvBlock1d(out_channels, out_channels, { use_norm = opts.use_norm, num_groups = opts.num_groups })
  if in_channels ~= out_channels then self.to_out = nn.Conv1d(in_channels, out_channels, 1) end
end

function ResnetBlock1d:forward(x, mapping)
  if self.use_mapping and mapping == nil then
    error("ResnetBlock1d: this block needs the conditioning mapping (context_mapping_features is set)", 2)
  elseif not self.use_mapping and mapping ~= nil then
    error("ResnetBlock1d: a conditioning mapping was given to a block built without context_mapping_features", 2)
  end
  local h = self.block1(x)
  h = self.block2(h, self.use_mapping and self.to_scale_shift(mapping) or nil)
  return h + (self.to_out and self.to_out(x) or x)
end

return ResnetBlock1d
