-- cocola.data.moisesdb — MoisesDB: <track-id>/data.json (artist, genre, stems with stemName) and
-- audio under <track-id>/<stem>/<uuid>.wav. Every WAV is its own stem (source level), tagged with
-- its stem folder. Either the tracks are already divided into <root>/{train,valid,test}/ (as the
-- reference expects), or they lie directly under <root> and are split 80/10/10 by a seeded shuffle
-- of the sorted track ids (opts.seed, default 0; opts.fractions = {0.8, 0.1, 0.1}).
local fs = require "cocola.data.fs"
local track = require "cocola.data.track"
local cjson = require "cjson"

local SPLITS = { train = "train", valid = "valid", validation = "valid", test = "test" }

-- a small deterministic generator (splitmix64 on Lua integers) so splits never depend on math.random
local function shuffled(list, seed)
  local state = seed
  local function next_int()
    state = state + 0x9E3779B97F4A7C15
    local z = state
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    return z ~ (z >> 31)
  end
  local out = table.move(list, 1, #list, 1, {})
  for i = #out, 2, -1 do
    local j = (next_int() % i) + 1
    out[i], out[j] = out[j], out[i]
  end
  return out
end

local function read_track(dir, split, id)
  local tdir = fs.join(dir, id)
  local genre
  local text = fs.read(fs.join(tdir, "data.json"))
  if text then
    local ok, meta = pcall(cjson.decode, text)
    if ok and type(meta) == "table" then genre = meta.genre end
  end
  local stems = {}
  for _, stem_dir in ipairs(fs.dirs(tdir)) do
    for _, file in ipairs(fs.files(fs.join(tdir, stem_dir), { "wav" })) do
      stems[#stems + 1] = { name = stem_dir .. "/" .. file, tag = stem_dir, path = fs.join(tdir, stem_dir, file) }
    end
  end
  return track.new("moisesdb", split, id, stems, { genre = genre })
end

return function(root, split, opts)
  opts = opts or {}
  local dirname = SPLITS[split]
  if not dirname then error(string.format("moisesdb: split must be train, valid or test (got '%s')", tostring(split)), 2) end
  local dir, ids
  if fs.is_dir(fs.join(root, dirname)) then
    dir, ids = fs.join(root, dirname), fs.dirs(fs.join(root, dirname))
  else
    local all = fs.list(root, function(name, full) return fs.is_dir(full) and fs.is_file(fs.join(full, "data.json")) end)
    if #all == 0 then error(string.format("moisesdb: no tracks under '%s' (expected <track-id>/data.json or %s/)", root, dirname), 2) end
    local order = shuffled(all, opts.seed or 0)
    local f = opts.fractions or { 0.8, 0.1, 0.1 }
    local n_train = math.floor(#order * f[1] + 0.5)
    local n_valid = math.floor(#order * f[2] + 0.5)
    local lo, hi = 1, n_train
    if dirname == "valid" then lo, hi = n_train + 1, n_train + n_valid end
    if dirname == "test" then lo, hi = n_train + n_valid + 1, #order end
    ids = {}
    for i = lo, hi do ids[#ids + 1] = order[i] end
    table.sort(ids)
    dir = root
  end
  local tracks, skipped = {}, {}
  for _, id in ipairs(ids) do
    local t, why = read_track(dir, split, id)
    if t then tracks[#tracks + 1] = t else skipped[#skipped + 1] = id .. ": " .. why end
  end
  return tracks, skipped
end
