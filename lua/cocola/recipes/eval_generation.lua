-- cocola.recipes.eval_generation — the paper's Table 3: accompaniment generators compared with the COCOLA
-- score and with FAD, on the tasks of cocola.recipes.generation_tasks (recipes/make_generation_tasks.lua).
--
-- Rows: one per system (systems=name=DIR,...: a folder of generated audio named by task id,
-- <id>.wav or, with candidates, <id>_<k>.wav), then Random (the task folder's random/: a sub-mix of the
-- same stem types from a different test track) and Ground Truth (target/: the real target sub-mix).
-- Columns:
--   * COCOLA score of the row's audio given the task's input (cocola.scoring: windows of `window` s, the
--     plain mean of a pair's windows), per COCOLA model (models=, default the bundled model): mean over
--     the tasks and its standard error (sd / sqrt(n));
--   * FAD per backbone (backbones=, cocola.metrics.backbones) as a sub-FAD: the row's embeddings against
--     those of the Ground Truth targets (the reference set, so Ground Truth has none).
-- pick=largest_l2 takes, per task, the candidate with the largest L2 norm among <id>_<k> files (the
-- paper's rule for MSDM, which tends to generate silence); pick=first wants <id>.<ext> (or one
-- candidate). A task with no audio in a system's folder is an error naming it (missing=skip leaves it
-- out of that row and says how many).
-- Outputs (out=DIR): table3.md (the paper's layout), table3.csv, table3.json (every number, the settings,
-- the task file's FNV-1a hash) and scores.csv (every task's score per row and model); beside them
-- scores-<model>.png, the distribution of the tasks' COCOLA scores of every row (each system, Random,
-- Ground Truth) overlaid, per model (plots=false: none; without gnuplot a line says they were skipped).
-- Run as: lua5.4 recipes/eval_generation.lua tasks=runs/tasks systems=CompoNet=runs/gen_componet out=runs/table3
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local scoring = require "cocola.scoring"
local eval = require "cocola.recipes.eval"
local backbones = require "cocola.metrics.backbones"
local cjson = require "cjson"

local M = {}

M.DEFAULTS = {
  tasks = "", systems = "", models = "default", backbones = "cocola", pick = "first", missing = "error", out = "",
  window = 5.0, threads = 0, plots = true,
}

M.DOCS = {
  tasks = "the task folder written by make_generation_tasks (tasks.json, input/, target/, random/)",
  systems = "the systems' folders: name=DIR,name=DIR (a bare DIR is named after its folder)",
  models = "COCOLA models for the score columns: default (the bundled model), baseline names, checkpoints",
  backbones = "FAD embeddings: cocola (the first model's window embeddings), cocola-pre (EfficientNet models: the "
    .. "1280-d features before the projection), vggish=FILE, encodec=DIR, clap=DIR; empty for none",
  pick = "first or largest_l2 (per task, the candidate <id>_<k> with the largest L2 norm)",
  missing = "error or skip: a task without audio in a system's folder",
  out = "output folder for table3.md / .csv / .json and scores.csv (empty: print only)",
  window = "COCOLA score window in seconds",
  threads = "CPU threads (0: the engine's default)",
  plots = "draw each model's score distributions per row into out/scores-<model>.png (needs gnuplot; false: none)",
}

