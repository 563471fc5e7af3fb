-- cocola.nn.ConvTranspose1d — the transposed 1-d convolution over (N, C, L) input (the HiFi-GAN
-- vocoder's upsamplers): weight (in, out/groups, k), bias (out); PyTorch's default initialisation.
-- Output length: (L - 1) stride - 2 padding + dilation (k - 1) + output_padding + 1.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local F = require "cocola.nn.functional"
local init = require "cocola.nn.init_weights"

local ConvTranspose1d = Module:extend("ConvTranspose1d")

local function int_at_least(v, what, min)
  if math.type(v) ~= "integer" or v < min then
    error(string.format("ConvTranspose1d: %s must be an integer >= %d, got %s", what, min, tostring(v)), 4)
  end
  return v
end

--- ConvTranspose1d(in_channels, out_channels, kernel_size, {stride = 1, padding = 0, output_padding = 0,
--- dilation = 1, groups = 1, bias = true, dtype = "float32"})
function ConvTranspose1d:init(in_channels, out_channels, kernel_size, opts)
  opts = opts or {}
  int_at_least(in_channels, "in_channels", 1)
  int_at_least(out_channels, "out_channels", 1)
  self.in_channels, self.out_channels = in_channels, out_channels
  self.kernel_size = int_at_least(kernel_size, "kernel_size", 1)
  self.stride = int_at_least(opts.stride or 1, "stride", 1)
  self.padding = int_at_least(opts.padding or 0, "padding", 0)
  self.output_padding = int_at_least(opts.output_padding or 0, "output_padding", 0)
  self.dilation = int_at_least(opts.dilation or 1, "dilation", 1)
  self.groups = int_at_least(opts.groups or 1, "groups", 1)
  if in_channels % self.groups ~= 0 or out_channels % self.groups ~= 0 then
    error("ConvTranspose1d: in_channels and out_channels must be divisible by groups", 3)
  end
  local dtype = opts.dtype or "float32"
  self:register_parameter("weight", cocola.zeros({ in_channels, out_channels // self.groups, self.kernel_size },
    { dtype = dtype }))
  self:register_parameter("bias", opts.bias ~= false and cocola.zeros({ out_channels }, { dtype = dtype }) or nil)
  self:reset_parameters()
  self.weight:requires_grad(true)
  if self.bias then self.bias:requires_grad(true) end
end

function ConvTranspose1d:reset_parameters()
  init.linear_default_(self.weight, self.bias)
end

function ConvTranspose1d:forward(x)
  return F.conv_transpose1d(x, self.weight, self.bias, { stride = self.stride, padding = self.padding,
    output_padding = self.output_padding, dilation = self.dilation, groups = self.groups })
end

function ConvTranspose1d:extra_repr()
  local s = string.format("%d, %d, kernel_size=(%d,), stride=(%d,)", self.in_channels, self.out_channels,
    self.kernel_size, self.stride)
  if self.padding ~= 0 then s = s .. string.format(", padding=(%d,)", self.padding) end
  if self.output_padding ~= 0 then s = s .. string.format(", output_padding=(%d,)", self.output_padding) end
  if self.dilation ~= 1 then s = s .. string.format(", dilation=(%d,)", self.dilation) end
  if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
  if self.bias == nil then s = s .. ", bias=False" end
  return s
end

return ConvTranspose1d
