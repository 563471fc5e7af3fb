-- tests/chaos/chaos.lua — kill anywhere: runs `cocola train` (train_cocola), `cocola prepare` and the
-- generative trainers (`cocola train-ldm` stage unet: target ldm; `cocola train-componet`: componet;
-- `cocola train-msdm`: msdm)
-- on tiny synthetic data, once uninterrupted as the reference, then for each seeded trial starts the same
-- run as its own process group, SIGKILLs the whole group after a random delay spread over the clean
-- run's duration, checks every output file (safetensors load with the declared sizes, JSON and every
-- JSONL line parse, audio decodes, PNG plots end), resumes (more kills, up to `kills` per trial) until
-- the run completes, and compares: per-step losses in metrics.jsonl and the final weights equal the
-- clean run's (train; ldm and componet also the checkpoint's files and the model folder's weights,
-- byte for byte); every prepared file is byte-identical to the clean run's (prepare); no temporary
-- file is left once a run completes.
-- Usage (from the repository root, cocola on the Lua paths):
--   lua5.4 tests/chaos/chaos.lua [seed=1] [trials=20] [kills=3] [targets=train,prepare,ldm,componet,msdm] [keep=false]
--     [plots=true: the ldm target draws its curves after every start]
-- Prints per target trials, kills, files checked, identical resumed runs, then "N passed, N failed";
-- exits non-zero on a failure. As a module (require), M.run(opts) returns the summary table.
local cocola = require "cocola"
local fs = require "cocola.data.fs"
local cjson = require "cjson"
local lfs = require "lfs"

local M = {}

package.path = "./tests/lib/?.lua;" .. package.path
local shell = require "test_shell"
local q, read = shell.quote, shell.read

local LUA = os.getenv("LUA") or "lua5.4"

local function now()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("l"))
  p:close()
  return t
end

