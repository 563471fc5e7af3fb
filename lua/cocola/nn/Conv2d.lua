-- cocola.nn.Conv2d — 2-d convolution over NCHW input with stride, zero padding (integers, pairs,
-- "valid" or "same"), dilation and groups; PyTorch's default initialisation (weight and bias
-- uniform in +-1/sqrt(fan_in), fan_in = in_channels/groups * kh * kw).
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local F = require "cocola.nn.functional"
local init = require "cocola.nn.init_weights"

local Conv2d = Module:extend("Conv2d")

local function pair(v, what)
  if math.type(v) == "integer" then return { v, v } end
  if type(v) == "table" and math.type(v[1]) == "integer" and math.type(v[2]) == "integer" and #v == 2 then
    return { v[1], v[2] }
  end
  error("Conv2d: " .. what .. " must be an integer or a pair of integers", 3)
end

--- Conv2d(in_channels, out_channels, kernel_size, {stride = 1, padding = 0, dilation = 1,
--- groups = 1, bias = true, dtype = "float32"})
function Conv2d:init(in_channels, out_channels, kernel_size, opts)
  opts = opts or {}
  local groups = opts.groups or 1
  assert(math.type(in_channels) == "integer" and in_channels > 0, "Conv2d: in_channels must be a positive integer")
  assert(math.type(out_channels) == "integer" and out_channels > 0, "Conv2d: out_channels must be a positive integer")
  if math.type(groups) ~= "integer" or groups < 1 then error("Conv2d: groups must be a positive integer", 3) end
  if in_channels % groups ~= 0 then error("Conv2d: in_channels must be divisible by groups", 3) end
  if out_channels % groups ~= 0 then error("Conv2d: out_channels must be divisible by groups", 3) end
  self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
  self.kernel_size = pair(kernel_size, "kernel_size")
  self.stride = pair(opts.stride or 1, "stride")
  self.dilation = pair(opts.dilation or 1, "dilation")
  local padding = opts.padding or 0
  if padding == "valid" then padding = 0 end
  if padding == "same" then
    if self.stride[1] ~= 1 or self.stride[2] ~= 1 then error("Conv2d: padding='same' needs stride 1", 3) end
    self.padding = "same"
    -- torch pads (total // 2) before and the rest after
    local pads = {}
    for d = 1, 2 do
      local total = self.dilation[d] * (self.kernel_size[d] - 1)
      pads[d] = { total // 2, total - total // 2 }
    end
    self._same_pads = pads
  else
    self.padding = pair(padding, "padding")
  end
  local dtype = opts.dtype or "float32"
  self:register_weight_and_bias({ out_channels, in_channels // groups, self.kernel_size[1], self.kernel_size[2] }, opts.bias ~= false, dtype)
end

function Conv2d:reset_parameters()
  init.linear_default_(self.weight, self.bias)
end

function Conv2d:forward(x)
  local opts = { stride = self.stride, dilation = self.dilation, groups = self.groups }
  if self.padding == "same" then
    local p = self._same_pads
    if p[1][1] == p[1][2] and p[2][1] == p[2][2] then
      opts.padding = { p[1][1], p[2][1] }
    else
      x = F.pad(x, { p[2][1], p[2][2], p[1][1], p[1][2] }, 0)
      opts.padding = { 0, 0 }
    end
  else
    opts.padding = self.padding
  end
  return F.conv2d(x, self.weight, self.bias, opts)
end

function Conv2d:extra_repr()
  local r = Module.pyrepr
  local s = string.format("%d, %d, kernel_size=%s, stride=%s", self.in_channels, self.out_channels,
    r(self.kernel_size), r(self.stride))
  if self.padding == "same" then
    s = s .. ", padding=same"
  elseif self.padding[1] ~= 0 or self.padding[2] ~= 0 then
    s = s .. ", padding=" .. r(self.padding)
  end
  if self.dilation[1] ~= 1 or self.dilation[2] ~= 1 then s = s .. ", dilation=" .. r(self.dilation) end
  if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
  if self.bias == nil then s = s .. ", bias=False" end
  return s
end

return Conv2d
