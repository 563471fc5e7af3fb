-- midi_spec.lua — cocola.data.midi (SMF parse / split / write on a MIDI file built here byte by byte) and,
-- when fluidsynth and the FluidR3 GM soundfont are installed, recipes/make_midi_stems.lua end to end.
local cocola = require "cocola"
local audio = require "cocola.audio"
local midi = require "cocola.data.midi"

local function vlq(v)
  local b = { v & 0x7F }
  v = v >> 7
  while v > 0 do
    table.insert(b, 1, (v & 0x7F) | 0x80)
    v = v >> 7
  end
  return string.char(table.unpack(b))
end

local function chunk(id, body) return id .. string.pack(">I4", #body) .. body end

-- division 96; track 1: tempo 120 bpm, 4/4; track 2: channel 1 piano then violin (program change at
-- tick 96), volume and pitch bend, running status and a velocity-0 note-off; channel 10 two drum hits
-- (with a bank select, kept for drums).
local function tiny_midi()
  local t1 = vlq(0) .. "\xFF\x51\x03\x07\xA1\x20" .. vlq(0) .. "\xFF\x58\x04\x04\x02\x18\x08" .. vlq(0) .. "\xFF\x2F\x00"
  local t2 = table.concat({
    vlq(0), "\xB0\x07\x64", -- ch1 volume 100
    vlq(0), "\xC0\x00", -- ch1 piano
    vlq(0), "\x90\x3C\x50", -- ch1 C4 on
    vlq(0), "\xB9\x00\x00", -- ch10 bank select (drums keep it)
    vlq(0), "\x99\x24\x64", -- ch10 kick on
    vlq(48), "\x89\x24\x00", -- ch10 kick off (tick 48)
    vlq(0), "\xE0\x00\x50", -- ch1 pitch bend (tick 48)
    vlq(48), "\x80\x3C\x00", -- ch1 C4 off (tick 96)
    vlq(0), "\xC0\x28", -- ch1 violin (tick 96)
    vlq(0), "\x90\x40\x50", -- ch1 E4 on (tick 96)
    vlq(0), "\x99\x26\x64", -- ch10 snare on (tick 96)
    vlq(48), "\x26\x00", -- running status: ch10 snare velocity 0 = off (tick 144)
    vlq(48), "\x80\x40\x00", -- ch1 E4 off (tick 192)
    vlq(0), "\xFF\x2F\x00",
  })
  return chunk("MThd", string.pack(">I2I2I2", 1, 2, 96)) .. chunk("MTrk", t1) .. chunk("MTrk", t2)
end

local function kinds(events, kind)
  local out = {}
  for _, e in ipairs(events) do if e.kind == kind then out[#out + 1] = e end end
  return out
end

local tmpdir = require("helpers.files").tmpdir

describe("cocola.data.midi", function()
  local song = midi.parse(tiny_midi(), "tiny.mid")

  it("parses the header, tempo and note events with their ticks", function()
    assert.are.equal(1, song.format)
    assert.are.equal(2, song.ntracks)
    assert.are.equal(96, song.division)
    local all = midi.merge(song)
    local tempo = nil
    for _, e in ipairs(all) do if e.kind == "meta" and e.meta == 0x51 then tempo = string.unpack(">I3", e.data) end end
    assert.are.equal(500000, tempo)
    local ons, offs = kinds(all, "note_on"), kinds(all, "note_off")
    assert.are.equal(4, #ons)
    assert.are.equal(4, #offs) -- including the velocity-0 note-on read with running status
    local ticks = {}
    for _, e in ipairs(offs) do ticks[#ticks + 1] = e.channel .. ":" .. e.a .. "@" .. e.tick end
    assert.are.same({ "10:36@48", "1:60@96", "10:38@144", "1:64@192" }, ticks)
    local bend = kinds(all, "pitch_bend")[1]
    assert.are.equal(0x50 * 128, bend.a)
    assert.are.equal(48, bend.tick)
    assert.is_near(1.0, midi.seconds(all, 96, 192), 1e-12)
    assert.is_near(1.0, midi.duration(song), 1e-12)
    assert.are.equal(96, midi.tick_at(all, 96, 0.5))
  end)

  it("names GM families", function()
    assert.are.equal("Piano", midi.family(0))
    assert.are.equal("Strings", midi.family(40))
    assert.are.equal("Bass", midi.family(35))
    assert.are.equal("Sound Effects", midi.family(127))
  end)

  it("splits by channel and program in force, drums on channel 10", function()
    local parts = midi.split(song)
    assert.are.equal(3, #parts)
    local desc = {}
    for _, p in ipairs(parts) do desc[#desc + 1] = string.format("%d/%d/%s/%d", p.channel, p.program, tostring(p.is_drum), p.notes) end
    assert.are.same({ "1/0/false/1", "1/40/false/1", "10/0/true/2" }, desc)
    for _, p in ipairs(parts) do assert.are.equal(192 + 2 * 96, p.end_tick) end
    -- the violin part: one program change (40 at tick 0), the volume, the bend, its own note only
    local violin = parts[2].events
    local pcs = kinds(violin, "program")
    assert.are.equal(1, #pcs)
    assert.are.equal(40, pcs[1].a)
    assert.are.equal(0, pcs[1].tick)
    assert.are.equal(1, #kinds(violin, "pitch_bend"))
    assert.are.equal(1, #kinds(violin, "control"))
    local on, off = kinds(violin, "note_on"), kinds(violin, "note_off")
    assert.are.equal(64, on[1].a)
    assert.are.equal(96, on[1].tick)
    assert.are.equal(192, off[1].tick)
    -- every part carries the tempo and time signature
    for _, p in ipairs(parts) do assert.are.equal(2, #kinds(p.events, "meta")) end
    -- drums keep their bank select
    local dc = kinds(parts[3].events, "control")
    assert.are.equal(1, #dc)
    assert.are.equal(0, dc[1].a)
  end)

  it("writes parts as SMF format 0 that read back the same", function()
    local parts = midi.split(song)
    for _, p in ipairs(parts) do
      local bytes = midi.write(p.events, song.division, p.end_tick)
      local back = midi.parse(bytes)
      assert.are.equal(0, back.format)
      assert.are.equal(1, back.ntracks)
      assert.are.equal(96, back.division)
      local evs = back.tracks[1]
      assert.are.equal(p.end_tick, evs[#evs].tick) -- end of track
      local a, b = {}, {}
      for _, e in ipairs(p.events) do a[#a + 1] = table.concat({ e.tick, e.kind, e.channel or "-", e.a or "-", e.b or "-" }, ",") end
      for k = 1, #evs - 1 do
        local e = evs[k]
        b[#b + 1] = table.concat({ e.tick, e.kind, e.channel or "-", e.a or "-", e.b or "-" }, ",")
      end
      table.sort(a)
      table.sort(b)
      assert.are.same(a, b)
    end
  end)

  it("cuts parts at max_seconds", function()
    local parts = midi.split(song, { max_seconds = 0.5 })
    assert.are.equal(2, #parts) -- the violin starts at 0.5 s
    for _, p in ipairs(parts) do assert.are.equal(96, p.end_tick) end
  end)

  it("releases the notes still sounding at the cut (a synthesiser would hold them for ever)", function()
    -- at 0.25 s (tick 48) the piano's C4 and the kick are on; their note-offs come at or after the cut
    local parts = midi.split(song, { max_seconds = 0.25 })
    assert.are.equal(2, #parts)
    for _, p in ipairs(parts) do
      assert.are.equal(48, p.end_tick)
      local on, off = kinds(p.events, "note_on"), kinds(p.events, "note_off")
      assert.are.equal(1, #on)
      assert.are.equal(1, #off)
      assert.are.equal(on[1].a, off[1].a)
      assert.are.equal(48, off[1].tick)
    end
    -- written and read back, every note-on has its note-off within the part
    local back = midi.parse(midi.write(parts[1].events, song.division, parts[1].end_tick), "cut.mid")
    local merged = midi.merge(back)
    assert.are.equal(#kinds(merged, "note_on"), #kinds(merged, "note_off"))
  end)

  it("rejects files that are not MIDI, naming them", function()
    assert.has_error(function() midi.parse("RIFFxxxxWAVE", "x.wav") end)
    local ok, err = pcall(midi.parse, "hello", "notes.txt")
    assert.is_false(ok)
    assert.truthy(err:find("notes.txt", 1, true))
    ok, err = pcall(midi.parse, tiny_midi():sub(1, 40), "cut.mid")
    assert.is_false(ok)
    assert.truthy(err:find("cut.mid", 1, true))
  end)
end)

describe("recipes/make_midi_stems.lua", function()
  local SF = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
  local have_fs = os.execute("fluidsynth --version >/dev/null 2>&1")
  local f = io.open(SF, "rb")
  local have_sf = f ~= nil
  if f then f:close() end

  it("renders a tiny MIDI file into the Slakh layout", function()
    if not have_fs then return pending("fluidsynth not installed (apt-get install fluidsynth)") end
    if not have_sf then return pending(SF .. " missing (apt-get install fluid-soundfont-gm)") end
    local recipe = dofile("recipes/make_midi_stems.lua")
    local root = tmpdir()
    assert(os.execute("mkdir -p '" .. root .. "/in'"))
    local out = io.open(root .. "/in/tiny.mid", "wb")
    out:write(tiny_midi())
    out:close()
    local settings = { input = root .. "/in", output = root .. "/out", split = "1,0,0", seed = 3, jobs = 2, quiet = true }
    local s = recipe.run(settings)
    assert.are.equal(1, s.tracks)
    assert.are.equal(3, s.stems)
    local dir = root .. "/out/train/Track00001"
    local function exists(p)
      local h = io.open(p, "rb")
      if h then h:close() return true end
      return false
    end
    assert.is_true(exists(dir .. "/.done"))
    assert.is_true(exists(dir .. "/mix.flac"))
    assert.is_true(exists(dir .. "/all_src.mid"))
    -- metadata
    local h = io.open(dir .. "/metadata.yaml")
    local yaml = h:read("a")
    h:close()
    local stems, cur = {}, nil
    for line in yaml:gmatch("[^\n]+") do
      local name = line:match("^  (S%d%d):$")
      if name then cur = {}; stems[name] = cur
      elseif cur then
        local k, v = line:match("^    ([%w_]+): (.*)$")
        if k then cur[k] = v end
      end
    end
    assert.truthy(yaml:find("source_file: \"" .. root .. "/in/tiny.mid\"", 1, true))
    assert.truthy(yaml:match("uuid: %x+%-%x+%-%x+%-%x+%-%x+"))
    assert.are.same({ inst_class = "Piano", program_num = "0", is_drum = "false", audio_rendered = "true",
                      midi_saved = "true", channel = "1", notes = "1", rms_db = stems.S00.rms_db }, stems.S00)
    assert.are.equal("Strings", stems.S01.inst_class)
    assert.are.equal("40", stems.S01.program_num)
    assert.are.equal("Drums", stems.S02.inst_class)
    assert.are.equal("true", stems.S02.is_drum)
    assert.are.equal("10", stems.S02.channel)
    local scale = tonumber(yaml:match("mix_scale: ([%d%.eE+-]+)"))
    local samples = tonumber(yaml:match("samples: (%d+)"))
    -- stems: 16 kHz mono, equal lengths, at least the 2 s of the song (1 s of notes + 2 beats; fluidsynth renders release tails past the end)
    local sum
    for k = 0, 2 do
      local path = string.format("%s/stems/S%02d.flac", dir, k)
      assert.is_true(exists(path))
      assert.is_true(exists(string.format("%s/MIDI/S%02d.mid", dir, k)))
      local info = audio.info(path)
      assert.are.equal(16000, info.rate)
      assert.are.equal(1, info.channels)
      assert.are.equal(samples, info.frames)
      local w = audio.load(path)
      sum = sum and sum + w or w
    end
    assert.is_true(samples >= 1.9 * 16000 and samples <= 6 * 16000, "samples " .. samples)
    local mix = audio.load(dir .. "/mix.flac")
    assert.are.equal(samples, mix:size(2))
    local err = (mix - sum * scale):abs():max():item()
    assert.is_true(err <= 1.01 / 32768, "mix differs from scale * sum of stems by " .. err)
    assert.is_true(mix:abs():max():item() > 1e-3)
    -- a second run resumes: nothing is rendered again
    local again = recipe.run(settings)
    assert.are.equal(0, again.tracks)
    assert.are.equal(1, again.resumed)
    os.execute("rm -rf '" .. root .. "'")
  end)

  it("renders one split alone (splits=test) with the full run's track numbers, e.g. with another soundfont", function()
    if not have_fs then return pending("fluidsynth not installed (apt-get install fluidsynth)") end
    local function readable(path)
      local h = io.open(path, "rb")
      if h then h:close() end
      return h ~= nil
    end
    local sf = readable("/usr/share/sounds/sf2/TimGM6mb.sf2") and "/usr/share/sounds/sf2/TimGM6mb.sf2" or SF
    if not readable(sf) then return pending(sf .. " missing (apt-get install fluid-soundfont-gm)") end
    local recipe = dofile("recipes/make_midi_stems.lua")
    local root = tmpdir()
    assert(os.execute("mkdir -p '" .. root .. "/in'"))
    -- 10 distinct songs of two parts (a piano note, a kick), 0.25 s long
    for k = 1, 10 do
      midi.write_file(string.format("%s/in/song%02d.mid", root, k), {
        { tick = 0, kind = "meta", meta = 0x51, data = string.pack(">I3", 500000) },
        { tick = 0, kind = "program", channel = 1, a = 0 },
        { tick = 0, kind = "note_on", channel = 1, a = 50 + k, b = 100 },
        { tick = 0, kind = "note_on", channel = 10, a = 36, b = 100 },
        { tick = 24, kind = "note_off", channel = 10, a = 36, b = 0 },
        { tick = 48, kind = "note_off", channel = 1, a = 50 + k, b = 0 },
      }, 96)
    end
    local full = recipe.files(recipe.config({ input = root .. "/in", seed = 5 }))
    local test = {}
    for _, f in ipairs(full) do if f.split == "test" then test[#test + 1] = f end end
    assert.are.equal(1, #test)
    local only = recipe.files(recipe.config({ input = root .. "/in", seed = 5, splits = "test" }))
    assert.are.equal(1, #only)
    assert.are.same({ test[1].path, test[1].index, "test" }, { only[1].path, only[1].index, only[1].split })
    local s = recipe.run({ input = root .. "/in", output = root .. "/out", seed = 5, splits = "test", soundfont = sf,
                           tail_beats = 0.5, quiet = true })
    assert.are.equal(1, s.tracks)
    assert.are.same({ train = 0, validation = 0, test = 1 }, s.by_split)
    local dir = string.format("%s/out/test/Track%05d", root, test[1].index)
    local done = io.open(dir .. "/.done", "rb")
    assert.truthy(done, dir .. " rendered")
    done:close()
    local mh = io.open(dir .. "/metadata.yaml")
    local meta = mh:read("a")
    mh:close()
    assert.truthy(meta:find('soundfont: "' .. sf .. '"', 1, true))
    assert.are.equal(2, #cocola.data.open("slakh", root .. "/out", "test")[1].stems)
    assert.is_nil(io.open(root .. "/out/train", "rb"))
    local ok, err = pcall(recipe.config, { splits = "test,bogus" })
    assert.is_false(ok)
    assert.truthy(err:find("unknown split 'bogus'", 1, true))
    os.execute("rm -rf '" .. root .. "'")
  end)

  it("splits files deterministically by seed", function()
    local recipe = dofile("recipes/make_midi_stems.lua")
    local root = tmpdir()
    assert(os.execute("mkdir -p '" .. root .. "/in'"))
    for k = 1, 20 do
      local out = io.open(string.format("%s/in/f%02d.mid", root, k), "wb")
      out:write(tiny_midi() .. string.rep("\0", k)) -- distinct contents
      out:close()
    end
    local function splits(seed)
      local c = recipe.config({ input = root .. "/in", seed = seed })
      local files = recipe.files(c)
      local got, count = {}, { train = 0, validation = 0, test = 0 }
      for _, fl in ipairs(files) do
        got[fl.index] = fl.split
        count[fl.split] = count[fl.split] + 1
      end
      return got, count
    end
    local a, count = splits(7)
    assert.are.same(a, (splits(7)))
    assert.are.same({ train = 16, validation = 2, test = 2 }, count)
    assert.are_not.same(a, (splits(8)))
    os.execute("rm -rf '" .. root .. "'")
  end)
end)
