-- gradcheck_spec.lua — every op with a backward, checked in float64 against central finite
-- differences (spec/helpers/gradcheck.lua). Each case runs with contiguous inputs and again with
-- its differentiated inputs laid out non-contiguously (a transposed copy, doubled strides, or a
-- narrow of a wider tensor), and broadcasting ops also get inputs of different, broadcastable
-- shapes. Inputs come from a fixed Lua generator (seeded per case) and keep clear of kinks
-- (0 for relu/abs, the bounds of clamp, ties for max) by far more than the step eps.
local cocola = require "cocola"
local F = require "cocola.nn.functional"
local gc = require "helpers.gradcheck"

-- ---- deterministic inputs ----
local state = 1
local function reseed(name)
  local h = 0x811C9DC5
  for i = 1, #name do h = ((h ~ name:byte(i)) * 0x01000193) & 0xFFFFFFFF end
  state = (h << 20) | 0x9E3779B9
end
local function uniform()
  state = state ~ (state << 13)
  state = state ~ (state >> 7)
  state = state ~ (state << 17)
  return ((state >> 11) & 0xFFFFFFFFFFF) / 0x100000000000
end

--- float64 tensor of the shape, uniform in [lo, hi), every value at least 0.05 from each of `away`
local function R(shape, lo, hi, away)
  lo, hi = lo or -2, hi or 2
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local flat = {}
  for i = 1, n do
    local v
    repeat
      v = lo + (hi - lo) * uniform()
      local ok = true
      for _, p in ipairs(away or {}) do ok = ok and math.abs(v - p) >= 0.05 end
    until ok
    flat[i] = v
  end
  return gc.from_flat(flat, shape)
end
local function POS(shape) return R(shape, 0.5, 2.0) end
local function NZ(shape) return R(shape, -2, 2, { 0 }) end

local ALL = { "contiguous", "transposed", "strided", "narrowed" }

--- Declares one test per layout. make() -> list of inputs (see the helper); fn(xs) -> output(s).
local function case(name, fn, make, opts)
  opts = opts or {}
  for _, layout in ipairs(opts.layouts or ALL) do
    it(name .. " [" .. layout .. "]", function()
      reseed(name)
      local r = gc.assert(fn, make(), { layout = layout, seed = opts.seed, atol = opts.atol, rtol = opts.rtol, name = name })
      if layout ~= "contiguous" then
        assert(r.noncontiguous > 0, name .. ": the " .. layout .. " layout produced no non-contiguous input")
      end
      assert(r.checked > 0)
    end)
  end
end

describe("gradcheck helper", function()
  it("catches a wrong gradient", function()
    -- x:detach() hides x from autograd: the analytic gradient of the first term is missing
    reseed("helper")
    local r = gc.check(function(x) return x[1]:detach() * x[1] end, { R({ 3 }) })
    assert.is_false(r.ok)
    local r2 = gc.check(function(x) return x[1] * x[1] end, { R({ 3 }) })
    assert.is_true(r2.ok, r2.message)
  end)

  it("makes the non-contiguous layouts it promises, with the same values", function()
    reseed("layouts")
    local c = R({ 3, 4 })
    for _, name in ipairs({ "transposed", "strided", "narrowed" }) do
      local x = gc.layouts[name](c)
      assert.is_false(x:is_contiguous(), name)
      assert.are.same(c:totable(), x:totable(), name)
    end
  end)
end)

describe("gradcheck: elementwise binary", function()
  case("add same shape", function(x) return x[1] + x[2] end, function() return { R({ 3, 4 }), R({ 3, 4 }) } end)
  case("add broadcast (3,1)+(1,4)", function(x) return x[1]:add(x[2]) end, function() return { R({ 3, 1 }), R({ 1, 4 }) } end)
  case("add broadcast (2,3,4)+(4)", function(x) return x[1] + x[2] end, function() return { R({ 2, 3, 4 }), R({ 4 }) } end)
  case("add scalar both sides", function(x) return (x[1] + 2.5) * (1.5 + x[1]) end, function() return { R({ 3, 4 }) } end)
  case("add 0-d tensor", function(x) return x[1] + x[2] end, function() return { R({ 3, 4 }), R({}) } end)
  case("sub same shape", function(x) return x[1] - x[2] end, function() return { R({ 3, 4 }), R({ 3, 4 }) } end)
  case("sub broadcast (4,3)-(3)", function(x) return x[1]:sub(x[2]) end, function() return { R({ 4, 3 }), R({ 3 }) } end)
  case("sub scalar both sides", function(x) return (x[1] - 1.25) * (1.5 - x[1]) end, function() return { R({ 3, 4 }) } end)
  case("mul same shape", function(x) return x[1] * x[2] end, function() return { R({ 3, 4 }), R({ 3, 4 }) } end)
  case("mul broadcast (2,1,4)*(3,1)", function(x) return x[1]:mul(x[2]) end, function() return { R({ 2, 1, 4 }), R({ 3, 1 }) } end)
  case("mul scalar both sides", function(x) return 3 * x[1] + x[1]:mul(-0.5) end, function() return { R({ 3, 4 }) } end)
  case("mul by itself", function(x) return x[1] * x[1] end, function() return { R({ 3, 4 }) } end)
  case("div same shape", function(x) return x[1] / x[2] end, function() return { R({ 3, 4 }), NZ({ 3, 4 }) } end)
  case("div broadcast (3,4)/(1,4)", function(x) return x[1]:div(x[2]) end, function() return { R({ 3, 4 }), NZ({ 1, 4 }) } end)
  case("div scalar both sides", function(x) return x[1] / 4.0 + 2.0 / x[1] end, function() return { NZ({ 3, 4 }) } end)
  case("pow scalar exponent 2", function(x) return x[1] ^ 2 end, function() return { R({ 3, 4 }) } end)
  case("pow scalar exponent 3", function(x) return x[1]:pow(3) end, function() return { R({ 3, 4 }) } end)
  case("pow scalar exponent 0.5", function(x) return x[1]:pow(0.5) end, function() return { POS({ 3, 4 }) } end)
  case("pow scalar exponent -1.5", function(x) return x[1] ^ -1.5 end, function() return { POS({ 3, 4 }) } end)
  case("pow tensor exponent", function(x) return x[1]:pow(x[2]) end, function() return { POS({ 3, 4 }), R({ 3, 4 }) } end)
  case("pow tensor exponent broadcast (3,1)^(1,4)", function(x) return x[1] ^ x[2] end,
    function() return { POS({ 3, 1 }), R({ 1, 4 }) } end)
  case("pow scalar base", function(x) return 2 ^ x[1] end, function() return { R({ 3, 4 }) } end)
end)

