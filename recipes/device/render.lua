-- recipes/device/render.lua — renders sets of MIDI folders into Slakh-style stem datasets with
-- recipes/make_midi_stems.lua, in parallel worker processes and within a wall-clock budget.
-- Each set becomes <out>/<name>, made with make_midi_stems' own defaults for everything not given here
-- (seed 0, split 0.8/0.1/0.1, 16 kHz), so a set always splits its songs the same way. Only the train
-- and validation songs are rendered (test songs are left out). Songs are taken in an order that
-- interleaves the sets and the two splits in proportion to their sizes (the first validation song
-- second), so a run cut short by the budget or by max_files still has songs of every set and split.
-- No song is started after `seconds`; a song in progress is finished (make_midi_stems writes each
-- track completely or not at all). Prints one line per song and a summary; a track folder left
-- incomplete by a killed run is removed at the next start.
--
-- Usage: lua5.4 recipes/device/render.lua out=DIR sets=FILE soundfont=FILE [key=value ...]
--   sets=FILE     lines "name<TAB>folder,folder" (folders relative to FILE's folder), as in the
--                 device bundle's midi/sets.txt
--   seconds=0     budget from the start (0: none)   max_files=0  songs at most (0: all)
--   workers=2     worker processes (each renders one song at a time)
--   jobs=2        fluidsynth processes per worker   max_seconds=0  cut every song there (0: whole songs)
--   fluidsynth="fluidsynth -o synth.dynamic-sample-loading=1"  (an .sf3 loads only the samples used)
-- Exit status 0 when at least one training track exists, else 1.
local script_dir = arg[0]:match("^(.*)/[^/]*$") or "."
local S = dofile(script_dir .. "/../make_midi_stems.lua")
local cocola = require "cocola"

local DEFAULTS = {
  out = "", sets = "", soundfont = "", seconds = 0, max_files = 0, workers = 2, jobs = 2, max_seconds = 0,
  fluidsynth = "fluidsynth -o synth.dynamic-sample-loading=1",
  -- internal: set for the worker processes by the coordinator
  worker = -1, plan = "", deadline = 0,
}
local NUMBERS = { seconds = true, max_files = true, workers = true, jobs = true, max_seconds = true, worker = true, deadline = true }

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function fail(msg)
  io.stderr:write("render: ", msg, "\n")
  os.exit(1)
end

local cfg = {}
for k, v in pairs(DEFAULTS) do cfg[k] = v end
for i = 1, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  if not k or DEFAULTS[k] == nil then fail("unknown argument '" .. arg[i] .. "' (see the header of this file)") end
  if NUMBERS[k] then v = tonumber(v) or fail(k .. " must be a number") end
  cfg[k] = v
end
if cfg.out == "" or cfg.sets == "" or cfg.soundfont == "" then fail("out=, sets= and soundfont= are needed") end

-- the sets: {name =, input = "abs,abs"}
local function read_sets(path)
  local f = io.open(path, "r") or fail("no sets file " .. path)
  local base = path:match("^(.*)/[^/]*$") or "."
  local sets = {}
  for line in f:lines() do
    local name, dirs = line:match("^([%w_]+)\t(.+)$")
    if name then
      local abs = {}
      for d in dirs:gmatch("[^,]+") do abs[#abs + 1] = d:sub(1, 1) == "/" and d or base .. "/" .. d end
      sets[#sets + 1] = { name = name, input = table.concat(abs, ",") }
    end
  end
  f:close()
  if #sets == 0 then fail("no sets in " .. path) end
  return sets
end

-- make_midi_stems' settings for one set
local function set_args(set)
  return {
    input = set.input, output = cfg.out .. "/" .. set.name, soundfont = cfg.soundfont, fluidsynth = cfg.fluidsynth,
    jobs = cfg.jobs, max_seconds = cfg.max_seconds, quiet = true,
  }
end

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

local function worker()
  cocola.set_num_threads(1)
  local sets = {}
  for _, s in ipairs(read_sets(cfg.sets)) do sets[s.name] = s end
  local items = {}
  for line in io.lines(cfg.plan) do
    local set, path, uuid, index, split = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(%d+)\t(%a+)$")
    items[#items + 1] = { set = set, f = { path = path, uuid = uuid, index = tonumber(index), split = split } }
  end
  local real_stderr = io.stderr
  local mute = { write = function(self) return self end, flush = function() end }
  for k = cfg.worker + 1, #items, cfg.workers do
    if cfg.deadline > 0 and os.time() >= cfg.deadline then break end
    local item = items[k]
    local name = string.format("Track%05d", item.f.index)
    local t0 = cocola.wall_time()
    S.files = function() return { item.f }, 1, 1 end
    io.stderr = mute
    local ok, summary = pcall(S.run, set_args(sets[item.set]))
    io.stderr = real_stderr
    local took = cocola.wall_time() - t0
    if not ok then
      print(string.format("render: %s %s/%s failed (%.1f s): %s", name, item.set, item.f.split, took, tostring(summary)))
    elseif summary.tracks == 1 then
      print(string.format("render: %s %s/%s %d stems, %.0f s of audio (%.1f s)", name, item.set, item.f.split,
        summary.stems, summary.seconds, took))
    elseif summary.skipped == 1 then
      print(string.format("render: %s %s/%s skipped: %s", name, item.set, item.f.split, (summary.skips[1] or ""):gsub("^%S+: ", "")))
    end
    io.stdout:flush()
  end
end

local function count_done(dir)
  local n = 0
  local p = io.popen("find " .. q(dir) .. " -mindepth 2 -maxdepth 2 -name .done 2>/dev/null")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

local function coordinator()
  local t_start = os.time()
  local sets = read_sets(cfg.sets)
  if not exists(cfg.soundfont) then fail("no soundfont " .. cfg.soundfont) end
  local order = {}
  for si, set in ipairs(sets) do
    local c = S.config(set_args(set))
    local files = S.files(c)
    local by_split = { train = {}, validation = {} }
    for _, f in ipairs(files) do
      if by_split[f.split] then table.insert(by_split[f.split], f) end
    end
    for rank, split in ipairs({ "train", "validation" }) do
      local list = by_split[split]
      for i, f in ipairs(list) do
        order[#order + 1] = { key = (i - 1) / #list, rank = rank, si = si, set = set.name, f = f }
      end
    end
    -- make_midi_stems' settings stamp written once here (workers would race to write it); an output
    -- folder made with other settings is an error
    local out = cfg.out .. "/" .. set.name
    local files_of = S.files
    S.files = function() return {}, 0, 0 end
    local real_stderr = io.stderr
    io.stderr = { write = function(self) return self end, flush = function() end }
    local ok, err = pcall(S.run, set_args(set))
    io.stderr = real_stderr
    S.files = files_of
    if not ok then fail(tostring(err)) end
    -- every split folder exists (cocola.data.open needs it), and no half-written track is left
    os.execute("mkdir -p " .. q(out .. "/train") .. " " .. q(out .. "/validation") .. " && rm -rf " .. q(out .. "/.work"))
    local p = io.popen("cd " .. q(out) .. " && for d in train/Track* validation/Track*; do " ..
      "[ -d \"$d\" ] && [ ! -e \"$d/.done\" ] && echo \"$d\"; done; true")
    for d in p:lines() do os.execute("rm -rf " .. q(out .. "/" .. d)) end
    p:close()
  end
  table.sort(order, function(a, b)
    if a.key ~= b.key then return a.key < b.key end
    if a.rank ~= b.rank then return a.rank < b.rank end
    return a.si < b.si
  end)
  local total = #order
  if cfg.max_files > 0 and #order > cfg.max_files then
    for k = #order, cfg.max_files + 1, -1 do order[k] = nil end
  end
  local plan = cfg.out .. "/.render-plan"
  local f = assert(io.open(plan, "w"))
  for _, o in ipairs(order) do
    f:write(string.format("%s\t%s\t%s\t%d\t%s\n", o.set, o.f.path, o.f.uuid, o.f.index, o.f.split))
  end
  f:close()
  local deadline = cfg.seconds > 0 and t_start + math.floor(cfg.seconds + 0.5) or 0
  print(string.format("render: %d train and validation songs in %d set(s); %d to render%s with %d worker(s) x %d fluidsynth job(s)",
    total, #sets, #order, cfg.seconds > 0 and string.format(", none started after %.0f s", cfg.seconds) or "",
    cfg.workers, cfg.jobs))
  io.stdout:flush()
  local lua = arg[-1] or "lua5.4"
  local cmd = {}
  for w = 0, cfg.workers - 1 do
    local a = { "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1", q(lua), q(arg[0]), "worker=" .. w, "plan=" .. q(plan),
                "deadline=" .. deadline }
    for _, k in ipairs({ "out", "sets", "soundfont", "workers", "jobs", "max_seconds", "fluidsynth" }) do
      a[#a + 1] = q(k .. "=" .. tostring(cfg[k]))
    end
    cmd[#cmd + 1] = table.concat(a, " ") .. " &"
  end
  cmd[#cmd + 1] = "wait"
  os.execute(table.concat(cmd, "\n"))
  local train_tracks, lines = 0, {}
  for _, set in ipairs(sets) do
    local t, v = count_done(cfg.out .. "/" .. set.name .. "/train"), count_done(cfg.out .. "/" .. set.name .. "/validation")
    train_tracks = train_tracks + t
    lines[#lines + 1] = string.format("%s: %d train, %d validation", set.name, t, v)
  end
  local left = 0
  for _, o in ipairs(order) do
    local name = string.format("%s/%s/%s/Track%05d", cfg.out, o.set, o.f.split, o.f.index)
    if not exists(name .. "/.done") and not exists(string.format("%s/%s/.state/Track%05d.skip", cfg.out, o.set, o.f.index)) then
      left = left + 1
    end
  end
  print(string.format("render: tracks %s, in %d s%s", table.concat(lines, "; "), os.time() - t_start,
    left > 0 and string.format("; %d of the %d songs planned were not rendered (time budget)", left, #order) or
      (#order < total and string.format("; %d songs left out (max_files)", total - #order) or "; every song rendered")))
  io.stdout:flush()
  return train_tracks > 0 and 0 or 1
end

if cfg.worker >= 0 then
  worker()
  os.exit(0)
end
local ok, status = pcall(coordinator)
if not ok then fail(tostring(status)) end
if status ~= 0 then io.stderr:write("render: no training track was rendered\n") end
os.exit(status)
