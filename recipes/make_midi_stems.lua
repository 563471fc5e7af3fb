-- make_midi_stems.lua — builds a Slakh2100-style stem dataset from any folders of MIDI files.
-- Each file is split into parts by (channel, program) (cocola.data.midi; channel 10 = drums), every part
-- is rendered with the `fluidsynth` command line and a General MIDI soundfont (reverb and chorus off,
-- fixed gain) to a temporary float WAV, loaded with cocola.audio, down-mixed to mono at 16 kHz, and
-- written as
--   <output>/{train,validation,test}/TrackNNNNN/stems/SNN.flac   non-silent parts, all the same length
--                                              /MIDI/SNN.mid     every part (SMF format 0)
--                                              /mix.flac         mix_scale * sum of the stems as saved
--                                              /all_src.mid      the source file
--                                              /metadata.yaml    per stem: inst_class (GM family or
--     Drums), program_num, is_drum, audio_rendered, midi_saved, channel, notes; track: uuid,
--     source_file, sample_rate, samples, stem_gain, mix_scale, ...
--                                              /.done            written last (resume skips the track)
-- Silent parts (RMS below silence_db dBFS) keep their MIDI with audio_rendered: false; tracks with
-- fewer than min_stems audible stems are skipped (noted in <output>/.state/TrackNNNNN.skip).
-- Splits are by file: files are found recursively (*.mid, *.midi, *.kar), sorted by path, de-duplicated
-- by content, numbered in that order, then shuffled with `seed` and cut by `split`; `splits` keeps the
-- files of the named splits only (their TrackNNNNN numbers and splits are those of the full run);
-- max_files then takes the first of them in the shuffled order, so a small run samples every split.
-- Cross-sound test sets: the test split alone, rendered with another soundfont into its own folder,
-- holds the same songs under the same track names as the default rendering's test split, e.g.
--   lua5.4 recipes/make_midi_stems.lua splits=test soundfont=/usr/share/sounds/sf2/TimGM6mb.sf2 output=data/midi_stems_timgm
-- Stems are scaled by one stem_gain per track (< 1 only when a part would clip) and saved as PCM16;
-- the mix is the sum of the saved stems times mix_scale (< 1 only when the sum would clip).
--
-- Usage: lua5.4 recipes/make_midi_stems.lua [key=value ...]   (see `defaults` below; lists: a,b,c)
--   e.g. lua5.4 recipes/make_midi_stems.lua input=/usr/share/games/simutrans/music output=data/midi_stems max_files=5
-- Needs: fluidsynth and a GM soundfont (Debian: fluidsynth, fluid-soundfont-gm).
-- As a module: dofile("recipes/make_midi_stems.lua").run({key = value, ...}) -> summary table.
local cocola = require "cocola"
local audio = require "cocola.audio"
local midi = require "cocola.data.midi"

local M = {}

M.defaults = {
  input = "/usr/share/games/simutrans/music,/usr/share/games/dink,/usr/share/planetblupi/music,/usr/share/doc/mma/examples",
  output = "data/midi_stems",
  seed = 0,
  split = "0.8,0.1,0.1", -- train, validation, test
  splits = "train,validation,test", -- the splits to render (the others are left out, numbering unchanged)
  soundfont = "/usr/share/sounds/sf2/FluidR3_GM.sf2",
  fluidsynth = "fluidsynth",
  jobs = 2, -- fluidsynth processes at once
  max_files = 0, -- 0: all
  max_seconds = 0, -- 0: whole songs; else every track is cut there
  sr = 16000,
  gain = 0.5, -- fluidsynth -g, fixed for every part
  silence_db = -60, -- a part whose RMS is below this (dBFS) is not rendered to a stem
  min_stems = 2,
  tail_beats = 2, -- rendered past the last event (release tails)
  quiet = false, -- no progress bar
}