describe("gradcheck: elementwise unary", function()
  case("neg", function(x) return -x[1] + x[1]:neg() * 2 end, function() return { R({ 3, 4 }) } end)
  case("exp", function(x) return x[1]:exp() end, function() return { R({ 3, 4 }) } end)
  case("log", function(x) return x[1]:log() end, function() return { POS({ 3, 4 }) } end)
  case("sqrt", function(x) return x[1]:sqrt() end, function() return { POS({ 3, 4 }) } end)
  case("abs", function(x) return x[1]:abs() end, function() return { NZ({ 3, 4 }) } end)
  case("clamp both bounds", function(x) return x[1]:clamp(-0.5, 0.7) end, function() return { R({ 4, 5 }, -2, 2, { -0.5, 0.7 }) } end)
  case("clamp min only", function(x) return x[1]:clamp(0.1) end, function() return { R({ 4, 5 }, -2, 2, { 0.1 }) } end)
  case("clamp max only", function(x) return x[1]:clamp(nil, -0.2) end, function() return { R({ 4, 5 }, -2, 2, { -0.2 }) } end)
  case("relu", function(x) return x[1]:relu() end, function() return { NZ({ 3, 4 }) } end)
  case("relu (functional)", function(x) return F.relu(x[1]) end, function() return { NZ({ 3, 4 }) } end)
  case("sigmoid", function(x) return x[1]:sigmoid() end, function() return { R({ 3, 4 }, -5, 5) } end)
  case("silu", function(x) return F.silu(x[1]) end, function() return { R({ 3, 4 }, -5, 5) } end)
  case("tanh", function(x) return x[1]:tanh() end, function() return { R({ 3, 4 }, -3, 3) } end)
  case("gelu", function(x) return x[1]:gelu() end, function() return { R({ 3, 4 }, -4, 4) } end)
  case("gelu tanh approximation", function(x) return F.gelu(x[1], "tanh") end, function() return { R({ 3, 4 }, -4, 4) } end)
  case("leaky_relu slope 0.1", function(x) return F.leaky_relu(x[1], 0.1) end, function() return { NZ({ 3, 4 }) } end)
  case("leaky_relu default slope", function(x) return x[1]:leaky_relu() end, function() return { NZ({ 3, 4 }) } end)
  case("elu alpha 1", function(x) return F.elu(x[1]) end, function() return { NZ({ 3, 4 }) } end)
  case("elu alpha 0.7", function(x) return x[1]:elu(0.7) end, function() return { NZ({ 3, 4 }) } end)
end)

describe("gradcheck: reductions", function()
  case("sum all", function(x) return x[1]:sum() end, function() return { R({ 3, 4 }) } end)
  case("sum dim 2", function(x) return x[1]:sum(2) end, function() return { R({ 2, 3, 4 }) } end)
  case("sum dims {1,3} keepdim", function(x) return x[1]:sum({ 1, 3 }, true) end, function() return { R({ 2, 3, 4 }) } end)
  case("sum dim -1 keepdim", function(x) return x[1]:sum(-1, true) end, function() return { R({ 3, 4 }) } end)
  case("mean all", function(x) return x[1]:mean() end, function() return { R({ 3, 4 }) } end)
  case("mean dim 2 keepdim", function(x) return x[1]:mean(2, true) end, function() return { R({ 2, 3, 4 }) } end)
  case("mean dims {1,2}", function(x) return x[1]:mean({ 1, 2 }) end, function() return { R({ 2, 3, 4 }) } end)
  case("sum of a broadcast input", function(x) return (x[1] * x[2]):sum(1) end, function() return { R({ 3, 1 }), R({ 4 }) } end)
  case("max along dim 2", function(x) return (x[1]:max(2)) end, function() return { R({ 3, 5 }) } end)
  case("max along dim 1 keepdim", function(x) return (x[1]:max(1, true)) end, function() return { R({ 4, 3, 2 }) } end)
  case("max along dim -1", function(x) return (x[1]:max(-1)) end, function() return { R({ 2, 3, 4 }) } end)
  case("max of all elements", function(x) return x[1]:max() end, function() return { R({ 3, 4 }) } end)
  case("min along dim 2", function(x) return (x[1]:min(2)) end, function() return { R({ 3, 5 }) } end)
end)

