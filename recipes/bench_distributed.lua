-- recipes/bench_distributed.lua — data-parallel COCOLA training: step time and scaling efficiency for 1, 2
-- (and more where cores allow) ranks on this machine, communication time shown apart, the measured
-- all-reduce bandwidth, and a projection to 8 and 64 GPUs written with its assumptions.
-- Usage: lua5.4 recipes/bench_distributed.lua [ranks=1,2] [batch_size=8] [window=1.0] [steps=3] [threads=1]
--        [gpu_step_ms=120] [intra_gbs=150] [inter_gbs=40] [latency_us=30]
-- It runs itself under `mpirun --oversubscribe -np N` for each N (the per-N worker prints one line of
-- JSON); weak scaling (the global batch grows with N) and strong scaling (the global batch fixed at
-- batch_size, K/N windows per rank) are both shown. Efficiency = t(1 rank, K/N) / t(N ranks, K/N each)
-- for weak scaling, t(1, K) / (N t(N, K/N)) for strong scaling.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local cocola = require "cocola"
local cjson = require "cjson"

local opts = { ranks = "1,2", batch_size = 8, window = 1.0, steps = 3, threads = 1, gpu_step_ms = 120, intra_gbs = 150,
               inter_gbs = 40, latency_us = 30, worker = "", per_rank = 0 }
for _, a in ipairs(arg) do
  local k, v = a:match("^([%w_]+)=(.*)$")
  if not k or opts[k] == nil then error("bench_distributed: unknown argument " .. a, 0) end
  opts[k] = tonumber(v) or v
end

-- one measurement under mpirun: per_rank windows on each rank (the global batch N x per_rank)
local function worker()
  local dist = require "cocola.distributed"
  local train = require "cocola.recipes.train"
  dist.init { timeout = 600 }
  cocola.set_num_threads(opts.threads)
  cocola.manual_seed(0)
  local model = cocola.models.cocola { input = "hpss", embedding_dim = 512, dropout = 0.1 }
  model:train()
  local opt = cocola.optim.Adam(model:parameters(), { lr = 1e-4 })
  local k = opts.per_rank * dist.world_size
  local samples = math.floor(opts.window * 16000)
  local batch = { anchor = cocola.randn({ k, samples }) * 0.1, positive = cocola.randn({ k, samples }) * 0.1 }
  local params = model:named_parameters()
  local n_params = 0
  for _, np in ipairs(params) do n_params = n_params + np[2]:numel() end
  local function step()
    opt:zero_grad()
    local sim
    if dist.world_size > 1 then
      sim = train.distributed_similarity(model, batch, dist, "cpu")
    else
      sim = model(model:features(batch.anchor), model:features(batch.positive))
    end
    local loss = cocola.metrics.contrastive_loss(sim)
    loss:backward()
    local reduce = dist.average_gradients(params)
    opt:step()
    return reduce
  end
  step() -- warm-up
  -- the features of this rank's rows alone (the PyTorch figure beside it takes features as input)
  local tf = cocola.wall_time()
  local f = model:features(batch.anchor:narrow(1, 1, opts.per_rank))
  model:features(batch.positive:narrow(1, 1, opts.per_rank))
  tf = cocola.wall_time() - tf
  dist.barrier()
  local total, comm, reduce = 0, 0, 0
  for _ = 1, opts.steps do
    dist.comm_seconds = 0
    local t0 = cocola.wall_time()
    reduce = reduce + step()
    dist.barrier()
    total = total + cocola.wall_time() - t0
    comm = comm + dist.comm_seconds
  end
  -- all-reduce bandwidth on a buffer the size of the gradients
  local buffer = cocola.zeros({ n_params })
  local reps, t_ar = 5, 0
  if dist.world_size > 1 then
    dist.all_reduce(buffer)
    dist.barrier()
    local t0 = cocola.wall_time()
    for _ = 1, reps do dist.all_reduce(buffer) end
    t_ar = (cocola.wall_time() - t0) / reps
  end
  if dist.rank == 0 then
    print(cjson.encode({ ranks = dist.world_size, per_rank = opts.per_rank, step = total / opts.steps,
      comm = comm / opts.steps, grad_allreduce = reduce / opts.steps, params = n_params, allreduce = t_ar,
      features = tf, height = f:size(3), width = f:size(4) }))
  end
end

if opts.worker ~= "" then
  worker()
  os.exit(0)
end

