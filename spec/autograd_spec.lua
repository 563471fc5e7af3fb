-- autograd_spec.lua — the autograd engine's behaviour beyond per-op gradients: accumulation,
-- retain_graph, the errors for a second backward and for a non-scalar root without a gradient,
-- detach/no_grad/zero_grad, explicit upstream gradients, and graphs deep enough that a recursive
-- backward or a recursive free would overflow the C stack.
local cocola = require "cocola"

local function f64(v) return cocola.tensor(v, { dtype = "float64" }) end
local function leaf(v) return f64(v):requires_grad(true) end

describe("autograd", function()
  it("requires_grad sets the flag, returns the tensor, and propagates to results", function()
    local x = f64({ 1, 2 })
    assert.is_false(x:requires_grad())
    local same = x:requires_grad(true)
    assert.are.equal(x:data_ptr(), same:data_ptr())
    assert.is_true(x:requires_grad())
    local y = x * 2
    assert.is_true(y:requires_grad())
    assert.is_truthy(y:grad_fn())
    assert.is_true(x:is_leaf())
    assert.is_false(y:is_leaf())
    assert.is_false((f64({ 1 }) * 2):requires_grad())
  end)

  it("computes a simple gradient", function()
    local x = leaf({ 1, 2, 3 })
    local y = (x * x):sum()
    y:backward()
    assert.are.same({ 2, 4, 6 }, x.grad:totable())
    assert.are.equal("float64", x.grad:dtype())
  end)

  it("accumulates gradients across two backward calls with retain_graph", function()
    local x = leaf({ 1, 2, 3 })
    local y = (x * x):sum()
    y:backward(nil, { retain_graph = true })
    assert.are.same({ 2, 4, 6 }, x.grad:totable())
    y:backward({ retain_graph = true }) -- options may come second too
    assert.are.same({ 4, 8, 12 }, x.grad:totable())
    y:backward()
    assert.are.same({ 6, 12, 18 }, x.grad:totable())
  end)

  it("accumulates gradients across separate graphs", function()
    local x = leaf({ 1, -1 })
    ;(x * 3):sum():backward()
    ;(x * x):sum():backward()
    assert.are.same({ 5, 1 }, x.grad:totable())
  end)

  it("refuses a second backward through a freed graph, mentioning 'second time'", function()
    local x = leaf({ 1, 2 })
    local y = (x:exp() * x):sum()
    y:backward()
    local ok, err = pcall(function() y:backward() end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("second time"), err)
    -- the first backward's result is intact
    assert.is_true(math.abs(x.grad:_at(1) - 2 * math.exp(1)) < 1e-12)
  end)

  it("refuses backward of a non-scalar without a gradient, mentioning 'implicitly'", function()
    local x = leaf({ 1, 2 })
    local ok, err = pcall(function() (x * 2):backward() end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("implicitly"), err)
    assert.is_nil(x.grad)
  end)

  it("refuses backward of a tensor that does not require grad", function()
    local ok, err = pcall(function() f64({ 1 }):sum():backward() end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("require"), err)
  end)

  it("uses a gradient given to backward", function()
    local x = leaf({ 1, 2, 3 })
    local y = x * 2
    y:backward(f64({ 1, 10, 100 }))
    assert.are.same({ 2, 20, 200 }, x.grad:totable())
    local x2 = leaf({ { 1, 2 }, { 3, 4 } })
    ;(x2 * x2):backward(f64({ { 1, 0 }, { 0, -1 } }))
    assert.are.same({ { 2, 0 }, { 0, -8 } }, x2.grad:totable())
    -- a gradient of the wrong shape is an error
    local ok, err = pcall(function() (x * 3):backward(f64({ 1, 2 })) end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("shape"), err)
  end)

  it("reduces the gradient of a broadcast input to its shape", function()
    local a = leaf({ { 1 }, { 2 } }) -- (2,1)
    local b = leaf({ 10, 20, 30 })  -- (3)
    ;(a * b):sum():backward()
    assert.are.same({ { 60 }, { 60 } }, a.grad:totable())
    assert.are.same({ 3, 3, 3 }, b.grad:totable())
  end)

  it("detach stops gradients", function()
    local x = leaf({ 1, 2 })
    local d = x:detach()
    assert.is_false(d:requires_grad())
    assert.is_nil(d:grad_fn())
    assert.are.equal(x:storage_ptr(), d:storage_ptr())
    local y = (d * 3 + x):sum()
    y:backward()
    assert.are.same({ 1, 1 }, x.grad:totable())
    local z = (x * x):detach()
    assert.is_nil(z:grad_fn())
    assert.is_false(z:requires_grad())
  end)

  it("no_grad yields tensors without grad_fn and restores the mode, even after an error", function()
    local x = leaf({ 1, 2 })
    local y, extra = cocola.no_grad(function() return x * 2, "extra" end)
    assert.are.equal("extra", extra)
    assert.is_nil(y:grad_fn())
    assert.is_false(y:requires_grad())
    assert.is_true(cocola.is_grad_enabled())
    assert.is_false(pcall(cocola.no_grad, function()
      assert.is_false(cocola.is_grad_enabled())
      error("boom")
    end))
    assert.is_true(cocola.is_grad_enabled())
    assert.is_truthy((x * 2):grad_fn())
  end)

  it("zero_grad clears the gradient", function()
    local x = leaf({ 1, 2 })
    ;(x * x):sum():backward()
    assert.is_not_nil(x.grad)
    x:zero_grad()
    assert.is_nil(x.grad)
    ;(x * 3):sum():backward()
    assert.are.same({ 3, 3 }, x.grad:totable()) -- starts from zero again
  end)

  it("grad can be assigned and cleared", function()
    local x = leaf({ 1, 2 })
    x.grad = f64({ 5, 6 })
    ;(x * 1):sum():backward()
    assert.are.same({ 6, 7 }, x.grad:totable())
    x.grad = nil
    assert.is_nil(x.grad)
    assert.is_false(pcall(function() x.grad = f64({ 1, 2, 3 }) end))
  end)

  it("refuses in-place writes to a tensor that requires grad while grad mode is on", function()
    local x = leaf({ 1, 2 })
    local ok, err = pcall(function() x:fill_(0) end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("in place"), err)
    cocola.no_grad(function() x:fill_(0) end)
    assert.are.same({ 0, 0 }, x:totable())
  end)

  it("gives the right gradient to a tensor used along several paths", function()
    local x = leaf({ 2 })
    local a = x * x   -- x^2
    local b = a * x   -- x^3
    local c = a + b + x -- x^2 + x^3 + x
    c:sum():backward()
    assert.are.equal(2 * 2 + 3 * 4 + 1, x.grad:_at(1))
  end)

  it("handles 20000 chained adds without overflowing the stack in backward", function()
    local x = leaf({ 1, 2 })
    local y = x
    for _ = 1, 20000 do y = y + x end
    y:sum():backward()
    assert.are.same({ 20001, 20001 }, x.grad:totable())
    -- a chain of unary ops too
    local z = leaf({ 0.5 })
    local w = z
    for _ = 1, 20000 do w = w * 1.0 end
    w:sum():backward()
    assert.are.same({ 1 }, z.grad:totable())
  end)

  it("frees a 100000-deep graph without overflowing the stack, and the memory returns", function()
    collectgarbage()
    collectgarbage()
    local t0, b0 = cocola.live_tensors(), cocola.live_bytes()
    do
      local x = leaf({ 1, 2, 3 })
      local y = x
      for _ = 1, 100000 do y = y + 1 end
      assert.is_truthy(y:grad_fn())
      x, y = nil, nil
    end
    collectgarbage()
    collectgarbage()
    assert.are.equal(t0, cocola.live_tensors())
    assert.are.equal(b0, cocola.live_bytes())
  end)

  it("frees a deep graph after backward, the root dropped first", function()
    collectgarbage()
    collectgarbage()
    local t0 = cocola.live_tensors()
    do
      local x = leaf({ 1 })
      local y = x
      for _ = 1, 50000 do y = y * 1.0 + 0.0 end
      local loss = y:sum()
      loss:backward({ retain_graph = true })
      assert.are.same({ 1 }, x.grad:totable())
      loss, y = nil, nil
      collectgarbage()
      collectgarbage()
      x = nil
    end
    collectgarbage()
    collectgarbage()
    assert.are.equal(t0, cocola.live_tensors())
  end)
end)

describe("backward profile", function()
  local core = require "cocola.core"
  it("adds up each node kind's time and calls while on, and nothing while off", function()
    local x = cocola.randn({ 64, 64 }):requires_grad(true)
    core.backward_profile(true)
    core.backward_profile() -- reset
    local y = x:matmul(x):tanh():sum()
    y:backward()
    local p = core.backward_profile(false)
    assert.equal(1, p.TanhBackward.calls)
    assert.equal(1, p.SumBackward.calls)
    assert.is_true(p.TanhBackward.seconds >= 0)
    local names = 0
    for _ in pairs(p) do names = names + 1 end
    assert.is_true(names >= 3)
    local z = x:exp():sum()
    z:backward()
    assert.is_nil(next(core.backward_profile()))
  end)
end)
