-- recipes/make_examples.lua — writes the example pairs that `make demo` scores, from held-out (test
-- split) tracks of the MIDI-rendered dataset (recipes/make_midi_stems.lua). Each pair is a condition
-- (drums, bass and chords: the stems of the lower half by instrument family, drums first) and an
-- accompaniment (the other stems), 10 s each, 16 kHz mono FLAC:
--   <out>/cond/<pair>.flac and <out>/gen/<pair>.flac
--   coherent_N     condition and accompaniment from the same window of one song
--   incoherent_N   the condition of song N with the accompaniment of another song
--   shifted_N      the same song's accompaniment taken 0.37 s later (off the beat: same key and
--                  instruments, broken rhythm)
-- and <out>/SOURCES.txt naming the source MIDI files and their licences.
-- Usage: lua5.4 recipes/make_examples.lua [root=data/midi_stems] [out=assets/examples]
--        [tracks=Track00078,Track00093,Track00108] [duration=10] [at=0.3]
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local fs = require "cocola.data.fs"
local lyaml = require "lyaml"

local DEFAULTS = {
  root = "data/midi_stems", split = "test", out = "assets/examples",
  tracks = "Track00078,Track00093,Track00108", duration = 10.0, at = 0.3, shift = 0.37, silence_rms = 1e-3,
}

local RATE = 16000

local function run(cfg)
  recipe.log_config(cfg)
  local all = cocola.data.open("slakh", cfg.root, cfg.split)
  local by_name = {}
  for _, t in ipairs(all) do by_name[t.name] = t end
  local chosen = {}
  for name in cfg.tracks:gmatch("[^,]+") do
    local t = by_name[name]
    if not t then error("no track '" .. name .. "' in " .. cfg.root .. "/" .. cfg.split, 0) end
    chosen[#chosen + 1] = t
  end
  if #chosen < 2 then error("need at least two tracks", 0) end
  fs.mkdir_p(cfg.out .. "/cond")
  fs.mkdir_p(cfg.out .. "/gen")

  -- the two halves of a track at an offset: condition (drums and low programs) and accompaniment
  local function halves(t, offset)
    local active = {}
    for _, stem in ipairs(t.stems) do
      local w = cocola.audio.load(stem.path, { sr = RATE, mono = true, offset = offset, duration = cfg.duration }):view(-1)
      if math.sqrt((w * w):mean():item()) > cfg.silence_rms then active[#active + 1] = { stem = stem, wave = w } end
    end
    if #active < 2 then error(string.format("%s: fewer than two active stems at %.1f s", t.name, offset), 0) end
    table.sort(active, function(a, b)
      local ka = a.stem.is_drum and -1 or (a.stem.program or 0)
      local kb = b.stem.is_drum and -1 or (b.stem.program or 0)
      if ka ~= kb then return ka < kb end
      return a.stem.name < b.stem.name
    end)
    local half = #active // 2
    local cond, gen
    for i, a in ipairs(active) do
      if i <= half then cond = cond and cond + a.wave or a.wave else gen = gen and gen + a.wave or a.wave end
    end
    -- the same peak level for every file
    local function normalise(w) return w * (0.5 / math.max(w:abs():max():item(), 1e-6)) end
    return normalise(cond), normalise(gen)
  end

  local sources = { "Example pairs rendered from the following MIDI files with FluidSynth and FluidR3_GM:", "" }
  local conds, gens = {}, {}
  for i, t in ipairs(chosen) do
    local offset = math.floor(t.duration * cfg.at)
    conds[i], gens[i] = halves(t, offset)
    local meta = lyaml.load(fs.read(fs.join(cfg.root, cfg.split, t.name, "metadata.yaml")))
    sources[#sources + 1] = string.format("%d. %s (%s), %d-%d s", i, meta.source_file, t.name, offset, offset + cfg.duration)
    local _, shifted = halves(t, offset + cfg.shift)
    cocola.audio.save(string.format("%s/cond/shifted_%d.flac", cfg.out, i), conds[i]:view(1, -1), RATE)
    cocola.audio.save(string.format("%s/gen/shifted_%d.flac", cfg.out, i), shifted:view(1, -1), RATE)
  end
  for i = 1, #chosen do
    local other = i % #chosen + 1
    cocola.audio.save(string.format("%s/cond/coherent_%d.flac", cfg.out, i), conds[i]:view(1, -1), RATE)
    cocola.audio.save(string.format("%s/gen/coherent_%d.flac", cfg.out, i), gens[i]:view(1, -1), RATE)
    cocola.audio.save(string.format("%s/cond/incoherent_%d.flac", cfg.out, i), conds[i]:view(1, -1), RATE)
    cocola.audio.save(string.format("%s/gen/incoherent_%d.flac", cfg.out, i), gens[other]:view(1, -1), RATE)
    recipe.progress("pairs", i, #chosen)
  end
  sources[#sources + 1] = ""
  sources[#sources + 1] = "incoherent_N pairs the condition of song N with the accompaniment of song N+1 (the last with the first);"
  sources[#sources + 1] = string.format("shifted_N pairs song N's condition with its own accompaniment %.2f s later.", cfg.shift)
  sources[#sources + 1] = "Licences: the Simutrans music (simutrans-data) is under the Artistic License 1.0; the MMA"
  sources[#sources + 1] = "examples (mma) under the GPL-2+; see /usr/share/doc/<package>/copyright on Debian."
  recipe.write_atomic(cfg.out .. "/SOURCES.txt", table.concat(sources, "\n") .. "\n")
  print("wrote " .. 3 * #chosen .. " pairs to " .. cfg.out)
end

os.exit(recipe.main("make_examples", DEFAULTS, run, arg))
