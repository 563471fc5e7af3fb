-- cocola.nn.MaxPool2d — max pooling of (N,C,H,W) or (C,H,W) input over kernel_size windows (an integer or
-- {h, w}), as torch.nn.MaxPool2d: stride defaults to kernel_size, padding (at most half the kernel) counts
-- as -inf, dilation spaces the window; ceil_mode = true is not supported. With return_indices the forward
-- also returns int64 flat indices into H*W.
local Module = require "cocola.nn.Module"
local F = require "cocola.nn.functional"

local MaxPool2d = Module:extend("MaxPool2d")

local function size_arg(v, what)
  if math.type(v) == "integer" then return v end
  if type(v) == "table" and #v == 2 and math.type(v[1]) == "integer" and math.type(v[2]) == "integer" then
    return { v[1], v[2] }
  end
  error("MaxPool2d: " .. what .. " must be an integer or a pair of integers", 4)
end

--- MaxPool2d(kernel_size, {stride = kernel_size, padding = 0, dilation = 1, return_indices = false,
--- ceil_mode = false})
function MaxPool2d:init(kernel_size, opts)
  opts = opts or {}
  self.kernel_size = size_arg(kernel_size, "kernel_size")
  self.stride = size_arg(opts.stride or kernel_size, "stride")
  self.padding = size_arg(opts.padding or 0, "padding")
  self.dilation = size_arg(opts.dilation or 1, "dilation")
  self.return_indices = opts.return_indices == true
  self.ceil_mode = opts.ceil_mode == true
  if self.ceil_mode then error("MaxPool2d: ceil_mode = true is not supported", 3) end
end

function MaxPool2d:forward(x)
  return F.max_pool2d(x, self.kernel_size, { stride = self.stride, padding = self.padding, dilation = self.dilation,
    return_indices = self.return_indices, ceil_mode = self.ceil_mode })
end

function MaxPool2d:extra_repr()
  local r = Module.pyrepr
  return string.format("kernel_size=%s, stride=%s, padding=%s, dilation=%s, ceil_mode=%s", r(self.kernel_size),
    r(self.stride), r(self.padding), r(self.dilation), r(self.ceil_mode))
end

return MaxPool2d