local function split_list(text)
  local out = {}
  for s in tostring(text):gmatch("[^,]+") do
    s = s:gsub("^%s+", ""):gsub("%s+$", "")
    if s ~= "" then out[#out + 1] = s end
  end
  return out
end

local function basename(path) return (path:gsub("/+$", ""):match("([^/]+)$") or path) end

--- the systems of a setting "name=DIR,DIR2" -> {{name, dir}}
function M.parse_systems(text)
  local systems, seen = {}, {}
  for _, item in ipairs(split_list(text)) do
    local name, dir = item:match("^([^=]+)=(.+)$")
    if not name then name, dir = basename(item), item end
    if seen[name] then error(string.format("systems: the name '%s' is given twice", name), 0) end
    seen[name] = true
    systems[#systems + 1] = { name = name, dir = dir }
  end
  return systems
end

local function read_manifest(dir)
  local path = dir .. "/tasks.json"
  local text = recipe.read(path)
  if not text then error(string.format("tasks: no tasks.json in '%s' (make it with recipes/make_generation_tasks.lua)", dir), 0) end
  local ok, manifest = pcall(cjson.decode, text)
  if not ok or type(manifest) ~= "table" or type(manifest.tasks) ~= "table" or #manifest.tasks == 0 then
    error(string.format("tasks: '%s' is not a task file with at least one task", path), 0)
  end
  return manifest, recipe.fnv1a(text)
end

-- the audio files of a folder by task id: id -> {paths of <id>.<ext> and <id>_<k>.<ext>}
local function candidates_in(dir)
  local by_stem, stems = scoring.audio_files(dir)
  local by_id = {}
  for _, stem in ipairs(stems) do
    local path = dir .. "/" .. by_stem[stem]
    local id = stem:match("^(.-)_%d+$")
    for _, key in ipairs({ stem, id }) do
      if key then
        by_id[key] = by_id[key] or {}
        table.insert(by_id[key], path)
      end
    end
  end
  return by_id
end

local function l2(path)
  local w = cocola.audio.load(path, { mono = true })
  return math.sqrt((w * w):sum():item())
end

--- pick_file(candidates, id, pick) -> the file of task id (nil when there is none)
function M.pick_file(by_id, id, pick)
  local list = by_id[id]
  if not list or #list == 0 then return nil end
  if pick == "largest_l2" then
    local best, best_norm
    for _, path in ipairs(list) do
      local n = l2(path)
      if not best_norm or n > best_norm then best, best_norm = path, n end
    end
    return best
  end
  for _, path in ipairs(list) do
    if basename(path):gsub("%.[^.]+$", "") == id then return path end
  end
  if #list == 1 then return list[1] end
  error(string.format("%d candidates for task %s (%s, ...): set pick=largest_l2 or keep one <id> file", #list, id,
    list[1]), 0)
end

local function mean_se(xs)
  local n = #xs
  if n == 0 then return nil, nil end
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  local m = s / n
  if n < 2 then return m, nil end
  local v = 0
  for _, x in ipairs(xs) do v = v + (x - m) ^ 2 end
  return m, math.sqrt(v / (n - 1) / n)
end

local function fmt(x, digits)
  if x == nil then return "—" end
  return string.format("%." .. (digits or 2) .. "f", x)
end

--- markdown(result) -> the table in the paper's layout (FAD columns, then COCOLA score columns)
function M.markdown(result)
  local head, rule = { "| |" }, { "|---|" }
  for _, b in ipairs(result.backbones) do
    head[#head + 1] = " FAD " .. b .. " ↓ |"
    rule[#rule + 1] = "---:|"
  end
  for _, m in ipairs(result.models) do
    head[#head + 1] = " COCOLA " .. m .. " ↑ |"
    rule[#rule + 1] = "---:|"
  end
  local lines = { table.concat(head), table.concat(rule) }
  for _, row in ipairs(result.rows) do
    local cells = { "| " .. row.name .. " |" }
    for _, b in ipairs(result.backbones) do cells[#cells + 1] = " " .. (row.fad[b] and string.format("%.4g", row.fad[b]) or "—") .. " |" end
    for _, m in ipairs(result.models) do
      local s = row.cocola[m]
      cells[#cells + 1] = " " .. (s and (fmt(s.mean) .. " ± " .. fmt(s.se)) or "—") .. " |"
    end
    lines[#lines + 1] = table.concat(cells)
  end
  return table.concat(lines, "\n") .. "\n"
end

local csv_field = scoring.csv_field

--- run(cfg, log) -> result {rows = {{name, n, files, cocola = {model = {mean, se, n, scores}}, fad = {backbone = x}}},
--- models, backbones, tasks_hash}
function M.run(cfg, log)
  log = log or print
  if cfg.tasks == "" then error("tasks= (the task folder) is required", 0) end
  if cfg.pick ~= "first" and cfg.pick ~= "largest_l2" then error("pick must be first or largest_l2, got " .. tostring(cfg.pick), 0) end
  if cfg.missing ~= "error" and cfg.missing ~= "skip" then error("missing must be error or skip, got " .. tostring(cfg.missing), 0) end
  if math.type(cfg.threads) == "integer" and cfg.threads > 0 then cocola.set_num_threads(cfg.threads) end
  local manifest, hash = read_manifest(cfg.tasks)
  local tasks = manifest.tasks
  log(string.format("%d tasks in %s (tasks.json FNV-1a %s)", #tasks, cfg.tasks, hash))

  -- the rows: systems, then Random and Ground Truth from the task folder
  local rows = {}
  for _, s in ipairs(M.parse_systems(cfg.systems)) do
    local ok, by_id = pcall(candidates_in, s.dir)
    if not ok then error(string.format("system %s: %s", s.name, recipe.clean_error(by_id)), 0) end
    rows[#rows + 1] = { name = s.name, by_id = by_id, pick = cfg.pick }
  end
  rows[#rows + 1] = { name = "Random", by_id = candidates_in(cfg.tasks .. "/random"), pick = "first" }
  rows[#rows + 1] = { name = "Ground Truth", by_id = candidates_in(cfg.tasks .. "/target"), pick = "first",
    reference = true }
  local inputs = candidates_in(cfg.tasks .. "/input")
  for _, row in ipairs(rows) do
    row.files, row.task_ids, row.inputs, row.missing = {}, {}, {}, {}
    for _, t in ipairs(tasks) do
      local input = M.pick_file(inputs, t.id, "first")
      if not input then error(string.format("task %s has no input audio in %s/input", t.id, cfg.tasks), 0) end
      local file = M.pick_file(row.by_id, t.id, row.pick)
      if file then
        row.files[#row.files + 1] = file
        row.task_ids[#row.task_ids + 1] = t.id
        row.inputs[#row.files] = input
      else
        row.missing[#row.missing + 1] = t.id
      end
    end
    if #row.missing > 0 then
      if cfg.missing == "error" or row.name == "Random" or row.name == "Ground Truth" then
        error(string.format("%s: no audio for %d of %d tasks (first: %s); generate them or set missing=skip",
          row.name, #row.missing, #tasks, row.missing[1]), 0)
      end
      log(string.format("%s: %d tasks without audio left out", row.name, #row.missing))
    end
  end

  -- COCOLA scores
  local specs = split_list(cfg.models)
  if #specs == 0 then error("models: give at least one COCOLA model (default: the bundled one)", 0) end
  local models, names = {}, {}
  for i, spec in ipairs(specs) do
    local model, name = eval.load_model(spec)
    models[i], names[i] = model, name
  end
  names = eval.distinct_names(specs, names)
  local score_opts = { window = cfg.window }
  for _, row in ipairs(rows) do
    row.cocola = {}
    for mi, model in ipairs(models) do
      local scores = {}
      for k, file in ipairs(row.files) do
        scores[k] = scoring.score_files(model, row.inputs[k], file, score_opts).mean
        recipe.progress(string.format("COCOLA %s, %s", names[mi], row.name), k, #row.files)
      end
      local m, se = mean_se(scores)
      row.cocola[names[mi]] = { mean = m, se = se, n = #scores, scores = scores }
    end
  end
  recipe.end_progress()

  -- FAD against the Ground Truth targets
  local bb_specs = split_list(cfg.backbones)
  local bb_names = {}
  for _, spec in ipairs(bb_specs) do
    local bb = backbones.open(spec, { models = models })
    bb_names[#bb_names + 1] = bb.name
    local reference = rows[#rows]
    local ref_stats = backbones.stats_of(bb, reference.files, function(i, n) recipe.progress("FAD " .. bb.name .. ", Ground Truth", i, n) end)
    for _, row in ipairs(rows) do
      row.fad = row.fad or {}
      if not row.reference then
        local st = backbones.stats_of(bb, row.files, function(i, n) recipe.progress("FAD " .. bb.name .. ", " .. row.name, i, n) end)
        row.fad[bb.name] = backbones.fad(ref_stats, st)
      end
    end
    recipe.end_progress()
  end
  for _, row in ipairs(rows) do row.fad = row.fad or {} end

  local result = { rows = {}, models = names, backbones = bb_names, tasks_hash = hash, tasks = #tasks }
  for _, row in ipairs(rows) do
    result.rows[#result.rows + 1] = { name = row.name, n = #row.files, files = row.files, task_ids = row.task_ids,
      cocola = row.cocola, fad = row.fad, missing = row.missing }
  end
  return result
end

--- M.plots(plot, result, dir) -> list of written files: per COCOLA model, dir/scores-<model>.png with the
-- histograms of every row's task scores overlaid (plot: cocola.plot)
function M.plots(plot, result, dir)
  local written = {}
  for _, m in ipairs(result.models) do
    local sets = {}
    for _, row in ipairs(result.rows) do
      local scores = row.cocola[m].scores
      if #scores > 0 then sets[#sets + 1] = { values = scores, label = string.format("%s (%d tasks)", row.name, #scores) } end
    end
    if #sets > 0 then
      local out = string.format("%s/scores-%s.png", dir, (m:gsub("[^%w_.-]+", "_")))
      plot.histogram(sets, { output = out, bins = 20, title = "COCOLA score of each task's accompaniment (" .. m .. ")",
        xlabel = "COCOLA score (mean over the task's windows)", ylabel = "tasks", key = "below" })
      written[#written + 1] = out
    end
  end
  return written
end

--- writes table3.md, table3.csv, table3.json and scores.csv into dir, and the score distributions
-- (M.plots) unless cfg.plots is false; log (default print) gets a line when the pictures are skipped
function M.write(result, dir, cfg, log)
  local ok = os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
  if not ok then error("cannot create the folder " .. dir, 0) end
  recipe.write_atomic(dir .. "/table3.md", M.markdown(result))
  local lines = { "row,n,kind,column,value,standard_error" }
  for _, row in ipairs(result.rows) do
    for _, b in ipairs(result.backbones) do
      lines[#lines + 1] = table.concat({ csv_field(row.name), row.n, "fad", csv_field(b), csv_field(row.fad[b]), "" }, ",")
    end
    for _, m in ipairs(result.models) do
      local s = row.cocola[m]
      lines[#lines + 1] = table.concat({ csv_field(row.name), row.n, "cocola", csv_field(m), csv_field(s.mean), csv_field(s.se) }, ",")
    end
  end
  recipe.write_atomic(dir .. "/table3.csv", table.concat(lines, "\n") .. "\n")
  local per = { "row,task,model,score" }
  for _, row in ipairs(result.rows) do
    for _, m in ipairs(result.models) do
      for k, s in ipairs(row.cocola[m].scores) do
        per[#per + 1] = table.concat({ csv_field(row.name), row.task_ids[k], csv_field(m), string.format("%.6f", s) }, ",")
      end
    end
  end
  recipe.write_atomic(dir .. "/scores.csv", table.concat(per, "\n") .. "\n")
  local settings = {}
  for k in pairs(M.DEFAULTS) do settings[k] = cfg[k] end
  recipe.write_atomic(dir .. "/table3.json", cjson.encode({ settings = settings, result = result }))
  return recipe.plots(cfg and cfg.plots, log or print, function(plot) return M.plots(plot, result, dir) end) or {}
end

--- main(args) -> exit status (recipes/eval_generation.lua, `cocola eval-generation`)
function M.main(args, name)
  return recipe.main(name or "eval_generation", M.DEFAULTS, function(cfg)
    recipe.log_config(cfg)
    local result = M.run(cfg)
    io.write("\n", M.markdown(result))
    if cfg.out ~= "" then
      local pictures = M.write(result, cfg.out, cfg)
      local names = {}
      for i, path in ipairs(pictures) do names[i] = path:match("([^/]+)$") end
      print("wrote " .. cfg.out .. "/table3.md, table3.csv, table3.json, scores.csv"
        .. (#names > 0 and (", " .. table.concat(names, ", ")) or ""))
    end
  end, args, M.DOCS)
end

return M
