-- cuda_parity_spec.lua #cuda — the GPU against the CPU path, op by op: for every op of the op table,
-- cases with random non-contiguous (transposed, strided, narrowed, permuted, expanded) and broadcast
-- inputs run once on the CPU and once on the GPU (same values, same layouts, same seed), and the
-- outputs and the gradients of the inputs (for a fixed random upstream gradient) must agree to
-- 1e-5 norm-wise relative error in float32 (1e-12 in float64; exactly for integers and random draws).
-- Then a whole COCOLA training step (forward, contrastive loss, backward, Adam) on both devices, the
-- caching allocator, events and errors. Where no CUDA device is usable the whole file is one pending
-- test. PARITY_VERBOSE=1 prints each case's worst error.
local cocola = require "cocola"
local F = require "cocola.nn.functional"
local compare = require "helpers.compare"

local cuda = cocola.cuda

if not cuda.is_available() then
  describe("CUDA parity #cuda", function()
    pending("no CUDA device")
  end)
  return
end

local TOL32, TOL64 = 1e-5, 1e-12

-- ---- inputs ----------------------------------------------------------------------------------
-- I(shape, layout, kind, opts): an input of the given (logical) shape, stored as
--   "contiguous", "transposed" (last two dims swapped in storage), "strided" (every other element of
--   the last dim), "narrowed" (a window of a wider last dim), "permuted" (dims rotated in storage),
--   "expanded" (stride 0 along the dims of size 1 in opts.from)
-- kind: "normal" (default), "positive" (0.5 .. 1.5), "mask" (0/1), "int" (0 .. opts.high-1, int64)
-- opts.grad = false: no gradient checked (forced for int64 and masks); opts.dtype = "float64"
local function I(shape, layout, kind, opts)
  opts = opts or {}
  return { shape = shape, layout = layout or "contiguous", kind = kind or "normal", opts = opts }
end

local function copy_list(t)
  local out = {}
  for i, v in ipairs(t) do out[i] = v end
  return out
end

