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

-- ---- comparisons --------------------------------------------------------------------------
-- t:eq/ne/lt/le/gt/ge(other) (C) give 0/1 masks in t's dtype; torch's longer names too
T.greater, T.greater_equal, T.less, T.less_equal, T.not_equal = T.gt, T.ge, T.lt, T.le, T.ne

--- t:equal(other): true when both have the same shape and the same values (a NaN equals nothing)
function T:equal(other)
  if not core.is_tensor(other) then error("equal: expected a tensor, got " .. type(other), 2) end
  local a, b = self.shape, other.shape
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return self:ne(other):sum():item() == 0
end

--- t:isnan(), t:isinf(), t:isfinite(): 0/1 masks in t's dtype (an int64 tensor has only finite values)
function T:isnan()
  if self:dtype() == "int64" then return self:mul(0) end
  return self:ne(self)
end
function T:isinf()
  if self:dtype() == "int64" then return self:mul(0) end
  return self:abs():eq(math.huge)
end
function T:isfinite()
  if self:dtype() == "int64" then return self:mul(0):add(1) end
  return self:eq(self):mul(self:abs():ne(math.huge))
end

--- t:any(dim, keepdim) / t:all(dim, keepdim): whether any / every entry is nonzero (NaN counts as
-- nonzero), over all entries (dim nil), a dim or a list of dims; a 0/1 mask in t's dtype
function T:any(dim, keepdim) return self:ne(0):sum(dim, keepdim):gt(0) end
function T:all(dim, keepdim) return self:eq(0):sum(dim, keepdim):eq(0) end

-- ---- statistics and norms, composed of differentiable ops -----------------------------------
-- dim: nil (every entry), a dim, or a list of dims (1-based, negatives from the end)

local function count_over(t, dim)
  if dim == nil then return t:numel() end
  if type(dim) == "table" then
    local n = 1
    for _, d in ipairs(dim) do n = n * t:size(d) end
    return n
  end
  return t:size(dim)
end

local function check_floating(t, what)
  if t:dtype() == "int64" then
    error(what .. ": expected a floating tensor (float32 or float64), got int64 (convert with :float())", 3)
  end
end

-- max (or min) over dim with the reduced dims kept, outside the graph
local function extreme(t, dim, largest)
  local x = largest and t:detach() or -t:detach()
  if dim == nil then
    x = x:max()
  elseif type(dim) == "table" then
    for _, d in ipairs(dim) do x = x:max(d, true) end
  else
    x = x:max(dim, true)
  end
  return largest and x or -x
end

--- t:var(dim, opts) or t:var(dim, unbiased, keepdim): the variance over dim (mean of squared
-- deviations from the mean, divided by N - correction). opts: {correction = 1, unbiased = true
-- (correction 1; false: 0), keepdim = false}, as torch.var.
function T:var(dim, unbiased, keepdim)
  check_floating(self, "var")
  local correction = 1
  if type(unbiased) == "table" then
    local opts = unbiased
    keepdim = opts.keepdim
    if opts.correction ~= nil and opts.unbiased ~= nil then
      error("var: give correction or unbiased, not both", 2)
    end
    if opts.correction ~= nil then
      correction = opts.correction
    elseif opts.unbiased == false then
      correction = 0
    end
  elseif unbiased == false then
    correction = 0
  end
  if type(correction) ~= "number" then error("var: correction must be a number", 2) end
  local dev = self - self:mean(dim, true)
  local n = count_over(self, dim)
  return (dev * dev):sum(dim, keepdim) / math.max(n - correction, 0)
end

--- t:std(dim, opts) or t:std(dim, unbiased, keepdim): the square root of t:var with the same arguments
function T:std(dim, unbiased, keepdim)
  check_floating(self, "std")
  return self:var(dim, unbiased, keepdim):sqrt()
end

--- t:norm(p = 2, dim, keepdim): the vector p-norm over dim (every entry when nil). p: any positive
-- number, math.huge (largest |x|), -math.huge (smallest |x|), 0 (count of nonzeros, no gradient), or
-- "fro" (2). Gradients as torch's: 0 where a norm is 0; for +-math.huge shared equally among the
-- entries that attain it.
function T:norm(p, dim, keepdim)
  check_floating(self, "norm")
  if p == nil or p == "fro" then p = 2 end
  if type(p) ~= "number" then error("norm: p must be a number or \"fro\", got " .. tostring(p), 2) end
  if p < 0 and p ~= -math.huge then error("norm: p must be positive, 0 or +-math.huge, got " .. p, 2) end
  if p == 0 then return self:ne(0):sum(dim, keepdim) end
  local a = self:abs()
  if p == 1 then return a:sum(dim, keepdim) end
  if p == math.huge or p == -math.huge then
    local m = extreme(a, dim, p > 0)
    local hit = a:eq(m) + a:isnan()
    local share = hit / hit:sum(dim, true)
    return core.where(hit, a * share, 0):sum(dim, keepdim)
  end
  local s = p == 2 and (self * self):sum(dim, keepdim) or a:pow(p):sum(dim, keepdim)
  -- s^(1/p) has an infinite slope at s = 0: the zero branch keeps its NaN out of the gradient
  local zero = s:eq(0)
  local safe = core.where(zero, 1, s)
  return core.where(zero, 0, p == 2 and safe:sqrt() or safe:pow(1 / p))
end

--- t:logsumexp(dim, keepdim): log(sum(exp(t))) over dim (every entry when nil), computed as
-- m + log(sum(exp(t - m))) with m the maximum, so it neither overflows nor underflows
function T:logsumexp(dim, keepdim)
  check_floating(self, "logsumexp")
  local m = extreme(self, dim, true)
  m = core.where(m:abs():eq(math.huge), 0, m) -- an infinite maximum would give inf - inf
  local lse = (self - m):exp():sum(dim, keepdim):log()
  return lse + (keepdim and m or m:reshape(lse.shape))
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
