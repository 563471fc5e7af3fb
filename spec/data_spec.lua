-- data_spec.lua — the dataset readers on small layouts built here: MUSDB18-HQ, MoisesDB (both the
-- pre-split and the 80/10/10 seeded split), Slakh2100, CocoChorales, the stems folder, mixtures;
-- stems, tags, durations cut to the shortest stem, and clear errors.
local cocola = require "cocola"
local data = require "cocola.data"
local fs = require "cocola.data.fs"

local tmpdir = require("helpers.files").tmpdir

local function write_wave(path, seconds, rate)
  fs.mkdir_p(path:match("^(.*)/[^/]*$"))
  rate = rate or 16000
  local n = math.floor(seconds * rate + 0.5)
  cocola.audio.save(path, cocola.rand({ 1, n }) * 0.2 - 0.1, rate)
end

local function write_text(path, text)
  fs.mkdir_p(path:match("^(.*)/[^/]*$"))
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function by_name(tracks)
  local out = {}
  for _, t in ipairs(tracks) do out[t.name] = t end
  return out
end

describe("dataset readers", function()
  it("read MUSDB18-HQ without mixture.wav, cut to the shortest stem", function()
    local root = tmpdir()
    for _, s in ipairs({ "bass", "drums", "other", "vocals", "mixture" }) do
      write_wave(root .. "/train/Song A/" .. s .. ".wav", s == "drums" and 0.25 or 0.5, 44100)
    end
    write_wave(root .. "/test/Song B/bass.wav", 0.5, 44100)
    write_wave(root .. "/test/Song B/vocals.wav", 0.5, 44100)
    local tracks = data.open("musdb", root, "train")
    assert.are.equal(1, #tracks)
    local t = tracks[1]
    assert.are.equal("Song A", t.name)
    assert.are.equal(4, #t.stems)
    local tags = {}
    for _, s in ipairs(t.stems) do tags[#tags + 1] = s.tag end
    assert.are.same({ "bass", "drums", "other", "vocals" }, tags)
    assert.is_true(math.abs(t.duration - 0.25) < 1e-3)
    assert.are.equal(44100, t.sample_rate)
    assert.are.equal(2, #data.open("musdb", root, "test")[1].stems)
    assert.has_error(function() data.open("musdb", root, "valid") end, "musdb: split must be 'train' or 'test' (got 'valid')")
  end)

  it("read Slakh2100 stems with their metadata, skipping unrendered ones", function()
    local root = tmpdir()
    local tdir = root .. "/validation/Track00001"
    write_wave(tdir .. "/stems/S00.flac", 0.5)
    write_wave(tdir .. "/stems/S01.flac", 0.4)
    write_wave(tdir .. "/mix.flac", 0.5)
    write_text(tdir .. "/metadata.yaml", table.concat({
      "audio_dir: stems", "stems:",
      "  S00:", "    inst_class: Bass", "    program_num: 33", "    is_drum: false", "    audio_rendered: true",
      "  S01:", "    inst_class: Drums", "    program_num: 0", "    is_drum: true", "    audio_rendered: true",
      "  S02:", "    inst_class: Piano", "    program_num: 0", "    is_drum: false", "    audio_rendered: false", "" }, "\n"))
    local tracks = data.open("slakh", root, "validation")
    assert.are.equal(1, #tracks)
    local s = tracks[1].stems
    assert.are.equal(2, #s)
    assert.are.equal("Bass", s[1].tag)
    assert.are.equal(33, s[1].program)
    assert.is_true(s[2].is_drum)
    assert.is_true(math.abs(tracks[1].duration - 0.4) < 1e-3)
    assert.are.equal(1, #data.open("slakh", root, "valid")) -- the reference's name for it works too
  end)

  it("read CocoChorales with an ensemble filter", function()
    local root = tmpdir()
    for _, e in ipairs({ "random_track1", "string_track7", "brass_track2" }) do
      write_wave(root .. "/test/" .. e .. "/stems_audio/0_violin.wav", 0.3)
      write_wave(root .. "/test/" .. e .. "/stems_audio/1_cello.wav", 0.3)
    end
    assert.are.equal(3, #data.open("cocochorales", root, "test"))
    local only = data.open("cocochorales", root, "test", { ensembles = { "random" } })
    assert.are.equal(1, #only)
    assert.are.equal("random", only[1].ensemble)
    assert.are.same({ "violin", "cello" }, { only[1].stems[1].tag, only[1].stems[2].tag })
  end)

  it("read MoisesDB at source level and split it 80/10/10 deterministically", function()
    local root = tmpdir()
    for i = 1, 20 do
      local id = string.format("track-%02d", i)
      write_text(root .. "/" .. id .. "/data.json", '{"artist": "a", "genre": "pop", "stems": []}')
      write_wave(root .. "/" .. id .. "/guitar/u1.wav", 0.2)
      write_wave(root .. "/" .. id .. "/guitar/u2.wav", 0.2)
      write_wave(root .. "/" .. id .. "/drums/u3.wav", 0.2)
    end
    local seen, counts = {}, {}
    for _, split in ipairs({ "train", "valid", "test" }) do
      local tracks = data.open("moisesdb", root, split, { seed = 3 })
      counts[split] = #tracks
      for _, t in ipairs(tracks) do
        assert.is_nil(seen[t.name], t.name .. " is in two splits")
        seen[t.name] = split
        assert.are.equal(3, #t.stems) -- every WAV is its own stem
        assert.are.equal("pop", t.genre)
      end
    end
    assert.are.same({ train = 16, valid = 2, test = 2 }, counts)
    local again = by_name(data.open("moisesdb", root, "test", { seed = 3 }))
    for name, split in pairs(seen) do
      if split == "test" then assert.is_not_nil(again[name]) end
    end
    local other = by_name(data.open("moisesdb", root, "test", { seed = 4 }))
    local same = 0
    for name in pairs(other) do if seen[name] == "test" then same = same + 1 end end
    assert.is_true(same < 2, "another seed gives another split")
  end)

  it("read MoisesDB already divided into split folders", function()
    local root = tmpdir()
    write_wave(root .. "/valid/abc/bass/x.wav", 0.2)
    write_wave(root .. "/valid/abc/vocals/y.wav", 0.2)
    local tracks = data.open("moisesdb", root, "validation")
    assert.are.equal(1, #tracks)
    assert.are.same({ "bass", "vocals" }, { tracks[1].stems[1].tag, tracks[1].stems[2].tag })
  end)

  it("read a stems folder and mix datasets", function()
    local root = tmpdir()
    write_wave(root .. "/train/t1/piano.flac", 0.3)
    write_wave(root .. "/train/t1/bass.wav", 0.3)
    write_wave(root .. "/train/t1/mix.wav", 0.3)
    write_wave(root .. "/train/t2/drums.wav", 0.3)
    local tracks = data.open("stems_folder", root, "train")
    assert.are.equal(2, #tracks)
    assert.are.equal(2, #tracks[1].stems) -- mix is not a stem
    local all = data.mixture({ { "stems_folder", root, "train" }, { "stems_folder", root, "train" } })
    assert.are.equal(4, #all)
  end)

  it("explain bad input", function()
    assert.has_error(function() data.open("nope", "/tmp", "train") end)
    local ok, err = pcall(data.open, "stems_folder", "/nonexistent/dir", "train")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("no split directory", 1, true))
    ok, err = pcall(data.open, "nope", "/tmp", "train")
    assert.truthy(tostring(err):find("unknown dataset layout 'nope'", 1, true))
  end)
end)
