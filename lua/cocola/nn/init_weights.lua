-- cocola.nn.init (this file is exposed as nn.init) — in-place weight initialisations with
-- torch.nn.init's names and distributions: uniform_, normal_, constant_, zeros_, ones_,
-- kaiming_uniform_/kaiming_normal_, xavier_uniform_/xavier_normal_, calculate_gain and
-- fan computation. They run without recording gradients and return the tensor.
local cocola = require "cocola"
local core = require "cocola.core"

local init = {}

local function nograd(fn, ...) return cocola.no_grad(fn, ...) end

--- fan_in, fan_out of a weight (out, in, k1, k2, ...) as torch computes them.
function init.calculate_fan_in_and_fan_out(t)
  local n = t:dim()
  if n < 2 then error("fan in and fan out can not be computed for a tensor with fewer than 2 dimensions", 2) end
  local receptive = 1
  for d = 3, n do receptive = receptive * t:size(d) end
  return t:size(2) * receptive, t:size(1) * receptive
end

--- Recommended gain for a nonlinearity (torch.nn.init.calculate_gain).
function init.calculate_gain(nonlinearity, param)
  nonlinearity = nonlinearity or "leaky_relu"
  local linear = { linear = true, conv1d = true, conv2d = true, conv3d = true, conv_transpose1d = true,
    conv_transpose2d = true, conv_transpose3d = true, sigmoid = true }
  if linear[nonlinearity] then return 1.0 end
  if nonlinearity == "tanh" then return 5.0 / 3 end
  if nonlinearity == "relu" then return math.sqrt(2.0) end
  if nonlinearity == "leaky_relu" then
    local slope = param == nil and 0.01 or param
    return math.sqrt(2.0 / (1 + slope * slope))
  end
  if nonlinearity == "selu" then return 3.0 / 4 end
  error("unsupported nonlinearity " .. tostring(nonlinearity), 2)
end

local function fan(t, mode)
  local fan_in, fan_out = init.calculate_fan_in_and_fan_out(t)
  if mode == nil or mode == "fan_in" then return fan_in end
  if mode == "fan_out" then return fan_out end
  error("mode must be 'fan_in' or 'fan_out', got " .. tostring(mode), 3)
end

function init.uniform_(t, a, b)
  return nograd(core.uniform_, t, a or 0, b or 1)
end

function init.normal_(t, mean, std)
  return nograd(core.normal_, t, mean or 0, std or 1)
end

function init.constant_(t, v)
  return nograd(function() return t:fill_(v) end)
end

function init.zeros_(t) return init.constant_(t, 0) end
function init.ones_(t) return init.constant_(t, 1) end

--- U(-bound, bound) with bound = gain * sqrt(3 / fan); a is the leaky_relu slope (Linear and
-- Conv2d use a = sqrt(5), giving bound = 1/sqrt(fan_in)).
--- PyTorch's reset of Linear and Conv layers: weight kaiming_uniform_(a = sqrt(5)), i.e.
-- U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias (when given) uniform in the same bound.
function init.linear_default_(weight, bias)
  init.kaiming_uniform_(weight, math.sqrt(5))
  if bias then
    local fan_in = init.calculate_fan_in_and_fan_out(weight)
    local bound = fan_in > 0 and 1 / math.sqrt(fan_in) or 0
    init.uniform_(bias, -bound, bound)
  end
end

function init.kaiming_uniform_(t, a, mode, nonlinearity)
  local f = fan(t, mode)
  if f == 0 then return t end
  local gain = init.calculate_gain(nonlinearity or "leaky_relu", a or 0)
  local bound = math.sqrt(3.0) * gain / math.sqrt(f)
  return init.uniform_(t, -bound, bound)
end

function init.kaiming_normal_(t, a, mode, nonlinearity)
  local f = fan(t, mode)
  if f == 0 then return t end
  local gain = init.calculate_gain(nonlinearity or "leaky_relu", a or 0)
  return init.normal_(t, 0, gain / math.sqrt(f))
end

function init.xavier_uniform_(t, gain)
  local fan_in, fan_out = init.calculate_fan_in_and_fan_out(t)
  local std = (gain or 1.0) * math.sqrt(2.0 / (fan_in + fan_out))
  local a = math.sqrt(3.0) * std
  return init.uniform_(t, -a, a)
end

function init.xavier_normal_(t, gain)
  local fan_in, fan_out = init.calculate_fan_in_and_fan_out(t)
  return init.normal_(t, 0, (gain or 1.0) * math.sqrt(2.0 / (fan_in + fan_out)))
end

return init
