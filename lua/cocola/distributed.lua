-- cocola.distributed — data-parallel collectives between processes (Open MPI) and GPUs (NCCL).
--
--   local dist = require "cocola.distributed"
--   dist.init{timeout = 60}          -- under mpirun: MPI; otherwise a group of one process
--   dist.rank, dist.world_size, dist.local_rank
--   dist.all_reduce(t, "sum" | "mean" | "max" | "min")   -- in place, returns t
--   dist.all_gather(t)                -- every rank's t along dim 1, in rank order (a new tensor)
--   dist.broadcast(t, root)           -- in place
--   dist.barrier()
--   dist.gather_with_grad(t)          -- all_gather with a gradient path back to this rank's rows
--   dist.all_reduce_with_grad(t)      -- the sum over ranks, differentiable
--   dist.average_gradients(params)    -- bucketed all-reduce (mean) of the .grad of parameters
--   dist.broadcast_module(module, 0)  -- parameters and buffers from a root rank
--   dist.shard(k)                     -- this rank's rows [first, first + count) of k (1-based first)
--
-- Every collective exchanges a header first (collective, dtype, shape): differing shapes are an
-- error naming every rank's shape. Every collective has a deadline (timeout seconds, default
-- COCOLA_DIST_TIMEOUT or 300): a rank that died or hangs makes the others raise
-- "distributed: all_reduce timed out on rank 0 after 60 s: another rank of 2 did not join ...";
-- after that the group is unusable and the process should exit (non-zero: the error reaches the
-- recipe's error path). CPU tensors go through MPI; CUDA tensors go through NCCL when the build has
-- it and init{backend = "nccl"} was asked (one GPU per process, the NCCL id broadcast over MPI),
-- otherwise through host staging over MPI (copied to the CPU and back). NCCL needs one GPU per
-- process, seen as its device 0: start each rank with CUDA_VISIBLE_DEVICES=$OMPI_COMM_WORLD_LOCAL_RANK.
local cocola = require "cocola"
local core = require "cocola.core"

local M = { rank = 0, world_size = 1, local_rank = 0, initialized = false, backend = "none" }

--- true when the process was started by mpirun / an MPI launcher (Open MPI, PMIx, MPICH/Hydra)
function M.launched_by_mpi()
  return os.getenv("OMPI_COMM_WORLD_SIZE") ~= nil or os.getenv("PMIX_RANK") ~= nil or os.getenv("PMI_RANK") ~= nil
end

--- whether this build has MPI
function M.available() return core._dist_available() end

--- init{timeout = seconds, backend = "mpi" | "nccl"} -> M. Outside an MPI launch: a group of one
-- process (rank 0 of 1), with no MPI at all; with mpi = true (or under mpirun) MPI is initialised.
function M.init(opts)
  opts = opts or {}
  local timeout = opts.timeout or tonumber(os.getenv("COCOLA_DIST_TIMEOUT") or "") or 300
  if type(timeout) ~= "number" or timeout <= 0 then
    error("distributed.init: timeout must be a positive number of seconds, got " .. tostring(opts.timeout), 2)
  end
  M.timeout = timeout
  if not (opts.mpi or M.launched_by_mpi()) then
    M.rank, M.world_size, M.local_rank, M.initialized, M.backend = 0, 1, 0, true, "none"
    return M
  end
  if not core._dist_available() then
    error("distributed.init: started under mpirun, but this build of cocola has no MPI (install libopenmpi-dev and rebuild)", 2)
  end
  M.rank, M.world_size, M.local_rank = core._dist_init(timeout)
  M.initialized, M.backend = true, "mpi"
  if opts.backend == "nccl" then
    local cuda = require "cocola.cuda"
    if not (core._nccl_available and core._nccl_available()) then
      error("distributed.init: backend=nccl, but this build has no NCCL (the CUDA backend with nccl.h and libnccl)", 2)
    end
    if not cuda.is_available() then
      error("distributed.init: backend=nccl needs a GPU: " .. tostring(cuda.unavailable_reason()), 2)
    end
    local id = M.rank == 0 and core._nccl_unique_id() or nil
    id = core._dist_broadcast_bytes(id, 0)
    core._nccl_init(id, M.rank, M.world_size, timeout)
    M.backend = "nccl"
  elseif opts.backend ~= nil and opts.backend ~= "mpi" then
    error("distributed.init: backend must be mpi or nccl, got " .. tostring(opts.backend), 2)
  end
  return M
end

--- sets the deadline of every later collective (seconds)
function M.set_timeout(seconds)
  M.timeout = seconds
  if M.world_size > 1 then core._dist_set_timeout(seconds) end
end

function M.is_main() return M.rank == 0 end

-- seconds spent inside collectives (for benchmarks), reset by the caller
M.comm_seconds = 0

local function check_tensor(t, what)
  if not cocola.is_tensor(t) then error("distributed." .. what .. ": expected a tensor, got " .. type(t), 3) end
end

-- runs the C collective fn on a contiguous CPU tensor holding t's values; the result is copied back
-- into t when t itself could not be used (a device tensor or a non-contiguous view)
local function on_host(t, fn, ...)
  local t0 = cocola.wall_time()
  local host = t
  if t:device() ~= "cpu" then host = t:detach():to("cpu")
  elseif not t:is_contiguous() then host = t:detach():contiguous() end
  fn(host, ...)
  if host ~= t then cocola.no_grad(function() t:copy_(host) end) end
  M.comm_seconds = M.comm_seconds + (cocola.wall_time() - t0)
  return t
end

local function use_nccl(t) return M.backend == "nccl" and t:device() == "cuda" end

--- all_reduce(t, op) in place; op "sum" (default), "mean", "max" or "min"; returns t
function M.all_reduce(t, op)
  check_tensor(t, "all_reduce")
  op = op or "sum"
  if op ~= "sum" and op ~= "mean" and op ~= "max" and op ~= "min" then
    error("distributed.all_reduce: op must be sum, mean, max or min, got " .. tostring(op), 2)
  end
  if M.world_size == 1 then return t end
  if use_nccl(t) then
    local t0 = cocola.wall_time()
    core._nccl_all_reduce(t, op == "mean" and "sum" or op)
    M.comm_seconds = M.comm_seconds + (cocola.wall_time() - t0)
  else
    on_host(t, core._dist_all_reduce, op == "mean" and "sum" or op)
  end
  if op == "mean" then cocola.no_grad(function() t:copy_(t / M.world_size) end) end
  return t
end

--- all_gather(t) -> (world_size * t:size(1), ...): every rank's t in rank order (not differentiable;
-- see gather_with_grad); every rank must pass the same shape
function M.all_gather(t)
  check_tensor(t, "all_gather")
  if M.world_size == 1 then return t:detach() end
  if use_nccl(t) then
    local t0 = cocola.wall_time()
    local out = core._nccl_all_gather(t:contiguous())
    M.comm_seconds = M.comm_seconds + (cocola.wall_time() - t0)
    return out
  end
  local t0 = cocola.wall_time()
  local host = t:detach()
  if host:device() ~= "cpu" then host = host:to("cpu") end
  local out = core._dist_all_gather(host:contiguous())
  if t:device() ~= "cpu" then out = out:to(t:device()) end
  M.comm_seconds = M.comm_seconds + (cocola.wall_time() - t0)
  return out
