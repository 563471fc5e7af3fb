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
