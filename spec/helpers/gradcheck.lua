-- spec/helpers/gradcheck.lua — float64 central finite-difference gradient checker.
-- The scalar checked is L = sum_k sum(out_k * W_k), W_k a fixed pseudo-random weight per output (so
-- every output element matters, with a different weight). The analytic gradient comes from
-- L:backward(); the numeric one perturbs each input element by +-eps, building fresh input tensors
-- for every evaluation, and differences the outputs in plain Lua (from totable()), so the check does
-- not depend on the engine's own arithmetic or on state left by an earlier evaluation.
-- An element passes when |analytic - numeric| <= atol + rtol * |numeric|; the report names the worst.
--
--   local gc = require "helpers.gradcheck"
--   gc.assert(function(x) return x[1]:exp() * x[2] end, { a, b }, { layout = "transposed" })
--
-- inputs: a list whose entries are tensors (float64 ones are differentiated; others passed as they
-- are) or tables { tensor, grad = false } to pass a float64 tensor through without checking it.
-- opts: eps (1e-6), atol (1e-6), rtol (1e-6), seed (cocola.manual_seed(seed) right before every call
-- of fn, to fix dropout masks), layout: how every differentiated input is laid out in memory, one of
-- "contiguous" (default), "transposed" (last two dims swapped in storage), "strided" (every stride
-- doubled), "narrowed" (a narrow of a wider tensor along the last dim), or a function(contiguous
-- float64 tensor) -> leaf tensor with the same values.
local cocola = require "cocola"

local M = {}
M.EPS, M.ATOL, M.RTOL = 1e-6, 1e-6, 1e-6

