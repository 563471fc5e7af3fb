-- cocola.cuda — the CUDA device. The backend (csrc/cuda, kernels/) is built in when nvcc was found at
-- build time and registers itself only where a driver and a GPU are usable; everywhere else these
-- functions still work (is_available() is false, device_count() 0, memory_stats() zeros) and
-- t:cuda() raises an error that names the CUDA error (e.g. cudaErrorInsufficientDriver).
--
--   local cuda = require "cocola.cuda"        -- or cocola.cuda
--   if cuda.is_available() then model:cuda(); x = x:cuda() end
--   cuda.synchronize(); print(cuda.memory_stats().peak_allocated_bytes)
--
-- One device (device 0), one stream: every op queues on it; results are ordered, and reading a
-- value on the host (t:cpu(), t:item()) waits for what it needs. synchronize() is for timing.
local core = require "cocola.core"

local cuda = {}

--- true when this build has the CUDA backend (whether or not a device is usable here)
function cuda.is_built() return core._cuda_built() end

--- true when tensors can be moved to the GPU
function cuda.is_available() return core.device_available("cuda") end

--- number of CUDA devices seen (cocola uses the first); 0 without a usable driver and GPU
function cuda.device_count() return core._cuda_device_count() end

--- the name of the device in use ("" when none)
function cuda.get_device_name() return core._cuda_device_name() end

--- why CUDA is not available (the CUDA error name and text, or that the build has no backend);
-- nil when it is
function cuda.unavailable_reason() return core._cuda_init_error() end

--- waits until all queued GPU work is done (raises when the device reported an error)
function cuda.synchronize() core._cuda_synchronize() end

--- marks the work an external profiler captures when started with capture off (`ncu
-- --profile-from-start off`, `nsys profile --capture-range=cudaProfilerApi`): the GPU is synchronised,
-- then capture starts (cudaProfilerStart); profiler_stop() synchronises and ends it. Raises without a device.
function cuda.profiler_start() core._cuda_profiler(true) end
function cuda.profiler_stop() core._cuda_profiler(false) end

local STAT_KEYS = {
  "allocated_bytes", "cached_bytes", "reserved_bytes", "peak_allocated_bytes", "peak_reserved_bytes",
  "num_cuda_malloc", "num_cuda_free", "num_alloc_requests", "num_cache_hits", "pinned_bytes", "live_bytes",
}

--- statistics of the caching allocator, in bytes and counts:
-- allocated_bytes (blocks in use, rounded sizes), cached_bytes (free blocks kept for reuse),
-- reserved_bytes (both), peak_allocated_bytes, peak_reserved_bytes, num_cuda_malloc, num_cuda_free,
-- num_alloc_requests, num_cache_hits, pinned_bytes (host staging buffers), live_bytes (tensor storage
-- on the device, exact sizes). All zero where CUDA is not available.
function cuda.memory_stats()
  local s = core._cuda_memory_stats()
  for _, k in ipairs(STAT_KEYS) do s[k] = s[k] or 0 end
  return s
end

function cuda.memory_allocated() return cuda.memory_stats().allocated_bytes end
function cuda.memory_reserved() return cuda.memory_stats().reserved_bytes end
function cuda.max_memory_allocated() return cuda.memory_stats().peak_allocated_bytes end

--- peaks restart from the current values
function cuda.reset_peak_memory_stats() core._cuda_reset_peak_memory_stats() end

--- returns the cached free blocks to the driver (memory in use is untouched)
function cuda.empty_cache() core._cuda_empty_cache() end

--- TF32 tensor-core math for float32 GEMM and convolutions: faster, about 1e-3 relative error.
-- Off by default so that the GPU matches the CPU (float32, 1e-5).
function cuda.set_tf32(enabled) core._cuda_set_tf32(enabled and true or false) end
function cuda.get_tf32() return core._cuda_get_tf32() end

--- bf16 autocast: float32 GEMMs (matmul, linear, bilinear) and convolutions on the GPU take bfloat16
-- copies of their operands (tensor cores, FP32 accumulation) and give float32 results (depthwise
-- convolutions excepted: memory-bound, they stay float32); weights,
-- gradients, optimiser state and every other op stay float32 (fp32 master weights). mode: "bf16", or
-- false / nil / "off" for plain float32 (the default). About 1e-2 relative error per GEMM or conv.
-- CPU ops are not affected.
function cuda.set_autocast(mode)
  if mode == nil or mode == false or mode == "off" then
    core._cuda_set_autocast_bf16(false)
  elseif mode == "bf16" then
    core._cuda_set_autocast_bf16(true)
  else
    error(string.format("cocola.cuda.set_autocast: mode must be \"bf16\" or false (off), got %s", tostring(mode)), 2)
  end
end

--- "bf16" when bf16 autocast is on, else false
function cuda.get_autocast() return core._cuda_get_autocast_bf16() and "bf16" or false end

--- runs fn(...) with autocast set to mode, then restores the previous setting (also when fn raises);
-- returns fn's results
function cuda.autocast(mode, fn, ...)
  local previous = cuda.get_autocast()
  cuda.set_autocast(mode)
  local results = table.pack(pcall(fn, ...))
  cuda.set_autocast(previous)
  if not results[1] then error(results[2], 0) end
  return table.unpack(results, 2, results.n)
end

--- the op table: { [op name] = true when the op has a CUDA kernel } (false for every op where the
-- backend is not registered)
function cuda.op_support() return core._cuda_ops() end

--- number of convolution algorithms chosen so far (one per op, shape, TF32 and autocast setting)
function cuda.conv_algorithm_cache_size() return core._cuda_conv_cache_size() end

-- ---- timing events, like torch.cuda.Event(enable_timing=True) ----
local Event = {}
Event.__index = Event
Event.__gc = function(e)
  if e.handle then core._cuda_event_free(e.handle) end
  e.handle = nil
end
Event.__close = Event.__gc
Event.__name = "cocola.cuda.Event"

--- a new event (raises where CUDA is not available)
function cuda.Event() return setmetatable({ handle = core._cuda_event_new() }, Event) end

--- marks this point of the stream; returns the event
function Event:record()
  core._cuda_event_record(self.handle)
  return self
end

--- waits until the work queued before record() is done
function Event:synchronize() core._cuda_event_synchronize(self.handle) end

--- milliseconds between this event and a later one (waits for the later one)
function Event:elapsed_time(later) return core._cuda_event_elapsed(self.handle, later.handle) end

--- runs fn(...) and returns the GPU time of the work it queued, in milliseconds, then fn's results
function cuda.time(fn, ...)
  local start, stop = cuda.Event():record(), cuda.Event()
  local results = table.pack(fn(...))
  stop:record()
  local ms = start:elapsed_time(stop)
  Event.__gc(start) -- the device events now, not at the next collection
  Event.__gc(stop)
  return ms, table.unpack(results, 1, results.n)
end

return cuda
