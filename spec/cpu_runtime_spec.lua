-- cpu_runtime_spec.lua — what the CPU side runs on: the OpenBLAS build loaded at run time (the OpenMP
-- one where the build linked it, found through core.so's RPATH rather than the machine's default), and
-- oneDNN convolutions taking their reordered tensors and scratchpads from the CPU device's block cache
-- (returned after the call, reused by the next one, results unchanged).
local cocola = require "cocola"
local F = require "cocola.nn.functional"

describe("OpenBLAS", function()
  it("is the build that was linked: the OpenMP one where the build chose it", function()
    local threading, linked_openmp = cocola.blas_threading()
    assert.is_true(({ openmp = true, pthread = true, sequential = true, unknown = true })[threading] ~= nil,
      "unexpected answer " .. tostring(threading))
    assert.are.equal("boolean", type(linked_openmp))
    if linked_openmp then
      assert.are.equal("openmp", threading,
        "core.so was linked against OpenBLAS's OpenMP build but another one was loaded")
    end
  end)

  it("keeps the thread count set around GEMMs inside cocola's own parallel regions", function()
    local before = cocola.get_num_threads()
    cocola.set_num_threads(2)
    -- a float64 convolution over a batch runs the built-in kernels, one GEMM per sample per thread
    local x = cocola.randn({ 4, 3, 16, 16 }, { dtype = "float64" })
    local w = cocola.randn({ 5, 3, 3, 3 }, { dtype = "float64" })
    local y = F.conv2d(x, w, nil, { padding = 1 })
    assert.are.same({ 4, 5, 16, 16 }, y.shape)
    assert.are.equal(2, cocola.get_num_threads())
    cocola.set_num_threads(before)
  end)
end)

describe("oneDNN convolutions and the CPU block cache", function()
  local _, have_onednn = cocola.conv_backend()
  local run = have_onednn and it or pending

  run("borrow their blocked tensors and scratchpads from the cache, give them back and reuse them", function()
    local previous = cocola.set_conv_backend("onednn")
    local ok, err = pcall(function()
      cocola.manual_seed(3)
      -- 64 channels x 8192 samples x 2: 4 MiB per tensor, reordered to oneDNN's blocked layouts
      local x0 = cocola.randn({ 2, 64, 8192 })
      local w0 = cocola.randn({ 64, 64, 3 }) * 0.05
      local function pass()
        local x, w = x0:clone():requires_grad(true), w0:clone():requires_grad(true)
        local y = F.conv1d(x, w, nil, { padding = 1 })
        y:sum():backward()
        return y, x.grad, w.grad
      end
      collectgarbage("collect")
      cocola.empty_cache()
      assert.are.equal(0, cocola.cached_bytes())
      -- a forward pass whose tensors all stay alive: what is cached afterwards is oneDNN's own blocks
      local y0 = cocola.no_grad(function() return F.conv1d(x0, w0, nil, { padding = 1 }) end)
      collectgarbage("collect")
      assert.is_true(cocola.cached_bytes() >= 2 * 64 * 8192 * 4,
        "oneDNN's reordered input and output did not come from (and go back to) the cache")
      local y1, gx1, gw1 = pass()
      assert.is_true(y0:equal(y1))
      collectgarbage("collect")
      assert.is_true(cocola.cached_bytes() > 0, "the first call returned no block to the cache")
      pass() -- its outputs, while y1, gx1, gw1 are kept, go to the cache too
      collectgarbage("collect")
      local cached = cocola.cached_bytes()
      for _ = 1, 3 do
        local y2, gx2, gw2 = pass()
        assert.is_true(y1:equal(y2) and gx1:equal(gx2) and gw1:equal(gw2), "a repeated call gave other results")
        y2, gx2, gw2 = nil, nil, nil
        collectgarbage("collect")
        assert.are.equal(cached, cocola.cached_bytes(), "the cache grew: blocks were not reused")
      end
      -- the same convolution on the built-in kernels
      cocola.set_conv_backend("native")
      local y3 = F.conv1d(x0, w0, nil, { padding = 1 })
      assert.is_true(y1:allclose(y3, 1e-4, 1e-4))
    end)
    cocola.set_conv_backend(previous)
    cocola.empty_cache()
    assert(ok, err)
  end)
end)