end

--- broadcast(t, root) in place from rank root (default 0); returns t
function M.broadcast(t, root)
  check_tensor(t, "broadcast")
  root = root or 0
  if M.world_size == 1 then return t end
  if use_nccl(t) then
    core._nccl_broadcast(t, root)
    return t
  end
  return on_host(t, core._dist_broadcast, root)
end

function M.barrier()
  if M.world_size > 1 then core._dist_barrier() end
end

--- the rows of k that this rank owns: first (1-based) and count; k must be a multiple of world_size
function M.shard(k)
  if k % M.world_size ~= 0 then
    error(string.format("distributed: a batch of %d does not split evenly over %d ranks", k, M.world_size), 2)
  end
  local per = k // M.world_size
  return M.rank * per + 1, per
end

--- gather_with_grad(t) -> every rank's t along dim 1 (rank order), differentiable: the backward
-- sums the incoming gradient over ranks (all_reduce) and returns this rank's rows of it. When every
-- rank computes the same loss of the gathered tensor, each rank's rows then get world_size times
-- their gradient of that loss, so that the mean of the parameter gradients over ranks
-- (average_gradients) is the gradient of one process over the whole batch.
function M.gather_with_grad(t)
  check_tensor(t, "gather_with_grad")
  if M.world_size == 1 then return t end
  local out = M.all_gather(t)
  if not t:requires_grad() or not cocola.is_grad_enabled() then return out end
  local first, count = (M.rank * t:size(1)) + 1, t:size(1)
  return cocola.function_node(out, { t }, function(g)
    local full = cocola.no_grad(function() return M.all_reduce(g:contiguous():clone(), "sum") end)
    return full:narrow(1, first, count):contiguous()
  end, "GatherWithGradBackward")
