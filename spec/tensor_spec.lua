-- tensor_spec.lua — the tensor object itself: creation (nested tables, arange, zeros/ones/full,
-- random with seeds), views sharing storage and contiguous() copying only when needed, memory
-- accounting returning to its start after garbage collection, torch-style printing, arithmetic
-- metamethods with numbers on either side, the small accessors (item, totable, size, ...), t[i],
-- comparisons, sort/topk/cumsum, statistics and norms, the losses' edge cases, and the seed.
local cocola = require "cocola"

local flat = require("helpers.files").flat

describe("creation", function()
  it("builds a tensor from a nested table with its shape, values and float32 default", function()
    local t = cocola.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
    assert.are.same({ 2, 3 }, t.shape)
    assert.are.equal("float32", t:dtype())
    assert.are.same({ { 1, 2, 3 }, { 4, 5, 6 } }, t:totable())
    assert.are.equal(6, t:_at(2, 3))
    assert.are.equal(2, t:_at(1, 2))
  end)

  it("honours the dtype option, keeping int64 values exact", function()
    local big = 9007199254740993 -- 2^53 + 1, not representable as a double
    local i = cocola.tensor({ big, -3 }, { dtype = "int64" })
    assert.are.equal("int64", i:dtype())
    assert.are.equal(big, i:_at(1))
    assert.are.equal("integer", math.type(i:_at(1)))
    local d = cocola.tensor({ 0.1, 1 / 3 }, { dtype = "float64" })
    assert.are.equal("float64", d:dtype())
    assert.are.equal(1 / 3, d:_at(2))
    local f = cocola.tensor({ 0.1 })
    assert.are_not.equal(0.1, f:_at(1)) -- rounded to float32
    assert.is_true(math.abs(f:_at(1) - 0.1) < 1e-8)
  end)

  it("makes 0-d tensors from numbers and 3-d tensors from deeper tables", function()
    local s = cocola.tensor(2.5)
    assert.are.same({}, s.shape)
    assert.are.equal(0, s:dim())
    assert.are.equal(2.5, s:item())
    local t = cocola.tensor({ { { 1 }, { 2 } }, { { 3 }, { 4 } }, { { 5 }, { 6 } } })
    assert.are.same({ 3, 2, 1 }, t.shape)
    assert.are.equal(5, t:_at(3, 1, 1))
  end)

  it("zeros, ones and full", function()
    local z = cocola.zeros({ 2, 3 })
    assert.are.same({ 2, 3 }, z.shape)
    assert.are.same({ 0, 0, 0, 0, 0, 0 }, flat(z:totable()))
    local o = cocola.ones({ 4 }, { dtype = "int64" })
    assert.are.equal("int64", o:dtype())
    assert.are.same({ 1, 1, 1, 1 }, o:totable())
    local f = cocola.full({ 2, 2 }, -1.5, { dtype = "float64" })
    assert.are.equal("float64", f:dtype())
    assert.are.same({ { -1.5, -1.5 }, { -1.5, -1.5 } }, f:totable())
    assert.are.same({ 3, 1, 2 }, cocola.zeros(3, 1, 2).shape)
  end)

  it("arange is int64 for integer bounds, excludes the end, and supports steps", function()
    local a = cocola.arange(0, 5)
    assert.are.equal("int64", a:dtype())
    assert.are.same({ 0, 1, 2, 3, 4 }, a:totable())
    assert.are.same({ 0, 1, 2 }, cocola.arange(3):totable())
    assert.are.same({ 2, 5, 8 }, cocola.arange(2, 10, 3):totable())
    assert.are.same({ 5, 3, 1 }, cocola.arange(5, 0, -2):totable())
    local f = cocola.arange(0, 1, 0.25)
    assert.are.equal("float32", f:dtype())
    assert.are.same({ 0, 0.25, 0.5, 0.75 }, f:totable())
    assert.are.equal("float64", cocola.arange(0, 3, { dtype = "float64" }):dtype())
  end)

  it("rand/randn/randint: the same seed gives the same numbers, another seed others", function()
    for _, make in ipairs({
      function() return cocola.rand({ 50 }) end,
      function() return cocola.randn({ 50 }, { dtype = "float64" }) end,
      function() return cocola.randint(0, 1000, { 50 }) end,
    }) do
      cocola.manual_seed(42)
      local a = make():totable()
      cocola.manual_seed(42)
      local b = make():totable()
      cocola.manual_seed(43)
      local c = make():totable()
      assert.are.same(a, b)
      assert.are_not.same(a, c)
      -- successive draws differ too (the generator advances)
      cocola.manual_seed(42)
      make()
      assert.are_not.same(a, make():totable())
    end
  end)

  it("randn on 1e5 samples has mean ~0 and std ~1; rand lies in [0,1) with mean ~1/2", function()
    cocola.manual_seed(7)
    local n = 100000
    local x = cocola.randn({ n }, { dtype = "float64" })
    local s, s2 = 0.0, 0.0
    for _, v in ipairs(x:totable()) do
      s = s + v
      s2 = s2 + v * v
    end
    local mean = s / n
    local std = math.sqrt(s2 / n - mean * mean)
    assert.is_true(math.abs(mean) < 0.02, "randn mean " .. mean)
    assert.is_true(math.abs(std - 1) < 0.02, "randn std " .. std)
    local u = cocola.rand({ n })
    local lo, hi, su = math.huge, -math.huge, 0.0
    for _, v in ipairs(u:totable()) do
      lo, hi, su = math.min(lo, v), math.max(hi, v), su + v
    end
    assert.is_true(lo >= 0 and hi < 1, "rand range " .. lo .. ".." .. hi)
    assert.is_true(math.abs(su / n - 0.5) < 0.01, "rand mean " .. su / n)
  end)

  it("randint gives int64 values in [lo, hi) covering the range", function()
    cocola.manual_seed(3)
    local r = cocola.randint(-2, 3, { 1000 })
    assert.are.equal("int64", r:dtype())
    local seen = {}
    for _, v in ipairs(r:totable()) do
      assert.are.equal("integer", math.type(v))
      assert.is_true(v >= -2 and v < 3, "value " .. v)
      seen[v] = true
    end
    for v = -2, 2 do assert.is_true(seen[v], "never drew " .. v) end
  end)
end)

