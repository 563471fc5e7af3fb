-- cocola.recipes.generation_tasks — the accompaniment-generation tasks of the paper's Table 3, drawn
-- from a test split of any stem dataset cocola.data.open reads, written so that any generator (ours or
-- an external one) can be run on them and cocola.recipes.eval_generation can score its outputs.
--
-- A task is a window of `seconds` (by default the paper's: 6 s on MUSDB, 10.24 s, the AudioLDM 2 length,
-- on the others) in a test track where at least two stems are active (RMS above silence_rms): the input is a
-- random non-empty subset of the active stems and the target a random non-empty subset of the rest
-- (cocola.data.sampler's distribution: a ~ U{1..N-1} input stems, t ~ U{1..N-a} target stems), the
-- windows taken in a seeded order over the whole windows of the split, at most one per window grid
-- position. The Random row's audio for a task is a sub-mix of stems of the same types (tags) as the
-- target, from a different test track, at a place where they are all active; where no other track has
-- all those types active, the track with the most of them is used (the manifest says which types
-- matched).
--
-- types= (a comma list of stem types, e.g. "bass,drums,guitar,piano": MSDM's four) draws the tasks from those
-- types only, as multi-source models trained on them see a track: stems of other types are left out of the
-- input, the target and the Random row, and a window whose draw puts one type on both sides (two guitars,
-- one given and one wanted) is passed over, so that every task can be given to a model with one channel per
-- type. Types match the dataset's tags case-insensitively.
--
-- Output (out=DIR):
--   DIR/input/<id>.wav   the input sub-mix (mono, sample_rate, 32-bit float WAV)   what a generator is given
--   DIR/target/<id>.wav  the target sub-mix                              the Ground Truth row
--   DIR/random/<id>.wav  the Random row's sub-mix
--   DIR/tasks.json       {settings, tasks = {{id, prompt = "in: <tags>; out: <tags>", track, offset,
--                         seconds, input = {{name, tag}}, target = {...}, random = {track, offset, stems,
--                         matched_tags, all_matched}}}}
-- Ids are task_0001, task_0002, ...; the prompt is CompoNet's (the released code's format: lowercase tags
-- with an occurrence count, "in: bass_1, drums_1; out: guitar_1", "genre: <genre>; " first where the
-- dataset has one). Same settings and data, same tasks.
-- Run as: lua5.4 recipes/make_generation_tasks.lua layout=slakh root=data/midi_stems out=runs/tasks n=200
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local data = require "cocola.data"
local Sampler = require "cocola.data.sampler"
local Rng = require "cocola.data.rng"
local StemWindows = require "cocola.data.stem_windows"
local cjson = require "cjson"

local M = {}

M.DEFAULTS = {
  layout = "slakh", root = "", split = "test", out = "", n = 200, seconds = 0, sample_rate = 16000,
  seed = 0, silence_rms = 1e-4, random_tries = 8, types = "",
}

M.DOCS = {
  layout = "dataset layout (musdb, moisesdb, slakh, cocochorales, stems_folder)",
  root = "dataset root folder",
  split = "the split the tasks come from",
  out = "output folder (input/, target/, random/, tasks.json)",
  n = "number of tasks",
  seconds = "task length in seconds; 0: the paper's, 6 s for musdb and 10.24 s (AudioLDM 2's length) otherwise",
  sample_rate = "sample rate of the written audio",
  seed = "seed of the window order and the stem subsets",
  silence_rms = "a stem whose RMS in the window is at most this is inactive",
  random_tries = "places tried per other track when looking for the Random row's stems",
  types = "only stems of these types (comma list, e.g. bass,drums,guitar,piano), no type on both sides; empty: all",
}

-- {lowercased type = true} of types=, or nil when empty
local function type_set(cfg)
  if cfg.types == "" then return nil end
  local set, n = {}, 0
  for t in (tostring(cfg.types) .. ","):gmatch("([^,]*),") do
    t = t:match("^%s*(.-)%s*$"):lower()
    if t == "" then error("types must be a comma list of stem types, got '" .. cfg.types .. "'", 0) end
    set[t], n = true, n + 1
  end
  if n == 0 then error("types must be a comma list of stem types, got '" .. cfg.types .. "'", 0) end
  return set
end

-- the tracks with only their stems of the wanted types (copies; tracks with fewer than two left out)
local function of_types(tracks, set)
  local out = {}
  for _, t in ipairs(tracks) do
    local stems = {}
    for _, s in ipairs(t.stems) do
      if set[tostring(s.tag):lower()] then stems[#stems + 1] = s end
    end
    if #stems >= 2 then
      local copy = {}
      for k, v in pairs(t) do copy[k] = v end
      copy.stems = stems
      out[#out + 1] = copy
    end
  end
  return out
end

-- whether a stem type is among both the input and the target
local function shares_a_type(input_stems, target_stems)
  local given = {}
  for _, s in ipairs(input_stems) do given[tostring(s.tag):lower()] = true end
  for _, s in ipairs(target_stems) do if given[tostring(s.tag):lower()] then return true end end
  return false
end

local function rms(w) return math.sqrt((w * w):mean():item()) end

local function load_stem(stem, offset, cfg)
  return cocola.audio.load(stem.path, { sr = cfg.sample_rate, mono = true, offset = offset, duration = cfg.seconds })
    :view(-1)
end

local function sum_of(waves)
  local s
  for _, w in ipairs(waves) do s = s and s + w or w end
  return s
end

local function stem_list(track, picks)
  local out = {}
  for _, i in ipairs(picks) do out[#out + 1] = { name = track.stems[i].name, tag = track.stems[i].tag } end
  return out
end

local function tags_of(list)
  local out = {}
  for _, s in ipairs(list) do out[#out + 1] = tostring(s.tag) end
  return out
end

--- prompt(input_stems, target_stems, genre?) -> "in: bass_1, drums_1; out: guitar_1" (the released code's
--- form, "genre: <genre>; " first where the dataset has one)
M.prompt = StemWindows.prompt

-- the Random row of a task: stems with the target's tags from another track, all active at one place
local function random_mix(tracks, task_track, target_tags, cfg, task_index)
  local rng = Rng.new(cfg.seed, task_index, 17)
  local order = {}
  for i = 1, #tracks do
    if i ~= task_track and tracks[i].duration >= cfg.seconds then order[#order + 1] = i end
  end
  order = rng:shuffled(order)
  local best
  for _, ti in ipairs(order) do
    local t = tracks[ti]
    -- one stem per wanted tag, the first of the track's stems carrying it and not yet taken
    local picks, matched, taken = {}, {}, {}
    for _, tag in ipairs(target_tags) do
      for si, s in ipairs(t.stems) do
        if not taken[si] and tostring(s.tag) == tag then
          picks[#picks + 1], matched[#matched + 1], taken[si] = si, tag, true
          break
        end
      end
    end
    if #picks > 0 and (not best or #picks > #best.picks) then
      for _ = 1, cfg.random_tries do
        local offset = rng:float() * (t.duration - cfg.seconds)
        local waves, active = {}, true
        for k, si in ipairs(picks) do
          waves[k] = load_stem(t.stems[si], offset, cfg)
          if rms(waves[k]) <= cfg.silence_rms then active = false break end
        end
        if active then
          best = { track = ti, offset = offset, picks = picks, matched = matched, wave = sum_of(waves) }
          break
        end
      end
      if best and #best.picks == #target_tags then break end
    end
  end
  return best
end

local function write_wave(path, wave, rate)
  cocola.audio.save(path, wave:view(1, -1), rate, { subtype = "float" })
end

--- run(cfg, log) -> the manifest table (also written to out/tasks.json)
function M.run(cfg, log)
  log = log or print
  if cfg.root == "" then error("root= (the dataset folder) is required", 0) end
  if cfg.out == "" then error("out= (the output folder) is required", 0) end
  if math.type(cfg.n) ~= "integer" or cfg.n < 1 then error("n must be a positive integer", 0) end
  if cfg.seconds == 0 then cfg.seconds = cfg.layout == "musdb" and 6.0 or 10.24 end
  if not (type(cfg.seconds) == "number" and cfg.seconds > 0) then error("seconds must be positive (or 0: the dataset's)", 0) end
  local types = type_set(cfg)
  local tracks, skipped = data.open(cfg.layout, cfg.root, cfg.split)
  log(string.format("%d %s tracks in %s (%d skipped)", #tracks, cfg.split, cfg.root, #skipped))
  if types then
    local all = #tracks
    tracks = of_types(tracks, types)
    log(string.format("types %s: %d of %d tracks have two or more stems of them (other stems left out)", cfg.types,
      #tracks, all))
  end
  if #tracks < 2 then
    error(string.format("the %s split of %s has %d usable tracks; tasks need at least 2 (the Random row comes from another track)",
      cfg.split, cfg.root, #tracks), 0)
  end
  local sampler = Sampler.new(tracks, { batch_size = 2, window = cfg.seconds, max_overlap = 0, seed = cfg.seed,
    silence_rms = cfg.silence_rms, noise = 0, shuffle = true, whole_windows = true, prefetch = false,
    sample_rate = cfg.sample_rate, min_distance = cfg.seconds })
  for _, sub in ipairs({ "", "/input", "/target", "/random" }) do
    local ok = os.execute("mkdir -p '" .. (cfg.out .. sub):gsub("'", "'\\''") .. "'")
    if not ok then error("cannot create the folder " .. cfg.out .. sub, 0) end
  end
  local tasks, passed_over = {}, 0
  local total = #sampler.order
  for pos = 1, total do
    if #tasks >= cfg.n then break end
    local idx = sampler.order[pos]
    local input, target, info = sampler:pair(idx)
    if input then
      local track = tracks[info.track_index]
      local k = #tasks + 1
      local id = string.format("task_%04d", k)
      local input_stems, target_stems = stem_list(track, info.anchor), stem_list(track, info.positive)
      local random
      if types and shares_a_type(input_stems, target_stems) then
        passed_over = passed_over + 1
      else
        random = random_mix(tracks, info.track_index, tags_of(target_stems), cfg, k)
      end
      if random then
        write_wave(cfg.out .. "/input/" .. id .. ".wav", input, cfg.sample_rate)
        write_wave(cfg.out .. "/target/" .. id .. ".wav", target, cfg.sample_rate)
        write_wave(cfg.out .. "/random/" .. id .. ".wav", random.wave, cfg.sample_rate)
        tasks[k] = {
          id = id, prompt = M.prompt(input_stems, target_stems, track.genre), track = track.name,
          offset = info.offset, seconds = cfg.seconds, input = input_stems, target = target_stems,
          random = { track = tracks[random.track].name, offset = random.offset,
            stems = stem_list(tracks[random.track], random.picks), matched_tags = random.matched,
            all_matched = #random.picks == #target_stems },
        }
      end
    end
    recipe.progress("tasks", #tasks, cfg.n)
  end
  recipe.end_progress()
  if #tasks == 0 then
    if passed_over > 0 then
      error(string.format("no task could be drawn: the %d windows with two active stems put a type of types= on both sides",
        passed_over), 0)
    end
    error("no window of the split has two active stems: no task could be drawn", 0)
  end
  if #tasks < cfg.n then log(string.format("only %d windows with two active stems: %d tasks instead of %d", #tasks, #tasks, cfg.n)) end
  local partial = 0
  for _, t in ipairs(tasks) do if not t.random.all_matched then partial = partial + 1 end end
  log(string.format("%d tasks written to %s (%d Random rows match only some of the target's stem types)", #tasks,
    cfg.out, partial))
  if types then log(string.format("%d windows passed over: a stem type on both sides", passed_over)) end
  local settings = {}
  for k in pairs(M.DEFAULTS) do settings[k] = cfg[k] end
  local manifest = { settings = settings, tasks = tasks }
  recipe.write_atomic(cfg.out .. "/tasks.json", cjson.encode(manifest))
  return manifest
end

--- main(args) -> exit status (recipes/make_generation_tasks.lua)
function M.main(args, name)
  return recipe.main(name or "make_generation_tasks", M.DEFAULTS, function(cfg)
    recipe.log_config(cfg)
    M.run(cfg)
  end, args, M.DOCS)
end

return M