describe("matrix-vector products (a row or a column of output goes to gemv)", function()
  -- float64 reference by broadcasting: (..., M, K, 1) * (..., 1, K, N) summed over K
  local function reference(a, b)
    return (a:double():unsqueeze(-1) * b:double():unsqueeze(-3)):sum(-2)
  end
  local function check(a, b, what)
    local got = cocola.matmul(a, b)
    local want = reference(a, b)
    assert.are.same(want.shape, got.shape, what)
    local tol = a:dtype() == "float64" and 1e-12 or 1e-5
    assert.is_true(got:double():allclose(want, tol, tol), what .. ": differs from the float64 reference")
  end

  for _, dtype in ipairs({ "float32", "float64" }) do
    it("gives the products of every operand layout, " .. dtype, function()
      cocola.manual_seed(11)
      local opt = { dtype = dtype }
      local K, N, M = 37, 53, 29
      local row, col = cocola.randn({ 1, K }, opt), cocola.randn({ K, 1 }, opt)
      local B, A = cocola.randn({ K, N }, opt), cocola.randn({ M, K }, opt)
      check(row, B, "row @ matrix")
      check(row, cocola.randn({ N, K }, opt):t(), "row @ transposed matrix")
      check(cocola.randn({ K, 3 }, opt):narrow(2, 2, 1):t(), B, "strided row @ matrix")
      check(cocola.randn({ K, 1 }, opt):t(), B, "column seen as a row @ matrix")
      check(A, col, "matrix @ column")
      check(cocola.randn({ K, M }, opt):t(), col, "transposed matrix @ column")
      check(A, cocola.randn({ K, 3 }, opt):narrow(2, 3, 1), "matrix @ strided column")
      check(A, cocola.randn({ 1, K }, opt):t(), "matrix @ row seen as a column")
      check(row, col, "row @ column")
      check(cocola.randn({ 4, 1, K }, opt), cocola.randn({ 4, K, N }, opt), "batched rows")
      check(cocola.randn({ 1, K }, opt), cocola.randn({ 3, K, N }, opt), "broadcast row")
      check(cocola.randn({ 2, M, K }, opt), cocola.randn({ 2, K, 1 }, opt), "batched columns")
      local v = cocola.randn({ K }, opt)
      local got, want = cocola.matmul(v, B), reference(v:unsqueeze(1), B):squeeze(1)
      assert.are.same({ N }, got.shape)
      assert.is_true(got:double():allclose(want, 1e-5, 1e-5), "vector @ matrix")
      got, want = cocola.matmul(A, v), reference(A, v:unsqueeze(2)):squeeze(2)
      assert.are.same({ M }, got.shape)
      assert.is_true(got:double():allclose(want, 1e-5, 1e-5), "matrix @ vector")
    end)
  end

  it("never lets what a reused block held into the result", function()
    local N = 300000 -- 1.2 MB of output: a block the CPU cache keeps and hands out again
    cocola.empty_cache()
    local poisoned = cocola.full({ 1, N }, 0 / 0)
    assert.are.equal(1, poisoned:isnan():any():item())
    poisoned = nil
    collectgarbage("collect")
    assert.is_true(cocola.cached_bytes() >= N * 4)
    local x, w = cocola.ones({ 1, 4 }), cocola.ones({ 4, N })
    local y = cocola.matmul(x, w)
    assert.are.equal(0, y:isnan():any():item())
    assert.are.equal(4 * N, y:sum():item())
    cocola.empty_cache()
  end)
end)