describe("gradcheck: linear algebra", function()
  case("matmul 2-D", function(x) return x[1]:matmul(x[2]) end, function() return { R({ 3, 4 }), R({ 4, 5 }) } end)
  case("matmul 1-D @ 2-D", function(x) return cocola.matmul(x[1], x[2]) end, function() return { R({ 4 }), R({ 4, 5 }) } end)
  case("matmul 2-D @ 1-D", function(x) return cocola.matmul(x[1], x[2]) end, function() return { R({ 3, 4 }), R({ 4 }) } end)
  case("matmul 1-D @ 1-D", function(x) return cocola.matmul(x[1], x[2]) end, function() return { R({ 4 }), R({ 4 }) } end)
  case("matmul batched @ 2-D", function(x) return x[1]:matmul(x[2]) end, function() return { R({ 2, 3, 4 }), R({ 4, 5 }) } end)
  case("matmul batched broadcast (2,1,3,4)@(3,4,2)", function(x) return cocola.matmul(x[1], x[2]) end,
    function() return { R({ 2, 1, 3, 4 }), R({ 3, 4, 2 }) } end)
  case("matmul of transposed operands", function(x) return x[1]:t():matmul(x[2]:t()) end,
    function() return { R({ 4, 3 }), R({ 5, 4 }) } end)
  case("bmm", function(x) return cocola.bmm(x[1], x[2]) end, function() return { R({ 2, 3, 4 }), R({ 2, 4, 5 }) } end)
  case("linear with bias, 3-D input", function(x) return F.linear(x[1], x[2], x[3]) end,
    function() return { R({ 2, 3, 4 }), R({ 5, 4 }), R({ 5 }) } end)
  case("linear without bias", function(x) return F.linear(x[1], x[2]) end, function() return { R({ 3, 4 }), R({ 2, 4 }) } end)
end)

describe("gradcheck: convolution", function()
  case("conv2d basic with bias", function(x) return F.conv2d(x[1], x[2], x[3]) end,
    function() return { R({ 2, 3, 5, 5 }), R({ 4, 3, 3, 3 }), R({ 4 }) } end)
  case("conv2d stride 2 padding 1", function(x) return F.conv2d(x[1], x[2], x[3], { stride = 2, padding = 1 }) end,
    function() return { R({ 1, 2, 6, 5 }), R({ 3, 2, 3, 3 }), R({ 3 }) } end)
  case("conv2d dilation 2 padding 2", function(x) return F.conv2d(x[1], x[2], x[3], { padding = 2, dilation = 2 }) end,
    function() return { R({ 1, 2, 5, 6 }), R({ 3, 2, 3, 3 }), R({ 3 }) } end)
  case("conv2d groups 2", function(x) return F.conv2d(x[1], x[2], x[3], { padding = 1, groups = 2 }) end,
    function() return { R({ 1, 4, 5, 5 }), R({ 6, 2, 3, 3 }), R({ 6 }) } end)
  case("conv2d depthwise", function(x) return F.conv2d(x[1], x[2], x[3], { stride = 2, padding = 1, groups = 4 }) end,
    function() return { R({ 2, 4, 6, 6 }), R({ 4, 1, 3, 3 }), R({ 4 }) } end)
  case("conv2d depthwise with multiplier 2", function(x) return F.conv2d(x[1], x[2], nil, { padding = 1, groups = 3 }) end,
    function() return { R({ 1, 3, 4, 4 }), R({ 6, 1, 3, 3 }) } end)
  case("conv2d per-axis stride/padding/dilation", function(x)
    return F.conv2d(x[1], x[2], x[3], { stride = { 1, 2 }, padding = { 0, 1 }, dilation = { 2, 1 } })
  end, function() return { R({ 1, 2, 7, 6 }), R({ 2, 2, 3, 2 }), R({ 2 }) } end)
  case("conv2d 1x1 without bias", function(x) return F.conv2d(x[1], x[2]) end,
    function() return { R({ 2, 3, 4, 4 }), R({ 5, 3, 1, 1 }) } end)
  case("conv2d 3-D input (C,H,W)", function(x) return F.conv2d(x[1], x[2], x[3], { padding = 1 }) end,
    function() return { R({ 3, 5, 5 }), R({ 2, 3, 3, 3 }), R({ 2 }) } end)
  case("conv_transpose2d stride 2 padding 1 output_padding 1", function(x)
    return F.conv_transpose2d(x[1], x[2], x[3], { stride = 2, padding = 1, output_padding = 1 })
  end, function() return { R({ 2, 3, 3, 4 }), R({ 3, 2, 3, 3 }), R({ 2 }) } end)
  case("conv_transpose2d groups 2 dilation 2", function(x)
    return F.conv_transpose2d(x[1], x[2], x[3], { groups = 2, dilation = 2, padding = { 1, 0 } })
  end, function() return { R({ 1, 4, 3, 3 }), R({ 4, 3, 3, 2 }), R({ 6 }) } end)
  case("conv_transpose2d 3-D input without bias", function(x) return F.conv_transpose2d(x[1], x[2], nil, { stride = { 1, 2 } }) end,
    function() return { R({ 2, 3, 3 }), R({ 2, 3, 2, 2 }) } end)
  case("conv1d stride 2 padding 1 dilation 2", function(x)
    return F.conv1d(x[1], x[2], x[3], { stride = 2, padding = 1, dilation = 2 })
  end, function() return { R({ 2, 3, 9 }), R({ 4, 3, 3 }), R({ 4 }) } end)
  case("conv1d groups 3 on (C,L)", function(x) return F.conv1d(x[1], x[2], nil, { groups = 3, padding = 2 }) end,
    function() return { R({ 3, 7 }), R({ 6, 1, 5 }) } end)
  case("conv_transpose1d stride 3 padding 1 output_padding 2", function(x)
    return F.conv_transpose1d(x[1], x[2], x[3], { stride = 3, padding = 1, output_padding = 2 })
  end, function() return { R({ 2, 4, 5 }), R({ 4, 3, 4 }), R({ 3 }) } end)
  case("conv2d on a channels-last permuted input", function(x) return F.conv2d(x[1]:permute(1, 4, 2, 3), x[2], x[3], { padding = 1 }) end,
    function() return { R({ 1, 5, 5, 3 }), R({ 2, 3, 3, 3 }), R({ 2 }) } end)
end)

