-- cocola.models.efficientnet.MBConvBlock — mobile inverted bottleneck with squeeze-excitation, as
-- efficientnet_pytorch 0.7.1 builds it: [1x1 expand, BN, swish], depthwise kxk, BN, swish,
-- SE (avg pool, 1x1 reduce, swish, 1x1 expand, sigmoid gate), 1x1 project, BN, identity skip with
-- drop-connect when stride 1 and in == out. Shapes: (N, in, H, W) -> (N, out, H/s, W/s).
-- Submodule names are the reference's: _expand_conv _bn0 _depthwise_conv _bn1 _se_reduce
-- _se_expand _project_conv _bn2.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local BatchNorm2d = require "cocola.nn.BatchNorm2d"
local Conv2dStaticSame = require "cocola.models.efficientnet.Conv2dStaticSame"
local F = require "cocola.nn.functional"

local MBConvBlock = Module:extend("MBConvBlock")

--- MBConvBlock{expand=, kernel=, stride=, input=, output=, se_ratio=0.25, image_size=,
---             bn_eps=1e-3, bn_momentum=0.01, drop_connect=0}
function MBConvBlock:init(a)
  local bn = { eps = a.bn_eps or 1e-3, momentum = a.bn_momentum or 0.01 }
  local mid = a.input * a.expand
  self.expand_ratio, self.stride, self.drop_connect = a.expand, a.stride, a.drop_connect or 0
  self.id_skip = a.stride == 1 and a.input == a.output
  if a.expand ~= 1 then
    self._expand_conv = Conv2dStaticSame(a.input, mid, 1, { bias = false, image_size = a.image_size })
    self._bn0 = BatchNorm2d(mid, bn)
  end
  self._depthwise_conv = Conv2dStaticSame(mid, mid, a.kernel,
    { stride = a.stride, groups = mid, bias = false, image_size = a.image_size })
  self._bn1 = BatchNorm2d(mid, bn)
  local squeezed = math.max(1, math.floor(a.input * (a.se_ratio or 0.25)))
  self._se_reduce = Conv2dStaticSame(mid, squeezed, 1, { image_size = 1 })
  self._se_expand = Conv2dStaticSame(squeezed, mid, 1, { image_size = 1 })
  local out_size = (a.image_size + a.stride - 1) // a.stride
  self._project_conv = Conv2dStaticSame(mid, a.output, 1, { bias = false, image_size = out_size })
  self._bn2 = BatchNorm2d(a.output, bn)
end

-- stochastic depth: drop whole examples of the residual branch with probability p. With a row subset
-- ({index = int64 rows (0-based), total = rows of the whole batch}: this data-parallel rank's rows of
-- the global batch, set by the trainer as `row_subset`) the draw is the whole batch's, and these rows
-- take theirs, so that N ranks drop the rows one process would.
local function drop_connect(x, p, subset)
  local keep = 1 - p
  local mask = cocola.rand({ subset and subset.total or x:size(1), 1, 1, 1 }, { dtype = x:dtype() }):lt(keep)
  if subset then mask = mask:index_select(1, subset.index) end
  if x:device() ~= "cpu" then mask = mask:to(x:device()) end
  return x * mask * (1 / keep)
end

-- Each intermediate's Lua handle is released as soon as the next one exists (the C tensors are
-- refcounted, so what autograd saved for the backward pass stays alive): without it an inference
-- batch holds every activation of the network until Lua's collector comes by.
local release = getmetatable(cocola.zeros({ 1 })).__close
local function step(x, y, keep)
  if x ~= keep then release(x) end
  return y
end

function MBConvBlock:forward(inputs)
  local x = inputs
  if self._expand_conv then
    local e = self._expand_conv(x)
    local b = step(e, self._bn0(e))
    x = step(b, F.silu(b))
  end
  local d = self._depthwise_conv(x)
  step(x, nil, inputs)
  local b1 = step(d, self._bn1(d))
  x = step(b1, F.silu(b1))
  local s = F.adaptive_avg_pool2d(x, 1)
  s = self._se_expand(F.silu(self._se_reduce(s)))
  local gate = s:sigmoid()
  local gated = x * gate
  release(x)
  release(gate)
  local p = self._project_conv(gated)
  release(gated)
  x = step(p, self._bn2(p))
  if self.id_skip then
    if self.training and self.drop_connect > 0 then x = step(x, drop_connect(x, self.drop_connect, self.row_subset)) end
    x = step(x, x + inputs)
  end
  return x
end

return MBConvBlock