describe("views and storage", function()
  it("views share storage with their base", function()
    local base = cocola.arange(0, 12, { dtype = "float32" }):reshape(3, 4)
    local views = {
      base:t(), base:narrow(2, 2, 2), base:select(1, 2), base:view(4, 3), base:reshape(2, 6),
      base:permute(2, 1), base:unsqueeze(1), base:unsqueeze(1):squeeze(), base:detach(),
      base:narrow(1, 1, 1):expand(5, 4), base:transpose(1, 2),
    }
    for k, v in ipairs(views) do
      assert.are.equal(base:storage_ptr(), v:storage_ptr(), "view " .. k)
    end
    local nar = base:narrow(2, 2, 2)
    assert.are.equal(1, nar:storage_offset())
    assert.are.equal(base:data_ptr() + 4, nar:data_ptr()) -- one float32 in
    assert.are.same({ 1, 4 }, base:t():stride())
    assert.are.same({ 4, 1 }, base:stride())
    assert.are.same({ 0, 1 }, base:narrow(1, 1, 1):expand(5, 4):stride())
  end)

  it("writes through a view are visible in the base (fill_ and copy_ under no_grad)", function()
    local base = cocola.zeros({ 3, 4 })
    cocola.no_grad(function()
      base:t():select(1, 2):fill_(7) -- column 2
      base:narrow(1, 3, 1):narrow(2, 3, 2):copy_(cocola.tensor({ { 5, 6 } }))
      base:select(1, 1):copy_(cocola.tensor({ 9 })) -- broadcast copy into row 1
    end)
    assert.are.same({ { 9, 9, 9, 9 }, { 0, 7, 0, 0 }, { 0, 7, 5, 6 } }, base:totable())
    -- and the other way: a write to the base shows in an older view
    local v = base:view(12)
    cocola.no_grad(function() base:fill_(1) end)
    assert.are.same({ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }, v:totable())
  end)

  it("contiguous() returns the same storage when already contiguous and copies otherwise", function()
    local base = cocola.arange(0, 6, { dtype = "float64" }):reshape(2, 3)
    assert.is_true(base:is_contiguous())
    local same = base:contiguous()
    assert.are.equal(base:data_ptr(), same:data_ptr())
    assert.are.equal(base:storage_ptr(), same:storage_ptr())
    local t = base:t()
    assert.is_false(t:is_contiguous())
    local c = t:contiguous()
    assert.is_true(c:is_contiguous())
    assert.are_not.equal(base:storage_ptr(), c:storage_ptr())
    assert.are.same(t:totable(), c:totable())
    assert.are.same({ { 0, 3 }, { 1, 4 }, { 2, 5 } }, c:totable())
    -- a copy is independent of its source
    cocola.no_grad(function() base:fill_(0) end)
    assert.are.same({ { 0, 3 }, { 1, 4 }, { 2, 5 } }, c:totable())
    -- reshape copies only when it has to
    local b2 = cocola.zeros({ 2, 3 })
    assert.are.equal(b2:storage_ptr(), b2:reshape(6):storage_ptr())
    assert.are_not.equal(b2:storage_ptr(), b2:t():reshape(6):storage_ptr())
  end)

  it("clone copies", function()
    local a = cocola.tensor({ 1, 2, 3 })
    local b = a:clone()
    assert.are_not.equal(a:storage_ptr(), b:storage_ptr())
    cocola.no_grad(function() b:fill_(0) end)
    assert.are.same({ 1, 2, 3 }, a:totable())
  end)
end)