describe("gradcheck: pad and pooling", function()
  case("pad last dim", function(x) return F.pad(x[1], { 1, 2 }) end, function() return { R({ 3, 4 }) } end)
  case("pad last two dims", function(x) return F.pad(x[1], { 0, 1, 2, 1 }) end, function() return { R({ 1, 2, 3, 4 }) } end)
  case("pad with a value", function(x) return F.pad(x[1], { 2, 0, 1, 3 }, -1.5) end, function() return { R({ 1, 2, 3, 3 }) } end)
  case("pad three dims", function(x) return F.pad(x[1], { 1, 1, 0, 2, 1, 0 }) end, function() return { R({ 2, 2, 3 }) } end)
  case("adaptive_avg_pool2d to 1", function(x) return F.adaptive_avg_pool2d(x[1], 1) end, function() return { R({ 2, 3, 4, 4 }) } end)
  case("adaptive_avg_pool2d 6x6 -> 3", function(x) return F.adaptive_avg_pool2d(x[1], 3) end, function() return { R({ 1, 2, 6, 6 }) } end)
  case("adaptive_avg_pool2d non-divisible 5x7 -> 3x4", function(x) return F.adaptive_avg_pool2d(x[1], { 3, 4 }) end,
    function() return { R({ 1, 2, 5, 7 }) } end)
  case("adaptive_avg_pool2d upsampling 3x3 -> 5x4", function(x) return F.adaptive_avg_pool2d(x[1], { 5, 4 }) end,
    function() return { R({ 1, 2, 3, 3 }) } end)
  case("interpolate nearest x2 (4-D)", function(x) return F.interpolate(x[1], { scale_factor = 2 }) end,
    function() return { R({ 1, 2, 3, 4 }) } end)
  case("interpolate nearest x(2,3) (4-D)", function(x) return F.interpolate(x[1], { size = { 6, 6 } }) end,
    function() return { R({ 2, 1, 3, 2 }) } end)
  case("interpolate nearest x3 (3-D)", function(x) return F.interpolate(x[1], { scale_factor = 3 }) end,
    function() return { R({ 2, 3, 4 }) } end)
  case("adaptive_avg_pool2d 3-D input", function(x) return F.adaptive_avg_pool2d(x[1], 2) end, function() return { R({ 3, 5, 5 }) } end)
end)

describe("gradcheck: normalisation", function()
  local function fresh_stats(c)
    return cocola.zeros({ c }, { dtype = "float64" }), cocola.ones({ c }, { dtype = "float64" })
  end
  case("batch_norm training with weight and bias", function(x)
    local rm, rv = fresh_stats(3)
    return F.batch_norm(x[1], rm, rv, x[2], x[3], true, 0.1, 1e-5)
  end, function() return { R({ 4, 3, 2, 3 }), R({ 3 }), R({ 3 }) } end)
  case("batch_norm training without affine or running stats", function(x)
    return F.batch_norm(x[1], nil, nil, nil, nil, true, 0.1, 1e-5)
  end, function() return { R({ 3, 2, 3, 2 }) } end)
  case("batch_norm training on (N,C)", function(x)
    local rm, rv = fresh_stats(4)
    return F.batch_norm(x[1], rm, rv, x[2], x[3], true)
  end, function() return { R({ 6, 4 }), R({ 4 }), R({ 4 }) } end)
  case("batch_norm eval with weight and bias", function(x)
    return F.batch_norm(x[1], x[4], x[5], x[2], x[3], false, 0.1, 1e-5)
  end, function()
    return { R({ 2, 3, 2, 2 }), R({ 3 }), R({ 3 }), { R({ 3 }), grad = false }, { POS({ 3 }), grad = false } }
  end)
  case("layer_norm last dim with weight and bias", function(x) return F.layer_norm(x[1], { 6 }, x[2], x[3], 1e-5) end,
    function() return { R({ 2, 3, 6 }), R({ 6 }), R({ 6 }) } end)
  case("layer_norm last two dims", function(x) return F.layer_norm(x[1], { 3, 4 }, x[2], x[3]) end,
    function() return { R({ 2, 3, 4 }), R({ 3, 4 }), R({ 3, 4 }) } end)
  case("group_norm 2 groups with weight and bias", function(x) return F.group_norm(x[1], 2, x[2], x[3], 1e-5) end,
    function() return { R({ 2, 4, 3, 2 }), R({ 4 }), R({ 4 }) } end)
  case("group_norm 3-D input, one channel per group", function(x) return F.group_norm(x[1], 3, x[2], x[3], 1e-6) end,
    function() return { R({ 2, 3, 5 }), R({ 3 }), R({ 3 }) } end)
  case("group_norm without affine", function(x) return F.group_norm(x[1], 1) end, function() return { R({ 3, 4, 2, 2 }) } end)
  case("layer_norm without affine", function(x) return F.layer_norm(x[1], 5, nil, nil, 1e-6) end, function() return { R({ 4, 5 }) } end)
end)

