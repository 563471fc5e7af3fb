-- cocola.tensor — tensor methods written in Lua on top of the C ones: printing the way torch
-- prints, conversions, split/chunk/flatten and small conveniences. Adds to cocola.Tensor.
local core = require "cocola.core"
local T = core.Tensor
local mt = getmetatable(core.zeros({ 1 }))

function T:float() return self:to("float32") end
function T:double() return self:to("float64") end
function T:long() return self:to("int64") end
function T:cpu() return self:to("cpu") end
function T:cuda() return self:to("cuda") end
function T:type() return self:dtype() end
function T:tolist() return self:totable() end
function T:zero_() return self:fill_(0) end
function T:requires_grad_(flag)
  if flag == nil then flag = true end
  return self:requires_grad(flag)
end
function T:is_leaf() return self:grad_fn() == nil end

--- t:flatten(start_dim = 1, end_dim = -1)
function T:flatten(start_dim, end_dim)
  local n = self:dim()
  if n == 0 then return self:reshape({ 1 }) end
  start_dim = start_dim or 1
  end_dim = end_dim or -1
  if start_dim < 0 then start_dim = start_dim + n + 1 end
  if end_dim < 0 then end_dim = end_dim + n + 1 end
  if start_dim < 1 or end_dim > n or start_dim > end_dim then
    error(string.format("flatten: invalid dims %d..%d for a %d-d tensor", start_dim, end_dim, n), 2)
  end
  local shape, merged = {}, 1
  for d = 1, n do
    local s = self:size(d)
    if d < start_dim or d > end_dim then
      shape[#shape + 1] = s
    else
      merged = merged * s
      if d == end_dim then shape[#shape + 1] = merged end
    end
  end
  return self:reshape(shape)
end

--- t:split(size, dim = 1): pieces of `size` along dim (the last may be shorter); or a table of sizes
function T:split(size, dim)
  dim = dim or 1
  local total, parts, start = self:size(dim), {}, 1
  if type(size) == "table" then
    local sum = 0
    for _, s in ipairs(size) do sum = sum + s end
    if sum ~= total then
      error(string.format("split: sizes add up to %d but dimension %d has size %d", sum, dim, total), 2)
    end
    for _, s in ipairs(size) do
      parts[#parts + 1] = self:narrow(dim, start, s)
      start = start + s
    end
    return parts
  end
  if math.type(size) ~= "integer" or size < 1 then error("split: size must be a positive integer", 2) end
  while start <= total do
    local len = math.min(size, total - start + 1)
    parts[#parts + 1] = self:narrow(dim, start, len)
    start = start + len
  end
  return parts
end

--- t:chunk(n, dim = 1)
function T:chunk(n, dim)
  dim = dim or 1
  return self:split(math.max(1, (self:size(dim) + n - 1) // n), dim)
end

function T:min(dim, keepdim)
  if dim == nil then return -((-self):max()) end
  local v, i = (-self):max(dim, keepdim)
  return -v, i
end

--- max |a - b| <= atol + rtol * |b| everywhere
function T:allclose(other, rtol, atol)
  rtol, atol = rtol or 1e-5, atol or 1e-8
  local a, b = self:double(), other:double()
  local bad = ((a - b):abs() - (b:abs() * rtol + atol)):max():item()
  return bad <= 0
end

function T:shape_string()
  local s = self.shape
  for i = 1, #s do s[i] = tostring(s[i]) end
  return "{" .. table.concat(s, ",") .. "}"
end

-- ---- printing, in torch's format ----------------------------------------------------------
local EDGE, THRESHOLD = 3, 1000

local function visible_indices(size, summarize)
  local idx = {}
  if summarize and size > 2 * EDGE then
    for i = 1, EDGE do idx[#idx + 1] = i end
    idx[#idx + 1] = false -- the ellipsis
    for i = size - EDGE + 1, size do idx[#idx + 1] = i end
  else
    for i = 1, size do idx[i] = i end
  end
  return idx
end

local function collect(t, summarize, out, prefix, d)
  if d > t:dim() then
    out[#out + 1] = t:_at(table.unpack(prefix))
    return
  end
  for _, i in ipairs(visible_indices(t:size(d), summarize)) do
    if i then
      prefix[d] = i
      collect(t, summarize, out, prefix, d + 1)
    end
  end
  prefix[d] = nil
end

local function formatter(t, values)
  if t:dtype() == "int64" then
    local w = 1
    for _, v in ipairs(values) do w = math.max(w, #string.format("%d", v)) end
    return function(v) return string.format("%" .. w .. "d", v) end
  end
  local ints, maxabs, minabs = true, 0, math.huge
  for _, v in ipairs(values) do
    if v == v and v ~= math.huge and v ~= -math.huge then
      if v ~= math.floor(v) then ints = false end
      local a = math.abs(v)
      maxabs = math.max(maxabs, a)
      if a > 0 then minabs = math.min(minabs, a) end
    end
  end
  local fmt
  if ints and maxabs < 1e8 then
    fmt = function(v) return (v ~= v or v == math.huge or v == -math.huge) and tostring(v) or string.format("%.0f.", v) end
  elseif maxabs >= 1e8 or (minabs < 1e-4 and minabs ~= math.huge) or (minabs ~= math.huge and maxabs / minabs > 1000 and maxabs > 1000) then
    fmt = function(v) return (v ~= v) and "nan" or string.format("%.4e", v) end
  else
    fmt = function(v) return (v ~= v) and "nan" or string.format("%.4f", v) end
  end
  local w = 1
  for _, v in ipairs(values) do w = math.max(w, #fmt(v)) end
  return function(v)
    local s = fmt(v)
    return string.rep(" ", w - #s) .. s
  end
end

local function render(t, fmt, summarize, prefix, d, indent)
  local n = t:dim()
  if n == 0 then return fmt(t:_at()) end
  local parts = {}
  for _, i in ipairs(visible_indices(t:size(d), summarize)) do
    if not i then
      parts[#parts + 1] = "..."
    else
      prefix[d] = i
      if d == n then
        parts[#parts + 1] = fmt(t:_at(table.unpack(prefix)))
      else
        parts[#parts + 1] = render(t, fmt, summarize, prefix, d + 1, indent .. " ")
      end
    end
  end
  prefix[d] = nil
  if d == n then return "[" .. table.concat(parts, ", ") .. "]" end
  local sep = "," .. string.rep("\n", n - d) .. indent .. " "
  return "[" .. table.concat(parts, sep) .. "]"
end

mt.__tostring = function(self)
  local t = self:device() == "cpu" and self or self:cpu()
  local summarize = t:numel() > THRESHOLD
  local values = {}
  collect(t, summarize, values, {}, 1)
  local fmt = formatter(t, values)
  local body = render(t, fmt, summarize, {}, 1, "       ")
  local extras = {}
  if summarize or t:numel() == 0 then extras[#extras + 1] = "shape=" .. t:shape_string() end
  if t:dtype() ~= "float32" then extras[#extras + 1] = "dtype=" .. t:dtype() end
  if self:device() ~= "cpu" then extras[#extras + 1] = "device=" .. self:device() end
  local fn = self:grad_fn()
  if fn then
    extras[#extras + 1] = "grad_fn=<" .. fn .. ">"
  elseif self:requires_grad() then
    extras[#extras + 1] = "requires_grad=true"
  end
  local tail = #extras > 0 and (", " .. table.concat(extras, ", ")) or ""
  return "tensor(" .. body .. tail .. ")"
end

mt.__name = "cocola.Tensor"

return T
