-- cocola.recipes.prepare — resamples a stem dataset once into the stems folder layout
-- <out>/<split>/<track>/<stem>.flac: 16 kHz (setting sample_rate), mono (mean of the channels, as the
-- reference down-mixes), FLAC PCM (setting subtype, pcm16 or pcm24), so that training never
-- decodes 44.1 kHz stereo or resamples again. Any layout cocola.data.open reads is accepted (musdb,
-- moisesdb, slakh, cocochorales, stems_folder); only stems are copied, never mixtures.
--
-- Parallel: the stems still to write are listed in <out>/.prepare-jobs.json and `workers` child
-- processes (the same interpreter, running this module with worker=i) each convert the stems whose
-- position modulo `workers` is i, printing one line per stem on a shared pipe that the parent reads to
-- draw the progress bar; workers=1 converts in this process.
-- Resumable: a stem is written to a hidden temporary file (.<stem>.tmp<pid>.flac) and renamed into place,
-- so an output file that exists is complete; stems whose output exists with the right rate, channel
-- count and length are skipped. Re-running after an interruption finishes the rest; re-running when
-- all is done only rewrites the index.
-- A start first removes what a killed run left (stem temporaries, the job list).
-- Index (keys sorted: the same dataset gives the same bytes): <out>/index.json = {sample_rate, subtype, source = {layout, root}, splits = {<split> =
-- {{name, duration, stems = {{name, tag, path (relative to out), frames, source, is_drum?,
-- program?}}}}}}, written atomically at the end; cocola.data.open("stems_folder", out, split) reads
-- the output back (its tags are then the stem names; the dataset's tags are in the index).
-- Stem and track names are the dataset's, with characters unsafe in file names replaced by "_".
-- Tracks the dataset reader skips for having no stems are reported; tracks it skips because a file
-- cannot be read are an error unless skip_unreadable=true.
-- Run as: lua5.4 recipes/prepare.lua layout=musdb root=data/musdb18hq out=data/musdb16k splits=train,test
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local data = require "cocola.data"
local fs = require "cocola.data.fs"
local cjson = require "cjson"
local lfs = require "lfs"

local DEFAULTS = {
  layout = "slakh", root = "", out = "", splits = "train,validation,test", sample_rate = 16000,
  subtype = "pcm16", workers = 2, skip_unreadable = false,
  worker = -1, -- internal: >= 0 makes this process worker number `worker` of a parent run
}

local SUBTYPES = { pcm16 = true, pcm24 = true }
local JOBS_FILE = ".prepare-jobs.json"

local M = {}

-- error messages without the "file:line:" position Lua adds
local function plain(err)
  return (tostring(err):gsub("^[^\n:]+:%d+: ", ""))
end

local function split_list(text)
  local out = {}
  for s in text:gmatch("[^,%s]+") do out[#out + 1] = s end
  return out
end

--- a name safe as one file-name component: no path separators, control or shell-hostile characters,
-- no leading dot (hidden files are not read back) and never empty
function M.sanitize(name)
  local s = tostring(name):gsub("[/\\:%*%?\"<>|%c]", "_"):gsub("^%s+", ""):gsub("%s+$", "")
  s = s:gsub("^%.", "_")
  if s == "" then s = "_" end
  return s
end

local AUDIO_EXT = { wav = true, flac = true, ogg = true, aiff = true, aif = true, mp3 = true }

-- stem file name (without extension) from the dataset's stem name: the dataset's name less an audio
-- extension (MoisesDB names stems "<stem>/<uuid>.wav"), sanitised; "mix" and "mixture" are renamed
-- because the stems folder reader takes them for mixtures
local function stem_file_name(name)
  local base, ext = tostring(name):match("^(.*)%.([^./]+)$")
  if base and AUDIO_EXT[ext:lower()] then name = base end
  local s = M.sanitize(name)
  if s == "mix" or s == "mixture" then s = s .. "_stem" end
  return s
end

-- unique within `used` (a set), by appending _2, _3, ...
local function unique(name, used)
  local candidate, k = name, 1
  while used[candidate] do
    k = k + 1
    candidate = name .. "_" .. k
  end
  used[candidate] = true
  return candidate
end

local function absolute(path)
  if path:sub(1, 1) ~= "/" then path = lfs.currentdir() .. "/" .. path end
  path = path .. "/"
  path = path:gsub("/%./", "/"):gsub("//+", "/")
  repeat
    local n
    path, n = path:gsub("/[^/]+/%.%./", "/", 1)
  until n == 0
  return (path:gsub("/$", ""))
end

-- number of samples a full-length resample of `frames` at `from` Hz to `to` Hz has (soxr: ceil)
local function expected_frames(frames, from, to)
  if from == to then return frames end
  return (frames * to + from - 1) // from
end

-- true when dst holds a finished conversion: readable, the right rate, mono, the expected length
local function complete(job, sample_rate)
  if not fs.is_file(job.dst) then return false end
  local ok, info = pcall(cocola.audio.info, job.dst)
  return ok and info.rate == sample_rate and info.channels == 1 and math.abs(info.frames - job.expected) <= 1
end

-- this process's id (a temporary name of its own: a worker left running by a killed run never writes
-- the file another process is writing)
local PID = (function()
  local f = io.open("/proc/self/stat", "r")
  local id = f and f:read("l"):match("^(%d+)")
  if f then f:close() end
  return id or tostring(os.time())
end)()

-- converts one stem: load (down-mix, resample), write a hidden temporary file, rename into place
local function convert(job, sample_rate, subtype)
  local dir, file = job.dst:match("^(.*)/([^/]+)$")
  local tmp = dir .. "/." .. file:gsub("%.flac$", "") .. ".tmp" .. PID .. ".flac"
  local wave = cocola.audio.load(job.src, { sr = sample_rate, mono = true })
  cocola.audio.save(tmp, wave, sample_rate, { subtype = subtype })
  local ok, err = os.rename(tmp, job.dst)
  if not ok then
    os.remove(tmp)
    error("cannot rename " .. tmp .. " to " .. job.dst .. ": " .. tostring(err), 0)
  end
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- the interpreter running this process (arg's lowest negative index), else lua5.4
local function interpreter()
  local a = rawget(_G, "arg")
  if type(a) ~= "table" then return "lua5.4" end
  local i = 0
  while a[i - 1] ~= nil do i = i - 1 end
  return i < 0 and a[i] or "lua5.4"
end

-- one shell command running n workers of this module concurrently, their stdout and stderr merged on
-- one pipe, each followed by a line "@exit <worker> <status>"
local function workers_command(cfg, n)
  local parts = {}
  for w = 0, n - 1 do
    local code = string.format(
      "package.path = %q; package.cpath = %q; os.exit(require('cocola.recipes.prepare').main({%q, %q, %q}))",
      package.path, package.cpath, "out=" .. cfg.out, "worker=" .. w, "workers=" .. n)
    parts[#parts + 1] = string.format("( %s -e %s 2>&1; echo \"@exit %d $?\" ) &",
      shell_quote(interpreter()), shell_quote(code), w)
  end
  return "{ " .. table.concat(parts, " ") .. " wait; } 2>&1"
end

-- worker mode: convert this worker's share of the job file, one line per stem on stdout
local function run_worker(cfg)
  cocola.set_num_threads(1)
  local text = recipe.read(fs.join(cfg.out, JOBS_FILE))
  if not text then error("worker: no job list " .. fs.join(cfg.out, JOBS_FILE), 0) end
  local list = cjson.decode(text)
  io.stdout:setvbuf("line")
  local failed = 0
  for i, job in ipairs(list.jobs) do
    if (i - 1) % cfg.workers == cfg.worker then
      local ok, err = pcall(convert, job, list.sample_rate, list.subtype)
      if ok then
        io.stdout:write("@done ", i, "\n")
      else
        failed = failed + 1
        -- one line, short enough to be written atomically on the shared pipe
        io.stdout:write("@fail ", i, " ", plain(err):gsub("%s*\n%s*", " "):sub(1, 2000), "\n")
      end
      io.stdout:flush()
    end
  end
  if failed > 0 then error(string.format("worker %d: %d stems failed", cfg.worker, failed), 0) end
end

-- lists every stem of the requested splits: tracks (per split, with output names) and jobs
local function plan(cfg, log)
  local splits = split_list(cfg.splits)
  if #splits == 0 then error("splits: no split given", 0) end
  local plan_ = { splits = {}, jobs = {}, skipped = {} }
  local unreadable = {}
  for _, split in ipairs(splits) do
    local ok, tracks, skipped = pcall(data.open, cfg.layout, cfg.root, split)
    if not ok then
      local msg = plain(tracks)
      if msg:find("unknown dataset layout", 1, true) then error(msg, 0) end
      error(string.format("split '%s': %s", split, msg), 0)
    end
    for _, why in ipairs(skipped) do
      local line = split .. "/" .. why:gsub("%S+%.lua:%d+: ", "")
      if why:match(": no stems$") then
        plan_.skipped[#plan_.skipped + 1] = line
      else
        unreadable[#unreadable + 1] = line
      end
    end
    local entries, track_names = {}, {}
    for _, t in ipairs(tracks) do
      local tname = unique(M.sanitize(t.name), track_names)
      local entry = { name = tname, stems = {} }
      local stem_names = {}
      for _, s in ipairs(t.stems) do
        local sname = unique(stem_file_name(s.name), stem_names)
        local rel = fs.join(split, tname, sname .. ".flac")
        local job = {
          src = s.path, dst = fs.join(cfg.out, rel),
          expected = expected_frames(s.frames, s.sample_rate, cfg.sample_rate),
        }
        if absolute(job.src) == absolute(job.dst) then
          error(string.format("out=%s would overwrite the source file %s", cfg.out, s.path), 0)
        end
        plan_.jobs[#plan_.jobs + 1] = job
        entry.stems[#entry.stems + 1] = {
          name = sname, tag = s.tag, path = rel, source = s.path, is_drum = s.is_drum, program = s.program, job = job,
        }
      end
      entries[#entries + 1] = entry
    end
    plan_.splits[#plan_.splits + 1] = { name = split, tracks = entries }
  end
  for _, line in ipairs(plan_.skipped) do log("skipped " .. line) end
  if #unreadable > 0 then
    if not cfg.skip_unreadable then
      error(string.format("%d tracks have unreadable audio (skip_unreadable=true skips them):\n  %s",
        #unreadable, table.concat(unreadable, "\n  ")), 0)
    end
    for _, line in ipairs(unreadable) do
      log("skipped (unreadable) " .. line)
      plan_.skipped[#plan_.skipped + 1] = line
    end
  end
  return plan_
end

-- converts the pending jobs, in this process or in workers; returns the list of failures and the
-- number of worker processes used (0: in this process)
local function convert_all(cfg, pending, log)
  local failures = {}
  local done, t0 = 0, cocola.wall_time()
  local function report(job, err)
    if err then failures[#failures + 1] = string.format("%s: %s", job.src, err) end
    done = done + 1
    local elapsed = cocola.wall_time() - t0
    recipe.progress("prepare", done, #pending, string.format("%.0f s, %.0f s left%s", elapsed,
      elapsed / done * (#pending - done), #failures > 0 and string.format(", %d failed", #failures) or ""))
  end
  local n = math.min(cfg.workers, #pending)
  if n <= 1 then
    for _, job in ipairs(pending) do
      local ok, err = pcall(convert, job, cfg.sample_rate, cfg.subtype)
      report(job, not ok and plain(err) or nil)
    end
    return failures, 0
  end
  local jobs_path = fs.join(cfg.out, JOBS_FILE)
  local list = { sample_rate = cfg.sample_rate, subtype = cfg.subtype, jobs = {} }
  for i, job in ipairs(pending) do list.jobs[i] = { src = job.src, dst = job.dst } end
  recipe.write_atomic(jobs_path, cjson.encode(list))
  log(string.format("converting with %d workers", n))
  local pipe = assert(io.popen(workers_command(cfg, n), "r"))
  local exits, other = {}, {}
  for line in pipe:lines() do
    local kind, rest = line:match("^@(%a+) (.*)$")
    if kind == "done" then
      report(pending[tonumber(rest)])
    elseif kind == "fail" then
      local i, msg = rest:match("^(%d+) (.*)$")
      report(pending[tonumber(i)], msg)
    elseif kind == "exit" then
      local w, status = rest:match("^(%d+) (%d+)$")
      exits[tonumber(w)] = tonumber(status)
    else
      other[#other + 1] = line
    end
  end
  pipe:close()
  os.remove(jobs_path)
  for w = 0, n - 1 do
    if exits[w] ~= 0 and #failures == 0 then
      -- a worker that died without reporting a stem (crash, missing module, killed)
      failures[#failures + 1] = string.format("worker %d exited with status %s%s", w, tostring(exits[w]),
        #other > 0 and (": " .. table.concat(other, " | ")) or "")
    end
  end
  if done < #pending and #failures == 0 then
    failures[#failures + 1] = string.format("workers reported %d of %d stems", done, #pending)
  end
  return failures, n
end

-- JSON with the keys of every object sorted, so that the same index is the same bytes in every run
-- (cjson's key order follows Lua's hash order, which differs between processes)
local function encode_sorted(v)
  if type(v) ~= "table" then return cjson.encode(v) end
  if #v > 0 or next(v) == nil then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = encode_sorted(x) end
    return next(v) == nil and "{}" or "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = cjson.encode(k) .. ":" .. encode_sorted(v[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- removes what a killed run left behind: hidden stem temporaries (.<stem>.tmp<pid>.flac, and the
-- .flac.tmp that audio.save writes beside one before renaming it), the workers' job list, index.json's
-- temporary
local function remove_stale(out)
  local function walk(d)
    for name in lfs.dir(d) do
      if name ~= "." and name ~= ".." then
        local path = d .. "/" .. name
        local mode = lfs.attributes(path, "mode")
        if mode == "directory" then
          walk(path)
        elseif mode == "file" and (name:match("^%..*%.tmp%d*%.flac$") or name:match("^%..*%.tmp%d*%.flac%.tmp$") or name == JOBS_FILE or name == JOBS_FILE .. ".tmp"
            or name == "index.json.tmp") then
          os.remove(path)
        end
      end
    end
  end
  if fs.is_dir(out) then walk(out) end
end

local function write_index(cfg, p)
  local placeholder = "__cocola_prepare_empty_split__"
  local index = { sample_rate = cfg.sample_rate, subtype = cfg.subtype, source = { layout = cfg.layout, root = cfg.root }, splits = {} }
  for _, split in ipairs(p.splits) do
    fs.mkdir_p(fs.join(cfg.out, split.name)) -- an empty split still reads back as a split
    local tracks = {}
    for _, t in ipairs(split.tracks) do
      local stems, frames = {}, math.huge
      for _, s in ipairs(t.stems) do
        local info = cocola.audio.info(s.job.dst)
        frames = math.min(frames, info.frames)
        stems[#stems + 1] = {
          name = s.name, tag = s.tag, path = s.path, frames = info.frames, source = s.source,
          is_drum = s.is_drum, program = s.program,
        }
      end
      tracks[#tracks + 1] = { name = t.name, duration = frames / cfg.sample_rate, stems = stems }
    end
    index.splits[split.name] = #tracks > 0 and tracks or placeholder
  end
  -- cjson writes an empty table as {}; an empty split is a list
  local text = encode_sorted(index):gsub('"' .. placeholder .. '"', "[]")
  local path = fs.join(cfg.out, "index.json")
  recipe.write_atomic(path, text)
  return path
end

--- runs the preparation with a config table; returns a summary {stems, written, existing, tracks,
-- skipped (list of "split/track: reason"), workers (child processes used, 0: none), index (path)}.
-- log (default print) receives the text lines.
function M.run(cfg, log)
  log = log or print
  if cfg.worker >= 0 then return run_worker(cfg) end
  recipe.log_config(cfg)
  if cfg.root == "" then error("set root=<dataset directory>", 0) end
  if cfg.out == "" then error("set out=<output directory>", 0) end
  if not fs.is_dir(cfg.root) then error(string.format("root '%s' is not a directory", cfg.root), 0) end
  if not SUBTYPES[cfg.subtype] then error(string.format("subtype must be pcm16 or pcm24 (got '%s')", cfg.subtype), 0) end
  if cfg.sample_rate <= 0 then error("sample_rate must be positive", 0) end
  if cfg.workers < 1 then error("workers must be at least 1", 0) end
  if absolute(cfg.root) == absolute(cfg.out) then error("out must differ from root", 0) end

  remove_stale(cfg.out)
  local p = plan(cfg, log)
  local pending, n_tracks = {}, 0
  for _, split in ipairs(p.splits) do
    n_tracks = n_tracks + #split.tracks
    for _, t in ipairs(split.tracks) do fs.mkdir_p(fs.join(cfg.out, split.name, t.name)) end
  end
  for _, job in ipairs(p.jobs) do
    if not complete(job, cfg.sample_rate) then pending[#pending + 1] = job end
  end
  local existing = #p.jobs - #pending
  log(string.format("%d tracks, %d stems: %d already prepared, %d to write; %d tracks skipped",
    n_tracks, #p.jobs, existing, #pending, #p.skipped))
  local workers = 0
  if #pending > 0 then
    local failures
    failures, workers = convert_all(cfg, pending, log)
    if #failures > 0 then
      local shown = table.move(failures, 1, math.min(#failures, 20), 1, {})
      error(string.format("%d stems failed (the others are kept; re-run to resume):\n  %s%s", #failures,
        table.concat(shown, "\n  "), #failures > #shown and "\n  ..." or ""), 0)
    end
  end
  local index = write_index(cfg, p)
  log(string.format("wrote %d stems (%d already prepared); index %s", #pending, existing, index))
  return { stems = #p.jobs, written = #pending, existing = existing, tracks = n_tracks, skipped = p.skipped,
    workers = workers, index = index }
end

M.DEFAULTS = DEFAULTS

--- command-line entry: key=value arguments -> run; errors go to stderr with a non-zero status
function M.main(args)
  return recipe.main("prepare", DEFAULTS, M.run, args)
end

return M