describe("memory accounting", function()
  local function settle()
    collectgarbage()
    collectgarbage()
  end

  it("live_tensors and live_bytes return to their start after references are dropped", function()
    settle()
    local t0, b0 = cocola.live_tensors(), cocola.live_bytes()
    do
      local keep = {}
      for i = 1, 20 do keep[i] = cocola.zeros({ 100, 10 }) end
      local a = keep[1]:t():narrow(1, 1, 5)
      local x = cocola.randn({ 30, 30 }, { dtype = "float64" }):requires_grad(true)
      local y = (x:matmul(x) * 2):sum()
      y:backward()
      assert.is_true(cocola.live_tensors() >= t0 + 23)
      assert.is_true(cocola.live_bytes() >= b0 + 20 * 100 * 10 * 4)
      keep, a, x, y = nil, nil, nil, nil
    end
    settle()
    assert.are.equal(t0, cocola.live_tensors())
    assert.are.equal(b0, cocola.live_bytes())
  end)

  it("close() frees a tensor at once", function()
    settle()
    local t0, b0 = cocola.live_tensors(), cocola.live_bytes()
    local t = cocola.zeros({ 1000 })
    assert.are.equal(b0 + 4000, cocola.live_bytes())
    t:close()
    assert.are.equal(t0, cocola.live_tensors())
    assert.are.equal(b0, cocola.live_bytes())
    do
      local u <close> = cocola.ones({ 10 })
      assert.are.equal(t0 + 1, cocola.live_tensors())
    end
    assert.are.equal(t0, cocola.live_tensors())
  end)
end)

