-- recipes/bench_engine.lua — engine benchmark: an EfficientNet-B0-shaped network (the COCOLA
-- encoder layout, 1 input channel, 1280 -> 512 head) on a 32x1x64x501 batch; median ms per batch
-- for inference and for a training step (forward + backward + Adam), beside PyTorch measured in the
-- same run when /usr/bin/python3 has torch.
-- Usage: lua5.4 recipes/bench_engine.lua [batch=32] [threads=2] [repeats=5] [torch=true]
local cocola = require "cocola"
local nn = require "cocola.nn"
local EfficientNet = require "cocola.models.efficientnet.EfficientNet"
local recipe = require "cocola.recipe"

local config = recipe.config({ batch = 32, channels = 1, height = 64, width = 501, threads = 2, repeats = 5,
  torch = true, seed = 0 }, arg)
recipe.log_config(config)

cocola.set_num_threads(config.threads)
cocola.manual_seed(config.seed)

local Net = nn.Module:extend("BenchNet")
function Net:init()
  self.encoder = EfficientNet { in_channels = config.channels }
  self.dropout = nn.Dropout(0.1)
  self.projection = nn.Linear(1280, 512)
end
function Net:forward(x) return self.projection(self.dropout(self.encoder(x))) end

local net = Net()
local x = cocola.randn({ config.batch, config.channels, config.height, config.width })
local opt = cocola.optim.Adam(net:parameters(), { lr = 1e-3 })

local function median_ms(label, fn)
  fn() -- warm-up
  local times = {}
  for r = 1, config.repeats do
    local t0 = cocola.wall_time()
    fn()
    times[#times + 1] = (cocola.wall_time() - t0) * 1000
    io.stderr:write(string.format("\r%s %d/%d", label, r, config.repeats))
  end
  io.stderr:write("\n")
  table.sort(times)
  return times[(#times + 1) // 2]
end

net:eval()
local inference = median_ms("inference", function()
  cocola.no_grad(function() net(x) end)
end)
net:train()
local train = median_ms("train step", function()
  opt:zero_grad()
  local loss = net(x):pow(2):mean()
  loss:backward()
  opt:step()
end)

local torch_result
if config.torch then
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  local cmd = string.format("/usr/bin/python3 %s/reference/bench_engine_torch.py %d %d %d %d %d %d 2>/dev/null",
    here, config.batch, config.channels, config.height, config.width, config.threads, config.repeats)
  local p = io.popen(cmd)
  local out = p and p:read("a") or ""
  if p then p:close() end
  local ok, cjson = pcall(require, "cjson")
  if ok and out:match("^%s*{") then torch_result = cjson.decode(out) end
end

print(string.format("\nEfficientNet-B0-shaped network, input %dx%dx%dx%d, %d threads, median of %d",
  config.batch, config.channels, config.height, config.width, config.threads, config.repeats))
recipe.print_ratio_table({
  { "inference", inference, torch_result and torch_result.inference_ms },
  { "train step (fwd+bwd+Adam)", train, torch_result and torch_result.train_ms },
})
if torch_result then print("PyTorch " .. torch_result.torch) else print("PyTorch not available: ratio not measured") end
