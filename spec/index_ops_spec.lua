-- index_ops_spec.lua — index_select, gather, embedding and max_pool2d beyond the parity and gradient checks:
-- misuse raises a Lua error naming the problem (wrong index dtype, an index out of range, wrong ranks and sizes,
-- ceil_mode, too much padding), and the edge cases torch defines (NaN in a pooling window, padding as -inf,
-- 0-d and empty indices, repeated indices accumulating, the nn.Embedding and nn.MaxPool2d modules).
local cocola = require "cocola"
local F = require "cocola.nn.functional"
local nn = cocola.nn

local function L(t) return cocola.tensor(t, { dtype = "int64" }) end

local raises = require("helpers.compare").raises

describe("index_select, gather, embedding: errors", function()
  local x = cocola.randn({ 3, 4 })

  it("names an index of the wrong dtype", function()
    raises(function() return x:index_select(1, cocola.tensor({ 0, 1 })) end, "index_select", "int64", "float32")
    raises(function() return x:gather(1, cocola.zeros({ 3, 4 }, { dtype = "float64" })) end, "gather", "int64", "float64")
    raises(function() return F.embedding(cocola.tensor({ 1, 2 }), x) end, "embedding", "int64", "float32")
  end)

  it("names an index out of range, negative ones included, with the size", function()
    raises(function() return x:index_select(1, L({ 0, 3 })) end, "index_select: index 3 is out of range for dimension 1 of size 3")
    raises(function() return x:index_select(2, L({ -1 })) end, "index_select: index -1 is out of range for dimension 2 of size 4")
    raises(function() return x:gather(2, L({ { 0, 4 } })) end, "gather: index 4 is out of range for dimension 2 of size 4")
    raises(function() return F.embedding(L({ { 1, 5 } }), cocola.randn({ 5, 2 })) end, "embedding: index 5 is out of range")
  end)

  it("names a wrong rank or size", function()
    raises(function() return x:index_select(1, L({ { 0 } })) end, "index_select", "1-D", "{1,1}")
    raises(function() return x:gather(1, L({ 0, 1 })) end, "gather", "number of dims (2)", "got 1")
    raises(function() return x:gather(2, L({ { 0 }, { 0 }, { 0 }, { 0 } })) end, "gather", "size 4 at dim 1", "input's 3")
    raises(function() return F.embedding(L({ 0 }), cocola.randn({ 5 })) end, "embedding", "2-D", "{5}")
    raises(function() return F.embedding(L({ 0 }), cocola.randn({ 5, 2 }), { padding_idx = 5 }) end, "padding_idx 5", "5 embeddings")
    raises(function() return x:index_select(3, L({ 0 })) end, "dim")
  end)
end)

