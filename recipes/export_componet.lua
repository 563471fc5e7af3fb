-- recipes/export_componet.lua — turns a CompoNet trained here (cocola train-componet's <run>/model: its
-- ControlNet beside links to the phase-1 pipeline of cocola train-ldm) into one self-contained pipeline
-- folder for assets/: every component copied (links followed), weights as float16 safetensors (widened to
-- float32 when loaded), configs as they are; the training runs' settings and metrics under training/
-- (<run name>.config.jsonl, .metrics.jsonl); and one Table 3 task as the demo's example under example/
-- (input.flac, ground_truth.flac, random.flac, example.json with its prompt and source). Then checks that
-- the float16 folder generates what the float32 model does from the same seed (check_steps DDIM steps on
-- the example) and prints the difference. The folder is written beside out and renamed into place.
-- Usage: lua5.4 recipes/export_componet.lua [run=runs/componet] [out=assets/componet]
--        [runs=runs/ldm_vae,runs/ldm,runs/componet] [tasks=runs/tasks] [task=task_0011] [check_steps=10]
--        [seconds=10.23: the model's window]
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local serialize = require "cocola.serialize"
local fs = require "cocola.data.fs"
local lfs = require "lfs"
local cjson = require "cjson"
local accompany = require "cocola.recipes.accompany"

local DEFAULTS = {
  run = "runs/componet", out = "assets/componet", runs = "runs/ldm_vae,runs/ldm,runs/componet",
  tasks = "runs/tasks", task = "task_0011", check_steps = 10, seconds = 10.23, threads = 2,
}

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- copies a component folder: safetensors re-saved as float16, every other file as it is
local function copy_component(src, dst, log)
  fs.mkdir_p(dst)
  local bytes = 0
  for name in lfs.dir(src) do
    if name ~= "." and name ~= ".." then
      local from, to = src .. "/" .. name, dst .. "/" .. name
      if fs.is_dir(from) then
        bytes = bytes + copy_component(from, to, log)
      elseif name:match("%.safetensors$") then
        local tensors, metadata = serialize.load(from)
        serialize.save(to, tensors, { dtype = "float16", metadata = metadata })
        bytes = bytes + lfs.attributes(to, "size")
      else
        local text = fs.read(from)
        if not text then error("cannot read " .. from, 0) end
        recipe.write_atomic(to, text)
        bytes = bytes + #text
      end
    end
  end
  return bytes
end

local function copy_file(from, to)
  local text = fs.read(from)
  if not text then error("cannot read " .. from, 0) end
  recipe.write_atomic(to, text)
end

-- the example: a task's input, target and Random sub-mixes as FLAC, its prompt and source
local function copy_example(cfg, dir)
  local text = fs.read(cfg.tasks .. "/tasks.json")
  if not text then error("no task file " .. cfg.tasks .. "/tasks.json", 0) end
  local manifest = cjson.decode(text)
  local task
  for _, t in ipairs(manifest.tasks) do
    if t.id == cfg.task then task = t end
  end
  if not task then error(string.format("task=%s is not in %s/tasks.json", cfg.task, cfg.tasks), 0) end
  fs.mkdir_p(dir)
  for from, to in pairs({ input = "input", target = "ground_truth", random = "random" }) do
    local wave, rate = cocola.audio.load(string.format("%s/%s/%s.wav", cfg.tasks, from, task.id))
    cocola.audio.save(string.format("%s/%s.flac", dir, to), wave, rate)
  end
  recipe.write_atomic(dir .. "/example.json", cjson.encode({
    prompt = task.prompt, track = task.track, offset = task.offset, seconds = task.seconds, task = task.id,
    window = cfg.seconds,
    source = "Table 3 task " .. task.id .. " of " .. cfg.tasks .. " (the test split of data/midi_stems, rendered here "
      .. "from Debian's MIDI songs with FluidSynth and FluidR3_GM)",
    files = { input = "input.flac", ground_truth = "ground_truth.flac", random = "random.flac" },
  }))
  return task
end

local function run(cfg)
  recipe.log_config(cfg)
  cocola.set_num_threads(cfg.threads)
  local model = cfg.run .. "/model"
  local index_text = fs.read(model .. "/model_index.json")
  if not index_text then error(string.format("run=%s has no model (no %s/model_index.json)", cfg.run, model), 0) end
  local index = cjson.decode(index_text)
  if not index.controlnet then error(string.format("%s has no ControlNet: not a CompoNet", model), 0) end
  local tmp = cfg.out .. ".tmp"
  os.execute("rm -rf " .. shell_quote(tmp))
  fs.mkdir_p(tmp)
  local total = 0
  for key, value in pairs(index) do
    if type(value) == "table" and fs.is_dir(model .. "/" .. key) then
      local bytes = copy_component(model .. "/" .. key, tmp .. "/" .. key)
      print(string.format("%-14s %8.1f MB", key, bytes / 1e6))
      total = total + bytes
    end
  end
  copy_file(model .. "/model_index.json", tmp .. "/model_index.json")
  fs.mkdir_p(tmp .. "/training")
  for dir in cfg.runs:gmatch("[^,]+") do
    local name = dir:gsub("/+$", ""):match("[^/]+$")
    for _, what in ipairs({ "config.jsonl", "metrics.jsonl" }) do
      copy_file(dir .. "/" .. what, string.format("%s/training/%s.%s", tmp, name, what))
    end
  end
  local task = copy_example(cfg, tmp .. "/example")
  print(string.format("weights %.1f MB (float16); example %s: %s", total / 1e6, task.id, task.prompt))
  -- float16 against float32 from the same seed
  local function generate(dir)
    local componet = accompany.load({ model = dir, controlnet = "", device = "cpu" })
    local wave = cocola.audio.load(tmp .. "/example/input.flac", { sr = 16000, mono = true }):view(-1)
    wave = wave:narrow(1, 1, math.floor(cfg.seconds * 16000 + 1e-9)):unsqueeze(1)
    return componet:generate(wave, { task.prompt }, { steps = cfg.check_steps, seed = 0 }):float()
  end
  local full, half = generate(model), generate(tmp)
  local diff = full:sub(half):abs():max():item()
  local rms = full:pow(2):mean():sqrt():item()
  print(string.format("float16 against float32, %d DDIM steps: max |diff| %.3g, audio RMS %.3g", cfg.check_steps, diff, rms))
  os.execute("rm -rf " .. shell_quote(cfg.out))
  assert(os.rename(tmp, cfg.out))
  print("written " .. cfg.out)
end

os.exit(recipe.main("export_componet", DEFAULTS, run, arg))
