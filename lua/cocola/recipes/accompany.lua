-- cocola.recipes.accompany — CompoNet accompaniment generation (`cocola accompany`): given a condition
-- (a sub-mix of stems) and the stems it holds, generate the stems asked for.
--   model=DIR        a pipeline folder with a ControlNet (a train_componet run's <out>/model), or an AudioLDM 2
--                    folder with controlnet= a CompoNet checkpoint (the released Lightning .ckpt, a .safetensors
--                    of its keys, or a ControlNet folder)
--   cond=FILE|DIR    one condition file (out= the output file) or a folder of them (out= a folder, one
--                    <name>.wav per input), with inputs=bass,drums outputs=guitar,piano (stem tags) or
--                    prompt="in: bass_1, drums_1; out: guitar_1" (the released prompt, verbatim);
--   tasks=FILE|DIR   or a Table 3 task file (tasks.json, or the folder holding it and input/): each task's input
--                    and prompt; out= a folder of <task id>.wav that `cocola eval-generation` reads.
-- Audio is read as 16 kHz mono; the condition is the window of `seconds` (10.23 s, the released length: 1024
-- mel frames) at `offset`; the output, the window's length, is written as 32-bit float WAV at 16 kHz (scoring
-- and FAD take files of any length: Table 3's 10.24 s inputs score against 10.23 s outputs). The prompt is
-- the released code's ("in: bass_1, drums_1; out: guitar_1"). guidance=1 by default (the released setting);
-- other scales run classifier-free guidance with the control latent given to both halves.
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local cjson = require "cjson"
local fs = require "cocola.data.fs"
local StemWindows = require "cocola.data.stem_windows"
local Pipeline = require "cocola.models.audioldm2.pipeline"
local CompoNet = require "cocola.models.audioldm2.componet"

local M = {}

M.DEFAULTS = {
  model = "", controlnet = "", cond = "", tasks = "", inputs = "", outputs = "", genre = "", prompt = "", out = "",
  seconds = 10.23, offset = 0.0, steps = 150, guidance = 1.0, conditioning_scale = 1.0, eta = 0.0, seed = 0,
  batch_size = 1, device = "cpu", autocast = "off", threads = 2,
}

M.DOCS = {
  model = "a CompoNet model folder, or an AudioLDM 2 folder with controlnet=",
  controlnet = "a CompoNet checkpoint (.ckpt / .safetensors) or ControlNet folder (default: the model folder's)",
  cond = "the condition: an audio file or a folder of them",
  tasks = "a Table 3 task file (tasks.json) or its folder, instead of cond=",
  inputs = "stem tags in the condition, comma-separated (cond=)",
  outputs = "stem tags to generate, comma-separated (cond=)",
  genre = "genre prefix of the prompt (datasets with genres)",
  prompt = "the whole prompt instead of inputs=/outputs=/genre= (cond=), e.g. \"in: bass_1; out: guitar_1, guitar_2\"",
  out = "output file (one cond file) or folder",
  seconds = "window in seconds (10.23 s: 1024 mel frames)",
  offset = "where the window starts in the condition, in seconds",
  steps = "DDIM steps (the released examples: 150)",
  guidance = "classifier-free guidance scale (1: none, the released setting)",
  conditioning_scale = "scale of the ControlNet's residuals",
  eta = "DDIM eta",
  seed = "seed of the control latent sample and the initial noise (per example: seed + its index)",
  batch_size = "examples generated together",
  device = "cpu or cuda",
  autocast = "off or bf16 (device=cuda)",
  threads = "CPU threads",
}

-- the stem tags every released CompoNet knows (MUSDB18-HQ, Slakh2100, MoisesDB)
M.RELEASED_TAGS = { "bass", "bowed_strings", "drums", "guitar", "other", "other_keys", "other_plucked", "percussion",
  "piano", "vocals", "wind" }

local function tag_list(text, what)
  local out = {}
  for t in tostring(text):gmatch("[^,]+") do
    t = t:gsub("^%s+", ""):gsub("%s+$", ""):lower():gsub("[%s%-]+", "_")
    if t ~= "" then out[#out + 1] = { tag = t } end
  end
  if #out == 0 then error(string.format("%s= is empty: name at least one stem tag (e.g. %s=bass,drums)", what, what), 0) end
  return out
end

--- prompt(inputs, outputs, genre) -> the released prompt for tag lists ("bass,drums", "guitar")
function M.prompt(inputs, outputs, genre)
  return StemWindows.prompt(tag_list(inputs, "inputs"), tag_list(outputs, "outputs"), genre)
end

-- the known stem tags of a pipeline: the tag encoder's words, or the released datasets' tags
local function check_tags(pipe, prompt)
  if pipe.tag_encoder then
    pipe.tag_encoder:tokenize(prompt) -- an unknown word is an error naming the known tags
    return
  end
  local known = {}
  for _, t in ipairs(M.RELEASED_TAGS) do known[t] = true end
  for tag in prompt:gmatch("([%w_]+)_%d+") do
    if not known[tag] then
      error(string.format("unknown stem tag '%s' in '%s' (the released CompoNet models know: %s)", tag, prompt,
        table.concat(M.RELEASED_TAGS, ", ")), 0)
    end
  end
end

--- load(cfg) -> CompoNet ready to generate
function M.load(cfg)
  if cfg.model == "" then error("model= (a CompoNet model folder or an AudioLDM 2 folder) is required", 0) end
  if not fs.is_file(cfg.model .. "/model_index.json") then
    error(string.format("model=%s is not a pipeline folder (no model_index.json)", cfg.model), 0)
  end
  local pipe = Pipeline.from_pretrained(cfg.model, { controlnet = cfg.controlnet ~= "" and cfg.controlnet or nil })
  if not pipe.controlnet then
    error(string.format("model=%s has no ControlNet (no controlnet/ in it): it is not a CompoNet; give controlnet= a CompoNet checkpoint",
      cfg.model), 0)
  end
  if cfg.device == "cuda" then pipe:cuda() end
  local componet = CompoNet.new({ pipeline = pipe, controlnet = pipe.controlnet })
  componet.controlnet:eval()
  return componet
end

-- the jobs: {{name, path, prompt, out}}
local function jobs_of(cfg)
  local jobs = {}
  if cfg.tasks ~= "" then
    if cfg.cond ~= "" then error("give cond= or tasks=, not both", 0) end
    local file = fs.is_dir(cfg.tasks) and fs.join(cfg.tasks, "tasks.json") or cfg.tasks
    if not fs.is_file(file) then error(string.format("tasks=%s: no task file %s", cfg.tasks, file), 0) end
    local dir = file:match("^(.*)/[^/]+$") or "."
    local manifest = cjson.decode(assert(recipe.read(file)))
    if type(manifest) ~= "table" or type(manifest.tasks) ~= "table" then error(file .. " is not a task file (no tasks)", 0) end
    if cfg.out == "" then error("out= (a folder for <task id>.wav) is required", 0) end
    for _, t in ipairs(manifest.tasks) do
      jobs[#jobs + 1] = { name = t.id, path = fs.join(dir, "input", t.id .. ".wav"), prompt = t.prompt,
        out = fs.join(cfg.out, t.id .. ".wav") }
    end
    return jobs, true
  end
  if cfg.cond == "" then error("cond= (a condition file or folder) or tasks= (a Table 3 task file) is required", 0) end
  if cfg.out == "" then error("out= (the output file or folder) is required", 0) end
  local prompt
  if (cfg.prompt or "") ~= "" then
    if cfg.inputs ~= "" or cfg.outputs ~= "" or cfg.genre ~= "" then
      error("give prompt= or inputs=/outputs=/genre=, not both", 0)
    end
    if not cfg.prompt:match("^.*in: .+; out: .+$") then
      error(string.format("prompt=%q is not a CompoNet prompt (\"in: <tags>; out: <tags>\", e.g. \"in: bass_1; out: guitar_1\")",
        cfg.prompt), 0)
    end
    prompt = cfg.prompt
  else
    prompt = M.prompt(cfg.inputs, cfg.outputs, cfg.genre)
  end
  if fs.is_dir(cfg.cond) then
    local names = {}
    for name in require("lfs").dir(cfg.cond) do
      if name:match("%.[Ww][Aa][Vv]$") or name:match("%.[Ff][Ll][Aa][Cc]$") or name:match("%.[Oo][Gg][Gg]$") then
        names[#names + 1] = name
      end
    end
    table.sort(names)
    if #names == 0 then error(string.format("cond=%s holds no audio files (.wav, .flac, .ogg)", cfg.cond), 0) end
    for _, name in ipairs(names) do
      jobs[#jobs + 1] = { name = name, path = fs.join(cfg.cond, name), prompt = prompt,
        out = fs.join(cfg.out, (name:gsub("%.[^.]+$", "")) .. ".wav") }
    end
    return jobs, true
  end
  if not fs.is_file(cfg.cond) then error(string.format("cond=%s: no such file or folder", cfg.cond), 0) end
  return { { name = cfg.cond, path = cfg.cond, prompt = prompt, out = cfg.out } }, false
end

-- the condition window of a file (16 kHz mono)
local function read_condition(path, cfg, window)
  local info = cocola.audio.info(path)
  local length = math.floor(info.frames / info.rate * 16000 + 0.5)
  local need = math.floor(cfg.offset * 16000 + 0.5) + window
  if length < need then
    error(string.format("%s: %.3f s of audio, shorter than the window of %.2f s%s (the released model's length)", path,
      length / 16000, cfg.seconds, cfg.offset > 0 and string.format(" at offset %.2f s", cfg.offset) or ""), 0)
  end
  local wave = cocola.audio.load(path, { sr = 16000, mono = true, offset = cfg.offset, duration = window / 16000 }):view(-1)
  return wave:narrow(1, 1, window)
end

--- run(cfg[, log]) -> list of written files
function M.run(cfg, log)
  log = log or print
  if cfg.device ~= "cpu" and cfg.device ~= "cuda" then error("device must be cpu or cuda", 0) end
  if cfg.autocast ~= "off" and cfg.autocast ~= "bf16" then error("autocast must be off or bf16", 0) end
  if math.type(cfg.steps) ~= "integer" or cfg.steps < 1 then error("steps must be a positive integer", 0) end
  if math.type(cfg.batch_size) ~= "integer" or cfg.batch_size < 1 then error("batch_size must be a positive integer", 0) end
  if not (cfg.guidance >= 1) then error("guidance must be at least 1", 0) end
  if not (cfg.seconds > 0) or not (cfg.offset >= 0) then error("seconds must be positive and offset non-negative", 0) end
  cocola.set_num_threads(cfg.threads)
  local jobs, folder = jobs_of(cfg)
  local componet = M.load(cfg)
  for _, j in ipairs(jobs) do check_tags(componet.pipeline, j.prompt) end
  if folder and not os.execute(string.format("mkdir -p '%s'", cfg.out:gsub("'", "'\\''"))) then
    error("cannot create the folder " .. cfg.out, 0)
  end
  local window = math.floor(cfg.seconds * 16000 + 1e-9)
  log(string.format("%d condition%s, window %.2f s, %d DDIM steps, guidance %g, seed %d", #jobs, #jobs == 1 and "" or "s",
    cfg.seconds, cfg.steps, cfg.guidance, cfg.seed))
  local written = {}
  for first = 1, #jobs, cfg.batch_size do
    local last = math.min(#jobs, first + cfg.batch_size - 1)
    local waves, prompts = {}, {}
    for i = first, last do
      waves[#waves + 1], prompts[#prompts + 1] = read_condition(jobs[i].path, cfg, window):unsqueeze(1), jobs[i].prompt
    end
    local audio = componet:generate(cocola.cat(waves, 1), prompts, { steps = cfg.steps, guidance_scale = cfg.guidance,
      seed = cfg.seed + first - 1, eta = cfg.eta, conditioning_scale = cfg.conditioning_scale,
      autocast = cfg.autocast ~= "off" and cfg.autocast or nil,
      progress = function(k, n) recipe.progress("accompany", (first - 1) * n + k, #jobs * n, jobs[first].name) end })
    audio = audio:float():to("cpu")
    for i = first, last do
      local row = audio:narrow(1, i - first + 1, 1)
      cocola.audio.save(jobs[i].out, row, 16000, { subtype = "float" })
      written[#written + 1] = jobs[i].out
    end
  end
  recipe.end_progress()
  log(string.format("%d accompaniment%s written%s", #written, #written == 1 and "" or "s",
    folder and (" to " .. cfg.out) or (": " .. written[1])))
  return written
end

function M.main(args, name)
  return recipe.main(name or "accompany", M.DEFAULTS, function(cfg)
    recipe.log_config(cfg)
    M.run(cfg)
  end, args, M.DOCS)
end

return M
