-- cuda_spec.lua — cocola.cuda on any machine: the queries always answer; without a usable device (or
-- without the backend in the build) t:cuda(), t:to("cuda") and model:cuda() raise an error that says
-- why (the CUDA error name, e.g. cudaErrorInsufficientDriver or cudaErrorNoDevice) and nothing
-- crashes; with a device the same calls move tensors and modules. The GPU numerics are
-- spec/cuda_parity_spec.lua (#cuda).
local cocola = require "cocola"
local nn = require "cocola.nn"

local cuda = cocola.cuda

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- runs a Lua chunk in a fresh interpreter with extra environment variables; returns its output
local function run_lua(env, code)
  local prefix = "LUA_PATH=" .. shell_quote(package.path) .. " LUA_CPATH=" .. shell_quote(package.cpath) .. " "
  for k, v in pairs(env) do prefix = prefix .. k .. "=" .. shell_quote(v) .. " " end
  local p = io.popen(prefix .. "lua5.4 -e " .. shell_quote(code) .. " 2>&1")
  local out = p:read("a")
  p:close()
  return out
end

local STAT_KEYS = {
  "allocated_bytes", "cached_bytes", "reserved_bytes", "peak_allocated_bytes", "peak_reserved_bytes",
  "num_cuda_malloc", "num_cuda_free", "num_alloc_requests", "num_cache_hits", "pinned_bytes", "live_bytes",
}

describe("cocola.cuda", function()
  it("answers the device queries", function()
    assert.is_boolean(cuda.is_built())
    assert.is_boolean(cuda.is_available())
    local n = cuda.device_count()
    assert.equals("integer", math.type(n))
    if cuda.is_available() then
      assert.is_true(cuda.is_built())
      assert.is_true(n >= 1)
      assert.is_nil(cuda.unavailable_reason())
      assert.is_string(cuda.get_device_name())
    else
      assert.equals(0, n)
      assert.is_string(cuda.unavailable_reason())
      assert.equals("", cuda.get_device_name())
    end
  end)

  it("returns the allocator statistics as a table of integers", function()
    local s = cuda.memory_stats()
    assert.is_table(s)
    for _, k in ipairs(STAT_KEYS) do assert.equals("integer", math.type(s[k]), k) end
    assert.equals(s.allocated_bytes + s.cached_bytes, s.reserved_bytes)
    if not cuda.is_available() then
      for _, k in ipairs(STAT_KEYS) do assert.equals(0, s[k], k) end
    end
    assert.equals("integer", math.type(cuda.memory_allocated()))
    assert.equals("integer", math.type(cuda.memory_reserved()))
    assert.equals("integer", math.type(cuda.max_memory_allocated()))
  end)

  it("synchronizes, empties its cache and resets peaks without a device too", function()
    cuda.synchronize()
    cuda.empty_cache()
    cuda.reset_peak_memory_stats()
    assert.equals(0, cuda.memory_stats().cached_bytes)
  end)

  it("keeps TF32 off by default; the switch is remembered", function()
    assert.is_false(cuda.get_tf32())
    cuda.set_tf32(true)
    local on = cuda.get_tf32()
    cuda.set_tf32(false)
    assert.is_false(cuda.get_tf32())
    assert.equals(cuda.is_built(), on)
  end)

  it("keeps bf16 autocast off by default; autocast() sets it for a call and restores it, also on error", function()
    assert.is_false(cuda.get_autocast())
    local inside = cuda.autocast("bf16", function(a, b) return cuda.get_autocast(), a + b end, 1, 2)
    assert.is_false(cuda.get_autocast())
    -- remembered where the backend is built (the setting only affects CUDA ops)
    assert.equals(cuda.is_built() and "bf16" or false, inside)
    local ok, err = pcall(cuda.autocast, "bf16", function() error("boom") end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("boom", 1, true))
    assert.is_false(cuda.get_autocast())
    cuda.set_autocast("bf16")
    local on = cuda.get_autocast()
    cuda.set_autocast("off")
    assert.is_false(cuda.get_autocast())
    assert.equals(inside, on)
    local bad_ok, bad = pcall(cuda.set_autocast, "fp8")
    assert.is_false(bad_ok)
    assert.truthy(tostring(bad):find('mode must be "bf16" or false', 1, true))
  end)

  it("lists the op table", function()
    local ops = cuda.op_support()
    local n = 0
    for name, has in pairs(ops) do
      assert.is_string(name)
      assert.is_boolean(has)
      assert.equals(cuda.is_available(), has, name)
      n = n + 1
    end
    assert.is_true(n >= 25)
    assert.is_not_nil(ops.GEMM)
    assert.is_not_nil(ops.CONV2D)
  end)

  it("can be turned off with COCOLA_DISABLE_CUDA", function()
    local out = run_lua({ COCOLA_DISABLE_CUDA = "1" }, [[
      local c = require "cocola"
      local ok, err = pcall(function() return c.ones(2):cuda() end)
      print(c.cuda.is_available(), ok, err)]])
    assert.matches("^false\tfalse\t", out)
    if cuda.is_built() then
      assert.matches("COCOLA_DISABLE_CUDA", out)
    else
      assert.matches("no CUDA backend", out)
    end
  end)

  if not cuda.is_available() then
    describe("without a usable CUDA device", function()
      local function expect_reason(err)
        err = tostring(err)
        assert.matches("cannot move a tensor to CUDA", err)
        if cuda.is_built() then
          -- the CUDA runtime's own error name, e.g. cudaErrorInsufficientDriver, cudaErrorNoDevice
          assert.is_truthy(err:find("cudaError%a+") or err:find("COCOLA_DISABLE_CUDA", 1, true), err)
          assert.is_truthy(err:find(cuda.unavailable_reason(), 1, true), err)
        else
          assert.matches("no CUDA backend", err)
        end
      end

      it("t:cuda() and t:to('cuda') raise an error naming the reason", function()
        local t = cocola.ones({ 2, 3 })
        for _, fn in ipairs({
          function() return t:cuda() end,
          function() return t:to("cuda") end,
          function() return t:to("cuda:0") end,
          function() return t:t():cuda() end,
          function() return cocola.zeros({ 0 }):cuda() end,
        }) do
          local ok, err = pcall(fn)
          assert.is_false(ok)
          expect_reason(err)
        end
        assert.equals("cpu", t:device()) -- still usable
        assert.equals(6, t:sum():item())
      end)

      it("refuses another device index", function()
        local ok, err = pcall(function() return cocola.ones(2):to("cuda:1") end)
        assert.is_false(ok)
        assert.matches("only one CUDA device", tostring(err))
      end)

      it("model:cuda() raises the same error and leaves the model on the CPU", function()
        local model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
        local ok, err = pcall(function() return model:cuda() end)
        assert.is_false(ok)
        expect_reason(err)
        for _, p in ipairs(model:parameters()) do assert.equals("cpu", p:device()) end
        local y = model(cocola.randn({ 2, 3 }))
        assert.equals("cpu", y:device())
        ok, err = pcall(function() return model:to("cuda") end)
        assert.is_false(ok)
        expect_reason(err)
      end)

      it("timing events need a device", function()
        local ok, err = pcall(cuda.Event)
        assert.is_false(ok)
        assert.matches("CUDA is not available", tostring(err))
      end)

      it("the profiler capture range needs a device", function()
        for _, fn in ipairs({ cuda.profiler_start, cuda.profiler_stop }) do
          local ok, err = pcall(fn)
          assert.is_false(ok)
          assert.is_truthy(tostring(err):find("CUDA is not available", 1, true) or tostring(err):find("no CUDA backend", 1, true), tostring(err))
        end
      end)
    end)
  else
    describe("with a CUDA device", function()
      it("opens and closes a profiler capture range around queued work", function()
        local x = cocola.randn({ 256, 256 }):cuda()
        cuda.profiler_start()
        local y = x:matmul(x)
        cuda.profiler_stop()
        assert.near(x:cpu():matmul(x:cpu()):sum():item(), y:sum():item(), 1e-2 * y:abs():sum():item())
      end)

      it("moves tensors and modules there and back", function()
        local t = cocola.randn({ 2, 3 })
        local g = t:cuda()
        assert.equals("cuda", g:device())
        assert.equals("cuda", t:to("cuda:0"):device())
        assert.equals("cpu", g:cpu():device())
        assert.same(t:totable(), g:cpu():totable())
        local model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
        assert.equals(model, model:cuda())
        for _, p in ipairs(model:parameters()) do
          assert.equals("cuda", p:device())
          assert.is_true(p:requires_grad())
        end
        local y = model(g)
        assert.equals("cuda", y:device())
        y:sum():backward()
        for _, p in ipairs(model:parameters()) do assert.equals("cuda", p.grad:device()) end
        model:cpu()
        for _, p in ipairs(model:parameters()) do assert.equals("cpu", p:device()) end
        assert.is_true(cuda.memory_stats().num_alloc_requests > 0)
      end)

      it("carries gradients across the device boundary", function()
        local x = cocola.randn({ 3, 2 }):requires_grad(true)
        local y = (x:cuda() * 3):sum()
        y:backward()
        assert.equals("cpu", x.grad:device())
        for _, row in ipairs(x.grad:totable()) do
          for _, v in ipairs(row) do assert.equals(3, v) end
        end
      end)

      if cuda.get_device_name():find("emulation", 1, true) then
        -- the host emulation (COCOLA_CUDA=EMULATE) can play a missing driver and a full device
        it("reports the CUDA error of a failed device query (emulated)", function()
          local out = run_lua({ COCOLA_EMU_DEVICE_ERROR = "35" }, [[
            local c = require "cocola"
            local ok, err = pcall(function() return c.ones(2):cuda() end)
            print(c.cuda.is_available(), c.cuda.device_count(), ok, err)]])
          assert.matches("^false\t0\tfalse\t", out)
          assert.matches("cudaErrorInsufficientDriver", out)
        end)

        it("turns an out-of-memory into an error (emulated)", function()
          local out = run_lua({ COCOLA_EMU_MEMORY_LIMIT = "40000000" }, [[
            local c = require "cocola"
            local keep = { c.zeros({ 5000000 }):cuda() } -- 20 MB
            local ok, err = pcall(function() return c.zeros({ 6000000 }):cuda() end)
            keep = nil
            collectgarbage()
            local again = c.zeros({ 6000000 }):cuda()
            print(ok, err, again:device(), c.cuda.memory_stats().num_cuda_free > 0)]])
          assert.matches("^false\t", out)
          assert.matches("cudaErrorMemoryAllocation", out)
          assert.matches("\tcuda\ttrue", out)
        end)
      end
    end)
  end
end)