-- the storage shape and the view that turns it into the logical shape
local function layout_of(spec)
  local s, n = copy_list(spec.shape), #spec.shape
  local layout = spec.layout
  if layout == "contiguous" then return s, nil end
  if layout == "transposed" then
    assert(n >= 2, "transposed needs 2 dims")
    s[n - 1], s[n] = s[n], s[n - 1]
    return s, function(t) return t:transpose(-2, -1) end
  end
  if layout == "strided" then
    local last = s[n]
    s[n] = 2 * last
    return s, function(t)
      local shape = copy_list(spec.shape)
      shape[n] = last
      shape[n + 1] = 2
      return t:view(shape):select(-1, 1)
    end
  end
  if layout == "narrowed" then
    local last = s[n]
    s[n] = last + 3
    return s, function(t) return t:narrow(-1, 2, last) end
  end
  if layout == "permuted" then
    assert(n >= 3, "permuted needs 3 dims")
    -- storage (d2, ..., dn, d1), viewed back as (d1, ..., dn)
    local st = {}
    for d = 2, n do st[#st + 1] = s[d] end
    st[#st + 1] = s[1]
    local perm = { n }
    for d = 1, n - 1 do perm[#perm + 1] = d end
    return st, function(t) return t:permute(table.unpack(perm)) end
  end
  if layout == "expanded" then
    return copy_list(spec.opts.from), function(t) return t:expand(spec.shape) end
  end
  error("unknown layout " .. layout)
end

local function make_base(spec)
  local shape = layout_of(spec)
  local dtype = spec.opts.dtype or "float32"
  local t
  if spec.kind == "normal" then
    t = cocola.randn(shape)
  elseif spec.kind == "positive" then
    t = cocola.rand(shape) + 0.5
  elseif spec.kind == "mask" then
    t = cocola.rand(shape):lt(0.5)
  elseif spec.kind == "int" then
    return cocola.randint(0, spec.opts.high or 5, shape)
  else
    error("unknown kind " .. spec.kind)
  end
  if dtype ~= "float32" then t = t:to(dtype) end
  return t
end

local function differentiable(spec)
  return spec.kind ~= "int" and spec.kind ~= "mask" and spec.opts.grad ~= false
end

-- ---- the cases ---------------------------------------------------------------------------------
-- { name, ops = {op names exercised}, inputs = {I(...)}, fn = function(x) -> tensor or list,
--   tol = (default by dtype), seed }
local CASES = {}
local function case(c)
  assert(not CASES[c.name], "duplicate case " .. c.name)
  CASES[#CASES + 1] = c
  CASES[c.name] = c
end

-- fill, copy (views, dtype conversions, broadcast copy_), cross-device copies of views
case { name = "fill_strided_view", ops = { "FILL", "COPY" }, inputs = { I({ 4, 6 }, "transposed", "normal", { grad = false }) },
  fn = function(x)
    local z = x[1]:clone()
    z:narrow(2, 2, 3):fill_(2.5)
    z:select(1, 4):fill_(-1)
    return z
  end }
case { name = "fill_int64", ops = { "FILL" }, inputs = { I({ 3, 5 }, "contiguous", "int", { high = 9 }) },
  fn = function(x)
    local z = x[1]:clone()
    z:narrow(2, 1, 2):fill_(7)
    return z
  end }
case { name = "contiguous_transposed", ops = { "COPY" }, inputs = { I({ 5, 7 }, "transposed") },
  fn = function(x) return x[1]:contiguous() end }
case { name = "contiguous_permuted", ops = { "COPY" }, inputs = { I({ 3, 4, 5 }, "permuted") },
  fn = function(x) return x[1]:contiguous() * 1.5 end }
case { name = "reshape_strided", ops = { "COPY" }, inputs = { I({ 4, 6 }, "strided") },
  fn = function(x) return x[1]:reshape(24) end }
case { name = "to_float64_and_back", ops = { "COPY" }, inputs = { I({ 3, 4 }, "narrowed") },
  fn = function(x) return { (x[1]:double() * 2):float(), x[1]:double() } end }
case { name = "to_int64", ops = { "COPY" }, inputs = { I({ 4, 5 }, "transposed", "normal", { grad = false }) },
  fn = function(x) return { (x[1] * 10):long(), (x[1] * 10):long():float() } end }
case { name = "copy_broadcast", ops = { "COPY" }, inputs = { I({ 3, 4 }, "contiguous", "normal", { grad = false }), I({ 1, 4 }) },
  fn = function(x)
    local z = x[1]:clone()
    cocola.no_grad(function() z:t():copy_(x[2]:t()) end)
    return z
  end }
case { name = "cat_stack_split", ops = { "COPY" }, inputs = { I({ 2, 3 }, "transposed"), I({ 2, 4 }), I({ 2, 3 }, "strided") },
  fn = function(x)
    local c = cocola.cat({ x[1], x[2], x[3] }, 2)
    local s = cocola.stack({ x[1], x[3] }, 1)
    local parts = c:split(4, 2)
    return { c, s, parts[2] * 2 }
  end }

-- random fills: the same seed gives the same numbers on both devices
-- (normal draws go through log and cos, which may differ in the last bit between host and device)
case { name = "uniform_normal_views", ops = { "RANDOM", "COPY" }, tol = 1e-6,
  inputs = { I({ 6, 5 }, "contiguous", "normal", { grad = false }) },
  fn = function(x)
    local z = x[1]:clone()
    cocola.uniform_(z:t(), -1, 2) -- non-contiguous target
    local w = x[1]:clone()
    cocola.normal_(w, 0.5, 2)
    local d = x[1]:double()
    cocola.uniform_(d)
    return { z, w, d }
  end }

-- unary forward and backward, on non-contiguous inputs
local UNARY = {
  neg = { "normal", function(t) return -t end }, exp = { "normal", function(t) return t:exp() end },
  log = { "positive", function(t) return t:log() end }, sqrt = { "positive", function(t) return t:sqrt() end },
  abs = { "normal", function(t) return t:abs() end }, relu = { "normal", function(t) return t:relu() end },
  sigmoid = { "normal", function(t) return t:sigmoid() end }, silu = { "normal", function(t) return t:silu() end },
  tanh = { "normal", function(t) return t:tanh() end }, gelu = { "normal", function(t) return t:gelu() end },
  sin = { "normal", function(t) return t:sin() * 3 end }, cos = { "normal", function(t) return t:cos() end },
  floor = { "normal", function(t) return (t * 3):floor() + t end }, round = { "normal", function(t) return (t * 3):round() * t end },
  leaky_relu = { "normal", function(t) return t:leaky_relu(0.2) end }, elu = { "normal", function(t) return t:elu(0.7) end },
  gelu_tanh = { "normal", function(t) return (t * 2):gelu("tanh") end },
}
local LAYOUTS = { "transposed", "strided", "narrowed", "permuted" }
local k = 0
for _, name in ipairs({ "neg", "exp", "log", "sqrt", "abs", "relu", "sigmoid", "silu", "tanh", "gelu", "sin", "cos",
  "floor", "round", "leaky_relu", "elu", "gelu_tanh" }) do
  k = k + 1
  local layout = LAYOUTS[(k - 1) % #LAYOUTS + 1]
  local shape = layout == "permuted" and { 3, 4, 5 } or { 6, 7 }
  case { name = "unary_" .. name .. "_" .. layout, ops = { "UNARY", "UNARY_BACKWARD" },
    inputs = { I(shape, layout, UNARY[name][1]) }, fn = function(x) return UNARY[name][2](x[1]) end }
end
case { name = "unary_silu_float64", ops = { "UNARY", "UNARY_BACKWARD" },
  inputs = { I({ 5, 6 }, "transposed", "normal", { dtype = "float64" }) }, fn = function(x) return x[1]:silu():gelu() end }
case { name = "unary_large", ops = { "UNARY", "UNARY_BACKWARD" }, inputs = { I({ 300, 257 }, "transposed") },
  fn = function(x) return x[1]:gelu() end }
case { name = "unary_int64", ops = { "UNARY" }, inputs = { I({ 4, 5 }, "transposed", "int", { high = 9 }) },
  fn = function(x) return { -(x[1] - 4), (x[1] - 4):abs(), (x[1] - 4):floor(), (x[1] - 4):round() } end }
case { name = "round_halves_to_even", ops = { "UNARY" }, inputs = { I({ 6, 7 }, "transposed", "normal", { grad = false }) },
  fn = function(x) return { (x[1] * 4):round() / 2, (x[1] * 4):floor():add(0.5):round() } end }

-- binary with broadcasting (and non-contiguous operands)
case { name = "add_bcast", ops = { "BINARY" }, inputs = { I({ 3, 4, 5 }, "permuted"), I({ 4, 1 }) },
  fn = function(x) return x[1] + x[2] end }
case { name = "sub_bcast_expanded", ops = { "BINARY" }, inputs = { I({ 5, 4 }, "expanded", "normal", { from = { 1, 4 } }), I({ 5, 4 }, "transposed") },
  fn = function(x) return x[1] - x[2] end }
case { name = "mul_bcast", ops = { "BINARY" }, inputs = { I({ 2, 3, 4 }, "strided"), I({ 3, 1 }, "contiguous") },
  fn = function(x) return x[1] * x[2] end }
case { name = "div_bcast", ops = { "BINARY" }, inputs = { I({ 4, 6 }, "narrowed"), I({ 6 }, "contiguous", "positive") },
  fn = function(x) return x[1] / x[2] end }
case { name = "pow_tensor", ops = { "BINARY" }, inputs = { I({ 3, 5 }, "transposed", "positive"), I({ 1, 5 }) },
  fn = function(x) return x[1]:pow(x[2]) end }
case { name = "compare_all", ops = { "BINARY" }, inputs = { I({ 4, 5 }, "transposed"), I({ 5 }) },
  fn = function(x)
    local a, b = x[1], x[2]
    return { a:eq(b), a:ne(b), a:lt(b), a:le(b), a:gt(b), a:ge(b), a:eq(a) }
  end }
case { name = "binary_int64", ops = { "BINARY" }, inputs = { I({ 3, 4 }, "transposed", "int", { high = 7 }), I({ 4 }, "contiguous", "int", { high = 3 }) },
  fn = function(x) return { x[1] + x[2], x[1] * x[2], x[1] - x[2], x[1]:lt(x[2]), x[1]:ge(x[2]) } end }
case { name = "binary_float64", ops = { "BINARY" }, inputs = { I({ 3, 4 }, "transposed", "normal", { dtype = "float64" }), I({ 4 }, "contiguous", "positive", { dtype = "float64" }) },
  fn = function(x) return (x[1] + x[2]) * x[1] / x[2] end }
case { name = "binary_large_bcast", ops = { "BINARY" }, inputs = { I({ 64, 33, 40 }, "narrowed"), I({ 33, 1 }) },
  fn = function(x) return x[1] * x[2] + x[1] end }

-- tensor-scalar ops, clamp (its backward mask is a SCALAR kernel too)
case { name = "scalar_ops", ops = { "SCALAR" }, inputs = { I({ 5, 6 }, "transposed", "positive") },
  fn = function(x)
    local t = x[1]
    return { t + 2.5, t * 3, 1.5 - t, 2 / t, t ^ 3, t:pow(0.5), t ^ -1.5, t / 4 }
  end }
case { name = "clamp", ops = { "SCALAR" }, inputs = { I({ 6, 5 }, "strided") },
  fn = function(x) return { x[1]:clamp(-0.5, 0.7), x[1]:clamp(0.1), x[1]:clamp(nil, -0.2) } end }
case { name = "scalar_int64", ops = { "SCALAR" }, inputs = { I({ 3, 4 }, "transposed", "int", { high = 9 }) },
  fn = function(x) return { x[1] + 3, x[1] * 2, 10 - x[1], x[1]:clamp(2, 5), x[1]:clamp(3) } end }

-- where, masked_fill
case { name = "where_bcast", ops = { "WHERE" }, inputs = { I({ 3, 1 }, "contiguous", "mask"), I({ 3, 4 }, "transposed"), I({ 4 }) },
  fn = function(x) return cocola.where(x[1], x[2], x[3]) end }
case { name = "where_scalar", ops = { "WHERE" }, inputs = { I({ 4, 5 }, "contiguous", "mask"), I({ 4, 5 }, "narrowed") },
  fn = function(x) return cocola.where(x[1], x[2], 0.0) end }
case { name = "masked_fill", ops = { "WHERE" }, inputs = { I({ 4, 5 }, "strided"), I({ 5 }, "contiguous", "mask") },
  fn = function(x) return x[1]:masked_fill(x[2], -2.0) end }

-- reductions (small ones in one pass, large ones through the two-pass partial sums)
case { name = "sum_all_dims", ops = { "SUM" }, inputs = { I({ 3, 4, 5 }, "permuted") },
  fn = function(x) return { x[1]:sum(), x[1]:sum(2), x[1]:sum({ 1, 3 }, true), x[1]:sum(-1), x[1]:mean(), x[1]:mean(2, true) } end }
case { name = "sum_large_two_pass", ops = { "SUM" }, inputs = { I({ 2048, 3 }, "transposed"), I({ 64, 64 }, "narrowed") },
  fn = function(x) return { x[1]:sum(1), x[2]:sum(), x[2]:mean(2), x[1]:mean() } end }
case { name = "sum_float64_int64", ops = { "SUM" }, inputs = { I({ 40, 50 }, "transposed", "normal", { dtype = "float64" }), I({ 6, 7 }, "transposed", "int", { high = 100 }) },
  fn = function(x) return { x[1]:sum(1), x[2]:sum(), x[2]:sum(2) } end }
case { name = "max_argmax", ops = { "MAX" }, inputs = { I({ 4, 6, 5 }, "permuted") },
  fn = function(x)
    local v, i = x[1]:max(2)
    local v2, i2 = x[1]:max(1, true)
    return { v, i, v2, i2, x[1]:max(), x[1]:argmax(3), x[1]:argmax() }
  end }
case { name = "max_int64", ops = { "MAX" }, inputs = { I({ 5, 6 }, "transposed", "int", { high = 50 }) },
  fn = function(x)
    local v, i = x[1]:max(2)
    return { v, i }
  end }

-- cumsum (its backward is the reversed running sum), sort and topk (their backward puts the gradient
-- back through the indices); ties and NaN must come out in the CPU's order
case { name = "cumsum", ops = { "CUMSUM" }, inputs = { I({ 3, 4, 5 }, "permuted"), I({ 6, 7 }, "strided") },
  fn = function(x) return { x[1]:cumsum(2), x[1]:cumsum(-1), x[2]:cumsum(1) * x[2] } end }
case { name = "cumsum_float64_int64_long_rows", ops = { "CUMSUM" },
  inputs = { I({ 3, 2000 }, "narrowed", "normal", { dtype = "float64" }), I({ 5, 6 }, "transposed", "int", { high = 100 }) },
  fn = function(x) return { x[1]:cumsum(2), x[2]:cumsum(1), x[2]:cumsum(2) } end }
case { name = "sort_dims_and_directions", ops = { "SORT", "SORT_BACKWARD" }, inputs = { I({ 4, 5, 6 }, "permuted") },
  fn = function(x)
    local out = {}
    for _, d in ipairs({ 1, 2, -1 }) do
      for _, desc in ipairs({ false, true }) do
        local v, i = x[1]:sort(d, desc)
        out[#out + 1], out[#out + 2] = v * (d + 2), i
      end
    end
    return out
  end }
case { name = "sort_ties_stable", ops = { "SORT", "SORT_BACKWARD" }, inputs = { I({ 7, 9 }, "transposed") },
  fn = function(x)
    local ties = (x[1] * 1.5):floor() + x[1] * 0 -- few distinct values, still on the graph
    local v, i = ties:sort(2)
    local vd, id = ties:sort(1, true)
    return { v, i, vd, id }
  end }
case { name = "sort_nan", ops = { "SORT", "SORT_BACKWARD" },
  inputs = { I({ 5, 8 }, "narrowed"), I({ 5, 8 }, "contiguous", "mask") },
  fn = function(x)
    local out = {}
    for _, desc in ipairs({ false, true }) do
      local v, i = cocola.where(x[2], 0 / 0, x[1]):sort(2, desc)
      local nan = v:ne(v)
      out[#out + 1], out[#out + 2], out[#out + 3] = v:masked_fill(nan, 0), nan, i
    end
    return out
  end }
case { name = "sort_long_rows_int64", ops = { "SORT", "SORT_BACKWARD" },
  inputs = { I({ 3, 1500 }, "strided"), I({ 4, 300 }, "transposed", "int", { high = 20 }), I({ 1000 }, "contiguous", "normal", { dtype = "float64" }) },
  fn = function(x)
    local v, i = x[1]:sort(2, true)
    local vi, ii = x[2]:sort(2)
    local v64, i64 = x[3]:sort()
    return { v, i, vi, ii, v64, i64 }
  end }
case { name = "topk", ops = { "SORT", "SORT_BACKWARD" }, inputs = { I({ 6, 10 }, "transposed"), I({ 3, 4, 5 }, "permuted") },
  fn = function(x)
    local v, i = x[1]:topk(3)
    local vs, is = x[2]:topk(2, 2, false)
    local va, ia = x[1]:topk(6, 1)
    return { v, i, vs, is, va, ia }
  end }

-- GEMM: matmul in all its shapes, bmm, linear (beta = 1 with the bias), broadcast batches
case { name = "matmul_2d", ops = { "GEMM" }, inputs = { I({ 5, 7 }), I({ 7, 3 }) }, fn = function(x) return x[1]:matmul(x[2]) end }
case { name = "matmul_transposed", ops = { "GEMM" }, inputs = { I({ 5, 7 }, "transposed"), I({ 7, 3 }, "transposed") },
  fn = function(x) return x[1]:matmul(x[2]) end }
case { name = "matmul_strided", ops = { "GEMM" }, inputs = { I({ 5, 7 }, "strided"), I({ 7, 3 }, "narrowed") },
  fn = function(x) return x[1]:matmul(x[2]) end }
case { name = "matmul_batched_bcast", ops = { "GEMM" }, inputs = { I({ 2, 1, 3, 4 }), I({ 5, 4, 6 }, "transposed") },
  fn = function(x) return cocola.matmul(x[1], x[2]) end }
case { name = "matmul_fold_batch", ops = { "GEMM" }, inputs = { I({ 2, 3, 4 }, "permuted"), I({ 4, 5 }) },
  fn = function(x) return x[1]:matmul(x[2]) end }
case { name = "matmul_vec", ops = { "GEMM" }, inputs = { I({ 4, 6 }, "transposed"), I({ 6 }), I({ 4 }) },
  fn = function(x) return { x[1]:matmul(x[2]), x[3]:matmul(x[1]), x[2]:matmul(x[2]) } end }
case { name = "bmm", ops = { "GEMM" }, inputs = { I({ 3, 4, 5 }, "transposed"), I({ 3, 5, 2 }, "permuted") },
  fn = function(x) return cocola.bmm(x[1], x[2]) end }
case { name = "bmm_expanded_batch", ops = { "GEMM" }, inputs = { I({ 3, 4, 5 }, "expanded", "normal", { from = { 1, 4, 5 } }), I({ 3, 5, 2 }) },
  fn = function(x) return cocola.bmm(x[1], x[2]) end }
case { name = "linear", ops = { "GEMM" }, inputs = { I({ 2, 3, 6 }, "permuted"), I({ 4, 6 }), I({ 4 }) },
  fn = function(x) return F.linear(x[1], x[2], x[3]) end }
case { name = "linear_nobias", ops = { "GEMM" }, inputs = { I({ 5, 6 }, "transposed"), I({ 4, 6 }, "transposed") },
  fn = function(x) return F.linear(x[1], x[2]) end }
case { name = "matmul_large", ops = { "GEMM" }, inputs = { I({ 64, 200 }, "transposed"), I({ 200, 96 }) },
  fn = function(x) return x[1]:matmul(x[2]) end }
case { name = "matmul_float64", ops = { "GEMM" }, inputs = { I({ 2, 5, 7 }, "transposed", "normal", { dtype = "float64" }), I({ 7, 3 }, "contiguous", "normal", { dtype = "float64" }) },
  fn = function(x) return cocola.matmul(x[1], x[2]) end }

-- convolutions (cuDNN) with their two backward ops
local conv_cases = {
  { "basic", { 2, 3, 7, 7 }, { 4, 3, 3, 3 }, true, {} },
  { "stride_pad", { 2, 3, 9, 8 }, { 5, 3, 3, 3 }, true, { stride = 2, padding = 1 } },
  { "dilation", { 1, 2, 9, 9 }, { 3, 2, 3, 3 }, true, { padding = 2, dilation = 2 } },
  { "groups", { 2, 4, 6, 6 }, { 6, 2, 3, 3 }, true, { padding = 1, groups = 2 } },
  { "depthwise", { 2, 4, 8, 7 }, { 4, 1, 3, 3 }, true, { stride = 2, padding = 1, groups = 4 } },
  { "depthwise_5x5", { 2, 6, 9, 9 }, { 6, 1, 5, 5 }, false, { padding = 2, groups = 6 } },
  { "pairs", { 1, 3, 8, 9 }, { 2, 3, 3, 2 }, true, { stride = { 2, 1 }, padding = { 1, 0 }, dilation = { 1, 2 } } },
  { "pointwise_nobias", { 2, 8, 5, 6 }, { 4, 8, 1, 1 }, false, {} },
}
for _, cc in ipairs(conv_cases) do
  local inputs = { I(cc[2], "contiguous"), I(cc[3]) }
  if cc[4] then inputs[3] = I({ cc[3][1] }) end
  case { name = "conv2d_" .. cc[1], ops = { "CONV2D", "CONV2D_BACKWARD_INPUT", "CONV2D_BACKWARD_WEIGHT" }, inputs = inputs,
    fn = function(x) return F.conv2d(x[1], x[2], x[3], cc[5]) end }
end
case { name = "conv_transpose2d", ops = { "CONV2D", "CONV2D_BACKWARD_INPUT", "CONV2D_BACKWARD_WEIGHT" },
  inputs = { I({ 2, 4, 5, 3 }, "permuted"), I({ 4, 3, 3, 3 }), I({ 3 }) },
  fn = function(x) return F.conv_transpose2d(x[1], x[2], x[3], { stride = 2, padding = 1, output_padding = 1 }) end }
case { name = "conv_transpose2d_groups", ops = { "CONV2D", "CONV2D_BACKWARD_INPUT", "CONV2D_BACKWARD_WEIGHT" },
  inputs = { I({ 1, 4, 4, 4 }), I({ 4, 2, 2, 3 }) },
  fn = function(x) return F.conv_transpose2d(x[1], x[2], nil, { stride = { 1, 2 }, padding = { 0, 1 }, dilation = 2, groups = 2 }) end }
case { name = "conv1d_and_transpose", ops = { "CONV2D", "CONV2D_BACKWARD_INPUT", "CONV2D_BACKWARD_WEIGHT" },
  inputs = { I({ 2, 8, 9 }, "transposed"), I({ 6, 8, 3 }), I({ 6 }), I({ 6, 4, 8 }), I({ 4 }) },
  fn = function(x)
    local h = F.conv1d(x[1], x[2], x[3], { padding = 2, dilation = 2 }):leaky_relu(0.1)
    return F.conv_transpose1d(h, x[4], x[5], { stride = 4, padding = 2 })
  end }
case { name = "conv2d_noncontig_input", ops = { "CONV2D", "CONV2D_BACKWARD_INPUT", "CONV2D_BACKWARD_WEIGHT" },
  inputs = { I({ 2, 3, 6, 5 }, "permuted"), I({ 4, 3, 3, 3 }, "transposed"), I({ 4 }) },
  fn = function(x) return F.conv2d(x[1], x[2], x[3], { padding = 1 }) end }
case { name = "conv2d_unbatched", ops = { "CONV2D", "CONV2D_BACKWARD_INPUT", "CONV2D_BACKWARD_WEIGHT" },
  inputs = { I({ 3, 6, 6 }), I({ 2, 3, 3, 3 }) }, fn = function(x) return F.conv2d(x[1], x[2], nil, { padding = 1 }) end }
case { name = "conv2d_larger", ops = { "CONV2D", "CONV2D_BACKWARD_INPUT", "CONV2D_BACKWARD_WEIGHT" },
  inputs = { I({ 4, 16, 16, 20 }), I({ 24, 16, 3, 3 }), I({ 24 }) },
  fn = function(x) return F.conv2d(x[1], x[2], x[3], { padding = 1 }) end }
case { name = "conv2d_float64", ops = { "CONV2D", "CONV2D_BACKWARD_INPUT", "CONV2D_BACKWARD_WEIGHT" },
  inputs = { I({ 2, 4, 7, 6 }, "contiguous", "normal", { dtype = "float64" }), I({ 4, 1, 3, 3 }, "contiguous", "normal", { dtype = "float64" }), I({ 4 }, "contiguous", "normal", { dtype = "float64" }) },
  fn = function(x) return F.conv2d(x[1], x[2], x[3], { stride = 2, padding = 1, groups = 4 }) end }

-- padding, adaptive pooling
case { name = "pad_cases", ops = { "PAD" }, inputs = { I({ 2, 3, 4, 5 }, "permuted") },
  fn = function(x)
    return { F.pad(x[1], { 0, 1, 0, 1 }), F.pad(x[1], { 1, 2, 1, 2 }), F.pad(x[1], { 2, 0, 1, 3 }, -1.5),
      F.pad(x[1], { 1, 2 }), F.pad(x[1], { -1, 1, 0, -2 }) }
  end }
case { name = "pad_int64", ops = { "PAD" }, inputs = { I({ 3, 4 }, "transposed", "int", { high = 9 }) },
  fn = function(x) return F.pad(x[1], { 1, 1, 2, 0 }, 7) end }
case { name = "adaptive_pool", ops = { "AVG_POOL2D", "AVG_POOL2D_BACKWARD" }, inputs = { I({ 2, 3, 9, 7 }, "permuted") },
  fn = function(x)
    return { F.adaptive_avg_pool2d(x[1], 1), F.adaptive_avg_pool2d(x[1], { 4, 3 }), F.adaptive_avg_pool2d(x[1], 3),
      F.adaptive_avg_pool2d(x[1], { 9, 7 }), F.adaptive_avg_pool2d(x[1], { 5, 2 }) }
  end }
case { name = "adaptive_pool_3d_float64", ops = { "AVG_POOL2D", "AVG_POOL2D_BACKWARD" },
  inputs = { I({ 3, 10, 11 }, "transposed", "normal", { dtype = "float64" }) },
  fn = function(x) return F.adaptive_avg_pool2d(x[1], { 4, 5 }) end }

-- indexing: index_select / gather forward, their backward (INDEX_ADD, SCATTER_ADD: repeated indices add up
-- in index order, so the GPU must match the CPU exactly up to rounding), embedding; max pooling and its backward
case { name = "index_select", ops = { "INDEX_SELECT", "INDEX_ADD" },
  inputs = { I({ 5, 6 }, "transposed"), I({ 7 }, "contiguous", "int", { high = 5 }), I({ 3, 4, 5 }, "permuted"),
    I({ 6, 4 }, "transposed", "int", { high = 4 }) },
  fn = function(x)
    local idx = x[4]:select(2, 1) -- a strided index
    return { x[1]:index_select(1, x[2]), x[1]:index_select(2, x[2]) * x[1]:index_select(2, x[2]),
      x[3]:index_select(2, idx), cocola.index_select(x[3], -1, x[2]), x[4]:index_select(1, x[2]) }
  end }
case { name = "index_select_float64_many_repeats", ops = { "INDEX_SELECT", "INDEX_ADD" },
  inputs = { I({ 40, 33 }, "narrowed", "normal", { dtype = "float64" }), I({ 500 }, "contiguous", "int", { high = 40 }) },
  fn = function(x) return x[1]:index_select(1, x[2]) end }
case { name = "gather", ops = { "GATHER", "SCATTER_ADD" },
  inputs = { I({ 4, 6 }, "transposed"), I({ 3, 6 }, "contiguous", "int", { high = 4 }), I({ 4, 8 }, "strided", "int", { high = 6 }),
    I({ 3, 4, 5 }, "permuted") },
  fn = function(x)
    local i3 = x[2]:narrow(2, 1, 4):unsqueeze(3):expand(3, 4, 2) -- expanded (stride 0) index
    return { x[1]:gather(1, x[2]), F.gather(x[1], 2, x[3]), x[4]:gather(3, i3), x[2]:gather(2, x[3]:narrow(1, 1, 3)) }
  end }
case { name = "embedding", ops = { "INDEX_SELECT", "INDEX_ADD", "FILL" },
  inputs = { I({ 9, 5 }, "transposed"), I({ 3, 40 }, "contiguous", "int", { high = 9 }) },
  fn = function(x) return { F.embedding(x[2], x[1]), F.embedding(x[2], x[1], { padding_idx = 3 }) * 2 } end }
case { name = "max_pool2d", ops = { "MAX_POOL2D", "MAX_POOL2D_BACKWARD" }, inputs = { I({ 2, 3, 9, 7 }, "permuted") },
  fn = function(x)
    local v, i = F.max_pool2d(x[1], 3, { stride = 2, padding = 1, return_indices = true })
    return { v, i, F.max_pool2d(x[1], 2), F.max_pool2d(x[1], { 3, 2 }, { stride = 1 }),
      F.max_pool2d(x[1], 2, { stride = { 2, 1 }, padding = { 1, 0 }, dilation = { 2, 3 } }) }
  end }
case { name = "max_pool2d_3d_float64_nan", ops = { "MAX_POOL2D", "MAX_POOL2D_BACKWARD" },
  inputs = { I({ 3, 10, 11 }, "transposed", "normal", { dtype = "float64" }), I({ 3, 10, 11 }, "contiguous", "mask") },
  fn = function(x)
    local v, i = F.max_pool2d(cocola.where(x[2], 0 / 0, x[1]), 3, { stride = 2, return_indices = true })
    local nan = v:ne(v)
    local w = F.max_pool2d(x[1], 4, { stride = 3, padding = 2 })
    return { v:masked_fill(nan, 0), nan, i, w }
  end }

-- normalisation (batch norm training also returns the updated running statistics)
case { name = "batch_norm_train", ops = { "BATCH_NORM", "BATCH_NORM_BACKWARD" },
  inputs = { I({ 4, 3, 5, 6 }, "permuted"), I({ 3 }, nil, nil, { grad = false }), I({ 3 }, nil, "positive", { grad = false }), I({ 3 }), I({ 3 }) },
  fn = function(x) return { F.batch_norm(x[1], x[2], x[3], x[4], x[5], true, 0.1, 1e-5), x[2], x[3] } end }
case { name = "batch_norm_train_noaffine", ops = { "BATCH_NORM", "BATCH_NORM_BACKWARD" },
  inputs = { I({ 3, 4, 6 }, "transposed"), I({ 4 }, nil, nil, { grad = false }), I({ 4 }, nil, "positive", { grad = false }) },
  fn = function(x) return { F.batch_norm(x[1], x[2], x[3], nil, nil, true, 0.3, 1e-3), x[2], x[3] } end }
case { name = "batch_norm_train_2d", ops = { "BATCH_NORM", "BATCH_NORM_BACKWARD" },
  inputs = { I({ 8, 5 }, "transposed"), I({ 5 }, nil, nil, { grad = false }), I({ 5 }, nil, "positive", { grad = false }), I({ 5 }), I({ 5 }) },
  fn = function(x) return { F.batch_norm(x[1], x[2], x[3], x[4], x[5], true, 0.1, 1e-5), x[2], x[3] } end }
case { name = "batch_norm_train_large", ops = { "BATCH_NORM", "BATCH_NORM_BACKWARD" },
  inputs = { I({ 8, 6, 16, 16 }), I({ 6 }, nil, nil, { grad = false }), I({ 6 }, nil, "positive", { grad = false }), I({ 6 }), I({ 6 }) },
  fn = function(x) return { F.batch_norm(x[1], x[2], x[3], x[4], x[5], true, 0.01, 1e-3), x[2], x[3] } end }
case { name = "batch_norm_eval", ops = { "BATCH_NORM", "BATCH_NORM_BACKWARD" },
  inputs = { I({ 4, 3, 5 }, "narrowed"), I({ 3 }, nil, nil, { grad = false }), I({ 3 }, nil, "positive", { grad = false }), I({ 3 }), I({ 3 }) },
  fn = function(x) return F.batch_norm(x[1], x[2], x[3], x[4], x[5], false, 0.1, 1e-5) end }
case { name = "batch_norm_float64", ops = { "BATCH_NORM", "BATCH_NORM_BACKWARD" },
  inputs = { I({ 4, 3, 5, 2 }, "contiguous", "normal", { dtype = "float64" }), I({ 3 }, nil, nil, { grad = false, dtype = "float64" }),
    I({ 3 }, nil, "positive", { grad = false, dtype = "float64" }), I({ 3 }, nil, nil, { dtype = "float64" }), I({ 3 }, nil, nil, { dtype = "float64" }) },
  fn = function(x) return { F.batch_norm(x[1], x[2], x[3], x[4], x[5], true, 0.1, 1e-5), x[2], x[3] } end }
case { name = "layer_norm", ops = { "LAYER_NORM", "LAYER_NORM_BACKWARD" }, inputs = { I({ 3, 4, 8 }, "permuted"), I({ 8 }), I({ 8 }) },
  fn = function(x) return F.layer_norm(x[1], { 8 }, x[2], x[3], 1e-5) end }
case { name = "layer_norm_2d", ops = { "LAYER_NORM", "LAYER_NORM_BACKWARD" }, inputs = { I({ 2, 3, 4 }, "strided"), I({ 3, 4 }), I({ 3, 4 }) },
  fn = function(x) return F.layer_norm(x[1], { 3, 4 }, x[2], x[3], 1e-5) end }
case { name = "group_norm", ops = { "LAYER_NORM", "LAYER_NORM_BACKWARD" }, inputs = { I({ 2, 8, 3, 4 }, "permuted"), I({ 8 }), I({ 8 }) },
  fn = function(x) return F.group_norm(x[1], 4, x[2], x[3], 1e-6) end }
case { name = "layer_norm_noaffine", ops = { "LAYER_NORM", "LAYER_NORM_BACKWARD" }, inputs = { I({ 5, 6 }, "transposed") },
  fn = function(x) return F.layer_norm(x[1], 6, nil, nil, 1e-6) end }
case { name = "layer_norm_weight_only_large", ops = { "LAYER_NORM", "LAYER_NORM_BACKWARD" }, inputs = { I({ 24, 512 }, "narrowed"), I({ 512 }) },
  fn = function(x) return F.layer_norm(x[1], { 512 }, x[2], nil, 1e-5) end }

-- softmax, log_softmax, cross entropy (NLL)
case { name = "softmax", ops = { "SOFTMAX", "SOFTMAX_BACKWARD" }, inputs = { I({ 3, 4, 5 }, "permuted") },
  fn = function(x) return { x[1]:softmax(-1), x[1]:softmax(1), x[1]:softmax(2) } end }
case { name = "log_softmax", ops = { "SOFTMAX", "SOFTMAX_BACKWARD" }, inputs = { I({ 4, 7 }, "transposed"), I({ 3, 4, 5 }) },
  fn = function(x) return { x[1]:log_softmax(2), x[1]:log_softmax(1), x[2]:log_softmax(2) } end }
case { name = "softmax_large_float64", ops = { "SOFTMAX", "SOFTMAX_BACKWARD" },
  inputs = { I({ 16, 1000 }, "narrowed", "normal", { dtype = "float64" }) }, fn = function(x) return x[1]:softmax(2) end }
case { name = "cross_entropy", ops = { "NLL", "NLL_BACKWARD", "SOFTMAX", "SOFTMAX_BACKWARD" },
  inputs = { I({ 6, 5 }, "transposed"), I({ 6 }, "contiguous", "int", { high = 5 }) },
  fn = function(x) return F.cross_entropy(x[1], x[2]) end }
case { name = "cross_entropy_large", ops = { "NLL", "NLL_BACKWARD" },
  inputs = { I({ 64, 100 }), I({ 64 }, "contiguous", "int", { high = 100 }) }, fn = function(x) return F.cross_entropy(x[1], x[2]) end }

-- dropout: the same seed gives the same mask on both devices
case { name = "dropout", ops = { "DROPOUT_MASK" }, inputs = { I({ 7, 9 }, "transposed") },
  fn = function(x) return { F.dropout(x[1], 0.3, true), F.dropout(x[1], 0.5, true), F.dropout(x[1], 1, true) } end }
case { name = "dropout_float64", ops = { "DROPOUT_MASK" }, inputs = { I({ 300, 7 }, "contiguous", "normal", { dtype = "float64" }) },
  fn = function(x) return F.dropout(x[1], 0.2, true) end }

-- the fused Adam / AdamW step (in place, three steps)
local function adam_case(name, dtype, decoupled)
  case { name = name, ops = { "ADAM_STEP" },
    inputs = { I({ 5, 6 }, "contiguous", "normal", { grad = false, dtype = dtype }), I({ 5, 6 }, "contiguous", "normal", { grad = false, dtype = dtype }) },
    fn = function(x)
      local p, m, v = x[1]:clone(), x[1]:clone():zero_(), x[1]:clone():zero_()
      for step = 1, 3 do
        local g = x[2] * step
        cocola.adam_step(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, 0.01, step, decoupled)
      end
      return { p, m, v }
    end }
end
adam_case("adam_step", "float32", false)
adam_case("adamw_step", "float32", true)
adam_case("adam_step_float64", "float64", false)

-- ---- the runner ----------------------------------------------------------------------------
local function outputs_of(v)
  if cocola.is_tensor(v) then return { v } end
  return v
end

local function eval(c, bases, device, upstream)
  local leaves, xs = {}, {}
  for i, spec in ipairs(c.inputs) do
    local b = bases[i]
    b = device == "cuda" and b:cuda() or b:clone()
    if differentiable(spec) then b:requires_grad(true) end
    leaves[i] = b
    local _, view = layout_of(spec)
    xs[i] = view and view(b) or b
  end
  cocola.manual_seed(c.seed or 4242)
  local outs = outputs_of(c.fn(xs))
  local loss
  for i, o in ipairs(outs) do
    if o:requires_grad() then
      local g = upstream[i]
      if not g then
        g = cocola.randn(o.shape):to(o:dtype())
        upstream[i] = g
      end
      if device == "cuda" then g = g:cuda() end
      local term = (o * g):sum():double()
      loss = loss and loss + term or term
    end
  end
  if loss then loss:backward() end
  return outs, leaves
end

local function tol_for(c, t)
  if c.exact or t:dtype() == "int64" then return 0 end
  if c.tol then return c.tol end
  return t:dtype() == "float64" and TOL64 or TOL32
end

local function run_case(c)
  cocola.manual_seed(#c.name * 7919 + 17)
  local bases = {}
  for i, spec in ipairs(c.inputs) do bases[i] = make_base(spec) end
  local upstream = {}
  local ref_out, ref_leaves = eval(c, bases, "cpu", upstream)
  local gpu_out, gpu_leaves = eval(c, bases, "cuda", upstream)
  assert(#gpu_out == #ref_out, string.format("%s: %d outputs on the GPU, %d on the CPU", c.name, #gpu_out, #ref_out))
  local worst = 0
  for i, o in ipairs(gpu_out) do
    assert(o:device() == "cuda", string.format("%s: output %d is on %s", c.name, i, o:device()))
    assert(o:dtype() == ref_out[i]:dtype(), string.format("%s: output %d is %s, expected %s", c.name, i, o:dtype(), ref_out[i]:dtype()))
    local err = compare.assert_close(o:cpu(), ref_out[i], tol_for(c, o), c.name .. ": output " .. i)
    worst = math.max(worst, err)
  end
  for i, leaf in ipairs(gpu_leaves) do
    local ref = ref_leaves[i].grad
    if ref then
      local g = leaf.grad
      assert(g, string.format("%s: input %d got no gradient on the GPU", c.name, i))
      assert(g:device() == "cuda", string.format("%s: the gradient of input %d is on %s", c.name, i, g:device()))
      local err = compare.assert_close(g:cpu(), ref, tol_for(c, g), c.name .. ": gradient of input " .. i)
      worst = math.max(worst, err)
    end
  end
  return worst
end

describe("CUDA parity #cuda", function()
  it("registers a CUDA kernel for every op of the op table", function()
    local missing = {}
    for op, has in pairs(cuda.op_support()) do
      if not has then missing[#missing + 1] = op end
    end
    table.sort(missing)
    assert(#missing == 0, "ops without a CUDA kernel: " .. table.concat(missing, ", "))
  end)

  it("has cases for every op of the op table", function()
    local covered, uncovered = {}, {}
    for _, c in ipairs(CASES) do
      for _, op in ipairs(c.ops) do covered[op] = true end
    end
    for op in pairs(cuda.op_support()) do
      if not covered[op] then uncovered[#uncovered + 1] = op end
    end
    table.sort(uncovered)
    assert(#uncovered == 0, "ops no case exercises: " .. table.concat(uncovered, ", "))
  end)

  for _, c in ipairs(CASES) do
    it(c.name, function()
      local worst = run_case(c)
      if os.getenv("PARITY_VERBOSE") then io.stderr:write(string.format("%-34s %.2e\n", c.name, worst)) end
    end)
  end

  it("moves non-contiguous views between the devices", function()
    local x = cocola.randn({ 5, 6, 7 })
    local v = x:permute(3, 1, 2):narrow(2, 2, 3)
    local g = v:cuda()
    assert.equals("cuda", g:device())
    assert.is_true(g:is_contiguous())
    compare.assert_close(g:cpu(), v, 0, "host -> device -> host")
    local gv = x:cuda():permute(3, 1, 2):narrow(2, 2, 3)
    compare.assert_close(gv:cpu(), v, 0, "device view -> host")
    -- larger than one staging buffer (8 MiB), in both directions
    local big = cocola.randn({ 3 * 1024 * 1024 + 5 })
    compare.assert_close(big:cuda():cpu(), big, 0, "large round trip")
    -- int64 and float64 keep their dtype
    local i = cocola.randint(-5, 5, { 4, 3 })
    assert.equals("int64", i:cuda():dtype())
    compare.assert_close(i:cuda():t():cpu(), i:t(), 0, "int64 round trip")
    -- item() and totable() read through the host
    assert.equals(x:sum():item(), x:cuda():to("float64"):sum():to("float32"):item())
  end)

  it("refuses to mix devices in one op", function()
    local a, b = cocola.randn({ 3 }), cocola.randn({ 3 }):cuda()
    local ok, err = pcall(function() return a + b end)
    assert.is_false(ok)
    assert.matches("different devices", tostring(err))
  end)

  it("reports an out-of-range class on the GPU as an error", function()
    local logits, targets = cocola.randn({ 3, 4 }):cuda(), cocola.tensor({ 0, 4, 1 }, { dtype = "int64" }):cuda()
    local ok, err = pcall(F.cross_entropy, logits, targets)
    assert.is_false(ok)
    assert.matches("out of bounds", tostring(err))
  end)

  it("reports an index out of range on the GPU as an error naming it", function()
    local x = cocola.randn({ 3, 4 }):cuda()
    local ok, err = pcall(cocola.index_select, x, 2, cocola.tensor({ 1, 4 }, { dtype = "int64" }):cuda())
    assert.is_false(ok)
    assert.matches("index_select: index 4 is out of range for dimension 2 of size 4", tostring(err), 1, true)
    ok, err = pcall(cocola.gather, x, 1, cocola.tensor({ { 0, -1 } }, { dtype = "int64" }):cuda())
    assert.is_false(ok)
    assert.matches("gather: index -1 is out of range for dimension 1 of size 3", tostring(err), 1, true)
    ok, err = pcall(F.embedding, cocola.tensor({ 3 }, { dtype = "int64" }):cuda(), x)
    assert.is_false(ok)
    assert.matches("embedding: index 3 is out of range", tostring(err), 1, true)
  end)

  it("reuses device memory through the caching allocator", function()
    collectgarbage()
    cuda.synchronize()
    local before = cuda.memory_stats()
    local src = cocola.zeros({ 256, 256 })
    for _ = 1, 20 do
      local a = src:cuda()
      local b = a * 2
      b:close()
      a:close()
    end
    collectgarbage()
    local after = cuda.memory_stats()
    assert.is_true(after.num_alloc_requests >= before.num_alloc_requests + 40)
    assert.is_true(after.num_cuda_malloc - before.num_cuda_malloc <= 2, "cudaMalloc per op: the cache is not reused")
    assert.is_true(after.num_cache_hits > before.num_cache_hits)
    assert.is_true(after.peak_allocated_bytes >= 256 * 256 * 4)
    assert.equals(after.allocated_bytes + after.cached_bytes, after.reserved_bytes)
    cuda.empty_cache()
    assert.equals(0, cuda.memory_stats().cached_bytes)
    cuda.reset_peak_memory_stats()
    assert.equals(cuda.memory_stats().allocated_bytes, cuda.memory_stats().peak_allocated_bytes)
  end)

  it("times GPU work with events", function()
    local x = cocola.randn({ 64, 64 }):cuda()
    local ms, y = cuda.time(function() return x:matmul(x) end)
    assert.is_true(ms >= 0)
    assert.equals("cuda", y:device())
    local a, b = cuda.Event():record(), cuda.Event()
    b:record()
    b:synchronize()
    assert.is_true(a:elapsed_time(b) >= 0)
    cuda.synchronize()
  end)

  it("keeps TF32 off by default and caches conv algorithms per setting", function()
    assert.is_false(cuda.get_tf32())
    local x, w = cocola.randn({ 2, 8, 10, 10 }), cocola.randn({ 16, 8, 3, 3 })
    local ref = F.conv2d(x, w, nil, { padding = 1 })
    local n0 = cuda.conv_algorithm_cache_size()
    local y = F.conv2d(x:cuda(), w:cuda(), nil, { padding = 1 })
    local n1 = cuda.conv_algorithm_cache_size()
    F.conv2d(x:cuda(), w:cuda(), nil, { padding = 1 })
    assert.equals(n1, cuda.conv_algorithm_cache_size(), "the same shape searched twice")
    compare.assert_close(y:cpu(), ref, TOL32, "fp32 conv")
    cuda.set_tf32(true)
    local ok, res = pcall(function()
      local yt = F.conv2d(x:cuda(), w:cuda(), nil, { padding = 1 })
      local mt = x:view(2, 800):cuda():matmul(x:view(2, 800):t():cuda())
      return { yt:cpu(), mt:cpu() }
    end)
    cuda.set_tf32(false)
    assert(ok, res)
    assert.is_true(n1 >= 1 and n1 >= n0)
    assert.is_true(cuda.conv_algorithm_cache_size() > n1, "TF32 has its own algorithm entry")
    compare.assert_close(res[1], ref, 1e-2, "tf32 conv")
    compare.assert_close(res[2], x:view(2, 800):matmul(x:view(2, 800):t()), 1e-2, "tf32 matmul")
  end)

  -- ---- bf16 autocast ----
  local function norm(t) return t:double():pow(2):sum():sqrt():item() end
  -- round to nearest even to bfloat16, element by element on the CPU (the reference for the GPU's copies)
  local function bf16(t)
    local flat = t:contiguous():view(-1):totable()
    for i, v in ipairs(flat) do
      local u = string.unpack("<I4", string.pack("<f", v))
      u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000
      flat[i] = string.unpack("<f", string.pack("<I4", u))
    end
    return cocola.tensor(flat):view(t:size())
  end
  local function rel(a, b) return norm(a - b) / norm(b) end

  it("bf16 autocast: GEMMs multiply bfloat16 copies with float32 accumulation", function()
    local a, b = cocola.randn({ 3, 24, 40 }), cocola.randn({ 3, 56, 40 })
    local exact = a:matmul(b:transpose(2, 3))
    local ref = bf16(a):matmul(bf16(b):transpose(2, 3))
    local got = cuda.autocast("bf16", function() return a:cuda():matmul(b:cuda():transpose(2, 3)) end)
    assert.is_false(cuda.get_autocast())
    assert.equals("float32", got:dtype())
    got = got:cpu()
    assert.is_true(rel(got, ref) < 1e-5, "against the CPU on rounded operands: " .. rel(got, ref))
    assert.is_true(rel(got, exact) > 1e-4 and rel(got, exact) < 2e-2, "against float32: " .. rel(got, exact))
    -- a broadcast (stride 0) operand and a linear layer's transposed weight
    local x, w = cocola.randn({ 5, 40 }), cocola.randn({ 24, 40 })
    local lin = cuda.autocast("bf16", function() return F.linear(x:cuda(), w:cuda()) end):cpu()
    assert.is_true(rel(lin, bf16(x):matmul(bf16(w):t())) < 1e-5)
    local e = cocola.randn({ 40, 8 })
    local bc = cuda.autocast("bf16", function() return a:cuda():matmul(e:cuda():expand(3, 40, 8)) end):cpu()
    assert.is_true(rel(bc, bf16(a):matmul(bf16(e))) < 1e-5)
  end)

  it("bf16 autocast: dense convolutions and their gradients within bf16 rounding; depthwise ones stay float32", function()
    for _, groups in ipairs({ 1, 8 }) do
      local x = cocola.randn({ 2, 8, 12, 12 }):requires_grad_()
      local w = cocola.randn({ 16, 8 // groups, 3, 3 }):requires_grad_()
      local up = cocola.randn({ 2, 16, 6, 6 })
      local opts = { stride = 2, padding = 1, groups = groups }
      F.conv2d(x, w, nil, opts):backward(up)
      local xg, wg = x:detach():cuda():requires_grad_(), w:detach():cuda():requires_grad_()
      local y = cuda.autocast("bf16", function()
        local y = F.conv2d(xg, wg, nil, opts)
        y:backward(up:cuda())
        return y
      end)
      local what = groups == 1 and "conv" or "depthwise conv"
      local exact = F.conv2d(x:detach(), w:detach(), nil, opts)
      if groups == 1 then
        -- the forward against the CPU on rounded operands, the result rounded again
        local ref = bf16(F.conv2d(bf16(x:detach()), bf16(w:detach()), nil, opts))
        assert.is_true(rel(y:cpu(), ref) < 5e-3, what .. " forward " .. rel(y:cpu(), ref))
        assert.is_true(rel(y:cpu(), exact) > 1e-4)
      else
        assert.is_true(rel(y:cpu(), exact) < 1e-5, what .. " forward " .. rel(y:cpu(), exact))
      end
      local tol = groups == 1 and 2e-2 or 1e-5
      assert.is_true(rel(xg.grad:cpu(), x.grad) < tol, what .. " input gradient " .. rel(xg.grad:cpu(), x.grad))
      assert.is_true(rel(wg.grad:cpu(), w.grad) < tol, what .. " weight gradient " .. rel(wg.grad:cpu(), w.grad))
      assert.equals("float32", wg.grad:dtype())
    end
  end)

  -- ---- a whole COCOLA training step ----
  -- ||a - b|| <= tol * max(||b||, floor): a gradient that is zero in exact arithmetic (the bias of a
  -- BatchNorm whose output feeds another BatchNorm through a linear layer) is rounding noise on both
  -- devices; it is held to the scale of the whole gradient instead of its own
  local function assert_near(a, b, tol, floor, what)
    local d, r = norm(a - b), norm(b)
    if not (d <= tol * math.max(r, floor)) then
      error(string.format("%s: |diff| %.3e, |ref| %.3e (tolerance %.1e, floor %.3e)", what, d, r, tol, floor), 2)
    end
  end

  local function training_step(dtype, tol)
    local K, T = 3, 96
    cocola.manual_seed(11)
    local opts = { input = "hpss", embedding_dim = 128, dropout = 0.1, drop_connect_rate = 0 }
    local cpu_model = cocola.models.cocola(opts)
    local gpu_model = cocola.models.cocola(opts)
    if dtype == "float64" then
      cpu_model:double()
      gpu_model:double()
    end
    gpu_model:load_state_dict(cpu_model:state_dict())
    gpu_model:cuda()
    local anchors, positives = cocola.randn({ K, 2, 64, T }):to(dtype), cocola.randn({ K, 2, 64, T }):to(dtype)

    local function step(model, device)
      model:train()
      local opt = cocola.optim.Adam(model:parameters(), { lr = 1e-3 })
      local a, p = anchors, positives
      if device == "cuda" then a, p = a:cuda(), p:cuda() end
      cocola.manual_seed(77) -- the same dropout masks on both devices
      opt:zero_grad()
      local sim = model(a, p)
      local loss = cocola.metrics.contrastive_loss(sim)
      loss:backward()
      local grads = {}
      for _, np in ipairs(model:named_parameters()) do grads[np[1]] = np[2].grad end
      opt:step()
      return loss, sim, grads
    end

    local before = {}
    for name, t in pairs(cpu_model:state_dict()) do before[name] = t:clone() end
    local loss_c, sim_c, grads_c = step(cpu_model, "cpu")
    local loss_g, sim_g, grads_g = step(gpu_model, "cuda")
    assert.equals("cuda", loss_g:device())
    compare.assert_close(sim_g:cpu(), sim_c, tol, dtype .. " similarity matrix")
    compare.assert_close(loss_g:cpu(), loss_c, tol, dtype .. " loss")
    local n, total = 0, 0
    for _, g in pairs(grads_c) do total = total + norm(g) ^ 2 end
    local floor = 1e-4 * math.sqrt(total)
    for name, g in pairs(grads_c) do
      assert(grads_g[name], "no GPU gradient for " .. name)
      assert_near(grads_g[name]:cpu(), g, tol, floor, dtype .. " gradient of " .. name)
      n = n + 1
    end
    assert.is_true(n > 100)
    -- the updates of the step: the running statistics of BatchNorm, and Adam's updates of the parameters
    -- in float64 only (except where the gradient is rounding noise). Adam divides each gradient element
    -- by its own magnitude: in float32 an element whose gradient is near its rounding error gets a step
    -- of about lr in a direction that rounding decides, on either device (adam_step alone is checked
    -- above, to 1e-5).
    local sd_c, sd_g = cpu_model:state_dict(), gpu_model:state_dict()
    local params, buffer_total = {}, 0
    for _, np in ipairs(cpu_model:named_parameters()) do params[np[1]] = true end
    for name, t in pairs(sd_c) do
      if not params[name] and t:dtype() ~= "int64" then buffer_total = buffer_total + norm(t - before[name]) ^ 2 end
    end
    local checked = 0
    for name, t in pairs(sd_c) do
      local g = sd_g[name]:cpu()
      assert.equals("cuda", sd_g[name]:device())
      if t:dtype() == "int64" then
        compare.assert_close(g, t, 0, dtype .. " after the step: " .. name)
      elseif not params[name] then
        assert_near(g - before[name], t - before[name], tol, 1e-4 * math.sqrt(buffer_total), dtype .. " update of " .. name)
        checked = checked + 1
      elseif dtype == "float64" and norm(grads_c[name]) > floor then
        assert_near(g - before[name], t - before[name], tol, 0, dtype .. " update of " .. name)
        checked = checked + 1
      end
    end
    assert.is_true(checked > (dtype == "float64" and 100 or 40))
  end

  it("runs a whole COCOLA training step as the CPU does (float64)", function() training_step("float64", 1e-9) end)
  it("runs a whole COCOLA training step as the CPU does (float32)", function() training_step("float32", 1e-3) end)

  -- Under bf16 autocast a randomly initialised EfficientNet amplifies the rounding of its operands (as
  -- it amplifies float32's 1e-7 to ~5e-6): PyTorch 1.13's own bf16 autocast of this network, same
  -- sizes, train mode, differs from its float32 by 11% (embeddings), 22% (similarities) and 32% (all
  -- gradients together). The bounds below leave room for that, and the first check makes sure the
  -- step did run in bfloat16.
  it("runs a whole COCOLA training step under bf16 autocast within PyTorch's bf16 error (float32)", function()
    local K, T = 3, 96
    cocola.manual_seed(11)
    local opts = { input = "hpss", embedding_dim = 128, dropout = 0, drop_connect_rate = 0 }
    local cpu_model = cocola.models.cocola(opts)
    local gpu_model = cocola.models.cocola(opts)
    gpu_model:load_state_dict(cpu_model:state_dict())
    gpu_model:cuda()
    local anchors, positives = cocola.randn({ K, 2, 64, T }), cocola.randn({ K, 2, 64, T })
    local function step(model, a, p)
      model:train()
      local emb = model:embed(a)
      local sim = model(a, p)
      local loss = cocola.metrics.contrastive_loss(sim)
      loss:backward()
      local grads = {}
      for _, np in ipairs(model:named_parameters()) do grads[np[1]] = np[2].grad:cpu() end
      return emb:cpu(), sim:cpu(), loss:item(), grads
    end
    local emb_c, sim_c, loss_c, grads_c = step(cpu_model, anchors, positives)
    local emb_g, sim_g, loss_g, grads_g = cuda.autocast("bf16", step, gpu_model, anchors:cuda(), positives:cuda())
    local emb_err = rel(emb_g, emb_c)
    assert.is_true(emb_err > 1e-3, "the step ran in bfloat16: " .. emb_err)
    assert.is_true(emb_err < 0.2, "embeddings " .. emb_err)
    assert.is_true(rel(sim_g, sim_c) < 0.35, "similarities " .. rel(sim_g, sim_c))
    assert.is_true(math.abs(loss_g - loss_c) < 0.15 * math.abs(loss_c), string.format("loss %g vs %g", loss_g, loss_c))
    local total, diff, n = 0, 0, 0
    for name, g in pairs(grads_c) do
      assert.equals("float32", grads_g[name]:dtype())
      total, diff, n = total + norm(g) ^ 2, diff + norm(grads_g[name] - g) ^ 2, n + 1
    end
    assert.is_true(n > 100)
    assert.is_true(math.sqrt(diff / total) < 0.45, "gradients " .. math.sqrt(diff / total))
  end)
end)
