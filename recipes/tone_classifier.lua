-- recipes/tone_classifier.lua — a worked example of the engine alone: a small
-- convolutional network learns to tell which of 4 tones a noisy 1-D signal contains, trained with
-- Adam; it prints the loss and accuracy as it goes, then saves the weights as safetensors, loads
-- them into a fresh network and checks that both give the same predictions.
-- Usage: lua5.4 recipes/tone_classifier.lua [steps=60] [batch=64] [seed=0] [threads=2]
local cocola = require "cocola"
local nn = require "cocola.nn"
local F = require "cocola.nn.functional"
local recipe = require "cocola.recipe"

local config = recipe.config({ steps = 60, batch = 64, seed = 0, threads = 2, length = 256, lr = 3e-3 }, arg)
recipe.log_config(config)
cocola.manual_seed(config.seed)
cocola.set_num_threads(config.threads)

local FREQS = { 3, 7, 13, 23 } -- cycles per window

-- a batch: each row a tone of random class and phase in Gaussian noise; labels 0-based
local function make_batch(n)
  local labels = cocola.randint(0, #FREQS, { n })
  local phases = (cocola.rand({ n }) * (2 * math.pi)):totable()
  local rows = {}
  for i, class in ipairs(labels:totable()) do
    local row, cycles = {}, FREQS[class + 1]
    for j = 1, config.length do
      row[j] = math.sin(cycles * (j - 1) * 2 * math.pi / config.length + phases[i])
    end
    rows[i] = row
  end
  local x = cocola.tensor(rows) + cocola.randn({ n, config.length }) * 0.8
  return x:view(n, 1, 1, config.length), labels
end

local Net = nn.Module:extend("ToneNet")
function Net:init()
  self.features = nn.Sequential(
    nn.Conv2d(1, 16, { 1, 9 }, { padding = { 0, 4 } }), nn.BatchNorm2d(16), nn.SiLU(),
    nn.Conv2d(16, 32, { 1, 9 }, { stride = { 1, 2 }, padding = { 0, 4 } }), nn.BatchNorm2d(32), nn.SiLU(),
    nn.Conv2d(32, 32, { 1, 3 }, { groups = 32, padding = { 0, 1 } }), nn.BatchNorm2d(32), nn.SiLU())
  self.classifier = nn.Linear(32, #FREQS)
end
function Net:forward(x)
  local h = F.adaptive_avg_pool2d(self.features(x), 1):flatten(2)
  return self.classifier(h)
end

local net = Net()
print(net)
print(string.format("%d parameters", net:num_parameters()))
local opt = cocola.optim.Adam(net:parameters(), { lr = config.lr })

local test_x, test_y = make_batch(256)
local function accuracy(model, x, y)
  model:eval()
  local pred = cocola.no_grad(function() return model(x):argmax(2) end)
  model:train()
  return pred:eq(y):double():mean():item()
end

local t0 = cocola.wall_time()
for step = 1, config.steps do
  local x, y = make_batch(config.batch)
  opt:zero_grad()
  local loss = F.cross_entropy(net(x), y)
  loss:backward()
  opt:step()
  if step % 10 == 0 or step == 1 then
    print(string.format("step %3d  loss %.4f  held-out accuracy %.3f  (%.1f s)", step, loss:item(),
      accuracy(net, test_x, test_y), cocola.wall_time() - t0))
  end
end

local base = os.tmpname() -- an empty file with a fresh name, removed with the weights written beside it
local path = base .. ".safetensors"
cocola.save(path, net:state_dict())
local copy = Net()
copy:load_state_dict(cocola.load(path))
os.remove(path)
os.remove(base)
net:eval()
copy:eval()
local same = cocola.no_grad(function() return net(test_x):allclose(copy(test_x), 0, 0) end)
print(string.format("final held-out accuracy %.3f (chance %.2f); reloaded weights give identical outputs: %s",
  accuracy(net, test_x, test_y), 1 / #FREQS, tostring(same)))
