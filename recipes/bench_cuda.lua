-- recipes/bench_cuda.lua — GPU benchmark of the COCOLA model: a training step (K anchors and K
-- positives of HPSS features 2 x 64 x 501 through one encoder batch of 2K, the K x K bilinear
-- similarity, the contrastive cross-entropy, backward, Adam) and inference (the same forward in eval
-- mode without gradients), median wall-clock ms per step on the GPU (synchronised), beside PyTorch +
-- cuDNN on the same GPU in the same run when `python` (default /usr/bin/python3) has a CUDA build of torch
-- (recipes/reference/bench_cuda_torch.py builds the same network). Also the peak device memory.
-- Without a usable GPU it says why and exits 0.
-- Usage: lua5.4 recipes/bench_cuda.lua [K=32] [height=64] [width=501] [repeats=10] [warmup=3]
--        [tf32=false] [autocast=off|bf16] [torch=true] [python=/usr/bin/python3] [drop_connect=0] [seed=0]
-- autocast=bf16 runs GEMMs and convolutions in bfloat16 (cocola.cuda.set_autocast) and PyTorch under
-- torch.autocast("cuda", dtype=torch.bfloat16).
-- drop_connect (EfficientNet's stochastic depth, 0.2 when training COCOLA) is 0 by default because the
-- PyTorch reference network has none; the comparison is then of the same computation.
local cocola = require "cocola"
local recipe = require "cocola.recipe"

local config = recipe.config({ K = 32, height = 64, width = 501, repeats = 10, warmup = 3, tf32 = false,
  autocast = "off", torch = true, python = "/usr/bin/python3", drop_connect = 0, seed = 0 }, arg)
recipe.log_config(config)

local cuda = cocola.cuda
if not cuda.is_available() then
  print("CUDA is not available: " .. tostring(cuda.unavailable_reason()) .. " (benchmark skipped)")
  os.exit(0)
end
print("device: " .. cuda.get_device_name())

cuda.set_tf32(config.tf32)
cuda.set_autocast(config.autocast)
cocola.manual_seed(config.seed)
local K = config.K
local model = cocola.models.cocola { input = "hpss", embedding_dim = 512, dropout = 0.1,
  drop_connect_rate = config.drop_connect }
model:cuda()
local anchors = cocola.randn({ K, 2, config.height, config.width }):cuda()
local positives = cocola.randn({ K, 2, config.height, config.width }):cuda()
local opt = cocola.optim.Adam(model:parameters(), { lr = 1e-3 })

-- median wall-clock ms of fn over the repeats (after the warm-up runs: algorithm search, cache)
local function median_ms(label, fn)
  for _ = 1, config.warmup do fn() end
  cuda.synchronize()
  local times = {}
  for r = 1, config.repeats do
    local t0 = cocola.wall_time()
    fn()
    cuda.synchronize()
    times[#times + 1] = (cocola.wall_time() - t0) * 1000
    io.stderr:write(string.format("\r%s %d/%d", label, r, config.repeats))
  end
  io.stderr:write("\n")
  table.sort(times)
  return times[(#times + 1) // 2]
end

model:eval()
local inference = median_ms("inference", function()
  cocola.no_grad(function() return model(anchors, positives) end)
end)

model:train()
local last_loss
cuda.reset_peak_memory_stats()
local train = median_ms("train step", function()
  opt:zero_grad()
  local loss = cocola.metrics.contrastive_loss(model(anchors, positives))
  loss:backward()
  opt:step()
  last_loss = loss
end)
local stats = cuda.memory_stats()
local loss_value = last_loss:item()
local gpu_ms = cuda.time(function()
  opt:zero_grad()
  local loss = cocola.metrics.contrastive_loss(model(anchors, positives))
  loss:backward()
  opt:step()
end)

-- PyTorch on the same GPU, after ours (our cached blocks handed back first)
local torch_result, torch_note
if config.torch then
  model, opt, anchors, positives, last_loss = nil, nil, nil, nil, nil
  collectgarbage()
  cuda.synchronize()
  cuda.empty_cache()
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  local cmd = string.format("'%s' %s/reference/bench_cuda_torch.py %d %d %d %d %d %s %s 2>&1",
    config.python:gsub("'", ""), here, K, config.height, config.width, config.repeats, config.warmup, config.tf32 and "1" or "0",
    cuda.get_autocast() == "bf16" and "1" or "0")
  local p = io.popen(cmd)
  local out = p and p:read("a") or ""
  if p then p:close() end
  local ok, cjson = pcall(require, "cjson")
  local json = out:match("(%b{})%s*$")
  if ok and json then
    local decoded = cjson.decode(json)
    if decoded.error then torch_note = decoded.error else torch_result = decoded end
  else
    torch_note = "no result from " .. config.python .. " (" .. (out:match("[^\n]*\n?$") or "") .. ")"
  end
end

print(string.format("\nCOCOLA (EfficientNet-B0, HPSS) on the GPU: K=%d, encoder batch %dx2x%dx%d, TF32 %s, autocast %s, median of %d",
  K, 2 * K, config.height, config.width, config.tf32 and "on" or "off", cuda.get_autocast() or "off", config.repeats))
recipe.print_ratio_table({
  { "inference", inference, torch_result and torch_result.inference_ms },
  { "train step (fwd+bwd+Adam)", train, torch_result and torch_result.train_ms },
})
print(string.format("train step GPU time (events) %.1f ms; loss %.4f; peak allocated %.0f MiB, reserved %.0f MiB, "
  .. "%d cudaMalloc calls for %d requests", gpu_ms, loss_value, stats.peak_allocated_bytes / 2 ^ 20,
  stats.peak_reserved_bytes / 2 ^ 20, stats.num_cuda_malloc, stats.num_alloc_requests))
if torch_result then
  print(string.format("PyTorch %s, cuDNN %s, %s; peak allocated %.0f MiB", torch_result.torch,
    tostring(torch_result.cudnn), torch_result.device, (torch_result.peak_allocated or 0) / 2 ^ 20))
elseif config.torch then
  print("PyTorch not measured: " .. tostring(torch_note))
end