describe("printing", function()
  it("looks like torch for a small float32 matrix", function()
    assert.are.equal("tensor([[1., 2.],\n        [3., 4.]])", tostring(cocola.tensor({ { 1, 2 }, { 3, 4 } })))
  end)

  it("formats fractions with 4 decimals, aligned", function()
    assert.are.equal("tensor([ 1.5000, -2.2500])", tostring(cocola.tensor({ 1.5, -2.25 })))
  end)

  it("shows a 0-d tensor and int64 values", function()
    assert.are.equal("tensor(3.)", tostring(cocola.tensor(3)))
    local s = tostring(cocola.tensor({ 1, 20, 300 }, { dtype = "int64" }))
    assert.is_truthy(s:find("[  1,  20, 300]", 1, true), s)
  end)

  it("shows the dtype for float64", function()
    assert.are.equal("tensor([1., 2.], dtype=float64)", tostring(cocola.tensor({ 1, 2 }, { dtype = "float64" })))
  end)

  it("summarises large tensors with ...", function()
    -- torch: the largest shown value is over 1000 times the smallest nonzero one, so scientific notation
    local s = tostring(cocola.arange(0, 2000, { dtype = "float32" }))
    assert.are.equal("tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n" ..
                     "        1.9990e+03], shape={2000})", s)
    local m = tostring(cocola.zeros({ 100, 100 }))
    assert.is_truthy(m:find("...", 1, true), m)
    assert.is_true(#m < 600, "summary of 100x100 is " .. #m .. " characters")
  end)

  it("wraps the last dim at 80 columns like torch, continuation lines indented", function()
    local expected = table.concat({
      "tensor([ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.,  8.,  9., 10., 11., 12., 13.,",
      "        14., 15., 16., 17., 18., 19., 20., 21., 22., 23., 24., 25., 26., 27.,",
      "        28., 29.])" }, "\n")
    assert.are.equal(expected, tostring(cocola.arange(0, 30, { dtype = "float32" })))
    local rows = cocola.arange(0, 1000, { dtype = "float32" }):reshape(2, 500):narrow(2, 1, 28)
    expected = table.concat({
      "tensor([[  0.,   1.,   2.,   3.,   4.,   5.,   6.,   7.,   8.,   9.,  10.,  11.,",
      "          12.,  13.,  14.,  15.,  16.,  17.,  18.,  19.,  20.,  21.,  22.,  23.,",
      "          24.,  25.,  26.,  27.],",
      "        [500., 501., 502., 503., 504., 505., 506., 507., 508., 509., 510., 511.,",
      "         512., 513., 514., 515., 516., 517., 518., 519., 520., 521., 522., 523.,",
      "         524., 525., 526., 527.]])" }, "\n")
    assert.are.equal(expected, tostring(rows))
    for line in tostring(cocola.randn({ 3, 50 }, { dtype = "float64" })):gmatch("[^\n]+") do
      assert.is_true(#line <= 80, line)
    end
  end)

  it("moves a suffix that would pass 80 columns to a line of its own", function()
    local row = "1.5000, 1.5000, 1.5000, 1.5000, 1.5000, 1.5000, 1.5000, 1.5000, 1.5000,"
    local rest = "1.5000, 1.5000, 1.5000, 1.5000, 1.5000, 1.5000, 1.5000, 1.5000"
    assert.are.equal(table.concat({
      "tensor([[" .. row, "         " .. rest .. "],", "        [" .. row, "         " .. rest .. "]],",
      "       dtype=float64, requires_grad=true)" }, "\n"),
      tostring(cocola.full({ 2, 17 }, 1.5, { dtype = "float64", requires_grad = true })))
    assert.are.equal("tensor([1.5000, 1.5000], dtype=float64, requires_grad=true)",
                     tostring(cocola.full({ 2 }, 1.5, { dtype = "float64", requires_grad = true })))
  end)

  it("prints nan, inf and -inf as words, aligned, in every number format", function()
    local nan, inf = 0 / 0, math.huge
    assert.are.equal("tensor([1.5000,    inf,   -inf,    nan])", tostring(cocola.tensor({ 1.5, inf, -inf, nan })))
    assert.are.equal("tensor([1., nan])", tostring(cocola.tensor({ 1, nan })))
    assert.are.equal("tensor([1.0000e-05,        nan,       -inf])", tostring(cocola.tensor({ 1e-5, nan, -inf })))
    assert.are.equal("tensor(nan)", tostring(cocola.tensor(nan)))
    assert.are.equal("tensor(-inf, dtype=float64)", tostring(cocola.tensor(-inf, { dtype = "float64" })))
    assert.are.equal("tensor([[    nan,  1.2500],\n        [ 2.0000, -3.0000]])",
                     tostring(cocola.tensor({ { nan, 1.25 }, { 2, -3 } })))
  end)

  it("chooses torch's number format: scientific for wide ranges or tiny values", function()
    assert.are.equal("tensor([1.0000e+00, 1.0000e+04])", tostring(cocola.tensor({ 1, 10000 })))
    assert.are.equal("tensor([1.0000e-05, 1.0000e+00])", tostring(cocola.tensor({ 1e-5, 1 })))
    assert.are.equal("tensor([-0., 1.])", tostring(cocola.tensor({ -0.0, 1 })))
    assert.are.equal("tensor([0., 0.])", tostring(cocola.zeros({ 2 })))
    assert.are.equal("tensor([])", tostring(cocola.tensor({})))
    assert.are.equal("tensor([], shape={0,3})", tostring(cocola.zeros({ 0, 3 })))
  end)

  it("mentions grad_fn or requires_grad", function()
    local x = cocola.tensor({ 1, 2 }, { dtype = "float64" }):requires_grad(true)
    assert.is_truthy(tostring(x):find("requires_grad=true", 1, true))
    assert.is_truthy(tostring(x * 2):find("grad_fn=<", 1, true))
  end)
end)

describe("metamethods", function()
  local a = cocola.tensor({ 1, 2, 4 })
  local function vals(t) return t:totable() end

  it("work with numbers on either side", function()
    assert.are.same({ 3, 4, 6 }, vals(a + 2))
    assert.are.same({ 3, 4, 6 }, vals(2 + a))
    assert.are.same({ -1, 0, 2 }, vals(a - 2))
    assert.are.same({ 1, 0, -2 }, vals(2 - a))
    assert.are.same({ 2, 4, 8 }, vals(a * 2))
    assert.are.same({ 2, 4, 8 }, vals(2 * a))
    assert.are.same({ 0.5, 1, 2 }, vals(a / 2))
    assert.are.same({ 4, 2, 1 }, vals(4 / a))
    assert.are.same({ 1, 4, 16 }, vals(a ^ 2))
    assert.are.same({ 2, 4, 16 }, vals(2 ^ a))
    assert.are.same({ -1, -2, -4 }, vals(-a))
  end)

  it("work between tensors, with broadcasting", function()
    local b = cocola.tensor({ { 1 }, { 10 } })
    assert.are.same({ { 2, 3, 5 }, { 11, 12, 14 } }, vals(a + b))
    assert.are.same({ { 0, 1, 3 }, { -9, -8, -6 } }, vals(a - b))
    assert.are.same({ { 1, 2, 4 }, { 10, 20, 40 } }, vals(a * b))
    assert.are.same({ { 1, 0.5, 0.25 }, { 10, 5, 2.5 } }, vals(b / a))
    assert.are.same({ { 1, 1, 1 }, { 10, 100, 10000 } }, vals(b ^ a))
  end)

  it("keep int64 arithmetic exact", function()
    local i = cocola.tensor({ 9007199254740993 }, { dtype = "int64" })
    assert.are.equal(9007199254740995, (i + 2):_at(1))
    assert.are.equal("int64", (i * 3):dtype())
  end)
end)

describe("accessors", function()
  local t = cocola.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })

  it("item, totable, size, dim, numel and #", function()
    assert.are.equal(5, cocola.tensor({ { 5 } }):item())
    assert.are.equal("integer", math.type(cocola.tensor({ 7 }, { dtype = "int64" }):item()))
    assert.is_false(pcall(function() return t:item() end))
    assert.are.same({ 2, 3 }, t:size())
    assert.are.equal(3, t:size(2))
    assert.are.equal(3, t:size(-1))
    assert.are.equal(2, t:dim())
    assert.are.equal(2, t.ndim)
    assert.are.equal(6, t:numel())
    assert.are.equal(2, #t)
    assert.are.equal(3, #t:t())
    assert.are.same({ { 1, 4 }, { 2, 5 }, { 3, 6 } }, t:t():totable())
    assert.are.same({ 2, 5 }, t:select(2, 2):totable())
    assert.are.equal(1.5, cocola.tensor(1.5):totable())
  end)

  it("_at reads 1-based elements of views and rejects bad indices", function()
    local v = t:t()
    assert.are.equal(6, v:_at(3, 2))
    assert.are.equal(4, v:_at(1, 2))
    assert.is_false(pcall(function() return t:_at(3, 1) end))
    assert.is_false(pcall(function() return t:_at(0, 1) end))
    assert.is_false(pcall(function() return t:_at(1) end))
  end)

  it("dtype conversions", function()
    local d = t:double()
    assert.are.equal("float64", d:dtype())
    assert.are.same(t:totable(), d:totable())
    local l = cocola.tensor({ 1.7, -1.7, 2.5 }):long()
    assert.are.equal("int64", l:dtype())
    assert.are.same({ 1, -1, 2 }, l:totable())
  end)
end)

describe("t[i] indexing", function()
  it("is 1-based on the first dim, negative from the end, and gives views", function()
    local t = cocola.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
    assert.are.same({ 1, 2, 3 }, t[1]:totable())
    assert.are.same({ 4, 5, 6 }, t[-1]:totable())
    assert.are.equal(t:storage_ptr(), t[2]:storage_ptr())
    assert.are.equal(5, t[2][2]:item())
    assert.are.equal(3, t[1][-1]:item())
    -- a 1-d tensor gives 0-d ones, which print and read like torch's
    local e = t[2][3]
    assert.are.equal(0, e:dim())
    assert.are.equal("tensor(6.)", tostring(e))
    -- the same as select(1, i), and column access through t()
    assert.are.same(t:select(1, 2):totable(), t[2]:totable())
    assert.are.same({ 2, 5 }, t:t()[2]:totable())
  end)

  it("leaves methods, properties and other keys alone", function()
    local t = cocola.zeros({ 2, 3 })
    assert.are.equal(3, t:size(2))
    assert.are.same({ 2, 3 }, t.shape)
    assert.are.equal(2, t.ndim)
    assert.is_nil(t.grad)
    assert.is_nil(t.no_such_field)
    assert.is_function(t.sum)
  end)

  it("t[i] = number fills and t[i] = tensor copies (broadcast) into the view", function()
    local t = cocola.zeros({ 3, 2 })
    t[1] = 7
    t[-1] = cocola.tensor({ 1, 2 })
    t[2][2] = 5
    t[2] = t[2] + cocola.tensor({ 0.5 }) -- right side first, then the copy
    assert.are.same({ { 7, 7 }, { 0.5, 5.5 }, { 1, 2 } }, t:totable())
    local i = cocola.zeros({ 3 }, { dtype = "int64" })
    i[2] = 9
    assert.are.same({ 0, 9, 0 }, i:totable())
  end)

  it("names the index and the size when out of range, and rejects other misuse", function()
    local t = cocola.zeros({ 2, 3 })
    local function err(fn)
      local ok, msg = pcall(fn)
      assert.is_false(ok)
      return tostring(msg)
    end
    assert.matches("index 3 is out of range for dimension 1 of size 2", err(function() return t[3] end))
    assert.matches("index %-3 is out of range for dimension 1 of size 2", err(function() return t[-3] end))
    assert.matches("1%-based", err(function() return t[0] end))
    assert.matches("must be an integer, got 1.5", err(function() return t[1.5] end))
    assert.matches("0%-d tensor", err(function() return t[1][1][1] end))
    assert.matches("index 5 is out of range", err(function() t[5] = 1 end))
    assert.matches("number or tensor", err(function() t[1] = "x" end))
    assert.matches("shape mismatch", err(function() t[1] = cocola.zeros({ 2 }) end))
    local leaf = cocola.zeros({ 2, 2 }):requires_grad(true)
    assert.matches("requires grad", err(function() leaf[1] = 1 end))
    assert.are.same({ { 0, 0, 0 }, { 0, 0, 0 } }, t:totable())
  end)

  it("pairs(t) runs over the first dim", function()
    local t = cocola.tensor({ { 1, 2 }, { 3, 4 }, { 5, 6 } })
    local seen = {}
    for i, row in pairs(t) do seen[i] = row:sum():item() end
    assert.are.same({ 3, 7, 11 }, seen)
    for _ in pairs(cocola.tensor(1)) do error("a 0-d tensor has no first dim") end
  end)
end)

describe("comparisons", function()
  local a = cocola.tensor({ 1, 2, 3 })

  it("give 0/1 masks against a tensor or a number, under torch's names too", function()
    assert.are.same({ 0, 1, 1 }, a:gt(1):totable())
    assert.are.same({ 0, 1, 1 }, a:greater(1):totable())
    assert.are.same({ 1, 1, 0 }, a:less_equal(2):totable())
    assert.are.same({ 1, 0, 1 }, a:not_equal(cocola.tensor({ 2 })):totable())
    assert.are.same({ 0, 0, 1 }, a:greater_equal(3):totable())
    assert.are.same({ 1, 0, 0 }, a:less(2):totable())
    assert.are.equal("float32", a:gt(1):dtype())
    assert.are.equal("int64", a:long():gt(1):dtype())
  end)

  it("equal is a boolean: same shape and same values, NaN equal to nothing", function()
    assert.is_true(a:equal(cocola.tensor({ 1, 2, 3 })))
    assert.is_false(a:equal(cocola.tensor({ 1, 2, 4 })))
    assert.is_false(a:equal(cocola.tensor({ { 1, 2, 3 } })))
    assert.is_false(a:equal(cocola.tensor({ 1, 2 })))
    assert.is_false(cocola.tensor({ 0 / 0 }):equal(cocola.tensor({ 0 / 0 })))
    assert.is_true(cocola.zeros({ 0 }):equal(cocola.zeros({ 0 })))
    assert.is_false(pcall(function() return a:equal(a:double()) end))
  end)

  it("isnan, isinf, isfinite", function()
    local x = cocola.tensor({ 1, 0 / 0, math.huge, -math.huge })
    assert.are.same({ 0, 1, 0, 0 }, x:isnan():totable())
    assert.are.same({ 0, 0, 1, 1 }, x:isinf():totable())
    assert.are.same({ 1, 0, 0, 0 }, x:isfinite():totable())
    assert.are.same({ 1, 1 }, cocola.tensor({ 3, -4 }, { dtype = "int64" }):isfinite():totable())
  end)

  it("any and all over every entry or along dims", function()
    local m = cocola.tensor({ { 0, 0, 1 }, { 2, 0, 3 } })
    assert.are.equal(1, m:any():item())
    assert.are.equal(0, m:all():item())
    assert.are.same({ 1, 0, 1 }, m:any(1):totable())
    assert.are.same({ 0, 0, 1 }, m:all(1):totable())
    assert.are.same({ { 1 }, { 1 } }, m:any(2, true):totable())
    assert.are.equal(1, cocola.tensor({ 0 / 0 }):all():item()) -- NaN is not zero
    assert.are.equal(0, cocola.zeros({ 0 }):any():item())
    assert.are.equal(1, cocola.zeros({ 0 }):all():item())
  end)
end)

describe("sort, topk, cumsum, rounding", function()
  it("sort is stable, puts NaN above every number, and gives 0-based int64 indices", function()
    local x = cocola.tensor({ 2, 0 / 0, 1, 2, -1, 1 })
    local v, i = x:sort()
    assert.are.same({ 4, 2, 5, 0, 3, 1 }, i:totable())
    assert.are.equal("int64", i:dtype())
    assert.are.same({ 0, 0, 0, 0, 0, 1 }, v:ne(v):totable()) -- NaN, the only value unequal to itself, last
    assert.are.same({ -1, 1, 1, 2, 2 }, v:narrow(1, 1, 5):totable())
    v, i = x:sort(1, true)
    assert.are.same({ 1, 0, 3, 2, 5, 4 }, i:totable())
    assert.is_true(v[1]:item() ~= v[1]:item())
    assert.are.same({ 2, 2, 1, 1, -1 }, v:narrow(1, 2, 5):totable())
  end)

  it("sorts along any dim of non-contiguous views, int64 too", function()
    local x = cocola.tensor({ { 3, 1, 2 }, { 9, 8, 7 } }, { dtype = "int64" })
    local v, i = x:t():sort(1, true)
    assert.are.same({ { 3, 9 }, { 2, 8 }, { 1, 7 } }, v:totable())
    assert.are.same({ { 0, 0 }, { 2, 1 }, { 1, 2 } }, i:totable())
    local s, j = cocola.tensor(5):sort()
    assert.are.equal(5, s:item())
    assert.are.equal(0, j:item())
    local e, k = cocola.zeros({ 2, 0 }):sort(2)
    assert.are.same({ 2, 0 }, e.shape)
    assert.are.same({ 2, 0 }, k.shape)
  end)

  it("topk gives the k largest (or smallest) in order, contiguous", function()
    local x = cocola.tensor({ { 1, 5, 3, 4 }, { 8, 6, 7, 2 } })
    local v, i = x:topk(2)
    assert.are.same({ { 5, 4 }, { 8, 7 } }, v:totable())
    assert.are.same({ { 1, 3 }, { 0, 2 } }, i:totable())
    assert.is_true(v:is_contiguous())
    v, i = x:topk(1, 1, false)
    assert.are.same({ { 1, 5, 3, 2 } }, v:totable())
    assert.are.same({ { 0, 0, 0, 1 } }, i:totable())
    assert.are.same({ 2, 0 }, (x:topk(0)).shape)
    assert.are.equal(5, (cocola.tensor(5):topk(1)):item())
    assert.is_false(pcall(function() return cocola.tensor(5):topk(0) end))
  end)

  it("topk and sort refuse bad arguments with clear errors", function()
    local x = cocola.zeros({ 2, 3 })
    local function err(fn)
      local ok, msg = pcall(fn)
      assert.is_false(ok)
      return tostring(msg)
    end
    assert.matches("k %(4%) is out of range for dimension 2 of size 3", err(function() return x:topk(4) end))
    assert.matches("k %(%-1%)", err(function() return x:topk(-1) end))
    assert.matches("out of range", err(function() return x:sort(3) end))
    assert.matches("1%-based", err(function() return x:sort(0) end))
    assert.matches("needs a dim", err(function() return x:cumsum() end))
  end)

  it("cumsum keeps int64 exact and accumulates float32 in double", function()
    local i = cocola.tensor({ 9007199254740993, 1, -2 }, { dtype = "int64" })
    assert.are.same({ 9007199254740993, 9007199254740994, 9007199254740992 }, i:cumsum(1):totable())
    local x = cocola.full({ 100000 }, 0.1)
    local c = x:cumsum(1)
    assert.are.equal("float32", c:dtype())
    assert.is_true(math.abs(c[-1]:item() - 10000) < 1e-3, c[-1]:item())
    assert.are.same({ { 1, 2 }, { 4, 6 } }, cocola.tensor({ { 1, 2 }, { 3, 4 } }):cumsum(1):totable())
  end)

  it("round halves to even; floor and round keep int64 as it is", function()
    assert.are.same({ 0, 2, 2, -0.0, -2, 4, 0 }, cocola.tensor({ 0.5, 1.5, 2.5, -0.5, -1.5, 3.5, 0.49 }):round():totable())
    assert.are.same({ -1, 0, 1 }, cocola.tensor({ -0.5, 0.5, 1.99 }):floor():totable())
    local i = cocola.tensor({ -3, 7 }, { dtype = "int64" })
    assert.are.same({ -3, 7 }, i:round():totable())
    assert.are.equal("int64", i:floor():dtype())
    assert.is_false(pcall(function() return i:sin() end))
  end)
end)

describe("var, std, norm, logsumexp", function()
  local x = cocola.tensor({ { 1, 2, 3 }, { 4, 5, 7 } }, { dtype = "float64" })

  local function near(t, expected)
    local got = t:totable()
    assert.are.equal(#expected, #got)
    for i = 1, #expected do
      assert.is_true(math.abs(got[i] - expected[i]) < 1e-12, string.format("%d: %.17g vs %.17g", i, got[i], expected[i]))
    end
  end

  it("var and std: Bessel's correction by default, or the correction given", function()
    assert.is_true(math.abs(x:var():item() - 14 / 3) < 1e-12)
    near(x:var(2), { 1, 7 / 3 })
    near(x:var(2, false), { 2 / 3, 14 / 9 })
    near(x:var(1, { correction = 0, keepdim = true })[1], { 2.25, 2.25, 4 })
    assert.is_true(math.abs(x:std(2, { keepdim = true })[2][1]:item() - math.sqrt(7 / 3)) < 1e-12)
    -- one value: no spread to correct for (nan), as torch
    assert.is_true(cocola.tensor({ 3 }):var():item() ~= cocola.tensor({ 3 }):var():item())
    assert.is_false(pcall(function() return x:var(1, { correction = 1, unbiased = true }) end))
  end)

  it("norm: p = 2, 1, inf, -inf, 0 and others, over all or along dims", function()
    assert.is_true(math.abs(x:norm():item() - math.sqrt(104)) < 1e-12)
    assert.are.same({ 6, 16 }, x:norm(1, 2):totable())
    assert.are.same({ { 4, 5, 7 } }, x:norm(math.huge, 1, true):totable())
    assert.are.equal(1, x:norm(-math.huge):item())
    assert.are.equal(6, x:norm(0):item())
    assert.is_true(math.abs(x:norm(3, 2)[1]:item() - 36 ^ (1 / 3)) < 1e-12)
    assert.are.equal(x:norm():item(), x:norm("fro"):item())
    assert.is_false(pcall(function() return x:norm(-1) end))
  end)

  it("norm's gradient is 0 (not NaN) where the norm is 0, and shared on ties of the inf-norm", function()
    local z = cocola.zeros({ 2, 3 }, { dtype = "float64" }):requires_grad(true)
    z:norm(2, 2):sum():backward()
    assert.are.same({ { 0, 0, 0 }, { 0, 0, 0 } }, z.grad:totable())
    local t = cocola.tensor({ 3, -3, 1 }, { dtype = "float64" }):requires_grad(true)
    t:norm(math.huge):backward()
    assert.are.same({ 0.5, -0.5, 0 }, t.grad:totable())
  end)

  it("logsumexp neither overflows nor underflows, and handles infinite rows", function()
    local big = cocola.tensor({ { 1000, 1000 }, { -1000, -1000 } }, { dtype = "float64" })
    local r = big:logsumexp(2):totable()
    assert.is_true(math.abs(r[1] - (1000 + math.log(2))) < 1e-9)
    assert.is_true(math.abs(r[2] - (-1000 + math.log(2))) < 1e-9)
    local inf = cocola.tensor({ { -math.huge, -math.huge }, { math.huge, 1 } }, { dtype = "float64" })
    assert.are.same({ -math.huge, math.huge }, inf:logsumexp(2):totable())
    assert.are.same({ 2, 1 }, x:logsumexp(2, true).shape)
  end)
end)

describe("losses", function()
  local F = require "cocola.nn.functional"

  it("reduce by mean, sum or none and refuse anything else", function()
    local a, b = cocola.tensor({ 1, 2, 4 }, { dtype = "float64" }), cocola.tensor({ 1, 0, 1 }, { dtype = "float64" })
    assert.are.equal(13 / 3, F.mse_loss(a, b):item())
    assert.are.equal(13, F.mse_loss(a, b, "sum"):item())
    assert.are.same({ 0, 4, 9 }, F.mse_loss(a, b, { reduction = "none" }):totable())
    assert.are.equal(5, F.l1_loss(a, b, "sum"):item())
    local ok, err = pcall(F.l1_loss, a, b, "avg")
    assert.is_false(ok)
    assert.matches('reduction must be "mean", "sum" or "none", got avg', err)
  end)

  it("refuse a target of another shape instead of broadcasting it", function()
    local ok, err = pcall(F.mse_loss, cocola.zeros({ 4 }), cocola.zeros({ 4, 1 }))
    assert.is_false(ok)
    assert.matches("target shape {4,1} differs from input shape {4}", err)
  end)

  it("binary_cross_entropy clamps its logs at -100 and keeps torch's finite gradient at 0 and 1", function()
    local x = cocola.tensor({ 0, 1, 0.5 }, { dtype = "float64" }):requires_grad(true)
    local t = cocola.tensor({ 1, 1, 0 }, { dtype = "float64" })
    local l = F.binary_cross_entropy(x, t, "none")
    assert.are.same({ 100, 0, math.log(2) }, l:totable())
    l:sum():backward()
    assert.are.same({ -1e12, 0, 2 }, x.grad:totable())
    local ok, err = pcall(F.binary_cross_entropy, cocola.tensor({ 1.5 }), cocola.tensor({ 1 }))
    assert.is_false(ok)
    assert.matches("between 0 and 1", err)
    assert.is_false(pcall(F.binary_cross_entropy, cocola.tensor({ 0 / 0 }), cocola.tensor({ 1 })))
  end)

  it("binary_cross_entropy_with_logits stays finite for large logits", function()
    local z = cocola.tensor({ -1000, 1000, 0 }, { dtype = "float64" })
    local t = cocola.tensor({ 1, 0, 1 }, { dtype = "float64" })
    assert.are.same({ 1000, 1000, math.log(2) }, F.binary_cross_entropy_with_logits(z, t, "none"):totable())
    local pw = cocola.tensor({ 3 }, { dtype = "float64" })
    local l = F.binary_cross_entropy_with_logits(z, t, { pos_weight = pw, reduction = "none" }):totable()
    assert.are.same({ 3000, 1000, 3 * math.log(2) }, l)
  end)
end)

describe("the random seed", function()
  it("starts fixed, and seed() draws one from the system and reports it", function()
    local was_seed, was_offset = cocola.get_rng_state()
    cocola.manual_seed(17)
    assert.are.equal(17, cocola.initial_seed())
    local s = cocola.seed()
    assert.are.equal("integer", math.type(s))
    assert.is_true(s >= 0)
    assert.are.equal(s, cocola.initial_seed())
    local a = cocola.rand({ 4 }):totable()
    cocola.manual_seed(s)
    assert.are.same(a, cocola.rand({ 4 }):totable())
    assert.are_not.equal(s, cocola.seed())
    cocola.set_rng_state(was_seed, was_offset)
  end)

  it("a fresh interpreter starts from the documented default seed, 1592614637 (0x5eed5eed)", function()
    local p = io.popen([[lua5.4 -e 'package.cpath = "./]] .. require("helpers.cli").BUILD .. [[/?.so;" .. package.cpath; ]] ..
      [[package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path; print(require("cocola").initial_seed())' 2>&1]])
    local out = p:read("a")
    p:close()
    assert.are.equal("1592614637", out:match("^%d+"), out)
  end)
end)
