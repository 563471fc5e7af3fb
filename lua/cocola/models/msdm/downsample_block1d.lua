-- cocola.models.msdm.downsample_block1d — audio-diffusion-pytorch 0.0.43 DownsampleBlock1d as the U-Net builds
-- it (use_pre_downsample, use_skip, no context channels, no extraction): downsample = Conv1d(in, out,
-- factor kernel_multiplier + 1, stride factor, padding factor kernel_multiplier / 2); then num_layers
-- ResnetBlock1d(out, out), then the TransformerBlock1d when use_attention; every block's output is a skip.
-- x (B, in, L), mapping (B, M) -> x (B, out, L / factor), skips {(B, out, L / factor), ...}.
-- Submodule names are the reference's: downsample, blocks.{0..}, transformer.
local nn = require "cocola.nn"
local ResnetBlock1d = require "cocola.models.msdm.resnet_block1d"
local TransformerBlock1d = require "cocola.models.msdm.transformer_block1d"

local DownsampleBlock1d = nn.Module:extend("DownsampleBlock1d")

--- DownsampleBlock1d(in_channels, out_channels, {factor, num_groups, num_layers, kernel_multiplier = 2,
--- use_attention = false, attention_heads, attention_features, attention_multiplier, context_mapping_features})
function DownsampleBlock1d:init(in_channels, out_channels, opts)
  local kernel_multiplier = opts.kernel_multiplier or 2
  if kernel_multiplier % 2 ~= 0 then
    error(string.format("DownsampleBlock1d: kernel_multiplier must be even, got %d", kernel_multiplier), 3)
  end
  local factor = opts.factor
  self.use_attention = opts.use_attention or false
  self.downsample = nn.Conv1d(in_channels, out_channels, factor * kernel_multiplier + 1, { stride = factor,
    padding = factor * (kernel_multiplier // 2) })
  local blocks = {}
  for i = 1, opts.num_layers do
    blocks[i] = ResnetBlock1d(out_channels, out_channels, { num_groups = opts.num_groups,
      context_mapping_features = opts.context_mapping_features })
  end
  self.blocks = nn.ModuleList(blocks)
  if self.use_attention then
    self.transformer = TransformerBlock1d(out_channels, { num_heads = opts.attention_heads,
      head_features = opts.attention_features, multiplier = opts.attention_multiplier })
  end
end

--- forward(x, mapping) -> x, skips
function DownsampleBlock1d:forward(x, mapping)
  x = self.downsample(x)
  local skips = {}
  for _, block in ipairs(self.blocks:children()) do
    x = block(x, mapping)
    skips[#skips + 1] = x
  end
  if self.use_attention then
    x = self.transformer(x)
    skips[#skips + 1] = x
  end
  return x, skips
end

return DownsampleBlock1d
