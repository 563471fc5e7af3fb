-- cocola.nn.ConvTranspose2d — the transposed 2-d convolution (the gradient of Conv2d with respect to
-- its input) with stride, padding, output_padding, dilation and groups; weight (in, out/groups, kh,
-- kw), bias (out); PyTorch's default initialisation (fan_in computed from the weight's dim 2, as torch).
-- Output size per dim: (in - 1) stride - 2 padding + dilation (k - 1) + output_padding + 1.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local F = require "cocola.nn.functional"
local init = require "cocola.nn.init_weights"

local ConvTranspose2d = Module:extend("ConvTranspose2d")

local function pair(v, what, min)
  if math.type(v) == "integer" then v = { v, v } end
  if type(v) ~= "table" or #v ~= 2 or math.type(v[1]) ~= "integer" or math.type(v[2]) ~= "integer"
      or v[1] < min or v[2] < min then
    error(string.format("ConvTranspose2d: %s must be an integer >= %d or a pair of them", what, min), 4)
  end
  return { v[1], v[2] }
end

--- ConvTranspose2d(in_channels, out_channels, kernel_size, {stride = 1, padding = 0, output_padding = 0,
--- dilation = 1, groups = 1, bias = true, dtype = "float32"})
function ConvTranspose2d:init(in_channels, out_channels, kernel_size, opts)
  opts = opts or {}
  local groups = opts.groups or 1
  if math.type(in_channels) ~= "integer" or in_channels < 1 or math.type(out_channels) ~= "integer" or out_channels < 1 then
    error("ConvTranspose2d: in_channels and out_channels must be positive integers", 3)
  end
  if math.type(groups) ~= "integer" or groups < 1 or in_channels % groups ~= 0 or out_channels % groups ~= 0 then
    error("ConvTranspose2d: groups must be a positive integer dividing in_channels and out_channels", 3)
  end
  self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
  self.kernel_size = pair(kernel_size, "kernel_size", 1)
  self.stride = pair(opts.stride or 1, "stride", 1)
  self.padding = pair(opts.padding or 0, "padding", 0)
  self.output_padding = pair(opts.output_padding or 0, "output_padding", 0)
  self.dilation = pair(opts.dilation or 1, "dilation", 1)
  local dtype = opts.dtype or "float32"
  self:register_parameter("weight", cocola.zeros({ in_channels, out_channels // groups, self.kernel_size[1],
    self.kernel_size[2] }, { dtype = dtype }))
  self:register_parameter("bias", opts.bias ~= false and cocola.zeros({ out_channels }, { dtype = dtype }) or nil)
  self:reset_parameters()
  self.weight:requires_grad(true)
  if self.bias then self.bias:requires_grad(true) end
end

function ConvTranspose2d:reset_parameters()
  init.linear_default_(self.weight, self.bias)
end

function ConvTranspose2d:forward(x)
  return F.conv_transpose2d(x, self.weight, self.bias, { stride = self.stride, padding = self.padding,
    output_padding = self.output_padding, dilation = self.dilation, groups = self.groups })
end

function ConvTranspose2d:extra_repr()
  local r = Module.pyrepr
  local s = string.format("%d, %d, kernel_size=%s, stride=%s", self.in_channels, self.out_channels,
    r(self.kernel_size), r(self.stride))
  if self.padding[1] ~= 0 or self.padding[2] ~= 0 then s = s .. ", padding=" .. r(self.padding) end
  if self.output_padding[1] ~= 0 or self.output_padding[2] ~= 0 then s = s .. ", output_padding=" .. r(self.output_padding) end
  if self.dilation[1] ~= 1 or self.dilation[2] ~= 1 then s = s .. ", dilation=" .. r(self.dilation) end
  if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
  if self.bias == nil then s = s .. ", bias=False" end
  return s
end

return ConvTranspose2d
