-- cocola.models.efficientnet.Conv2dStaticSame — a Conv2d whose TF-"same" zero padding is computed
-- once for a nominal input size (efficientnet_pytorch 0.7.1's Conv2dStaticSamePadding), whatever
-- the real input size: pad = max((ceil(n/s) - 1) s + (k - 1) d + 1 - n, 0), split (pad//2, pad - pad//2).
-- Parameters: weight (O, C/groups, k, k), bias (O) when asked for — the reference's names.
local Conv2d = require "cocola.nn.Conv2d"
local F = require "cocola.nn.functional"

local Conv2dStaticSame = Conv2d:extend("Conv2dStaticSame")

local function same_pads(size, k, s, d)
  local out = (size + s - 1) // s
  local pad = math.max((out - 1) * s + (k - 1) * d + 1 - size, 0)
  return pad // 2, pad - pad // 2
end

--- Conv2dStaticSame(in, out, kernel, {stride=, groups=, bias=, image_size=})
function Conv2dStaticSame:init(in_channels, out_channels, kernel_size, opts)
  opts = opts or {}
  Conv2d.init(self, in_channels, out_channels, kernel_size,
    { stride = opts.stride, groups = opts.groups, bias = opts.bias, dtype = opts.dtype })
  local size = opts.image_size or 224
  local top, bottom = same_pads(size, self.kernel_size[1], self.stride[1], self.dilation[1])
  local left, right = same_pads(size, self.kernel_size[2], self.stride[2], self.dilation[2])
  self.static_padding = { left, right, top, bottom }
  self.has_padding = left + right + top + bottom > 0
  -- equal pads on both sides (stride 1, or an odd nominal size) are the convolution's own padding:
  -- the same result without a padded copy of the input
  self.symmetric_padding = left == right and top == bottom
end

function Conv2dStaticSame:forward(x)
  local opts = { stride = self.stride, groups = self.groups }
  if self.symmetric_padding then
    opts.padding = { self.static_padding[3], self.static_padding[1] }
  elseif self.has_padding then
    x = F.pad(x, self.static_padding)
  end
  return F.conv2d(x, self.weight, self.bias, opts)
end

function Conv2dStaticSame:extra_repr()
  return string.format("%d, %d, kernel_size=(%d, %d), stride=(%d, %d), static_padding=(%d, %d, %d, %d)%s%s",
    self.in_channels, self.out_channels, self.kernel_size[1], self.kernel_size[2], self.stride[1], self.stride[2],
    self.static_padding[1], self.static_padding[2], self.static_padding[3], self.static_padding[4],
    self.groups > 1 and (", groups=" .. self.groups) or "", self.bias and "" or ", bias=False")
end

return Conv2dStaticSame