-- the driver
local ranks = {}
for n in tostring(opts.ranks):gmatch("%d+") do ranks[#ranks + 1] = tonumber(n) end
local function measure(n, per_rank)
  local cmd = string.format("mpirun --oversubscribe --allow-run-as-root -np %d"
    .. " lua5.4 recipes/bench_distributed.lua worker=1 per_rank=%d window=%s steps=%d threads=%d 2>&1",
    n, per_rank, opts.window, opts.steps, opts.threads)
  local p = io.popen(cmd)
  local text = p:read("a")
  p:close()
  local line = text:match("(%b{})")
  if not line then error("bench_distributed: the run with " .. n .. " ranks failed:\n" .. text, 0) end
  return cjson.decode(line)
end

-- PyTorch DDP (gloo, CPU) on the same model and per-rank batch, features as input; nil where it cannot run
local torch_ok = os.execute("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == true
local function torch_step(n, per_rank, h, w)
  if not torch_ok then return nil end
  local p = io.popen(string.format("/usr/bin/python3 recipes/reference/bench_distributed_torch.py %d %d %d %d %d %d 2>&1",
    n, per_rank, h, w, opts.steps, opts.threads))
  local text = p:read("a")
  p:close()
  local line = text:match("(%b{})")
  local ok, r = pcall(cjson.decode, line or "")
  return ok and r.step or nil
end

local cores = tonumber(io.popen("nproc"):read("l")) or 1
print(string.format("bench_distributed: COCOLA (EfficientNet-B0, hpss, %g-s windows), %d CPU cores, %d thread(s) per rank, %d timed steps",
  opts.window, cores, opts.threads, opts.steps))
local K = opts.batch_size
local base_small, base_full = nil, nil
local rows = {}
for _, n in ipairs(ranks) do
  if K % n ~= 0 then error("bench_distributed: batch_size must be a multiple of every rank count", 0) end
  local strong = measure(n, K // n)
  strong.torch = torch_step(n, K // n, strong.height, strong.width)
  rows[#rows + 1] = { n = n, strong = strong }
end
base_full = rows[1].strong
print("")
print("strong scaling: global batch K = " .. K)
print(string.format("%6s %9s %10s %12s %11s %10s %11s %12s %12s %8s", "ranks", "K/rank", "step s", "comm s", "grad AR s",
  "speed-up", "efficiency", "no-feat s", "torch DDP s", "ratio"))
for _, r in ipairs(rows) do
  local s = r.strong
  local speed = base_full.step / s.step
  local bare = s.step - s.features
  print(string.format("%6d %9d %10.3f %12.3f %11.3f %10.2f %10.0f%% %12.3f %12s %8s", r.n, s.per_rank, s.step, s.comm,
    s.grad_allreduce, speed, 100 * speed / r.n, bare, s.torch and string.format("%.3f", s.torch) or "-",
    s.torch and string.format("%.2f", bare / s.torch) or "-"))
end
print("no-feat: the step less this rank's feature computation (log-mel + HPSS of its rows); ratio: no-feat / torch DDP"
  .. (torch_ok and "" or " (PyTorch is not installed: /usr/bin/python3 cannot import torch)"))
-- weak scaling: K/N_max windows per rank at every N (the 1-rank baseline with the same per-rank batch)
local per = K // ranks[#ranks]
base_small = measure(1, per)
print("")
print("weak scaling: " .. per .. " windows per rank (global batch N x " .. per .. ")")
print(string.format("%6s %10s %12s %11s", "ranks", "step s", "comm s", "efficiency"))
print(string.format("%6d %10.3f %12.3f %10.0f%%", 1, base_small.step, base_small.comm, 100))
for _, r in ipairs(rows) do
  if r.n > 1 then
    local s = r.n == ranks[#ranks] and r.strong or measure(r.n, per)
    print(string.format("%6d %10.3f %12.3f %10.0f%%", r.n, s.step, s.comm, 100 * base_small.step / s.step))
  end
end

-- the measured all-reduce of the gradients' size at the largest N
local last = rows[#rows].strong
local bytes = last.params * 4
if last.allreduce > 0 then
  local n = last.ranks
  local bus = 2 * (n - 1) / n * bytes / last.allreduce / 1e9
  print("")
  print(string.format("all-reduce of %d float32 (%.1f MB) over %d ranks (MPI, shared memory): %.1f ms, bus bandwidth %.2f GB/s",
    last.params, bytes / 1e6, n, 1e3 * last.allreduce, bus))
end

-- projection: ring all-reduce time 2 (N-1)/N S / B + 2 (N-1) latency, not overlapped with compute (the
-- pessimistic case); the contrastive all-gather of K x 512 embeddings is negligible beside it (K = 32:
-- 64 KB a rank). S = the gradients' bytes; B = NCCL bus bandwidth (intra_gbs within an 8-GPU node over
-- NVLink, inter_gbs between nodes over InfiniBand); the per-GPU compute time is gpu_step_ms (an
-- assumption: a COCOLA step of K = 32 windows of 5 s on one GPU, not measured here: no GPU on this
-- machine), and it stays constant under weak scaling.
print("")
print("projection (weak scaling, per-GPU batch fixed; assumptions in recipes/bench_distributed.lua):")
print(string.format("%8s %12s %14s %12s %11s", "GPUs", "link GB/s", "all-reduce ms", "step ms", "efficiency"))
for _, n in ipairs({ 8, 64 }) do
  local b = n <= 8 and opts.intra_gbs or opts.inter_gbs
  local t = 2 * (n - 1) / n * bytes / (b * 1e9) + 2 * (n - 1) * opts.latency_us * 1e-6
  local step = opts.gpu_step_ms / 1e3 + t
  print(string.format("%8d %12g %14.2f %12.1f %10.0f%%", n, b, 1e3 * t, 1e3 * step, 100 * (opts.gpu_step_ms / 1e3) / step))
end
print(string.format("assumed: gpu_step_ms=%g, intra_gbs=%g (NVLink), inter_gbs=%g (InfiniBand), latency_us=%g per ring hop;"
  .. " gradient bytes %.1f MB measured from the model", opts.gpu_step_ms, opts.intra_gbs, opts.inter_gbs, opts.latency_us, bytes / 1e6))
