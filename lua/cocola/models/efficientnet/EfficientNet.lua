-- cocola.models.efficientnet.EfficientNet — EfficientNet-B0 feature extractor as
-- efficientnet_pytorch 0.7.1 builds it with include_top=False: stem 3x3/2 -> 32, BN, swish,
-- 16 MBConv blocks, head 1x1 -> 1280, BN, swish, global average pooling.
-- (N, in_channels, H, W) -> (N, 1280). Names: _conv_stem _bn0 _blocks.{0..15} _conv_head _bn1.
local Module = require "cocola.nn.Module"
local ModuleList = require "cocola.nn.ModuleList"
local BatchNorm2d = require "cocola.nn.BatchNorm2d"
local Conv2dStaticSame = require "cocola.models.efficientnet.Conv2dStaticSame"
local MBConvBlock = require "cocola.models.efficientnet.MBConvBlock"
local F = require "cocola.nn.functional"

local EfficientNet = Module:extend("EfficientNet")

-- B0: (expand, kernel, stride, in, out, repeats)
EfficientNet.B0_STAGES = {
  { 1, 3, 1, 32, 16, 1 }, { 6, 3, 2, 16, 24, 2 }, { 6, 5, 2, 24, 40, 2 }, { 6, 3, 2, 40, 80, 3 },
  { 6, 5, 1, 80, 112, 3 }, { 6, 5, 2, 112, 192, 4 }, { 6, 3, 1, 192, 320, 1 },
}

--- EfficientNet{in_channels = 3, image_size = 224, drop_connect_rate = 0.2, bn_eps = 1e-3, bn_momentum = 0.01}
function EfficientNet:init(opts)
  opts = opts or {}
  local in_channels, size = opts.in_channels or 3, opts.image_size or 224
  local bn = { eps = opts.bn_eps or 1e-3, momentum = opts.bn_momentum or 0.01 }
  local rate = opts.drop_connect_rate
  if rate == nil then rate = 0.2 end
  self.out_features = 1280
  self._conv_stem = Conv2dStaticSame(in_channels, 32, 3, { stride = 2, bias = false, image_size = size })
  self._bn0 = BatchNorm2d(32, bn)
  size = (size + 1) // 2
  local total = 0
  for _, st in ipairs(EfficientNet.B0_STAGES) do total = total + st[6] end
  local blocks, index = ModuleList(), 0
  for _, st in ipairs(EfficientNet.B0_STAGES) do
    local expand, kernel, stride, input, output, repeats = table.unpack(st)
    for r = 1, repeats do
      blocks:append(MBConvBlock {
        expand = expand, kernel = kernel, stride = r == 1 and stride or 1,
        input = r == 1 and input or output, output = output, image_size = size,
        bn_eps = bn.eps, bn_momentum = bn.momentum, drop_connect = rate * index / total,
      })
      if r == 1 then size = (size + stride - 1) // stride end
      index = index + 1
    end
  end
  self._blocks = blocks
  self._conv_head = Conv2dStaticSame(320, 1280, 1, { bias = false, image_size = size })
  self._bn1 = BatchNorm2d(1280, bn)
end

--- (N, C, H, W) -> (N, 1280, h, w) before pooling
-- the Lua handle of each block's input is released once the block's output exists (see MBConvBlock)
local release = getmetatable(require("cocola").zeros({ 1 })).__close

function EfficientNet:extract_features(input)
  local c = self._conv_stem(input)
  local b = self._bn0(c)
  release(c)
  local x = F.silu(b)
  release(b)
  for _, block in ipairs(self._blocks) do
    local y = block(x)
    release(x)
    x = y
  end
  local h = self._conv_head(x)
  release(x)
  local b1 = self._bn1(h)
  release(h)
  local out = F.silu(b1)
  release(b1)
  return out
end

function EfficientNet:forward(x)
  return F.adaptive_avg_pool2d(self:extract_features(x), 1):flatten(2)
end

return EfficientNet