describe("index_select, gather, embedding: behaviour", function()
  it("index_select takes a 0-d or empty index and keeps repeated rows", function()
    local x = cocola.arange(12):view(3, 4)
    assert.are.same({ { 8, 9, 10, 11 } }, x:index_select(1, L(2)):totable())
    assert.are.same({ 3, 0 }, x:index_select(2, L({})).shape)
    assert.are.same({ { 4, 5, 6, 7 }, { 4, 5, 6, 7 } }, x:index_select(1, L({ 1, 1 })):totable())
  end)

  it("accumulates the gradient of repeated indices", function()
    local x = cocola.zeros({ 3, 2 }):requires_grad(true)
    x:index_select(1, L({ 2, 2, 0, 2 })):sum():backward()
    assert.are.same({ { 1, 1 }, { 0, 0 }, { 3, 3 } }, x.grad:totable())
    local y = cocola.zeros({ 2, 3 }):requires_grad(true)
    y:gather(2, L({ { 1, 1, 1, 0 }, { 2, 0, 2, 2 } })):sum():backward()
    assert.are.same({ { 1, 3, 0 }, { 1, 0, 3 } }, y.grad:totable())
  end)

  it("gather with an index smaller than the input", function()
    local x = cocola.arange(12):view(3, 4)
    assert.are.same({ { 1, 0 }, { 7, 7 } }, x:gather(2, L({ { 1, 0 }, { 3, 3 } })):totable())
  end)

  it("nn.Embedding: N(0, 1) weight, zero padding row without gradient, torch's repr", function()
    cocola.manual_seed(3)
    local e = nn.Embedding(1000, 8, { padding_idx = -2 })
    assert.equals(998, e.padding_idx)
    assert.equals("Embedding(1000, 8, padding_idx=998)", tostring(e))
    local w = e.weight
    assert.are.same({ 1000, 8 }, w.shape)
    assert.are.same({ 0, 0, 0, 0, 0, 0, 0, 0 }, w:select(1, 999):totable())
    assert.is_true(math.abs(w:mean():item()) < 0.05)
    assert.is_true(math.abs(w:std():item() - 1) < 0.05)
    local out = e(L({ { 998, 3 }, { 998, 998 } }))
    assert.are.same({ 2, 2, 8 }, out.shape)
    out:sum():backward()
    assert.equals(0, w.grad:select(1, 999):abs():sum():item())
    assert.equals(8, w.grad:select(1, 4):sum():item())
    local names = {}
    for name in pairs(e:state_dict()) do names[#names + 1] = name end
    assert.are.same({ "weight" }, names)
  end)
end)

describe("max_pool2d", function()
  it("errors: ceil_mode, padding over half the kernel, too small an input, wrong rank, int64", function()
    local x = cocola.randn({ 1, 1, 4, 4 })
    raises(function() return F.max_pool2d(x, 2, { ceil_mode = true }) end, "max_pool2d", "ceil_mode")
    raises(function() return nn.MaxPool2d(2, { ceil_mode = true }) end, "ceil_mode")
    raises(function() return F.max_pool2d(x, 3, { padding = 2 }) end, "max_pool2d", "padding (2, 2)", "half the kernel size (3, 3)")
    raises(function() return F.max_pool2d(x, 5) end, "max_pool2d", "4x4", "too small")
    raises(function() return F.max_pool2d(cocola.randn({ 4, 4 }), 2) end, "max_pool2d", "3-D", "{4,4}")
    raises(function() return F.max_pool2d(cocola.zeros({ 1, 4, 4 }, { dtype = "int64" }), 2) end, "max_pool2d", "int64")
    raises(function() return F.max_pool2d(x, 2, { stride = 0 }) end, "max_pool2d", "positive")
    raises(function() return F.max_pool2d(x) end, "kernel size")
  end)

  it("2x2 windows with stride 2 (their own kernel): the first maximum of a tie, NaN wins, odd sizes floor", function()
    for _, dtype in ipairs({ "float32", "float64" }) do
      cocola.manual_seed(4)
      local x = (cocola.randn({ 2, 3, 5, 7 }) * 2):round():to(dtype) -- rounding makes ties
      x[1][2][3][4] = 0 / 0
      x[2][1][1][2] = 0 / 0
      local v, i = F.max_pool2d(x, 2, { return_indices = true })
      assert.are.same({ 2, 3, 2, 3 }, v:size())
      local xv, vv, iv = x:totable(), v:totable(), i:totable()
      for n = 1, 2 do
        for c = 1, 3 do
          for oy = 1, 2 do
            for ox = 1, 3 do
              local m, mi
              for _, d in ipairs({ { 0, 0 }, { 0, 1 }, { 1, 0 }, { 1, 1 } }) do
                local y, xx = 2 * oy - 1 + d[1], 2 * ox - 1 + d[2]
                local val = xv[n][c][y][xx]
                if m == nil or val > m or val ~= val then m, mi = val, (y - 1) * 7 + (xx - 1) end
              end
              local got = vv[n][c][oy][ox]
              assert.is_true(got == m or (got ~= got and m ~= m), dtype .. " value")
              assert.equal(mi, iv[n][c][oy][ox], dtype .. " index")
            end
          end
        end
      end
    end
  end)

  it("padding counts as -inf and indices are flat positions in H*W", function()
    local x = -(cocola.arange(16):view(1, 1, 4, 4):float() + 1) -- all negative: padding must never win
    local v, i = F.max_pool2d(x, 3, { stride = 2, padding = 1, return_indices = true })
    assert.are.same({ { { { -1, -2 }, { -5, -6 } } } }, v:totable())
    assert.are.same({ { { { 0, 1 }, { 4, 5 } } } }, i:totable())
    assert.equals("int64", i:dtype())
  end)

  it("a NaN in a window is its maximum, with its index", function()
    local x = cocola.tensor({ { { 1, 0 / 0, 3, 4 }, { 5, 6, 7, 0 / 0 } } })
    local v, i = F.max_pool2d(x, { 2, 2 }, { return_indices = true })
    local t = v:totable()[1][1]
    assert.is_true(t[1] ~= t[1] and t[2] ~= t[2])
    assert.are.same({ { { 1, 7 } } }, i:totable())
    local y = cocola.tensor({ { { 1, 2 }, { 0 / 0, 4 } } })
    assert.are.same({ { { 2 } } }, select(2, F.max_pool2d(y, 2, { return_indices = true })):totable())
  end)

  it("the gradient goes to the maximum of every window covering it (overlapping windows add up)", function()
    local x = cocola.tensor({ { { 0, 1, 0 }, { 0, 9, 0 }, { 0, 0, 0 } } }):requires_grad(true)
    F.max_pool2d(x, 2, { stride = 1 }):sum():backward()
    assert.are.same({ { { 0, 0, 0 }, { 0, 4, 0 }, { 0, 0, 0 } } }, x.grad:totable())
  end)

  it("nn.MaxPool2d: stride defaults to the kernel, return_indices, torch's repr", function()
    local m = nn.MaxPool2d(2)
    assert.equals("MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)", tostring(m))
    assert.are.same({ 2, 3, 3, 4 }, m(cocola.randn({ 2, 3, 7, 8 })).shape)
    local v, i = nn.MaxPool2d({ 2, 3 }, { stride = 1, return_indices = true })(cocola.randn({ 3, 5, 5 }))
    assert.are.same({ 3, 4, 3 }, v.shape)
    assert.are.same({ 3, 4, 3 }, i.shape)
  end)
end)