describe("gradcheck: attention", function()
  case("scaled_dot_product_attention (B,H,L,E)", function(x) return F.scaled_dot_product_attention(x[1], x[2], x[3]) end,
    function() return { R({ 2, 2, 3, 4 }), R({ 2, 2, 5, 4 }), R({ 2, 2, 5, 3 }) } end)
  case("scaled_dot_product_attention with an additive mask and a scale", function(x)
    return F.scaled_dot_product_attention(x[1], x[2], x[3], { attn_mask = x[4], scale = 0.3 })
  end, function() return { R({ 2, 3, 4 }), R({ 2, 5, 4 }), R({ 2, 5, 2 }), R({ 3, 5 }) } end)
  case("scaled_dot_product_attention with a key mask", function(x)
    local keep = cocola.tensor({ { 1, 1, 0, 1 }, { 1, 0, 0, 0 } }, { dtype = "float64" })
    return F.scaled_dot_product_attention(x[1], x[2], x[3], { key_mask = keep })
  end, function() return { R({ 2, 2, 3, 4 }), R({ 2, 2, 4, 4 }), R({ 2, 2, 4, 3 }) } end)
end)

describe("gradcheck: dropout", function()
  case("dropout training p=0.3 (seeded mask)", function(x) return F.dropout(x[1], 0.3, true) end,
    function() return { R({ 4, 6 }) } end, { seed = 1234 })
  case("dropout training p=0.5 (seeded mask)", function(x) return F.dropout(x[1]) end, function() return { R({ 5, 5 }) } end, { seed = 99 })
  case("dropout eval", function(x) return F.dropout(x[1], 0.5, false) end, function() return { R({ 3, 4 }) } end)
  case("dropout p=0", function(x) return F.dropout(x[1], 0, true) end, function() return { R({ 3, 4 }) } end)

  it("the seeded mask really drops elements and scales the rest by 1/(1-p)", function()
    local x = cocola.ones({ 400 }, { dtype = "float64" })
    cocola.manual_seed(1234)
    local y = F.dropout(x, 0.3, true)
    local zeros, kept = 0, 0
    for _, v in ipairs(y:totable()) do
      if v == 0 then zeros = zeros + 1
      else
        assert.is_true(math.abs(v - 1 / 0.7) < 1e-12, "kept value " .. v)
        kept = kept + 1
      end
    end
    assert.is_true(zeros > 80 and zeros < 160, "dropped " .. zeros .. " of 400 at p=0.3")
    cocola.manual_seed(1234)
    assert.are.same(y:totable(), F.dropout(x, 0.3, true):totable())
  end)
end)

describe("gradcheck: softmax and losses", function()
  case("softmax last dim", function(x) return x[1]:softmax(-1) end, function() return { R({ 3, 5 }) } end)
  case("softmax dim 1", function(x) return F.softmax(x[1], 1) end, function() return { R({ 4, 3 }) } end)
  case("softmax middle dim of 3-D", function(x) return x[1]:softmax(2) end, function() return { R({ 2, 3, 4 }) } end)
  case("log_softmax last dim", function(x) return x[1]:log_softmax(-1) end, function() return { R({ 3, 5 }) } end)
  case("log_softmax dim 1", function(x) return F.log_softmax(x[1], 1) end, function() return { R({ 4, 3 }) } end)
  case("log_softmax middle dim of 3-D", function(x) return x[1]:log_softmax(2) end, function() return { R({ 2, 3, 4 }) } end)
  case("cross_entropy", function(x) return F.cross_entropy(x[1], x[2]) end,
    function() return { R({ 5, 4 }), cocola.tensor({ 0, 3, 1, 2, 3 }, { dtype = "int64" }) } end)
  case("cross_entropy composed with linear", function(x) return F.cross_entropy(F.linear(x[1], x[2]), x[3]) end,
    function() return { R({ 3, 4 }), R({ 6, 4 }), cocola.tensor({ 5, 0, 2 }, { dtype = "int64" }) } end)
end)

describe("gradcheck: sin, cos, floor, round", function()
  local INTEGERS, HALVES = { -3, -2, -1, 0, 1, 2, 3 }, { -2.5, -1.5, -0.5, 0.5, 1.5, 2.5 }
  case("sin", function(x) return x[1]:sin() end, function() return { R({ 3, 4 }, -4, 4) } end)
  case("cos", function(x) return x[1]:cos() end, function() return { R({ 3, 4 }, -4, 4) } end)
  case("floor (zero gradient) beside a smooth term", function(x) return x[1]:floor() + x[1] * 2 end,
    function() return { R({ 3, 4 }, -3, 3, INTEGERS) } end)
  case("round (zero gradient) beside a smooth term", function(x) return x[1]:round() * x[1] end,
    function() return { R({ 3, 4 }, -3, 3, HALVES) } end)
end)

