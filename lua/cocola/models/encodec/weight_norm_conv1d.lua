-- cocola.models.encodec.weight_norm_conv1d — a Conv1d under torch's weight_norm parametrisation (dim 0), as
-- nn.utils.weight_norm(nn.Conv1d(...)) in transformers' EncodecConv1d: the kernel is
--   weight = weight_g * weight_v / ||weight_v||, the norm over all dims but the first (one per output channel),
-- recomputed at every call (so gradients reach weight_g and weight_v).
-- State-dict names: weight_g (out, 1, 1), weight_v (out, in, k), bias (out).
-- forward(x (N, in, L)) -> (N, out, L') with no padding (the caller pads), stride and dilation.
local cocola = require "cocola"
local nn = require "cocola.nn"
local F = nn.functional
local init = nn.init

local WeightNormConv1d = nn.Module:extend("WeightNormConv1d")

--- WeightNormConv1d(in_channels, out_channels, kernel_size, {stride = 1, dilation = 1})
function WeightNormConv1d:init(in_channels, out_channels, kernel_size, opts)
  opts = opts or {}
  self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
  self.stride, self.dilation = opts.stride or 1, opts.dilation or 1
  local v = cocola.zeros({ out_channels, in_channels, kernel_size })
  local b = cocola.zeros({ out_channels })
  init.linear_default_(v, b)
  -- torch's weight_norm starts with weight_g = ||weight_v||
  local g = cocola.no_grad(function()
    return v:reshape({ out_channels, in_channels * kernel_size }):norm(2, 2, true)
      :reshape({ out_channels, 1, 1 }):contiguous()
  end)
  -- registration order as torch's state_dict after weight_norm: bias, weight_g, weight_v
  self:register_parameter("bias", b:requires_grad_(true))
  self:register_parameter("weight_g", g:requires_grad_(true))
  self:register_parameter("weight_v", v:requires_grad_(true))
end

--- the effective kernel g * v / ||v|| (out, in, k)
function WeightNormConv1d:weight()
  local v = self.weight_v
  local n = v:reshape({ self.out_channels, self.in_channels * self.kernel_size }):norm(2, 2, true)
  return v * (self.weight_g / n:reshape({ self.out_channels, 1, 1 }))
end

function WeightNormConv1d:forward(x)
  return F.conv1d(x, self:weight(), self.bias, { stride = self.stride, dilation = self.dilation })
end

function WeightNormConv1d:extra_repr()
  local s = string.format("%d, %d, kernel_size=(%d,), stride=(%d,)", self.in_channels, self.out_channels,
    self.kernel_size, self.stride)
  if self.dilation ~= 1 then s = s .. string.format(", dilation=(%d,)", self.dilation) end
  return s .. ", weight_norm"
end

return WeightNormConv1d
