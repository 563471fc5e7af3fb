-- cocola.nn.Conv1d — 1-d convolution over (N, C, L) input with stride, zero padding (an integer,
-- "valid" or "same"), dilation and groups; weight (out, in/groups, k); PyTorch's default
-- initialisation (uniform in +-1/sqrt(fan_in), fan_in = in_channels/groups * k).
local Module = require "cocola.nn.Module"
local F = require "cocola.nn.functional"
local init = require "cocola.nn.init_weights"

local Conv1d = Module:extend("Conv1d")

local function positive(v, what, allow_zero)
  if math.type(v) ~= "integer" or v < (allow_zero and 0 or 1) then
    error(string.format("Conv1d: %s must be a %s integer, got %s", what, allow_zero and "non-negative" or "positive",
      tostring(v)), 4)
  end
  return v
end

--- Conv1d(in_channels, out_channels, kernel_size, {stride = 1, padding = 0, dilation = 1, groups = 1,
--- bias = true, dtype = "float32"})
function Conv1d:init(in_channels, out_channels, kernel_size, opts)
  opts = opts or {}
  positive(in_channels, "in_channels")
  positive(out_channels, "out_channels")
  self.in_channels, self.out_channels = in_channels, out_channels
  self.kernel_size = positive(kernel_size, "kernel_size")
  self.stride = positive(opts.stride or 1, "stride")
  self.dilation = positive(opts.dilation or 1, "dilation")
  self.groups = positive(opts.groups or 1, "groups")
  if in_channels % self.groups ~= 0 or out_channels % self.groups ~= 0 then
    error("Conv1d: in_channels and out_channels must be divisible by groups", 3)
  end
  local padding = opts.padding or 0
  if padding == "valid" then padding = 0 end
  if padding == "same" then
    if self.stride ~= 1 then error("Conv1d: padding='same' needs stride 1", 3) end
    local total = self.dilation * (self.kernel_size - 1)
    self.padding, self._same_pads = "same", { total // 2, total - total // 2 }
  else
    self.padding = positive(padding, "padding", true)
  end
  self:register_weight_and_bias({ out_channels, in_channels // self.groups, self.kernel_size }, opts.bias ~= false,
    opts.dtype or "float32")
end

function Conv1d:reset_parameters()
  init.linear_default_(self.weight, self.bias)
end

function Conv1d:forward(x)
  local padding = self.padding
  if padding == "same" then
    local p = self._same_pads
    if p[1] == p[2] then padding = p[1] else x, padding = F.pad(x, { p[1], p[2] }, 0), 0 end
  end
  return F.conv1d(x, self.weight, self.bias, { stride = self.stride, padding = padding, dilation = self.dilation,
    groups = self.groups })
end

function Conv1d:extra_repr()
  local s = string.format("%d, %d, kernel_size=(%d,), stride=(%d,)", self.in_channels, self.out_channels,
    self.kernel_size, self.stride)
  if self.padding == "same" then s = s .. ", padding=same"
  elseif self.padding ~= 0 then s = s .. string.format(", padding=(%d,)", self.padding) end
  if self.dilation ~= 1 then s = s .. string.format(", dilation=(%d,)", self.dilation) end
  if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
  if self.bias == nil then s = s .. ", bias=False" end
  return s
end

return Conv1d