-- every regular file under dir, as paths relative to dir, sorted
local function listing(dir)
  local out = {}
  local function walk(d, rel)
    for name in lfs.dir(d) do
      if name ~= "." and name ~= ".." then
        local p, r = d .. "/" .. name, rel == "" and name or rel .. "/" .. name
        local mode = lfs.attributes(p, "mode")
        if mode == "directory" then walk(p, r) elseif mode == "file" then out[#out + 1] = r end
      end
    end
  end
  if lfs.attributes(dir, "mode") == "directory" then walk(dir, "") end
  table.sort(out)
  return out
end

-- runs argv (a shell-quoted command) in its own process group; with delay, SIGKILLs the group after
-- delay seconds. Returns true when the command ran to completion with status 0, false when killed,
-- and raises when it failed on its own.
local function spawn(cmd, log, delay)
  -- the children find cocola where this process found it
  cmd = string.format("env LUA_PATH=%s LUA_CPATH=%s %s", q(package.path .. ";;"), q(package.cpath .. ";;"), cmd)
  local script
  if delay then
    -- job control (set -m) puts the background job in a process group of its own, led by $P
    script = "bash -c 2>/dev/null " .. q(string.format("set -m; %s >>%s 2>&1 & P=$!; sleep %.3f; kill -KILL -- -$P 2>/dev/null; wait $P; echo $?",
      cmd, q(log), delay))
  else
    script = string.format("%s >>%s 2>&1; echo $?", cmd, q(log))
  end
  local p = io.popen(script)
  local rc = tonumber(p:read("l"))
  p:close()
  if rc == 0 then return true end
  if rc == 137 and delay then
    -- the group is gone: no worker outlives its parent
    return false
  end
  error(string.format("command failed (status %s): %s\n%s", tostring(rc), cmd, read(log) or ""), 0)
end

-- checks one output file; returns nil or a complaint
local function check_file(path)
  local ok, err
  if path:match("%.safetensors$") then
    local data = read(path)
    if #data < 8 then return "safetensors shorter than its header length" end
    local n = string.unpack("<I8", data)
    if 8 + n > #data then return "safetensors header truncated" end
    local hok, header = pcall(cjson.decode, data:sub(9, 8 + n))
    if not hok then return "safetensors header is not JSON" end
    local size = 0
    for k, v in pairs(header) do
      if k ~= "__metadata__" then size = math.max(size, v.data_offsets[2]) end
    end
    if 8 + n + size ~= #data then return string.format("safetensors of %d bytes declares %d", #data, 8 + n + size) end
    ok, err = pcall(cocola.load, path)
  elseif path:match("%.jsonl$") then
    local text = read(path)
    if #text > 0 and text:sub(-1) ~= "\n" then return "last JSONL line incomplete" end
    for line in text:gmatch("[^\n]*\n") do
      local lok = pcall(cjson.decode, line)
      if not lok then return "JSONL line does not parse: " .. line:sub(1, 80) end
    end
    ok = true
  elseif path:match("%.json$") then
    ok, err = pcall(cjson.decode, read(path))
  elseif path:match("%.flac$") or path:match("%.wav$") then
    ok, err = pcall(cocola.audio.load, path)
  elseif path:match("%.png$") then
    local data = read(path)
    ok = data:sub(1, 8) == "\137PNG\r\n\26\n" and data:sub(-8, -5) == "IEND"
    err = "PNG truncated"
  else
    ok = true
  end
  if not ok then return tostring(err) end
end

local function is_temporary(rel)
  local base = rel:match("[^/]*$")
  return rel:match("%.tmp") ~= nil or rel:match("%.old/") ~= nil or rel:match("%.old$") ~= nil
    or base:match("^%.prepare%-jobs") ~= nil
end

-- checks every file under dir; temporaries are allowed mid-run (a resume cleans them) but their
-- contents are not checked. Returns the count checked; adds complaints to `problems`
local function check_tree(dir, problems, final)
  local n = 0
  for _, rel in ipairs(listing(dir)) do
    if is_temporary(rel) then
      if final then problems[#problems + 1] = "temporary left after completion: " .. rel end
    else
      n = n + 1
      local bad = check_file(dir .. "/" .. rel)
      if bad then problems[#problems + 1] = rel .. ": " .. bad end
    end
  end
  return n
end

---------------------------------------------------------------------------------------------- data

local RATE = 16000

local function make_stems(root, seconds, names)
  for _, split in ipairs({ "train", "validation" }) do
    for t = 1, 3 do
      for s = 1, 3 do
        local rows = {}
        for i = 1, math.floor((seconds or 2) * RATE) do
          rows[i] = 0.2 * math.sin(2 * math.pi * (100 * s + 13 * t + (split == "train" and 0 or 5)) * i / RATE)
            * (1 + 0.5 * math.sin(2 * math.pi * s * i / RATE))
        end
        local dir = string.format("%s/%s/track%d", root, split, t)
        fs.mkdir_p(dir)
        cocola.audio.save(dir .. "/" .. (names and names[s] or "stem" .. s) .. ".wav", cocola.tensor({ rows }), RATE,
          { subtype = "float" })
      end
    end
  end
end

-- a source dataset for prepare: 44.1 kHz stereo and 22.05 kHz mono stems (resampled)
local function make_sources(root)
  for t = 1, 4 do
    for s = 1, 3 do
      local rate, channels = s == 2 and 22050 or 44100, s == 2 and 1 or 2
      local rows = {}
      for c = 1, channels do
        local row = {}
        local f = 110 * s + 37 * c + 11 * t
        for i = 1, rate do row[i] = 0.3 * math.sin(2 * math.pi * f * i / rate) end
        rows[c] = row
      end
      local dir = string.format("%s/%s/song%d", root, t <= 3 and "train" or "validation", t)
      fs.mkdir_p(dir)
      cocola.audio.save(dir .. "/stem" .. s .. ".wav", cocola.tensor(rows), rate, { subtype = "float" })
    end
  end
end

------------------------------------------------------------------------------------------- targets

local TARGETS = {}

TARGETS.train = {
  setup = function(work)
    local root = work .. "/stems"
    make_stems(root)
    return root
  end,
  args = function(root, out)
    return { "layout=stems_folder", "root=" .. root, "valid_split=validation", "out=" .. out, "batch_size=2",
      "window=1.0", "valid_batches=1", "checkpoint_every=1", "seed=3", "threads=1", "plots=false",
      "max_steps=6", "embedding_dim=16" }
  end,
  command = function(self, root, out)
    local parts = { LUA, "bin/cocola", "train" }
    for _, a in ipairs(self.args(root, out)) do parts[#parts + 1] = q(a) end
    -- a run with a checkpoint resumes from it; without one, it starts again
    if lfs.attributes(out .. "/last", "mode") or lfs.attributes(out .. "/last.old", "mode") then
      parts[#parts + 1] = q("resume=" .. out .. "/last")
    end
    return table.concat(parts, " ")
  end,
  -- the comparison: per-step loss lines of metrics.jsonl and the final model/optimizer bytes
  compare = function(clean, out)
    local function steps(dir)
      local s = {}
      for line in (read(dir .. "/metrics.jsonl") or ""):gmatch("[^\n]+") do s[#s + 1] = line end
      return s
    end
    local a, b = steps(clean), steps(out)
    if #a ~= #b then return string.format("metrics.jsonl has %d lines, clean %d", #b, #a) end
    -- each record field for field, exactly (the key order of a line is the encoder's)
    for i = 1, #a do
      local ra, rb = cjson.decode(a[i]), cjson.decode(b[i])
      for k, v in pairs(ra) do
        if rb[k] ~= v then return "metrics line " .. i .. " differs: " .. b[i] .. " vs " .. a[i] end
      end
      for k in pairs(rb) do
        if ra[k] == nil then return "metrics line " .. i .. " differs: " .. b[i] .. " vs " .. a[i] end
      end
    end
    for _, f in ipairs({ "last/model.safetensors", "last/optimizer.safetensors", "best.safetensors" }) do
      if read(clean .. "/" .. f) ~= read(out .. "/" .. f) then return f .. " differs from the clean run's" end
    end
  end,
}

-- the generative trainers (cocola.recipes.diffusion_trainer): a tiny latent diffusion model's U-Net stage
-- (ldm) and CompoNet's ControlNet on it (componet), on 3 s stems; the setup trains the tiny VAE and U-Net
-- they start from (one step each)
local TINY_LDM = { "layout=stems_folder", "valid_split=validation", "seconds=2.55", "vae_seconds=0.95",
  "vae_channels=4,8,8", "vae_groups=4", "latent_channels=4", "unet_channels=8,16,16", "unet_groups=4", "heads=2",
  "text_dim=8", "tag_dim=8", "batch_size=2", "valid_batches=1", "valid_every=3", "log_every=1", "scale_batches=1",
  "threads=1", "loaders=1", "griffin_lim_iters=4", "checkpoint_every=1" }

local function cocola_command(subcommand, args)
  local parts = { LUA, "bin/cocola", subcommand }
  for _, a in ipairs(args) do parts[#parts + 1] = q(a) end
  return table.concat(parts, " ")
end

local function diffusion_setup(work, with_unet)
  local root = work .. "/stems"
  make_stems(root, 3)
  local base = work .. "/base"
  local function run(extra)
    local args = table.move(TINY_LDM, 1, #TINY_LDM, 2, { "root=" .. root })
    for _, a in ipairs(extra) do args[#args + 1] = a end
    spawn(cocola_command("train-ldm", args), work .. "/setup.log")
  end
  run({ "stage=vae", "out=" .. base .. "/vae", "max_steps=1", "plots=false" })
  if with_unet then
    run({ "stage=unet", "vae=" .. base .. "/vae/model", "out=" .. base .. "/ldm", "max_steps=1", "plots=false" })
  end
  return { root = root, base = base }
end

local function same_value(x, y)
  if type(x) ~= "table" or type(y) ~= "table" then return x == y end
  for k, v in pairs(x) do if not same_value(v, y[k]) then return false end end
  for k in pairs(y) do if x[k] == nil then return false end end
  return true
end

-- a diffusion run starts, or resumes from its checkpoint when it has one
local function diffusion_command(subcommand, args, out)
  if lfs.attributes(out .. "/last", "mode") or lfs.attributes(out .. "/last.old", "mode") then
    return cocola_command(subcommand, { "resume=" .. out .. "/last", "threads=1", "loaders=1" })
  end
  return cocola_command(subcommand, args)
end

-- per-step metrics field for field (but the wall time of a step and the prompt cache's size, which a
-- resumed process starts again), the checkpoint's files and the model folder's weights, byte for byte
local function diffusion_compare(clean, out, weights)
  local function lines(dir)
    local s = {}
    for line in (read(dir .. "/metrics.jsonl") or ""):gmatch("[^\n]+") do s[#s + 1] = cjson.decode(line) end
    return s
  end
  local a, b = lines(clean), lines(out)
  if #a ~= #b then return string.format("metrics.jsonl has %d lines, clean %d", #b, #a) end
  local ignore = { seconds = true, prompts_cached = true }
  for i = 1, #a do
    for _, pair in ipairs({ { a[i], b[i] }, { b[i], a[i] } }) do
      for k, v in pairs(pair[1]) do
        if not ignore[k] and pair[2][k] ~= v then
          return string.format("metrics line %d differs in %s: %s vs %s", i, k, tostring(b[i][k]), tostring(a[i][k]))
        end
      end
    end
  end
  for _, rel in ipairs(listing(clean .. "/last")) do
    local x, y = read(clean .. "/last/" .. rel), read(out .. "/last/" .. rel)
    -- state.json as values (cjson writes a table's keys in the order of the process's hash)
    local same = x == y or (rel:match("%.json$") and y and same_value(cjson.decode(x), cjson.decode(y)))
    if not same then return "last/" .. rel .. " differs from the clean run's" end
  end
  for _, f in ipairs(weights) do
    if read(clean .. "/" .. f) ~= read(out .. "/" .. f) then return f .. " differs from the clean run's" end
  end
end

TARGETS.ldm = {
  setup = function(work) return diffusion_setup(work, false) end,
  command = function(_, data, out)
    -- its curves drawn after every start (M.run's plots; a kill while gnuplot draws leaves cocola.plot's
    -- data files in the system's temporary folder, where nobody removes them)
    local args = table.move(TINY_LDM, 1, #TINY_LDM, 7, { "root=" .. data.root, "stage=unet",
      "vae=" .. data.base .. "/vae/model", "out=" .. out, "max_steps=6", "plots=" .. tostring(M.plots) })
    return diffusion_command("train-ldm", args, out)
  end,
  compare = function(clean, out) return diffusion_compare(clean, out, { "model/unet/diffusion_pytorch_model.safetensors",
    "model/tag_encoder/diffusion_pytorch_model.safetensors" }) end,
}

TARGETS.componet = {
  setup = function(work) return diffusion_setup(work, true) end,
  command = function(_, data, out)
    return diffusion_command("train-componet", { "layout=stems_folder", "valid_split=validation", "root=" .. data.root,
      "model=" .. data.base .. "/ldm/model", "out=" .. out, "seconds=2.55", "batch_size=2", "valid_batches=1",
      "valid_every=3", "log_every=1", "checkpoint_every=1", "threads=1", "loaders=1", "plots=false", "max_steps=6" }, out)
  end,
  compare = function(clean, out) return diffusion_compare(clean, out, { "model/controlnet/diffusion_pytorch_model.safetensors" }) end,
}

-- MSDM (cocola.recipes.train_msdm): a tiny 1-D U-Net on bass, drums and piano stems
TARGETS.msdm = {
  setup = function(work)
    local root = work .. "/stems"
    make_stems(root, 1, { "bass", "drums", "piano" })
    return root
  end,
  command = function(_, root, out)
    return diffusion_command("train-msdm", { "layout=stems_folder", "valid_split=validation", "root=" .. root,
      "out=" .. out, "length=1024", "channels=8", "multipliers=1,2", "factors=2", "num_blocks=1", "attentions=0",
      "patch_factor=2", "attention_heads=2", "attention_features=4", "resnet_groups=4", "batch_size=2",
      "valid_batches=1", "valid_every=3", "log_every=1", "checkpoint_every=1", "threads=1", "plots=false",
      "max_steps=6" }, out)
  end,
  compare = function(clean, out) return diffusion_compare(clean, out, { "model/model.safetensors" }) end,
}

TARGETS.prepare = {
  setup = function(work)
    local root = work .. "/sources"
    make_sources(root)
    return root
  end,
  command = function(_, root, out)
    return table.concat({ LUA, "recipes/prepare.lua", "layout=stems_folder", q("root=" .. root), q("out=" .. out),
      "splits=train,validation", "workers=2" }, " ")
  end,
  compare = function(clean, out)
    local a, b = listing(clean), listing(out)
    if table.concat(a, "\n") ~= table.concat(b, "\n") then
      return "file listing differs: " .. table.concat(b, ",") .. " vs " .. table.concat(a, ",")
    end
    for _, rel in ipairs(a) do
      if read(clean .. "/" .. rel) ~= read(out .. "/" .. rel) then return rel .. " differs from the clean run's" end
    end
  end,
}

----------------------------------------------------------------------------------------------- run

function M.run(opts)
  opts = opts or {}
  local seed, trials, max_kills = opts.seed or 1, opts.trials or 20, opts.kills or 3
  M.plots = opts.plots ~= false
  local say = opts.log or print
  local work = opts.work or shell.tmpdir()
  fs.mkdir_p(work)
  local summary = { passed = 0, failed = 0, targets = {}, failures = {} }
  local rng_state = seed
  local function random() -- a small seeded LCG, independent of Lua's math.random
    rng_state = (rng_state * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff
    return (rng_state >> 11) / (1 << 52)
  end
  for _, name in ipairs(opts.targets or { "train", "prepare", "ldm", "componet", "msdm" }) do
    local target = assert(TARGETS[name], "chaos: unknown target " .. name)
    local dir = work .. "/" .. name
    fs.mkdir_p(dir)
    local root = target.setup(dir)
    local clean = dir .. "/clean"
    local log = dir .. "/log.txt"
    local t0 = now()
    spawn(target:command(root, clean), log)
    local duration = now() - t0
    local stats = { trials = 0, kills = 0, files = 0, identical = 0, duration = duration }
    summary.targets[name] = stats
    local problems = {}
    stats.files = stats.files + check_tree(clean, problems, true)
    for t = 1, trials do
      local out = string.format("%s/trial%d", dir, t)
      local trial_problems = {}
      local done, kills = false, 0
      while not done do
        if kills < max_kills then
          local delay = (0.05 + 0.95 * random()) * duration
          done = spawn(target:command(root, out), log, delay)
          if not done then
            kills = kills + 1
            stats.files = stats.files + check_tree(out, trial_problems, false)
          end
        else
          done = spawn(target:command(root, out), log)
        end
      end
      stats.kills = stats.kills + kills
      stats.trials = stats.trials + 1
      stats.files = stats.files + check_tree(out, trial_problems, true)
      local diff = target.compare(clean, out)
      if diff then trial_problems[#trial_problems + 1] = diff end
      if #trial_problems == 0 then
        stats.identical = stats.identical + 1
        summary.passed = summary.passed + 1
        if not opts.keep then os.execute("rm -rf " .. q(out)) end
      else
        summary.failed = summary.failed + 1
        for _, p in ipairs(trial_problems) do
          summary.failures[#summary.failures + 1] = string.format("%s trial %d (%d kills): %s", name, t, kills, p)
          say(summary.failures[#summary.failures])
        end
      end
    end
    for _, p in ipairs(problems) do
      summary.failed = summary.failed + 1
      summary.failures[#summary.failures + 1] = name .. " clean run: " .. p
    end
    say(string.format("%-8s clean run %.1f s; %d trials, %d kills, %d files checked, %d of %d resumed runs identical",
      name, duration, stats.trials, stats.kills, stats.files, stats.identical, stats.trials))
  end
  if not opts.keep then os.execute("rm -rf " .. q(work)) end
  say(string.format("%d passed, %d failed", summary.passed, summary.failed))
  return summary
end

if not pcall(debug.getlocal, 4, 1) then
  -- run as a script
  local opts = { seed = 1, trials = 20, kills = 3 }
  for _, a in ipairs(arg) do
    local k, v = a:match("^([%w_]+)=(.*)$")
    assert(k, "chaos: arguments are key=value, got " .. a)
    if k == "targets" then
      opts.targets = {}
      for t in v:gmatch("[^,]+") do opts.targets[#opts.targets + 1] = t end
    elseif k == "keep" then
      opts.keep = v == "true"
    elseif k == "plots" then
      opts.plots = v ~= "false"
    elseif k == "work" then
      opts.work = v
    else
      opts[k] = assert(math.tointeger(tonumber(v)), "chaos: " .. k .. " must be an integer")
    end
  end
  local summary = M.run(opts)
  os.exit(summary.failed == 0 and 0 or 1)
end

return M
