-- recipes/export_model.lua — turns a training run's model into the bundled form: float16 (or
-- dtype=float32) safetensors with the run's facts in the metadata, plus the run's settings and metrics beside it
-- (<out without .safetensors>.config.jsonl / .metrics.jsonl). Checks that the float16 model's
-- embeddings match the float32 one's on a few example windows and prints the difference.
-- recalibrate_batches = N > 0 first re-estimates the BatchNorm running statistics from N training
-- batches of <root> (cocola.recipes.train.recalibrate_batchnorm), for a model taken mid-run.
-- Usage: lua5.4 recipes/export_model.lua run=runs/bundled [from=best.safetensors]
--        [out=assets/cocola_midi_hpss.safetensors] [examples=assets/examples/cond]
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local scoring = require "cocola.scoring"
local fs = require "cocola.data.fs"

local DEFAULTS = {
  run = "runs/bundled", from = "best.safetensors", out = "assets/cocola_midi_hpss.safetensors",
  examples = "assets/examples/cond", note = "", recalibrate_batches = 0, layout = "slakh",
  root = "data/midi_stems", batch_size = 32, input = "hpss", seed = 0, dtype = "float16",
}

local function copy(src, dst)
  local text = recipe.read(src)
  if not text then return false end
  recipe.write_atomic(dst, text)
  return true
end

local function run(cfg)
  if cfg.dtype ~= "float16" and cfg.dtype ~= "float32" then
    error("dtype must be float16 or float32, got '" .. tostring(cfg.dtype) .. "'", 0)
  end
  recipe.log_config(cfg)
  local source = fs.join(cfg.run, cfg.from)
  local _, meta = cocola.load(source)
  meta = meta or {}
  -- the float32 model: what is exported, and the reference of the check below
  local full = cocola.models.cocola.from_checkpoint(source)
  if cfg.recalibrate_batches > 0 then
    local Sampler = require "cocola.data.sampler"
    local tracks = require("cocola.recipes.train").open_split(cfg.layout, cfg.root, "train") -- root may be "a,b"
    local sampler = Sampler.new(tracks, { batch_size = cfg.batch_size, seed = cfg.seed + 2 })
    require("cocola.recipes.train").recalibrate_batchnorm(full, sampler, cfg.recalibrate_batches)
    meta.batchnorm_recalibrated = string.format("%d batches of %d", cfg.recalibrate_batches, cfg.batch_size)
  end
  local steps = 0
  local metrics = fs.join(cfg.run, "metrics.jsonl")
  if fs.is_file(metrics) then
    for line in io.lines(metrics) do
      local s = tonumber(line:match('"step":(%d+)'))
      if s and line:find('"loss"', 1, true) then steps = math.max(steps, s) end
    end
  end
  -- a training checkpoint folder knows its own step (metrics.jsonl may run past it)
  local state_text = recipe.read(fs.join(cfg.run, (cfg.from:match("^(.*)/[^/]+$") or "."), "state.json"))
  if state_text then steps = math.tointeger(require("cjson").decode(state_text).step) or steps end
  -- so does the best model (the step of its validation)
  if meta.step then steps = math.tointeger(tonumber(meta.step)) or steps end
  meta.source = source
  meta.steps_at_export = tostring(steps)
  if cfg.note ~= "" then meta.note = cfg.note end
  -- float32: the weights as trained (save keeps their dtype)
  cocola.save(cfg.out, full:state_dict(), { dtype = cfg.dtype == "float16" and "float16" or nil, metadata = meta })
  local base = cfg.out:gsub("%.safetensors$", "")
  copy(fs.join(cfg.run, "config.jsonl"), base .. ".config.jsonl")
  copy(metrics, base .. ".metrics.jsonl")

  -- float16 against float32 on real windows
  local half = cocola.models.cocola.from_checkpoint(cfg.out)
  local waves = {}
  for _, f in ipairs(fs.files(cfg.examples, scoring.AUDIO_EXTENSIONS)) do
    waves[#waves + 1] = cocola.audio.load(fs.join(cfg.examples, f), { sr = 16000, mono = true, duration = 5 }):view(-1)
  end
  if #waves > 0 then
    local x = full:features(cocola.stack(waves, 1))
    local a = cocola.no_grad(function() return full:embed(x) end)
    local b = cocola.no_grad(function() return half:embed(x) end)
    local rel = ((a - b) * (a - b)):sum():sqrt():item() / (a * a):sum():sqrt():item()
    print(string.format(cfg.dtype .. " vs float32 embeddings of %d windows: relative difference %.2e", #waves, rel))
  end
  print(string.format("wrote %s (%s, %d training steps)", cfg.out, full:extra_repr(), steps))
end

os.exit(recipe.main("export_model", DEFAULTS, run, arg))