describe("gradcheck: sort, topk, cumsum", function()
  case("sort last dim", function(x) return (x[1]:sort()) end, function() return { R({ 3, 5 }) } end)
  case("sort dim 1 descending", function(x) return (x[1]:sort(1, true)) end, function() return { R({ 4, 3, 2 }) } end)
  case("sort values used twice", function(x)
    local v = x[1]:sort(2)
    return v * v:narrow(2, 1, 1)
  end, function() return { R({ 3, 4 }) } end)
  case("topk largest along the last dim", function(x) return (x[1]:topk(2)) end, function() return { R({ 3, 5 }) } end)
  case("topk smallest along dim 1", function(x) return (x[1]:topk(3, 1, false)) end, function() return { R({ 4, 3 }) } end)
  case("topk k = size", function(x) return (x[1]:topk(4, 2)) * 2 end, function() return { R({ 2, 4 }) } end)
  case("cumsum last dim", function(x) return x[1]:cumsum(-1) end, function() return { R({ 3, 5 }) } end)
  case("cumsum dim 1 of 3-D", function(x) return x[1]:cumsum(1) end, function() return { R({ 3, 2, 4 }) } end)
  case("cumsum twice", function(x) return x[1]:cumsum(2):cumsum(1) * x[1] end, function() return { R({ 3, 4 }) } end)
end)

describe("gradcheck: statistics, norms, logsumexp", function()
  case("var all", function(x) return x[1]:var() end, function() return { R({ 3, 4 }) } end)
  case("var dim 2 biased keepdim", function(x) return x[1]:var(2, false, true) end, function() return { R({ 3, 4 }) } end)
  case("var dims {1,3} correction 2", function(x) return x[1]:var({ 1, 3 }, { correction = 2 }) end,
    function() return { R({ 3, 2, 4 }) } end)
  case("std dim 1", function(x) return x[1]:std(1) end, function() return { R({ 4, 3 }) } end)
  case("std all", function(x) return x[1]:std() end, function() return { R({ 3, 4 }) } end)
  case("norm p=2 all", function(x) return x[1]:norm() end, function() return { R({ 3, 4 }) } end)
  case("norm p=2 dim 2 keepdim", function(x) return x[1]:norm(2, 2, true) end, function() return { R({ 3, 4 }) } end)
  case("norm p=1 dim 1", function(x) return x[1]:norm(1, 1) end, function() return { NZ({ 3, 4 }) } end)
  case("norm p=inf dim 2", function(x) return x[1]:norm(math.huge, 2) end, function() return { NZ({ 3, 4 }) } end)
  case("norm p=-inf all", function(x) return x[1]:norm(-math.huge) end, function() return { NZ({ 3, 4 }) } end)
  case("norm p=3 dim -1", function(x) return x[1]:norm(3, -1) end, function() return { NZ({ 2, 3, 4 }) } end)
  case("norm p=0.5 all", function(x) return x[1]:norm(0.5) end, function() return { NZ({ 3, 4 }) } end)
  case("logsumexp dim 2", function(x) return x[1]:logsumexp(2) end, function() return { R({ 3, 4 }, -3, 3) } end)
  case("logsumexp dims {1,3} keepdim", function(x) return x[1]:logsumexp({ 1, 3 }, true) end,
    function() return { R({ 3, 2, 4 }, -3, 3) } end)
  case("logsumexp far from 0", function(x) return (x[1] + 700):logsumexp(1) end, function() return { R({ 4, 3 }, -3, 3) } end)
end)

describe("gradcheck: losses", function()
  local function PROB(shape) return R(shape, 0.05, 0.95) end
  case("mse_loss mean", function(x) return F.mse_loss(x[1], x[2]) end, function() return { R({ 3, 4 }), R({ 3, 4 }) } end)
  case("mse_loss none", function(x) return F.mse_loss(x[1], x[2], "none") end, function() return { R({ 3, 4 }), R({ 3, 4 }) } end)
  case("l1_loss sum", function(x) return F.l1_loss(x[1], x[2], { reduction = "sum" }) end,
    function() return { R({ 3, 4 }, 0.5, 2), R({ 3, 4 }, -2, -0.5) } end)
  case("binary_cross_entropy (input and target)", function(x) return F.binary_cross_entropy(x[1], x[2]) end,
    function() return { PROB({ 3, 4 }), PROB({ 3, 4 }) } end)
  case("binary_cross_entropy with a weight", function(x)
    return F.binary_cross_entropy(x[1], x[2], { weight = x[3], reduction = "none" })
  end, function() return { PROB({ 3, 4 }), { PROB({ 3, 4 }), grad = false }, POS({ 3, 4 }) } end)
  case("binary_cross_entropy_with_logits", function(x) return F.binary_cross_entropy_with_logits(x[1], x[2]) end,
    function() return { R({ 3, 4 }, -4, 4), PROB({ 3, 4 }) } end)
  case("binary_cross_entropy_with_logits weight and pos_weight", function(x)
    return F.binary_cross_entropy_with_logits(x[1], x[2], { weight = x[3], pos_weight = x[4], reduction = "sum" })
  end, function() return { R({ 3, 4 }, -4, 4), PROB({ 3, 4 }), POS({ 3, 4 }), POS({ 3, 4 }) } end)
end)

describe("gradcheck: t[i] indexing", function()
  case("t[i]", function(x) return x[1][2] * x[1][-1] end, function() return { R({ 3, 4 }) } end)
  case("t[i][j] of 3-D", function(x) return x[1][2][1] * 3 + x[1][1][3] end, function() return { R({ 2, 3, 4 }) } end)
  case("t[i] of 1-D (0-d)", function(x) return x[1][1][2] * x[1][2] end, function() return { R({ 2, 3 }) } end)
end)

