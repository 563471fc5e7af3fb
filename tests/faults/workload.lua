-- tests/faults/workload.lua — one fault-injection workload, run under tests/faults/fault_shim.so by
-- tests/faults/driver.lua (and spec/fault_injection_spec.lua):
--   lua5.4 tests/faults/workload.lua NAME count          -> "count A baseline L" (allocations of one run)
--   lua5.4 tests/faults/workload.lua NAME sweep N1,N2,..  -> per point "point N error|ok live=L MSG"
-- Each point runs the workload with its Nth allocation failing (the shim, armed through os.getenv),
-- inside pcall; then the collector runs, cocola's cache is emptied and the blocks allocated during the
-- run that are still live are counted (above the clean run's count: a leak), and the workload runs
-- again without a failure and must give the clean run's result (the engine recovered).
-- Workloads: load (a safetensors file and a torch checkpoint), train_step (forward, backward and an
-- AdamW step of a tiny chroma-onset COCOLA model), features (HPSS log-mel features and chroma-onset
-- frames of a short signal), save (safetensors and WAV files written into a temporary folder),
-- conv_onednn (a conv1d forward and backward on the oneDNN backend where the build has it: the blocked
-- tensors and scratchpads it borrows from the CPU block cache).
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local build = os.getenv("COCOLA_BUILD_DIR") or "build"
package.cpath = (build:sub(1, 1) == "/" and "" or "./") .. build .. "/?.so;" .. package.cpath
local cocola = require "cocola"
cocola.set_num_threads(1)

local name, mode, list = arg[1], arg[2], arg[3]
local workloads = {}

local function checksum(t)
  return t:double():abs():sum():item()
end

function workloads.load()
  local sum = 0
  local st = cocola.load("spec/fixtures/optim.safetensors")
  for _, t in pairs(st) do sum = sum + checksum(t) end
  local ck = cocola.load("spec/fixtures/ckpt/lightning.ckpt")
  local function walk(v)
    if cocola.is_tensor(v) then sum = sum + checksum(v)
    elseif type(v) == "table" then for _, x in pairs(v) do walk(x) end end
  end
  walk(ck)
  return sum
end

local model, waves, pos, initial
local function setup_train()
  cocola.manual_seed(3)
  model = cocola.models.chroma_onset_cocola { dim = 4, width = 4, blocks = 1 }
  model:train()
  local feats = require("cocola.baselines.chroma_onset").frame_features(cocola.randn({ 4, 4096 }) * 0.1)
  waves, pos = feats:narrow(1, 1, 2):contiguous(), feats:narrow(1, 3, 2):contiguous()
  initial = {}
  for k, v in pairs(model:state_dict()) do initial[k] = v:clone() end
end
-- from the same weights every time, with a fresh optimizer (its first step makes its state)
function workloads.train_step()
  model:load_state_dict(initial)
  local opt = require("cocola.optim").AdamW(model:parameters(), { lr = 1e-3 })
  opt:zero_grad()
  local sim = model(waves, pos)
  local loss = require("cocola.metrics").contrastive_loss(sim)
  loss:backward()
  opt:step()
  local sum = loss:item()
  for _, p in ipairs(model:parameters()) do sum = sum + checksum(p) end
  return sum
end

local signal
function workloads.features()
  local hpss = cocola.audio.cocola_features(signal, { mode = "hpss" })
  local frames = require("cocola.baselines.chroma_onset").frame_features(signal)
  return checksum(hpss) + checksum(frames)
end

local conv_x, conv_w, conv_b
function workloads.conv_onednn()
  local F = require "cocola.nn.functional"
  local x, w = conv_x:clone():requires_grad(true), conv_w:clone():requires_grad(true)
  local y = F.conv1d(x, w, conv_b, { padding = 1 })
  y:sum():backward()
  return checksum(y) + checksum(x.grad) + checksum(w.grad)
end

local outdir
function workloads.save()
  local t = { a = cocola.arange(0, 12):reshape({ 3, 4 }):float(), b = cocola.ones({ 5 }) }
  cocola.save(outdir .. "/x.safetensors", t, { metadata = { k = "v" } })
  cocola.audio.save(outdir .. "/x.wav", cocola.tensor({ { 0.1, -0.2, 0.3, 0, 0.5 } }), 16000)
  local back = cocola.load(outdir .. "/x.safetensors")
  return checksum(back.a) + checksum(back.b) + checksum(cocola.audio.load(outdir .. "/x.wav"))
end

local work = workloads[name]
if not work then io.stderr:write("unknown workload ", tostring(name), "\n"); os.exit(2) end
if name == "train_step" then
  setup_train()
elseif name == "features" then
  cocola.manual_seed(5)
  signal = cocola.randn({ 1, 8000 }) * 0.1
elseif name == "conv_onednn" then
  local _, have_onednn = cocola.conv_backend()
  if have_onednn then cocola.set_conv_backend("onednn") end
  cocola.manual_seed(7)
  conv_x, conv_w, conv_b = cocola.randn({ 2, 32, 4096 }), cocola.randn({ 32, 32, 3 }) * 0.1, cocola.randn({ 32 })
elseif name == "save" then
  outdir = assert(os.getenv("FAULT_TMPDIR"), "FAULT_TMPDIR: a folder for the save workload")
end

local function settle()
  collectgarbage("collect")
  collectgarbage("collect")
  cocola.empty_cache()
end
local function live()
  local s = os.getenv("FAULT_SHIM_STATUS") or ""
  return tonumber(s:match("live_c=(%d+)")) or -1, tonumber(s:match("allocs=(%d+)")) or -1, s
end

-- two clean runs warm every lazily made cache; the third gives the count and the reference
local reference = work()
work()
settle()
os.getenv("FAULT_SHIM_RESET")
os.getenv("FAULT_SHIM_ARM:0")
local ref2 = work()
os.getenv("FAULT_SHIM_DISARM")
settle()
local baseline, count = live()
if math.abs(ref2 - reference) > 1e-9 * math.max(1, math.abs(reference)) then
  print(string.format("unstable %s %.17g %.17g", name, reference, ref2))
  os.exit(3)
end

if mode == "count" then
  print(string.format("count %d baseline %d", count, baseline))
  os.exit(0, true)
end

io.stdout:setvbuf("line")
local function close_to_reference(v)
  return type(v) == "number" and math.abs(v - reference) <= 1e-9 * math.max(1, math.abs(reference))
end
for n in list:gmatch("%d+") do
  n = tonumber(n)
  local arm = "FAULT_SHIM_ARM:" .. n
  -- the failing run: its outcome and message
  os.getenv("FAULT_SHIM_RESET")
  os.getenv(arm)
  local ok, err = pcall(work)
  os.getenv("FAULT_SHIM_DISARM")
  local spared = os.getenv("FAULT_SHIM_STATUS"):match("spared=(%d+)") ~= "0"
  local right = ok and close_to_reference(err) -- a run that went through must give the right result
  local msg = ok and (right and "" or ("result " .. tostring(err))) or (type(err) == "string" and err:gsub("%s+", " "):sub(1, 300) or "")
  if not ok and msg == "" then msg = "(no message: " .. type(err) .. ")" end
  err = nil
  -- the engine still works: a clean run gives the reference result
  local ok2, again = pcall(work)
  local recovered = ok2 and close_to_reference(again)
  local why = recovered and "yes" or ("no:" .. tostring(again):gsub("%s+", " "):sub(1, 200))
  again = nil
  -- the same failure again, measured: blocks it leaves live beyond the clean run's (the first failing
  -- run took any one-time growth: Lua's string table, lazily made caches)
  settle()
  os.getenv("FAULT_SHIM_RESET")
  os.getenv(arm)
  local ok3, err3 = pcall(work)
  os.getenv("FAULT_SHIM_DISARM")
  err3 = nil
  settle()
  local l = live()
  if l > baseline and os.getenv("FAULT_DUMP") then os.getenv("FAULT_SHIM_DUMP") end
  local outcome = spared and "spared" or ok and (right and "ok" or "wrong") or "error"
  if ok3 ~= ok then outcome = outcome .. "/unrepeatable" end
  print(string.format("point %d %s live=%d recovered=%s %s", n, outcome, l - baseline, why, msg))
end
print("done")
os.exit(0, true)
