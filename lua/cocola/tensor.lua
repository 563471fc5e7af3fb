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

--- pairs(t): for i, sub in pairs(t) runs over t[1], t[2], ... (the first dim)
mt.__pairs = function(self)
  local n = self:dim() > 0 and self:size(1) or 0
  local function step(t, i)
    if i < n then return i + 1, t[i + 1] end
  end
  return step, self, 0
end

-- ---- printing, in torch's format (torch/_tensor_str.py of 1.13) ---------------------------
-- Tensors over THRESHOLD elements show EDGE entries at each end of every dim; every value shares
-- one width; the last dim wraps at LINEWIDTH columns with its continuation lines indented; floats
-- print as integers with a dot, in fixed point with PRECISION decimals, or in scientific notation,
-- chosen from the finite nonzero values as torch chooses; nan, inf and -inf print as those words.
local EDGE, THRESHOLD, LINEWIDTH, PRECISION = 3, 1000, 80, 4
local FIXED, SCI = "%." .. PRECISION .. "f", "%." .. PRECISION .. "e"

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

local function is_finite(v) return v == v and v ~= math.huge and v ~= -math.huge end

-- nan, inf, -inf as Python writes them (C's printf may write "-nan")
local function nonfinite_string(v)
  if v ~= v then return "nan" end
  return v > 0 and "inf" or "-inf"
end

--- torch's _Formatter: returns format(value) -> string padded to the common width, and that width
local function formatter(t, values)
  local width = 1
  local fmt
  if t:dtype() == "int64" then
    for _, v in ipairs(values) do width = math.max(width, #string.format("%d", v)) end
    fmt = function(v) return string.format("%d", v) end
  else
    local int_mode, sci_mode = true, false
    local nonzero, lo, hi = {}, math.huge, 0
    for _, v in ipairs(values) do
      if is_finite(v) and v ~= 0 then
        nonzero[#nonzero + 1] = v
        lo, hi = math.min(lo, math.abs(v)), math.max(hi, math.abs(v))
        if v ~= math.ceil(v) then int_mode = false end
      end
    end
    if #nonzero > 0 then
      if int_mode then
        sci_mode = hi / lo > 1000 or hi > 1e8
      else
        sci_mode = hi / lo > 1000 or hi > 1e8 or lo < 1e-4
      end
      for _, v in ipairs(nonzero) do
        local n
        if sci_mode then n = #string.format(SCI, v)
        elseif int_mode then n = #string.format("%.0f", v) + 1
        else n = #string.format(FIXED, v) end
        width = math.max(width, n)
      end
    end
    fmt = function(v)
      if not is_finite(v) then return nonfinite_string(v) end
      if sci_mode then return string.format(SCI, v) end
      if int_mode then return string.format("%.0f", v) .. "." end
      return string.format(FIXED, v)
    end
  end
  return function(v)
    local s = fmt(v)
    return string.rep(" ", width - #s) .. s
  end, width
end

-- torch's _vector_str: the entries of the last dim, as many per line as fit in LINEWIDTH
local function render_vector(t, fmt, width, summarize, prefix, d, indent)
  local per_line = math.max(1, (LINEWIDTH - indent) // (width + 2))
  local data = {}
  for _, i in ipairs(visible_indices(t:size(d), summarize)) do
    if i then
      prefix[d] = i
      data[#data + 1] = fmt(t:_at(table.unpack(prefix)))
    else
      data[#data + 1] = " ..."
    end
  end
  prefix[d] = nil
  local lines = {}
  for first = 1, #data, per_line do
    lines[#lines + 1] = table.concat(data, ", ", first, math.min(first + per_line - 1, #data))
  end
  return "[" .. table.concat(lines, ",\n" .. string.rep(" ", indent + 1)) .. "]"
end

-- torch's _tensor_str_with_formatter: dim d onwards of t at the index prefix
local function render(t, fmt, width, summarize, prefix, d, indent)
  local n = t:dim()
  if n == 0 then return fmt(t:_at()) end
  if d == n then return render_vector(t, fmt, width, summarize, prefix, d, indent) end
  local parts = {}
  for _, i in ipairs(visible_indices(t:size(d), summarize)) do
    if i then
      prefix[d] = i
      parts[#parts + 1] = render(t, fmt, width, summarize, prefix, d + 1, indent + 1)
    else
      parts[#parts + 1] = "..."
    end
  end
  prefix[d] = nil
  return "[" .. table.concat(parts, "," .. string.rep("\n", n - d) .. string.rep(" ", indent + 1)) .. "]"
end

-- torch's _add_suffixes: ", suffix" while the line stays within LINEWIDTH, else on a line of its own
local function add_suffixes(text, suffixes, indent)
  local parts = { text }
  local last_line_len = #(text:match("[^\n]*$")) + 2
  for _, suffix in ipairs(suffixes) do
    if last_line_len + #suffix + 2 > LINEWIDTH then
      parts[#parts + 1] = ",\n" .. string.rep(" ", indent) .. suffix
      last_line_len = indent + #suffix
    else
      parts[#parts + 1] = ", " .. suffix
      last_line_len = last_line_len + #suffix + 2
    end
  end
  parts[#parts + 1] = ")"
  return table.concat(parts)
end

mt.__tostring = function(self)
  local t = self:device() == "cpu" and self or self:cpu()
  local prefix = "tensor("
  local summarize = t:numel() > THRESHOLD
  local body
  if t:numel() == 0 then
    body = "[]"
  else
    local values = {}
    collect(t, summarize, values, {}, 1)
    local fmt, width = formatter(t, values)
    body = render(t, fmt, width, summarize, {}, 1, #prefix)
  end
  local extras = {}
  if summarize or (t:numel() == 0 and t:dim() ~= 1) then extras[#extras + 1] = "shape=" .. t:shape_string() end
  if t:dtype() ~= "float32" then extras[#extras + 1] = "dtype=" .. t:dtype() end
  if self:device() ~= "cpu" then extras[#extras + 1] = "device=" .. self:device() end
  local fn = self:grad_fn()
  if fn then
    extras[#extras + 1] = "grad_fn=<" .. fn .. ">"
  elseif self:requires_grad() then
    extras[#extras + 1] = "requires_grad=true"
  end
  return add_suffixes(prefix .. body, extras, #prefix)
end

mt.__name = "cocola.Tensor"

return T