describe("gradcheck: joining and selection", function()
  case("cat dim 1", function(x) return cocola.cat({ x[1], x[2] }, 1) end, function() return { R({ 2, 3 }), R({ 4, 3 }) } end)
  case("cat dim 2 of three", function(x) return cocola.cat({ x[1], x[2], x[3] }, 2) end,
    function() return { R({ 2, 3 }), R({ 2, 1 }), R({ 2, 2 }) } end)
  case("cat dim -1 of 3-D", function(x) return cocola.cat({ x[1], x[2] }, -1) end, function() return { R({ 2, 2, 3 }), R({ 2, 2, 2 }) } end)
  case("cat 1-D with itself", function(x) return cocola.cat({ x[1], x[1] }) end, function() return { R({ 4 }) } end)
  case("stack dim 1", function(x) return cocola.stack({ x[1], x[2] }, 1) end, function() return { R({ 2, 3 }), R({ 2, 3 }) } end)
  case("stack dim 2", function(x) return cocola.stack({ x[1], x[2], x[3] }, 2) end,
    function() return { R({ 2, 3 }), R({ 2, 3 }), R({ 2, 3 }) } end)
  case("stack new last dim", function(x) return cocola.stack({ x[1], x[2] }, -1) end, function() return { R({ 3, 2 }), R({ 3, 2 }) } end)
  case("split by size (uneven)", function(x) return x[1]:split(3, 1) end, function() return { R({ 7, 4 }) } end)
  case("split by sizes", function(x) return cocola.split(x[1], { 1, 3 }, 2) end, function() return { R({ 3, 4 }) } end)
  case("split, one piece used twice and one unused", function(x)
    local p = x[1]:split(2, 2)
    return { p[1] * p[1], p[3] }
  end, function() return { R({ 3, 6 }) } end)
  case("chunk", function(x) return x[1]:chunk(3, 2) end, function() return { R({ 2, 7 }) } end)
  case("where same shape", function(x) return cocola.where(x[1]:gt(0), x[2], x[3]) end,
    function() return { { NZ({ 3, 4 }), grad = false }, R({ 3, 4 }), R({ 3, 4 }) } end)
  case("where broadcast", function(x) return cocola.where(x[1], x[2], x[3]) end, function()
    return { cocola.tensor({ { 1 }, { 0 }, { 1 } }, { dtype = "int64" }), R({ 1, 4 }), R({ 3, 4 }) }
  end)
  case("where with a scalar", function(x) return cocola.where(x[1], x[2], 0.0) * cocola.where(x[1], 1.5, x[2]) end,
    function() return { cocola.tensor({ { 1, 0, 0, 1 }, { 0, 1, 1, 0 } }, { dtype = "int64" }), R({ 2, 4 }) } end)
  case("masked_fill broadcast mask", function(x) return x[1]:masked_fill(x[2], -2.0) end,
    function() return { R({ 3, 4 }), cocola.tensor({ { 1, 0, 0, 1 } }, { dtype = "int64" }) } end)
  case("masked_fill float mask", function(x) return x[1]:masked_fill(x[2], 3.0) end,
    function() return { R({ 3, 4 }), { cocola.tensor({ { 1, 0, 1, 0 }, { 0, 0, 1, 1 }, { 1, 1, 0, 0 } }, { dtype = "float64" }), grad = false } } end)
end)

describe("gradcheck: views and copies", function()
  local VIEWABLE = { "contiguous", "strided" } -- view() needs mergeable strides; these keep them
  case("reshape", function(x) return x[1]:reshape(3, 4) * x[2] end, function() return { R({ 12 }), R({ 3, 4 }) } end)
  case("reshape that must copy", function(x) return x[1]:t():reshape({ 12 }) end, function() return { R({ 3, 4 }) } end)
  case("reshape with -1", function(x) return x[1]:reshape({ -1, 2 }) end, function() return { R({ 2, 3, 2 }) } end)
  case("view", function(x) return x[1]:view(3, 4) end, function() return { R({ 2, 6 }) } end, { layouts = VIEWABLE })
  case("view with -1", function(x) return x[1]:view({ 6, -1 }) end, function() return { R({ 2, 3, 4 }) } end, { layouts = VIEWABLE })
  case("flatten", function(x) return x[1]:flatten(2) end, function() return { R({ 2, 3, 2 }) } end)
  case("permute", function(x) return x[1]:permute(3, 1, 2) * x[2] end, function() return { R({ 2, 3, 4 }), R({ 4, 2, 3 }) } end)
  case("transpose", function(x) return x[1]:transpose(1, 3):exp() end, function() return { R({ 2, 3, 4 }) } end)
  case("t", function(x) return x[1]:t() * x[2] end, function() return { R({ 3, 4 }), R({ 4, 3 }) } end)
  case("narrow", function(x) return x[1]:narrow(1, 2, 2) end, function() return { R({ 4, 3 }) } end)
  case("narrow last dim from the end", function(x) return x[1]:narrow(-1, -2, 2) * 2.0 end, function() return { R({ 3, 5 }) } end)
  case("select", function(x) return x[1]:select(2, 3) * x[2] end, function() return { R({ 3, 4 }), R({ 3 }) } end)
  case("select last index of last dim", function(x) return x[1]:select(-1, -1):tanh() end, function() return { R({ 3, 4 }) } end)
  case("unsqueeze", function(x) return x[1]:unsqueeze(2) + x[2] end, function() return { R({ 3, 4 }), R({ 3, 2, 4 }) } end)
  case("unsqueeze last", function(x) return x[1]:unsqueeze(-1) * x[1]:unsqueeze(1) end, function() return { R({ 3 }) } end)
  case("squeeze all", function(x) return x[1]:squeeze() end, function() return { R({ 1, 3, 1, 4 }) } end)
  case("squeeze one dim", function(x) return x[1]:squeeze(2) * x[2] end, function() return { R({ 3, 1, 4 }), R({ 3, 4 }) } end)
  case("expand", function(x) return x[1]:expand(3, 4) * x[2] end, function() return { R({ 3, 1 }), R({ 3, 4 }) } end)
  case("expand new leading dims and -1", function(x) return x[1]:expand({ 2, -1, 4 }) end, function() return { R({ 3, 1 }) } end)
  case("contiguous of a transposed view", function(x) return x[1]:t():contiguous():exp() end, function() return { R({ 3, 4 }) } end)
  case("contiguous", function(x) return x[1]:contiguous() * x[1] end, function() return { R({ 3, 4 }) } end)
  case("clone", function(x) return x[1]:clone() * x[1] end, function() return { R({ 3, 4 }) } end)
  case("chained views", function(x) return x[1]:narrow(2, 2, 3):t():select(1, 2):unsqueeze(1):expand(2, 4) end,
    function() return { R({ 4, 5 }) } end)
end)

