-- cocola.recipes.msdm_generate — MSDM accompaniments for the paper's Table 3 by imputation
-- (cocola.models.msdm.impute: the generation notebook's churn sampler, the given stems kept).
--   model=DIR|FILE  an MSDM model folder (cocola.recipes.train_msdm's <out>/model) or a released checkpoint
--                   (.ckpt / .safetensors, read by cocola.models.msdm.checkpoint with MSDM's data settings)
--   tasks=DIR       a task folder of cocola.recipes.generation_tasks (tasks.json); the tracks are read again
--                   from the dataset (root=, layout=, split=; by default the task file's settings)
-- Per task: the input stems (by name) are read from the track at task.offset for task.seconds at the model's
-- rate (22.05 kHz), summed into the channels of their types (bass, drums, guitar, piano: the lowercased tag),
-- and zero-padded to the model's window (262144 samples, 11.89 s; a 10.24 s task fills its start). The mask
-- gives the input types (their padded tail as silence too); the target types are generated; the other types
-- are given as silence (others=silent: the task's music has no such stem) or generated and left out
-- (others=generate). A candidate is the sum of the target channels, resampled to 16 kHz and cut to the task's
-- length (its target file's length when there is one). candidates=12 per task (the paper's rule: the one with
-- the largest L2 norm is kept): pick=all writes <out>/<id>_<k>.wav for `cocola eval-generation
-- pick=largest_l2`, pick=largest_l2 keeps that one here as <out>/<id>.wav. Sampling: steps 256, s_churn 10,
-- num_resamples 1, Karras schedule sigma 1e-4 .. 20, rho 7 (the notebook's inpainting settings); the
-- candidates of a task are drawn batch_size at a time, batch j seeded with seed + 1000003 * task + j.
-- A task with an input or target type that is not one of the four stems, or a type both given and wanted,
-- is an error naming it, or skipped with missing=skip (the log and <out>/generation.json list the skipped).
-- Output: float WAV at 16 kHz; <out>/generation.json: the settings and, per task, given, generated and silent
-- types, the seeds, the candidates' L2 norms and the pick.
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local cjson = require "cjson"
local fs = require "cocola.data.fs"
local msdm = require "cocola.models.msdm"

local M = {}

M.OUT_RATE = 16000

M.DEFAULTS = {
  model = "", tasks = "", root = "", layout = "", split = "", out = "", candidates = 12, pick = "all",
  batch_size = 4, steps = 256, s_churn = 10.0, num_resamples = 1, sigma_min = 1e-4, sigma_max = 20.0, rho = 7.0,
  seed = 0, others = "silent", missing = "error", device = "cpu", autocast = "off", threads = 2,
}

M.DOCS = {
  model = "an MSDM model folder (train_msdm's <out>/model) or a released checkpoint (.ckpt, .safetensors)",
  tasks = "a task folder of make-tasks (tasks.json), or the task file",
  root = "the dataset folder holding the tasks' tracks (default: the task file's root)",
  layout = "dataset layout (default: the task file's)",
  split = "the split the tasks come from (default: the task file's)",
  out = "output folder: <id>_<k>.wav (pick=all) or <id>.wav (pick=largest_l2), generation.json",
  candidates = "candidates per task (the paper's rule for MSDM: 12, the largest L2 norm kept)",
  pick = "all (write every candidate as <id>_<k>.wav) or largest_l2 (write the largest as <id>.wav)",
  batch_size = "candidates sampled together",
  steps = "sampler steps (the notebook's inpainting: 256)",
  s_churn = "churn of the sampler (10)",
  num_resamples = "resampling rounds per step (1)",
  sigma_min = "smallest sigma of the Karras schedule",
  sigma_max = "largest sigma of the Karras schedule (20)",
  rho = "rho of the Karras schedule (7)",
  seed = "seed of the sampling noise",
  others = "silent (stem types neither given nor wanted given as silence) or generate (generated, left out)",
  missing = "error or skip: what to do with a task whose stem types MSDM does not have",
  device = "cpu or cuda",
  autocast = "off or bf16 (device=cuda)",
  threads = "CPU threads",
}

local function task_file(tasks)
  local file = fs.is_dir(tasks) and fs.join(tasks, "tasks.json") or tasks
  if not fs.is_file(file) then error(string.format("tasks=%s: no task file %s", tasks, file), 0) end
  local manifest = cjson.decode(assert(recipe.read(file)))
  if type(manifest) ~= "table" or type(manifest.tasks) ~= "table" then error(file .. " is not a task file (no tasks)", 0) end
  return manifest, file:match("^(.*)/[^/]+$") or "."
end

--- plan(task, stems) -> {given = {channel}, target = {channel}, silent = {channel}} or nil, reason: the channels
--- of a task's input and target stem types (stems: the model's stem names, in channel order)
function M.plan(task, stems, others)
  local index = {}
  for c, s in ipairs(stems) do index[s] = c end
  local role, given, target = {}, {}, {}
  for _, part in ipairs({ { "input", given, "given" }, { "target", target, "target" } }) do
    local list = task[part[1]]
    if type(list) ~= "table" or #list == 0 then return nil, string.format("no %s stems", part[1]) end
    for _, s in ipairs(list) do
      local tag = tostring(s.tag):lower()
      local c = index[tag]
      if not c then
        return nil, string.format("%s stem type '%s' (%s) is not one of MSDM's stems %s", part[1], tostring(s.tag),
          tostring(s.name), table.concat(stems, ", "))
      end
      if role[c] and role[c] ~= part[3] then
        return nil, string.format("stem type '%s' is both given and wanted (one MSDM channel per type)", tag)
      end
      if not role[c] then part[2][#part[2] + 1] = c end
      role[c] = part[3]
    end
  end
  local silent = {}
  for c = 1, #stems do
    if not role[c] and others == "silent" then silent[#silent + 1] = c end
  end
  return { given = given, target = target, silent = silent }
end

local function names_of(channels, stems)
  local out = {}
  for _, c in ipairs(channels) do out[#out + 1] = stems[c] end
  return out
end

--- source_of(task, track, plan, data) -> source (4, length) at the model's rate, samples of the task at that rate
function M.source_of(task, track, plan, data)
  local by_name = {}
  for _, stem in ipairs(track.stems) do by_name[stem.name] = stem end
  local n = math.floor(task.seconds * data.sample_rate + 0.5)
  if n > data.length then
    error(string.format("task %s is %.2f s long; the model's window is %.2f s (%d samples at %d Hz)", task.id,
      task.seconds, data.length / data.sample_rate, data.length, data.sample_rate), 0)
  end
  local rows = {}
  local index = {}
  for c, s in ipairs(data.stems) do index[s] = c end
  for _, s in ipairs(task.input) do
    local stem = by_name[s.name]
    if not stem then error(string.format("task %s: track %s has no stem %s", task.id, track.name, tostring(s.name)), 0) end
    local wave = cocola.audio.load(stem.path, { sr = data.sample_rate, mono = true, offset = task.offset,
      duration = task.seconds }):view(-1)
    local k = math.min(wave:size(1), n)
    local c = index[tostring(s.tag):lower()]
    local padded = cocola.cat({ wave:narrow(1, 1, k), cocola.zeros({ data.length - k }) }, 1)
    rows[c] = rows[c] and rows[c] + padded or padded
  end
  for c = 1, #data.stems do rows[c] = (rows[c] or cocola.zeros({ data.length })):unsqueeze(1) end
  return cocola.cat(rows, 1), n
end

-- the (4) mask of a plan: 1 for the given and silent channels
local function mask_of(plan, C)
  local m = {}
  for c = 1, C do m[c] = 0 end
  for _, c in ipairs(plan.given) do m[c] = 1 end
  for _, c in ipairs(plan.silent) do m[c] = 1 end
  return cocola.tensor(m)
end

--- candidate_audio(out (B, 4, L), plan, data, n16) -> list of B waves (n16) at 16 kHz: the target channels' sum
function M.candidate_audio(out, plan, data, n16)
  local sum
  for _, c in ipairs(plan.target) do
    local ch = out:narrow(2, c, 1):reshape({ out:size(1), out:size(3) })
    sum = sum and sum + ch or ch
  end
  local wave = cocola.audio.resample(sum:float():to("cpu"):contiguous(), data.sample_rate, M.OUT_RATE)
  local waves = {}
  for b = 1, wave:size(1) do
    local w = wave[b]
    if w:size(1) >= n16 then w = w:narrow(1, 1, n16):contiguous()
    else w = cocola.cat({ w, cocola.zeros({ n16 - w:size(1) }) }, 1) end
    waves[b] = w
  end
  return waves
end

local function l2(w) return math.sqrt((w:double() * w:double()):sum():item()) end

function M.run(cfg, log)
  log = log or print
  for _, k in ipairs({ "candidates", "batch_size", "steps", "num_resamples", "threads" }) do
    if math.type(cfg[k]) ~= "integer" or cfg[k] < 1 then error(k .. " must be a positive integer", 0) end
  end
  if cfg.pick ~= "all" and cfg.pick ~= "largest_l2" then error("pick must be all or largest_l2, got " .. tostring(cfg.pick), 0) end
  if cfg.others ~= "silent" and cfg.others ~= "generate" then error("others must be silent or generate, got " .. tostring(cfg.others), 0) end
  if cfg.missing ~= "error" and cfg.missing ~= "skip" then error("missing must be error or skip, got " .. tostring(cfg.missing), 0) end
  if cfg.device ~= "cpu" and cfg.device ~= "cuda" then error("device must be cpu or cuda, got " .. tostring(cfg.device), 0) end
  if cfg.device == "cuda" and not cocola.cuda.is_available() then
    error("device=cuda, but CUDA is not available (" .. tostring(cocola.cuda.unavailable_reason()) .. ")", 0)
  end
  if cfg.autocast ~= "off" and cfg.autocast ~= "bf16" then error("autocast must be off or bf16", 0) end
  if cfg.autocast == "bf16" and cfg.device ~= "cuda" then error("autocast=bf16 needs device=cuda", 0) end
  if cfg.model == "" then error("model= (an MSDM model folder or checkpoint) is required", 0) end
  if cfg.tasks == "" then error("tasks= (a task folder of make-tasks) is required", 0) end
  if cfg.out == "" then error("out= (the output folder) is required", 0) end
  cocola.set_num_threads(cfg.threads)
  local manifest = task_file(cfg.tasks)
  local settings = type(manifest.settings) == "table" and manifest.settings or {}
  local root = cfg.root ~= "" and cfg.root or settings.root
  local layout = cfg.layout ~= "" and cfg.layout or settings.layout
  local split = cfg.split ~= "" and cfg.split or settings.split
  if type(root) ~= "string" or root == "" or type(layout) ~= "string" or type(split) ~= "string" then
    error("the task file does not name its dataset: give root=, layout= and split=", 0)
  end
  if not fs.is_dir(root) then error(string.format("the data folder '%s' does not exist (root=)", root), 0) end
  local net, info = msdm.load(cfg.model)
  local data = info.data
  if net.in_channels ~= #data.stems then
    error(string.format("model %s has %d input channels for %d stems", cfg.model, net.in_channels, #data.stems), 0)
  end
  net = net:to(cfg.device)
  log(string.format("MSDM %s: %d parameters, stems %s, window %d samples at %d Hz (%.2f s)", cfg.model,
    net:num_parameters(), table.concat(data.stems, ", "), data.length, data.sample_rate, data.length / data.sample_rate))
  local tracks = {}
  for _, t in ipairs(cocola.data.open(layout, root, split)) do tracks[t.name] = t end
  -- check every task first: an error names the task before any sampling
  local jobs, skipped = {}, {}
  for i, task in ipairs(manifest.tasks) do
    local plan, why = M.plan(task, data.stems, cfg.others)
    if not plan then
      if cfg.missing == "skip" then
        skipped[#skipped + 1] = { id = task.id, reason = why }
        log(string.format("task %s skipped: %s", tostring(task.id), why))
      else
        error(string.format("task %s: %s (missing=skip skips such tasks)", tostring(task.id), why), 0)
      end
    else
      if not tracks[task.track] then
        error(string.format("task %s: no track %s in %s (%s, %s)", tostring(task.id), tostring(task.track), root, layout,
          split), 0)
      end
      jobs[#jobs + 1] = { index = i, task = task, plan = plan }
    end
  end
  fs.mkdir_p(cfg.out)
  local report = { settings = {}, tasks = {}, skipped = skipped }
  for k in pairs(M.DEFAULTS) do report.settings[k] = cfg[k] end
  report.settings.root, report.settings.layout, report.settings.split = root, layout, split
  for j, job in ipairs(jobs) do
    local task, plan = job.task, job.plan
    local source, n = M.source_of(task, tracks[task.track], plan, data)
    local target_file = fs.join(cfg.tasks, "target", task.id .. ".wav")
    local n16 = fs.is_file(target_file) and cocola.audio.info(target_file).frames
      or math.floor(task.seconds * M.OUT_RATE + 0.5)
    local mask = mask_of(plan, #data.stems)
    local waves, seeds = {}, {}
    local done = 0
    while done < cfg.candidates do
      local b = math.min(cfg.batch_size, cfg.candidates - done)
      local copies = {}
      for k = 1, b do copies[k] = source:unsqueeze(1) end
      local batch = cocola.cat(copies, 1):to(cfg.device)
      local seed = cfg.seed + 1000003 * job.index + (done // cfg.batch_size)
      seeds[#seeds + 1] = seed
      local out
      local function sample()
        out = msdm.impute(net, batch, mask, { steps = cfg.steps, s_churn = cfg.s_churn, num_resamples = cfg.num_resamples,
          sigma_min = cfg.sigma_min, sigma_max = cfg.sigma_max, rho = cfg.rho, seed = seed,
          sigma_data = info.diffusion and info.diffusion.sigma_data or nil,
          progress = function(step, steps)
            recipe.progress(string.format("MSDM %s (%d/%d)", task.id, j, #jobs), done * steps + step * b,
              cfg.candidates * steps)
          end })
      end
      if cfg.autocast == "bf16" then cocola.cuda.autocast("bf16", sample) else sample() end
      for _, w in ipairs(M.candidate_audio(out, plan, data, n16)) do waves[#waves + 1] = w end
      done = done + b
    end
    local norms, best = {}, 1
    for k, w in ipairs(waves) do
      norms[k] = l2(w)
      if norms[k] > norms[best] then best = k end
    end
    if cfg.pick == "all" then
      for k, w in ipairs(waves) do
        cocola.audio.save(fs.join(cfg.out, string.format("%s_%d.wav", task.id, k)), w:view(1, -1), M.OUT_RATE,
          { subtype = "float" })
      end
    else
      cocola.audio.save(fs.join(cfg.out, task.id .. ".wav"), waves[best]:view(1, -1), M.OUT_RATE, { subtype = "float" })
    end
    report.tasks[#report.tasks + 1] = { id = task.id, given = names_of(plan.given, data.stems),
      generated = names_of(plan.target, data.stems), silent = names_of(plan.silent, data.stems), seeds = seeds,
      samples = n, samples_16k = n16, l2 = norms, largest_l2 = best }
  end
  recipe.end_progress()
  recipe.write_atomic(fs.join(cfg.out, "generation.json"), cjson.encode(report))
  log(string.format("%d tasks generated into %s (%d candidates each, %s)%s", #jobs, cfg.out, cfg.candidates,
    cfg.pick == "all" and "<id>_<k>.wav; score with eval-generation pick=largest_l2"
    or "the largest L2 norm kept as <id>.wav", #skipped > 0 and string.format("; %d skipped", #skipped) or ""))
  return report
end

function M.main(args, name)
  return recipe.main(name or "msdm_generate", M.DEFAULTS, function(cfg)
    recipe.log_config(cfg)
    M.run(cfg)
  end, args, M.DOCS)
end

return M
