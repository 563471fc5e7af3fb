-- cocola.models.msdm.upsample_block1d — audio-diffusion-pytorch 0.0.43 UpsampleBlock1d as the U-Net builds it
-- (no pre-upsample, use_skip, no extraction): num_layers ResnetBlock1d(in + skip_channels, in), each fed
-- [x, skip skip_scale] with the skips taken last first (skip_scale 2^-0.5 with use_skip_scale, else 1); the
-- TransformerBlock1d when use_attention; then the reference's Upsample1d(in, out, factor):
--   factor 1:     Conv1d(k 3, padding 1)                                   (upsample.weight)
--   use_nearest:  Sequential(Upsample(nearest, factor), Conv1d(k 3, pad 1)) (upsample.1.weight)
--   otherwise:    ConvTranspose1d(k 2 factor, stride factor, padding factor // 2 + factor % 2,
--                 output_padding factor % 2)                               (upsample.weight)
-- x (B, in, L), skips (a list, consumed from its end), mapping (B, M) -> (B, out, L factor).
-- Submodule names are the reference's: blocks.{0..}, transformer, upsample.
local cocola = require "cocola"
local nn = require "cocola.nn"
local ResnetBlock1d = require "cocola.models.msdm.resnet_block1d"
local TransformerBlock1d = require "cocola.models.msdm.transformer_block1d"

local UpsampleBlock1d = nn.Module:extend("UpsampleBlock1d")

local function upsample1d(in_channels, out_channels, factor, use_nearest)
  if factor == 1 then return nn.Conv1d(in_channels, out_channels, 3, { padding = 1 }) end
  if use_nearest then
    return nn.Sequential({ nn.Upsample({ scale_factor = factor, mode = "nearest" }),
      nn.Conv1d(in_channels, out_channels, 3, { padding = 1 }) })
  end
  return nn.ConvTranspose1d(in_channels, out_channels, factor * 2, { stride = factor,
    padding = factor // 2 + factor % 2, output_padding = factor % 2 })
end

--- UpsampleBlock1d(in_channels, out_channels, {factor, num_layers, num_groups, use_nearest = false,
--- skip_channels = 0, use_skip_scale = false, use_attention = false, attention_heads, attention_features,
--- attention_multiplier, context_mapping_features})
function UpsampleBlock1d:init(in_channels, out_channels, opts)
  self.use_attention = opts.use_attention or false
  self.skip_scale = opts.use_skip_scale and 2 ^ -0.5 or 1.0
  local skip_channels = opts.skip_channels or 0
  local blocks = {}
  for i = 1, opts.num_layers do
    blocks[i] = ResnetBlock1d(in_channels + skip_channels, in_channels, { num_groups = opts.num_groups,
      context_mapping_features = opts.context_mapping_features })
  end
  self.blocks = nn.ModuleList(blocks)
  if self.use_attention then
    self.transformer = TransformerBlock1d(in_channels, { num_heads = opts.attention_heads,
      head_features = opts.attention_features, multiplier = opts.attention_multiplier })
  end
  self.upsample = upsample1d(in_channels, out_channels, opts.factor, opts.use_nearest)
end

--- forward(x, skips, mapping): pops one skip per block off the end of `skips`
function UpsampleBlock1d:forward(x, skips, mapping)
  for _, block in ipairs(self.blocks:children()) do
    local skip = table.remove(skips)
    if self.skip_scale ~= 1.0 then skip = skip * self.skip_scale end
    x = block(cocola.cat({ x, skip }, 2), mapping)
  end
  if self.use_attention then x = self.transformer(x) end
  return self.upsample(x)
end

return UpsampleBlock1d