describe("gradcheck: index_select, gather, embedding, max_pool2d", function()
  local function L(t) return cocola.tensor(t, { dtype = "int64" }) end
  -- a non-contiguous int64 index: every other entry of a longer one
  local function strided_index(t)
    local wide = {}
    for i, v in ipairs(t) do wide[2 * i - 1], wide[2 * i] = v, -1 end
    return L(wide):view(#t, 2):select(2, 1)
  end
  case("index_select dim 1, repeated indices", function(x) return x[1]:index_select(1, x[2]) end,
    function() return { R({ 3, 4 }), L({ 2, 0, 2, 1, 2 }) } end)
  case("index_select middle dim of 3-D", function(x) return cocola.index_select(x[1], 2, x[2]) * x[1]:narrow(2, 1, 2) end,
    function() return { R({ 2, 3, 4 }), L({ 1, 1 }) } end)
  case("index_select last dim, strided index", function(x) return F.index_select(x[1], -1, x[2]) end,
    function() return { R({ 3, 5 }), strided_index({ 4, 0, 4, 3 }) } end)
  case("index_select empty index", function(x) return x[1]:index_select(2, x[2]):sum() + x[1]:sum() end,
    function() return { R({ 3, 4 }), L({}) } end)
  case("gather dim 1, repeated indices", function(x) return x[1]:gather(1, x[2]) end,
    function() return { R({ 3, 4 }), L({ { 2, 0, 2, 2 }, { 2, 1, 0, 2 } }) } end)
  case("gather dim 2, index narrower than x", function(x) return cocola.gather(x[1], 2, x[2]) end,
    function() return { R({ 3, 5 }), L({ { 4, 4, 0 }, { 1, 3, 1 } }) } end)
  case("gather 3-D, transposed index", function(x) return F.gather(x[1], 3, x[2]) end,
    function() return { R({ 2, 3, 4 }), L({ { { 0, 3 }, { 3, 3 }, { 1, 2 } }, { { 2, 2 }, { 0, 1 }, { 3, 0 } } }):transpose(2, 3) } end)
  case("embedding, 2-D indices with repeats", function(x) return F.embedding(x[2], x[1]) end,
    function() return { R({ 5, 3 }), L({ { 4, 0, 4 }, { 1, 4, 0 } }) } end)
  it("embedding with padding_idx: the gradient without it, less the padding row", function()
    reseed("embedding padding")
    local w, idx, upstream = R({ 4, 3 }), L({ 1, 2, 1, 3 }), R({ 4, 3 })
    local grads = {}
    for k, pad in ipairs({ false, true }) do
      local leaf = w:clone():requires_grad(true)
      local out = pad and F.embedding(idx, leaf, { padding_idx = 1 }) or F.embedding(idx, leaf)
      assert.are.same({ 4, 3 }, out.shape)
      ;(out * upstream):sum():backward()
      grads[k] = leaf.grad:totable()
    end
    for i = 1, 4 do
      for j = 1, 3 do
        assert.are.equal(i == 2 and 0 or grads[1][i][j], grads[2][i][j])
      end
    end
    assert.are_not.equal(0, grads[1][2][1])
  end)
  case("max_pool2d 2x2", function(x) return F.max_pool2d(x[1], 2) end, function() return { R({ 2, 2, 4, 6 }) } end)
  case("max_pool2d 3x3 stride 2 padding 1", function(x) return F.max_pool2d(x[1], 3, { stride = 2, padding = 1 }) end,
    function() return { R({ 1, 2, 7, 6 }) } end)
  case("max_pool2d overlapping windows (stride 1)", function(x) return F.max_pool2d(x[1], { 2, 3 }, { stride = 1 }) end,
    function() return { R({ 1, 2, 4, 5 }) } end)
  case("max_pool2d dilation 2, 3-D input", function(x) return F.max_pool2d(x[1], 2, { stride = { 1, 2 }, dilation = 2, padding = { 1, 0 } }) end,
    function() return { R({ 2, 5, 6 }) } end)
  case("max_pool2d values of return_indices", function(x)
    local v, i = F.max_pool2d(x[1], 2, { return_indices = true })
    return v * i:double()
  end, function() return { R({ 1, 1, 4, 4 }) } end)
end)
