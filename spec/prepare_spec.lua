-- prepare_spec.lua — cocola.recipes.prepare (recipes/prepare.lua) on tiny datasets in the stems folder
-- and Slakh layouts: with 2 worker processes it writes 16 kHz mono FLAC stems of the resampled
-- length whose samples are cocola.audio.load(src, {sr = 16000, mono = true}) to PCM16 precision,
-- an index.json listing every track and stem (with Slakh's tags, programs and drum flags), output
-- that cocola.data.open("stems_folder", ...) reads back; it resumes (only a deleted stem is written
-- again, an up-to-date output writes nothing) and fails clearly on a bad root, an unknown layout, a
-- missing split, unreadable audio and a stem that cannot be written.
local cocola = require "cocola"
local data = require "cocola.data"
local fs = require "cocola.data.fs"
local recipe = require "cocola.recipe"
local prepare = require "cocola.recipes.prepare"
local cjson = require "cjson"
local lfs = require "lfs"

local tmpdir = require("helpers.files").tmpdir

local SR = 16000
local PCM16_STEP = 1 / 32768

-- a (channels, n) wave of sines, different per seed
local function wave(channels, n, rate, seed)
  local rows = {}
  for c = 1, channels do
    local row = {}
    local f = 110 * seed + 37 * c
    for i = 1, n do row[i] = 0.3 * math.sin(2 * math.pi * f * i / rate) * (0.6 + 0.4 * math.sin(2 * math.pi * 3 * i / rate)) end
    rows[c] = row
  end
  return cocola.tensor(rows)
end

local function write_wave(path, channels, n, rate, seed, subtype)
  fs.mkdir_p(path:match("^(.*)/[^/]*$"))
  cocola.audio.save(path, wave(channels, n, rate, seed), rate, { subtype = subtype })
end

local function write_text(path, text)
  fs.mkdir_p(path:match("^(.*)/[^/]*$"))
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- a stems folder: 44.1 kHz stereo float and 22.05 kHz mono PCM16 stems (resampled), a mixture (not
-- copied), a track with no stems (skipped), and a 16 kHz validation split (kept as is)
local SOURCES = {
  { "train/Song A/bass.wav", 2, 22051, 44100, "float" },
  { "train/Song A/keys.wav", 1, 11037, 22050, "pcm16" },
  { "train/Song:B/drums.wav", 2, 30001, 44100, "float" },
  { "train/Song:B/vocals.wav", 1, 14000, 22050, "pcm16" },
  { "validation/Song C/guitar.flac", 1, 9000, 16000, "pcm16" },
  { "validation/Song C/piano.flac", 1, 9100, 16000, "pcm16" },
}
local folder = tmpdir()
for i, s in ipairs(SOURCES) do write_wave(folder .. "/" .. s[1], s[2], s[3], s[4], i, s[5]) end
write_wave(folder .. "/train/Song A/mixture.wav", 2, 22051, 44100, 9, "float")
fs.mkdir_p(folder .. "/train/Empty")

local function config(args)
  return recipe.config(prepare.DEFAULTS, args)
end

-- runs the recipe with its printing (settings, log, progress bar) silenced; returns its summary or
-- raises its error
local function quietly(args)
  local out, stderr = io.output(), io.stderr
  local sink = os.tmpname()
  io.output(sink)
  io.stderr = io.open(sink, "w") -- luacheck: ignore
  local ok, res = pcall(prepare.run, config(args), function() end)
  io.output():close()
  io.output(out)
  io.stderr:close()
  io.stderr = stderr -- luacheck: ignore
  os.remove(sink)
  if not ok then error(res, 0) end
  return res
end

local function max_diff(a, b)
  return (a - b):abs():max():item()
end

local function read_index(out)
  return cjson.decode((assert(recipe.read(out .. "/index.json"))))
end

describe("prepare", function()
  local out = tmpdir() .. "/prepared"
  local args = { "layout=stems_folder", "root=" .. folder, "out=" .. out, "splits=train,validation", "workers=2" }

  it("resamples every stem to 16 kHz mono FLAC with 2 workers", function()
    local summary = quietly(args)
    assert.are.equal(6, summary.stems)
    assert.are.equal(6, summary.written)
    assert.are.equal(0, summary.existing)
    assert.are.equal(3, summary.tracks)
    assert.are.equal(2, summary.workers) -- two child processes converted them
    assert.are.same({ "train/Empty: no stems" }, summary.skipped)
    for _, s in ipairs(SOURCES) do
      local src = folder .. "/" .. s[1]
      local dst = out .. "/" .. s[1]:gsub(":", "_"):gsub("%.%a+$", ".flac")
      local info = cocola.audio.info(dst)
      assert.are.equal(SR, info.rate)
      assert.are.equal(1, info.channels)
      assert.truthy(info.format:find("FLAC"), info.format)
      local want = math.ceil(s[3] * SR / s[4])
      assert.is_true(math.abs(info.frames - want) <= 1, dst .. ": " .. info.frames .. " frames, expected " .. want)
      local expected = cocola.audio.load(src, { sr = SR, mono = true })
      local got = cocola.audio.load(dst)
      assert.are.same({ 1, info.frames }, { got:size(1), got:size(2) })
      assert.are.equal(expected:size(2), got:size(2))
      assert.is_true(max_diff(expected, got) <= PCM16_STEP / 2 + 1e-7, dst .. " differs by " .. max_diff(expected, got))
    end
    assert.is_nil(lfs.attributes(out .. "/train/Song A/mixture.flac"))
    assert.is_nil(lfs.attributes(out .. "/train/Empty"))
    assert.is_nil(lfs.attributes(out .. "/.prepare-jobs.json")) -- the workers' job list is removed
  end)

  it("writes an index of every track and stem", function()
    local index = read_index(out)
    assert.are.equal(SR, index.sample_rate)
    assert.are.same({ layout = "stems_folder", root = folder }, index.source)
    local names = {}
    for split, tracks in pairs(index.splits) do
      for _, t in ipairs(tracks) do
        local frames = math.huge
        for _, s in ipairs(t.stems) do
          names[#names + 1] = s.path
          assert.are.equal(split .. "/" .. t.name .. "/" .. s.name .. ".flac", s.path)
          assert.are.equal(s.name, s.tag)
          assert.are.equal(cocola.audio.info(out .. "/" .. s.path).frames, s.frames)
          frames = math.min(frames, s.frames)
        end
        assert.is_true(math.abs(frames / SR - t.duration) < 1e-9)
      end
    end
    table.sort(names)
    assert.are.same({
      "train/Song A/bass.flac", "train/Song A/keys.flac", "train/Song_B/drums.flac", "train/Song_B/vocals.flac",
      "validation/Song C/guitar.flac", "validation/Song C/piano.flac",
    }, names)
  end)

  it("is read back by the stems folder reader", function()
    local train = data.open("stems_folder", out, "train")
    assert.are.equal(2, #train)
    assert.are.equal("Song A", train[1].name)
    assert.are.equal("Song_B", train[2].name)
    assert.are.same({ "bass", "keys" }, { train[1].stems[1].name, train[1].stems[2].name })
    for _, t in ipairs(train) do assert.are.equal(SR, t.sample_rate) end
    local valid = data.open("stems_folder", out, "validation")
    assert.are.equal(1, #valid)
    assert.is_true(math.abs(valid[1].duration - 9000 / SR) < 1e-9)
  end)

  it("resumes: only a missing stem is written again", function()
    local old = 1000000000
    for _, s in ipairs(SOURCES) do
      local dst = out .. "/" .. s[1]:gsub(":", "_"):gsub("%.%a+$", ".flac")
      assert(lfs.touch(dst, old, old))
    end
    local removed = out .. "/train/Song_B/vocals.flac"
    assert(os.remove(removed))
    -- a half-written temporary file from an interrupted run is neither read back nor in the way
    write_text(out .. "/train/Song_B/.vocals.tmp.flac", "partial")
    local summary = quietly(args)
    assert.are.equal(1, summary.written)
    assert.are.equal(5, summary.existing)
    assert.are.equal(6, #read_index(out).splits.train[1].stems + #read_index(out).splits.train[2].stems
      + #read_index(out).splits.validation[1].stems)
    for _, s in ipairs(SOURCES) do
      local dst = out .. "/" .. s[1]:gsub(":", "_"):gsub("%.%a+$", ".flac")
      if dst == removed then
        assert.is_true(lfs.attributes(dst, "modification") > old)
        assert.are.equal(math.ceil(14000 * SR / 22050), cocola.audio.info(dst).frames)
      else
        assert.are.equal(old, lfs.attributes(dst, "modification"), dst .. " was rewritten")
      end
    end
    assert.are.equal(2, #data.open("stems_folder", out, "train")[2].stems)
    -- all done: nothing is written, the index is rewritten
    os.remove(out .. "/index.json")
    local again = quietly(args)
    assert.are.equal(0, again.written)
    assert.are.equal(6, again.existing)
    assert.is_true(fs.is_file(out .. "/index.json"))
  end)

  it("prepares Slakh with its tags, programs and drum flags, never the mix", function()
    local root = tmpdir()
    local tdir = root .. "/train/Track00001"
    write_wave(tdir .. "/stems/S00.flac", 1, 9000, 22050, 1, "pcm16")
    write_wave(tdir .. "/stems/S01.flac", 2, 12000, 44100, 2, "pcm16")
    write_wave(tdir .. "/stems/S02.flac", 1, 9000, 22050, 3, "pcm16")
    write_wave(tdir .. "/mix.flac", 1, 9000, 22050, 4, "pcm16")
    write_text(tdir .. "/metadata.yaml", table.concat({
      "audio_dir: stems", "stems:",
      "  S00:", "    inst_class: Bass", "    program_num: 33", "    is_drum: false", "    audio_rendered: true",
      "  S01:", "    inst_class: Drums", "    program_num: 0", "    is_drum: true", "    audio_rendered: true",
      "  S02:", "    inst_class: Piano", "    program_num: 0", "    is_drum: false", "    audio_rendered: false", "" }, "\n"))
    local sout = tmpdir()
    local summary = quietly({ "layout=slakh", "root=" .. root, "out=" .. sout, "splits=train", "workers=2", "subtype=pcm24" })
    assert.are.equal(2, summary.written)
    local index = read_index(sout)
    assert.are.same({ layout = "slakh", root = root }, index.source)
    local t = index.splits.train[1]
    assert.are.equal("Track00001", t.name)
    assert.are.equal(2, #t.stems)
    assert.are.same({ "S00", "Bass", 33, false }, { t.stems[1].name, t.stems[1].tag, t.stems[1].program, t.stems[1].is_drum })
    assert.are.same({ "S01", "Drums", 0, true }, { t.stems[2].name, t.stems[2].tag, t.stems[2].program, t.stems[2].is_drum })
    assert.are.same({ "S00.flac", "S01.flac" }, fs.files(sout .. "/train/Track00001", { "flac" }))
    assert.truthy(cocola.audio.info(sout .. "/train/Track00001/S01.flac").subtype:find("24"))
    assert.are.equal(math.ceil(12000 * SR / 44100), cocola.audio.info(sout .. "/train/Track00001/S01.flac").frames)
    assert.are.equal(1, #data.open("stems_folder", sout, "train"))
  end)

  it("fails clearly on a bad root, layout, split, unreadable audio or an unwritable stem", function()
    local bad_out = tmpdir()
    assert.has_error(function() quietly({ "layout=slakh", "root=" .. folder .. "/nowhere", "out=" .. bad_out }) end,
      "root '" .. folder .. "/nowhere' is not a directory")
    assert.has_error(function() quietly({ "layout=nope", "root=" .. folder, "out=" .. bad_out }) end,
      "unknown dataset layout 'nope' (known: cocochorales, moisesdb, musdb, slakh, stems_folder)")
    assert.has_error(function() quietly({ "layout=stems_folder", "root=" .. folder, "out=" .. bad_out }) end,
      "split 'test': stems folder: no split directory '" .. folder .. "/test'")
    assert.has_error(function() quietly({ "layout=stems_folder", "root=" .. folder, "out=" .. folder }) end,
      "out must differ from root")
    -- the command-line entry turns errors into a status
    local stderr, stdout = io.stderr, io.output()
    local sink = os.tmpname()
    io.stderr = io.open(sink, "w") -- luacheck: ignore
    io.output(sink)
    local status = prepare.main({ "layout=slakh", "root=" .. folder .. "/nowhere", "out=" .. bad_out })
    io.stderr:close()
    io.stderr = stderr -- luacheck: ignore
    io.output(stdout)
    os.remove(sink)
    assert.are.equal(1, status)

    local root = tmpdir()
    write_wave(root .. "/train/t1/a.wav", 1, 4000, 22050, 1, "pcm16")
    write_wave(root .. "/train/t1/b.wav", 1, 4000, 22050, 2, "pcm16")
    write_wave(root .. "/train/t2/a.wav", 1, 4000, 22050, 3, "pcm16")
    write_text(root .. "/train/t3/a.wav", "not audio")
    local ok, err = pcall(quietly, { "layout=stems_folder", "root=" .. root, "out=" .. bad_out, "splits=train" })
    assert.is_false(ok)
    assert.truthy(err:find("1 tracks have unreadable audio", 1, true), err)
    assert.truthy(err:find(root .. "/train/t3/a.wav", 1, true), err)
    -- skipping them instead; a stem a worker cannot write fails the run, naming its source
    fs.mkdir_p(bad_out .. "/train/t2/a.flac") -- a folder where the stem goes: the rename fails
    ok, err = pcall(quietly, { "layout=stems_folder", "root=" .. root, "out=" .. bad_out, "splits=train", "skip_unreadable=true" })
    assert.is_false(ok)
    assert.truthy(err:find("1 stems failed", 1, true), err)
    assert.truthy(err:find(root .. "/train/t2/a.wav", 1, true), err)
    assert.is_true(fs.is_file(bad_out .. "/train/t1/a.flac")) -- the other workers' stems are kept
    assert.is_nil(lfs.attributes(bad_out .. "/index.json"))
    lfs.rmdir(bad_out .. "/train/t2/a.flac")
    local summary = quietly({ "layout=stems_folder", "root=" .. root, "out=" .. bad_out, "splits=train", "skip_unreadable=true" })
    assert.are.equal(1, summary.written)
    assert.are.equal(2, summary.existing)
    assert.are.same({ "train/t3: audio.info: cannot open '" .. root .. "/train/t3/a.wav': Format not recognised." }, summary.skipped)
  end)

  it("sanitises names", function()
    assert.are.equal("a_b_c", prepare.sanitize("a/b:c"))
    assert.are.equal("_hidden", prepare.sanitize(".hidden"))
    assert.are.equal("Song A (live)", prepare.sanitize(" Song A (live) "))
    assert.are.equal("_", prepare.sanitize(""))
  end)
end)