end

--- all_reduce_with_grad(t) -> the sum of t over ranks (a new tensor), differentiable: the backward
-- is the sum of the incoming gradients over ranks (synchronised BatchNorm's statistics use it)
function M.all_reduce_with_grad(t)
  check_tensor(t, "all_reduce_with_grad")
  if M.world_size == 1 then return t end
  local out = cocola.no_grad(function() return M.all_reduce(t:detach():contiguous():clone(), "sum") end)
  if not t:requires_grad() or not cocola.is_grad_enabled() then return out end
  return cocola.function_node(out, { t }, function(g)
    return cocola.no_grad(function() return M.all_reduce(g:contiguous():clone(), "sum") end)
  end, "AllReduceWithGradBackward")
end

--- average_gradients(params[, {bucket_mb = 25}]) -> seconds spent communicating. params: a list of
-- tensors or of {name, tensor} pairs. Their gradients are packed into buckets of about bucket_mb MB
-- (in the order given), each bucket all-reduced once and divided by world_size. A parameter without
-- a gradient on this rank takes part with zeros (so that every rank's buckets match); it gets
-- the average of the others' as its gradient.
function M.average_gradients(params, opts)
  if M.world_size == 1 then return 0 end
  opts = opts or {}
  local limit = math.floor((opts.bucket_mb or 25) * 1024 * 1024 / 4)
  local t0 = cocola.wall_time()
  local list = {}
  for _, p in ipairs(params) do list[#list + 1] = cocola.is_tensor(p) and p or p[2] end
  local i = 1
  cocola.no_grad(function()
    while i <= #list do
      local parts, sizes, n, j = {}, {}, 0, i
      local device = list[i]:device()
      while j <= #list and (n == 0 or n + list[j]:numel() <= limit) and list[j]:device() == device do
        local p = list[j]
        local g = p.grad or cocola.zeros(p.shape, { dtype = p:dtype() }):to(device)
        parts[#parts + 1] = g:reshape({ -1 })
        sizes[#sizes + 1] = p:numel()
        n = n + p:numel()
        j = j + 1
      end
      local bucket = #parts == 1 and parts[1]:clone() or cocola.cat(parts, 1)
      M.all_reduce(bucket, "sum")
      bucket = bucket / M.world_size
      local off = 1
      for k = i, j - 1 do
        local p = list[k]
        p.grad = bucket:narrow(1, off, sizes[k - i + 1]):reshape(p.shape):contiguous()
        off = off + sizes[k - i + 1]
      end
      i = j
    end
  end)
  return cocola.wall_time() - t0
end

--- broadcast_module(module, root): every parameter and buffer of module from rank root (so that
-- every rank starts from the same weights whatever its initialisation drew)
function M.broadcast_module(module, root)
  if M.world_size == 1 then return end
  cocola.no_grad(function()
    for _, np in ipairs(module:named_parameters()) do M.broadcast(np[2], root or 0) end
    for _, nb in ipairs(module:named_buffers()) do M.broadcast(nb[2], root or 0) end
  end)
end

return M