local function flatten(v, out)
  if type(v) == "table" then
    for i = 1, #v do flatten(v[i], out) end
  else
    out[#out + 1] = v
  end
  return out
end

local function build(flat, shape, d, pos)
  d, pos = d or 1, pos or 1
  if #shape == 0 then return flat[1], 2 end
  local t = {}
  for i = 1, shape[d] do
    if d == #shape then
      t[i] = flat[pos]
      pos = pos + 1
    else
      t[i], pos = build(flat, shape, d + 1, pos)
    end
  end
  return t, pos
end

local function multi_index(j, shape)
  local idx, rem = {}, j - 1
  for d = #shape, 1, -1 do
    idx[d] = rem % shape[d] + 1
    rem = rem // shape[d]
  end
  return "(" .. table.concat(idx, ",") .. ")"
end

local function shape_str(shape) return "{" .. table.concat(shape, ",") .. "}" end

local function from_flat(flat, shape)
  local nested = build(flat, shape)
  return cocola.tensor(nested, { dtype = "float64" })
end

-- ---- layouts: contiguous float64 tensor -> leaf with the same values and another memory layout ----
M.layouts = {}

function M.layouts.contiguous(c) return c end

-- transposed and narrowed fall back to strided where they would still be contiguous (size-1 dims,
-- 1-D tensors), so every input with more than one element really is non-contiguous
function M.layouts.transposed(c)
  if c:dim() < 2 then return M.layouts.strided(c) end
  local x = cocola.no_grad(function() return c:transpose(-1, -2):contiguous():transpose(-1, -2):detach() end)
  if x:is_contiguous() then return M.layouts.strided(c) end
  return x
end

function M.layouts.strided(c)
  return cocola.no_grad(function()
    local junk = cocola.full(c.shape, 12345.0, { dtype = "float64" })
    return cocola.stack({ c, junk }, -1):select(-1, 1):detach()
  end)
end

function M.layouts.narrowed(c)
  if c:dim() == 0 then return c end
  local x = cocola.no_grad(function()
    local junk = cocola.full(c.shape, -777.0, { dtype = "float64" })
    return cocola.cat({ junk:narrow(-1, 1, 1), c, junk }, -1):narrow(-1, 2, c:size(-1)):detach()
  end)
  if x:is_contiguous() then return M.layouts.strided(c) end
  return x
end

-- deterministic weights in +-[0.5, 1.5] (xorshift; independent of cocola's generator)
local function weights(n, state)
  local w = {}
  for i = 1, n do
    state = state ~ (state << 13)
    state = state ~ (state >> 7)
    state = state ~ (state << 17)
    local u = ((state >> 11) & 0xFFFFF) / 0x100000
    w[i] = (u < 0.5 and -1 or 1) * (0.5 + 2 * math.abs(u - 0.5))
  end
  return w, state
end

--- Runs the check. Returns a result table: ok, message (on failure: which input/element and the
-- two values), worst = { ratio, input, index, analytic, numeric }, checked (elements compared),
-- noncontiguous (how many differentiated inputs were laid out non-contiguously).
function M.check(fn, inputs, opts)
  opts = opts or {}
  local eps, atol, rtol = opts.eps or M.EPS, opts.atol or M.ATOL, opts.rtol or M.RTOL
  local layout = opts.layout or "contiguous"
  if type(layout) == "string" then
    layout = assert(M.layouts[layout], "gradcheck: unknown layout " .. layout)
  end

  -- describe the inputs
  local specs = {}
  for i, entry in ipairs(inputs) do
    local t, grad = entry, nil
    if not cocola.is_tensor(entry) then
      t, grad = entry[1], entry.grad
    end
    assert(cocola.is_tensor(t), "gradcheck: input " .. i .. " is not a tensor")
    if grad == nil then grad = t:dtype() == "float64" end
    if grad and t:dtype() ~= "float64" then error("gradcheck: differentiated input " .. i .. " must be float64", 2) end
    local spec = { grad = grad, tensor = t }
    if grad then
      spec.shape = t.shape
      spec.values = flatten(t:totable(), {})
    end
    specs[i] = spec
  end

  local noncontig = 0
  local function make_inputs(which, j, delta, with_grad)
    local xs = {}
    for i, s in ipairs(specs) do
      if s.grad then
        local vals = s.values
        if i == which then
          vals = table.move(s.values, 1, #s.values, 1, {})
          vals[j] = vals[j] + delta
        end
        local x = layout(from_flat(vals, s.shape))
        if with_grad then
          if not x:is_contiguous() then noncontig = noncontig + 1 end
          x:requires_grad(true)
        end
        xs[i] = x
      else
        xs[i] = s.tensor
      end
    end
    return xs
  end

  local function call(xs)
    if opts.seed then cocola.manual_seed(opts.seed) end
    local out = fn(xs)
    if cocola.is_tensor(out) then out = { out } end
    assert(type(out) == "table" and #out > 0, "gradcheck: fn must return a tensor or a list of tensors")
    for k, o in ipairs(out) do
      if o:dtype() ~= "float64" then error(string.format("gradcheck: output %d is %s, expected float64", k, o:dtype()), 0) end
    end
    return out
  end

  -- analytic
  local xs = make_inputs(nil, nil, 0, true)
  local outs = call(xs)
  local W, state = {}, 0x2545F4914F6CDD1D
  local loss
  for k, o in ipairs(outs) do
    local w
    w, state = weights(math.max(o:numel(), 1), state)
    W[k] = w
    local term = (o * from_flat(w, o.shape)):sum()
    loss = loss and (loss + term) or term
  end
  loss:backward()
  local analytic = {}
  for i, s in ipairs(specs) do
    if s.grad then
      local g = xs[i].grad
      if g == nil then
        analytic[i] = false
      else
        local gs = g.shape
        if #gs ~= #s.shape then
          return { ok = false, message = string.format("input %d: gradient of shape %s for an input of shape %s", i, shape_str(gs), shape_str(s.shape)) }
        end
        for d = 1, #gs do
          if gs[d] ~= s.shape[d] then
            return { ok = false, message = string.format("input %d: gradient of shape %s for an input of shape %s", i, shape_str(gs), shape_str(s.shape)) }
          end
        end
        if g:dtype() ~= "float64" then
          return { ok = false, message = string.format("input %d: gradient dtype %s, expected float64", i, g:dtype()) }
        end
        analytic[i] = flatten(g:totable(), {})
      end
    end
  end
  local made_noncontig = noncontig

  -- numeric, compared element by element
  local function outputs_flat(which, j, delta)
    local os = cocola.no_grad(function() return call(make_inputs(which, j, delta, false)) end)
    local flat = {}
    for k, o in ipairs(os) do flat[k] = flatten(o:totable(), {}) end
    return flat
  end
  local worst = { ratio = -1 }
  local checked = 0
  for i, s in ipairs(specs) do
    if s.grad then
      for j = 1, #s.values do
        local plus, minus = outputs_flat(i, j, eps), outputs_flat(i, j, -eps)
        local acc = 0.0
        for k = 1, #W do
          local p, m, w = plus[k], minus[k], W[k]
          for e = 1, #w do acc = acc + w[e] * (p[e] - m[e]) end
        end
        local numeric = acc / (2 * eps)
        local a = analytic[i] and analytic[i][j] or 0.0
        local ratio = math.abs(a - numeric) / (atol + rtol * math.abs(numeric))
        if ratio ~= ratio then ratio = math.huge end
        if not analytic[i] and numeric ~= 0 then ratio = math.max(ratio, math.huge) end
        checked = checked + 1
        if ratio > worst.ratio then
          worst = { ratio = ratio, input = i, index = multi_index(j, s.shape), analytic = analytic[i] and a or "nil (no grad)", numeric = numeric }
        end
      end
    end
  end
  local ok = worst.ratio <= 1
  local message = string.format("worst: input %s element %s of shape %s: analytic %s, numeric %.10g (error/tolerance %.3g)",
    tostring(worst.input), tostring(worst.index), worst.input and shape_str(specs[worst.input].shape) or "?",
    type(worst.analytic) == "number" and string.format("%.10g", worst.analytic) or tostring(worst.analytic),
    worst.numeric or 0 / 0, worst.ratio)
  return { ok = ok, message = message, worst = worst, checked = checked, noncontiguous = made_noncontig }
end

--- Like check, raising an error with the report when the gradients disagree; returns the result.
function M.assert(fn, inputs, opts)
  local r = M.check(fn, inputs, opts)
  if not r.ok then
    error(string.format("gradcheck%s failed: %s", opts and opts.name and (" " .. opts.name) or "", r.message), 2)
  end
  if r.checked == 0 then error("gradcheck: nothing was checked (no float64 input)", 2) end
  return r
end

-- exposed for specs that build inputs from plain values
M.flatten, M.from_flat = flatten, from_flat

return M