local SPLITS = { "train", "validation", "test" }

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end
local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end
local function read_all(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
local function write_all(p, s)
  local f = assert(io.open(p, "wb"))
  f:write(s)
  f:close()
end

-- FNV-1a 64 over a string (wrapping integer arithmetic), with a chosen offset basis
local function fnv(s, basis)
  local h = basis or -3750763034362895579 -- 0xcbf29ce484222325
  for i = 1, #s do
    h = (h ~ s:byte(i)) * 1099511628211
  end
  return h
end

local function uuid_of(s)
  local a, b = fnv(s), fnv(s, 0x6a09e667f3bcc908)
  local hex = string.format("%016x%016x", a, b)
  return string.format("%s-%s-%s-%s-%s", hex:sub(1, 8), hex:sub(9, 12), hex:sub(13, 16), hex:sub(17, 20), hex:sub(21, 32))
end

-- deterministic Fisher-Yates with a 64-bit LCG (PCG constants), independent of math.random
local function shuffle(t, seed)
  local state = (seed * 2862933555777941757 + 3037000493) | 1
  for i = #t, 2, -1 do
    state = state * 6364136223846793005 + 1442695040888963407
    local j = ((state >> 33) % i) + 1
    t[i], t[j] = t[j], t[i]
  end
end

local function list(s)
  local out = {}
  for x in tostring(s):gmatch("[^,]+") do out[#out + 1] = x:match("^%s*(.-)%s*$") end
  return out
end

--- config(args) -> settings: defaults overridden by a table or by "key=value" strings; unknown keys fail.
function M.config(args)
  local c = {}
  for k, v in pairs(M.defaults) do c[k] = v end
  for k, v in pairs(args or {}) do
    if math.type(k) == "integer" and k < 1 then goto continue end -- arg[0], arg[-1]: the script, the interpreter
    if type(k) == "number" then
      local key, val = tostring(v):match("^([%w_]+)=(.*)$")
      if not key then error("make_midi_stems: expected key=value, got '" .. tostring(v) .. "'", 0) end
      k, v = key, val
    end
    if M.defaults[k] == nil then error("make_midi_stems: unknown setting '" .. k .. "'", 0) end
    local d = M.defaults[k]
    if type(d) == "number" then
      v = tonumber(v) or error("make_midi_stems: " .. k .. " must be a number", 0)
    elseif type(d) == "boolean" and type(v) == "string" then
      v = v == "true" or v == "1" or v == "yes"
    end
    c[k] = v
    ::continue::
  end
  local fr = {}
  for _, x in ipairs(list(c.split)) do fr[#fr + 1] = tonumber(x) or error("make_midi_stems: split must be 3 numbers", 0) end
  if #fr ~= 3 or fr[1] < 0 or fr[2] < 0 or fr[3] < 0 or fr[1] + fr[2] + fr[3] <= 0 then
    error("make_midi_stems: split must be 3 non-negative fractions, e.g. 0.8,0.1,0.1", 0)
  end
  c.fractions = fr
  c.wanted = {}
  for _, name in ipairs(list(c.splits)) do
    local known = false
    for _, sp in ipairs(SPLITS) do known = known or sp == name end
    if not known then
      error("make_midi_stems: splits: unknown split '" .. name .. "' (known: " .. table.concat(SPLITS, ", ") .. ")", 0)
    end
    c.wanted[name] = true
  end
  if not next(c.wanted) then error("make_midi_stems: splits: name at least one of " .. table.concat(SPLITS, ", "), 0) end
  c.jobs = math.max(1, math.floor(c.jobs))
  return c
end

--- files(config) -> list of {path, uuid (content hash), index (track number), split}, in processing order:
-- the files of the wanted splits (setting `splits`), at most max_files of them.
function M.files(c)
  local paths = {}
  for _, dir in ipairs(list(c.input)) do
    local p = io.popen("find -L " .. q(dir) .. " -type f \\( -iname '*.mid' -o -iname '*.midi' -o -iname '*.kar' \\) 2>/dev/null")
    for line in p:lines() do paths[#paths + 1] = line end
    p:close()
  end
  table.sort(paths)
  local seen, files = {}, {}
  for _, path in ipairs(paths) do
    local s = read_all(path)
    local h = uuid_of(s)
    if not seen[h] then
      seen[h] = true
      files[#files + 1] = { path = path, uuid = h, index = #files + 1 }
    end
  end
  local order = {}
  for i = 1, #files do order[i] = files[i] end
  shuffle(order, c.seed)
  local total = c.fractions[1] + c.fractions[2] + c.fractions[3]
  local n = #order
  local n_train = math.floor(n * c.fractions[1] / total + 0.5)
  local n_val = math.floor(n * c.fractions[2] / total + 0.5)
  if n_train + n_val > n then n_val = n - n_train end
  for k, f in ipairs(order) do
    f.split = k <= n_train and "train" or (k <= n_train + n_val and "validation" or "test")
  end
  local chosen = {}
  for _, f in ipairs(order) do
    if c.wanted[f.split] and (c.max_files <= 0 or #chosen < c.max_files) then chosen[#chosen + 1] = f end
  end
  return chosen, #files, #paths
end

local function yaml_str(s) return '"' .. tostring(s):gsub('\\', '\\\\'):gsub('"', '\\"') .. '"' end

local function metadata(c, f, parts, info)
  local out = {
    "uuid: " .. f.uuid,
    "source_file: " .. yaml_str(f.path),
    "split: " .. f.split,
    "audio_dir: stems",
    "midi_dir: MIDI",
    "sample_rate: " .. c.sr,
    "samples: " .. info.samples,
    string.format("seconds: %.3f", info.samples / c.sr),
    "soundfont: " .. yaml_str(c.soundfont),
    "fluidsynth_gain: " .. c.gain,
    string.format("stem_gain: %.9g", info.stem_gain),
    string.format("mix_scale: %.9g", info.mix_scale),
    "stems:",
  }
  for k, p in ipairs(parts) do
    out[#out + 1] = string.format("  S%02d:", k - 1)
    out[#out + 1] = "    inst_class: " .. (p.is_drum and "Drums" or midi.family(p.program))
    out[#out + 1] = "    program_num: " .. p.program
    out[#out + 1] = "    is_drum: " .. tostring(p.is_drum)
    out[#out + 1] = "    audio_rendered: " .. tostring(p.rendered)
    out[#out + 1] = "    midi_saved: true"
    out[#out + 1] = "    channel: " .. p.channel
    out[#out + 1] = "    notes: " .. p.notes
    out[#out + 1] = string.format("    rms_db: %.2f", p.rms_db)
  end
  return table.concat(out, "\n") .. "\n"
end

-- renders one file; returns "done", nstems, samples or "skip", reason
local function make_track(c, f)
  local name = string.format("Track%05d", f.index)
  local dir = string.format("%s/%s/%s", c.output, f.split, name)
  local work = string.format("%s/.work/%s", c.output, name)
  local ok, song = pcall(midi.read, f.path)
  if not ok then return "skip", "unreadable MIDI: " .. tostring(song) end
  local parts = midi.split(song, { tail_beats = c.tail_beats, max_seconds = c.max_seconds > 0 and c.max_seconds or nil })
  if #parts < c.min_stems then return "skip", string.format("%d part(s) with notes", #parts) end

  sh("rm -rf " .. q(work) .. " && mkdir -p " .. q(work))
  local cmds = {}
  for k, p in ipairs(parts) do
    p.mid = string.format("%s/S%02d.mid", work, k - 1)
    p.wav = string.format("%s/S%02d.wav", work, k - 1)
    midi.write_file(p.mid, p.events, song.division, p.end_tick)
    cmds[k] = string.format("%s -ni -q -R 0 -C 0 -g %s -r %d -T wav -O float -F %s %s %s >%s 2>&1", c.fluidsynth,
      tostring(c.gain), c.sr, q(p.wav), q(c.soundfont), q(p.mid), q(p.wav .. ".log"))
  end
  write_all(work .. "/render.sh", table.concat(cmds, "\n") .. "\n")
  sh(string.format("xargs -d '\\n' -P %d -I CMD sh -c CMD < %s", c.jobs, q(work .. "/render.sh")))

  local threshold = 10 ^ (c.silence_db / 20)
  local waves, length, audible = {}, 0, 0
  for k, p in ipairs(parts) do
    if not exists(p.wav) then
      local log = exists(p.wav .. ".log") and read_all(p.wav .. ".log") or ""
      error(string.format("fluidsynth rendered nothing for %s part %d: %s", f.path, k, log), 0)
    end
    local w, rate = audio.load(p.wav, { mono = true })
    if rate ~= c.sr then w = audio.resample(w, rate, c.sr) end
    local rms = w:size(2) > 0 and (w * w):mean():sqrt():item() or 0
    p.rms_db = rms > 0 and 20 * math.log(rms, 10) or -200
    p.rendered = rms >= threshold
    if p.rendered then
      audible = audible + 1
      waves[k] = w
      length = math.max(length, w:size(2))
    end
  end
  if audible < c.min_stems then
    sh("rm -rf " .. q(work))
    return "skip", string.format("%d audible stem(s) of %d parts", audible, #parts)
  end
  if c.max_seconds > 0 then length = math.min(length, math.floor(c.max_seconds * c.sr + 0.5)) end

  local peak = 0
  for k in pairs(waves) do
    local w = waves[k]
    if w:size(2) > length then w = w:narrow(2, 1, length) end
    if w:size(2) < length then w = cocola.pad(w, { 0, length - w:size(2) }) end
    waves[k] = w
    peak = math.max(peak, w:abs():max():item())
  end
  local stem_gain = peak > 0.99 and 0.99 / peak or 1.0

  sh("rm -rf " .. q(dir) .. " && mkdir -p " .. q(dir .. "/stems") .. " " .. q(dir .. "/MIDI"))
  local sum
  for k, p in ipairs(parts) do
    local stem = string.format("S%02d", k - 1)
    write_all(string.format("%s/MIDI/%s.mid", dir, stem), read_all(p.mid))
    if p.rendered then
      local path = string.format("%s/stems/%s.flac", dir, stem)
      audio.save(path, stem_gain == 1 and waves[k] or waves[k] * stem_gain, c.sr, { subtype = "pcm16" })
      local saved = audio.load(path) -- the mix is built from the stems exactly as stored
      sum = sum and sum + saved or saved
    end
  end
  local mpeak = sum:abs():max():item()
  local mix_scale = mpeak > 0.99 and 0.99 / mpeak or 1.0
  audio.save(dir .. "/mix.flac", mix_scale == 1 and sum or sum * mix_scale, c.sr, { subtype = "pcm16" })
  write_all(dir .. "/all_src.mid", read_all(f.path))
  write_all(dir .. "/metadata.yaml", metadata(c, f, parts, { samples = length, stem_gain = stem_gain, mix_scale = mix_scale }))
  write_all(dir .. "/.done", "")
  sh("rm -rf " .. q(work))
  return "done", audible, length
end

local function bar(done, total, stems, secs, t0)
  local width = 30
  local filled = total > 0 and math.floor(width * done / total) or width
  local el = cocola.wall_time() - t0
  local eta = done > 0 and el / done * (total - done) or 0
  io.stderr:write(string.format("\r[%s%s] %d/%d tracks | %d stems | %.1f min audio | %.0f s elapsed | eta %.0f s ",
    string.rep("#", filled), string.rep("-", width - filled), done, total, stems, secs / 60, el, eta))
  io.stderr:flush()
end

--- run(settings table or key=value list) -> summary {tracks, skipped, resumed, stems, seconds, wall_s, by_split}
function M.run(args)
  local c = M.config(args)
  local log = function(fmt, ...) io.stderr:write(string.format(fmt, ...) .. "\n") end
  log("make_midi_stems settings:")
  local keys = {}
  for k in pairs(M.defaults) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do log("  %-12s = %s", k, tostring(c[k])) end
  if not exists(c.soundfont) then error("make_midi_stems: soundfont not found: " .. c.soundfont, 0) end
  if not sh(c.fluidsynth .. " --version >/dev/null 2>&1") then
    error("make_midi_stems: '" .. c.fluidsynth .. "' not runnable (apt-get install fluidsynth)", 0)
  end

  -- a resumed run must use the same split settings, or tracks would land in two splits
  sh("mkdir -p " .. q(c.output .. "/.state"))
  local stamp = string.format("seed=%s split=%s input=%s max_seconds=%s sr=%s\n", tostring(c.seed), c.split, c.input,
    tostring(c.max_seconds), tostring(c.sr))
  local stamp_path = c.output .. "/.state/settings"
  if exists(stamp_path) then
    if read_all(stamp_path) ~= stamp then
      error("make_midi_stems: " .. c.output .. " was made with other settings (" .. read_all(stamp_path):gsub("\n", "") ..
        "); use another output folder", 0)
    end
  else
    write_all(stamp_path, stamp)
  end

  local files, unique, found = M.files(c)
  log("  %d MIDI files found, %d distinct, %d to process", found, unique, #files)
  local t0 = cocola.wall_time()
  local s = { tracks = 0, skipped = 0, resumed = 0, stems = 0, seconds = 0, by_split = {}, skips = {} }
  for _, sp in ipairs(SPLITS) do s.by_split[sp] = 0 end
  local logf = io.open(c.output .. "/.state/log.txt", "a")
  for i, f in ipairs(files) do
    local name = string.format("Track%05d", f.index)
    local done_path = string.format("%s/%s/%s/.done", c.output, f.split, name)
    local skip_path = string.format("%s/.state/%s.skip", c.output, name)
    if exists(done_path) or exists(skip_path) then
      s.resumed = s.resumed + 1
    else
      local status, a, b = make_track(c, f)
      collectgarbage() -- tensors are userdata: free the waves of this track now
      if status == "done" then
        s.tracks, s.stems, s.seconds = s.tracks + 1, s.stems + a, s.seconds + b / c.sr
        s.by_split[f.split] = s.by_split[f.split] + 1
        logf:write(string.format("%s %s %s: %d stems, %.1f s\n", name, f.split, f.path, a, b / c.sr))
      else
        s.skipped = s.skipped + 1
        s.skips[#s.skips + 1] = name .. ": " .. a
        write_all(skip_path, f.path .. ": " .. a .. "\n")
        logf:write(string.format("%s %s skipped: %s\n", name, f.path, a))
      end
      logf:flush()
    end
    if not c.quiet then bar(i, #files, s.stems, s.seconds, t0) end
  end
  logf:close()
  sh("rmdir " .. q(c.output .. "/.work") .. " 2>/dev/null")
  if not c.quiet then io.stderr:write("\n") end
  s.wall_s = cocola.wall_time() - t0
  log("made %d tracks (train %d, validation %d, test %d), %d stems, %.1f min of audio in %.1f s (%.1fx real time); " ..
      "%d skipped, %d already done", s.tracks, s.by_split.train, s.by_split.validation, s.by_split.test, s.stems,
      s.seconds / 60, s.wall_s, s.seconds / math.max(s.wall_s, 1e-9), s.skipped, s.resumed)
  for _, why in ipairs(s.skips) do log("  skipped %s", why) end
  return s
end

if arg and arg[0] and arg[0]:match("make_midi_stems%.lua$") then
  local ok, err = pcall(M.run, arg)
  if not ok then
    io.stderr:write(tostring(err) .. "\n")
    os.exit(1)
  end
end

return M
