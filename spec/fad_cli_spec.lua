-- fad_cli_spec.lua — FAD between folders (cocola.metrics.fad_folders and `cocola fad`): the result equals
-- cocola.metrics.fad on the backbone's embeddings of every file (the tiny EnCodec of the EnCodec specs and
-- the bundled COCOLA model as backbones), the per-file cache is keyed by the file's bytes (a second run
-- reads every embedding back and gives the same number; a changed file is embedded again), JSON and CSV
-- outputs, and clear errors for missing weights, empty or missing folders and too few frames.
local cocola = require "cocola"
local fad = require "cocola.metrics.fad"
local backbones = require "cocola.metrics.backbones"
local fad_folders = require "cocola.metrics.fad_folders"
local files = require "helpers.files"
local cli = require "helpers.cli"
local cjson = require "cjson"

local ENCODEC = "spec/fixtures/encodec/tiny_24k"
local made = {}
local function temp()
  local d = files.tmpdir()
  made[#made + 1] = d
  return d
end

-- two folders of short tones (16 kHz): the reference a little lower and quieter than the evaluated set
local ref, gen = temp(), temp()
for k = 1, 4 do
  local i = cocola.arange(0, 16000, { dtype = "float64" })
  local a = ((i * (2 * math.pi * (200 + 30 * k) / 16000)):sin() * 0.3):float():view(1, -1)
  local b = ((i * (2 * math.pi * (260 + 45 * k) / 16000)):sin() * 0.5):float():view(1, -1)
  cocola.audio.save(string.format("%s/ref%d.wav", ref, k), a, 16000, { subtype = "float" })
  cocola.audio.save(string.format("%s/gen%d.wav", gen, k), b, 16000, { subtype = "float" })
end

local function direct(spec, ctx, dir)
  local bb = backbones.open(spec, ctx)
  local list = {}
  for k = 1, 4 do list[k] = bb.embed_file(string.format("%s/%s%d.wav", dir, dir == ref and "ref" or "gen", k)) end
  return list
end

describe("FAD between folders", function()
  it("equals cocola.metrics.fad on the backbone's embeddings, and reads them back from its cache", function()
    local cache = temp()
    local r = fad_folders.run(ref, gen, { backbone = "encodec=" .. ENCODEC, cache = cache })
    local want = fad.score(direct("encodec=" .. ENCODEC, {}, ref), direct("encodec=" .. ENCODEC, {}, gen))
    assert.is_true(math.abs(r.score - want) <= 1e-9 * math.max(1, want), r.score .. " vs " .. want)
    assert.equal(4, r.reference.files)
    assert.equal(0, r.cached)
    local again = fad_folders.run(ref, gen, { backbone = "encodec=" .. ENCODEC, cache = cache })
    assert.equal(8, again.cached)
    assert.equal(r.score, again.score)
    -- a changed file is a new key: embedded again
    local changed = temp()
    for k = 1, 4 do files.copy(string.format("%s/gen%d.wav", gen, k), string.format("%s/gen%d.wav", changed, k)) end
    cocola.audio.save(changed .. "/gen1.wav", cocola.zeros({ 1, 16000 }) + 0.1, 16000, { subtype = "float" })
    local third = fad_folders.run(ref, changed, { backbone = "encodec=" .. ENCODEC, cache = cache })
    assert.equal(7, third.cached)
    assert.are_not.equal(r.score, third.score)
  end)

  it("uses a COCOLA model's embeddings as a backbone", function()
    local model = cocola.models.cocola.default()
    -- 5 s clips: COCOLA windows are 5 s
    local a, b = temp(), temp()
    for k = 1, 3 do
      local i = cocola.arange(0, 5 * 16000, { dtype = "float64" })
      cocola.audio.save(string.format("%s/ref%d.wav", a, k), ((i * (2 * math.pi * (220 * k) / 16000)):sin() * 0.3):float():view(1, -1), 16000)
      cocola.audio.save(string.format("%s/gen%d.wav", b, k), ((i * (2 * math.pi * (330 * k) / 16000)):sin() * 0.3):float():view(1, -1), 16000)
    end
    local r = fad_folders.run(a, b, { backbone = "cocola", model = model, cache = false })
    local bb = backbones.open("cocola", { models = { model } })
    local ea, eb = {}, {}
    for k = 1, 3 do
      ea[k] = bb.embed_file(string.format("%s/ref%d.wav", a, k))
      eb[k] = bb.embed_file(string.format("%s/gen%d.wav", b, k))
    end
    assert.is_true(math.abs(r.score - fad.score(ea, eb)) <= 1e-9 * math.max(1, r.score))
  end)

  it("names empty or missing folders and a set with too few frames", function()
    local function err(a, b, o)
      local ok, e = pcall(fad_folders.run, a, b, o or { backbone = "encodec=" .. ENCODEC, cache = false })
      assert.is_false(ok)
      return tostring(e)
    end
    assert.matches("reference: no audio files in", err(temp(), gen))
    assert.matches("evaluated: no such file or folder: '/nonexistent'", err(ref, "/nonexistent"))
    local short = temp()
    cocola.audio.save(short .. "/a.wav", cocola.zeros({ 1, 1 }) + 0.1, 16000)
    assert.matches("evaluated: 1 embedding frames from 1 files .* FAD needs at least 2", err(ref, short))
  end)
end)

describe("cocola fad", function()
  it("prints the distance, writes JSON and CSV, and names a missing --weights with where it comes from", function()
    local tmp = temp()
    local status, out, err = cli.cocola(string.format("fad --backbone encodec --weights %s '%s' '%s' --cache '%s' --quiet --json '%s/r.json' --csv '%s/r.csv'",
      ENCODEC, ref, gen, tmp .. "/cache", tmp, tmp), tmp)
    assert.equal(0, status, err)
    assert.matches("^FAD EnCodec: [%d.]+ %(reference 4 files, %d+ frames; evaluated 4 files, %d+ frames%)", out)
    local j = cjson.decode(cli.read(tmp .. "/r.json"))
    local r = fad_folders.run(ref, gen, { backbone = "encodec=" .. ENCODEC, cache = tmp .. "/cache" })
    assert.is_true(math.abs(j.fad - r.score) <= 1e-6 * math.max(1, r.score))
    assert.matches("^backbone,reference,evaluated,fad,", cli.read(tmp .. "/r.csv"))
    status, _, err = cli.cocola(string.format("fad --backbone vggish '%s' '%s'", ref, gen), tmp)
    cli.one_line_error(status, err, "--backbone vggish needs --weights: vggish-10086976.pth")
    status, _, err = cli.cocola(string.format("fad --backbone clap --weights /nonexistent '%s' '%s'", ref, gen), tmp)
    cli.one_line_error(status, err, "--weights: no such file or folder: '/nonexistent'")
  end)
end)

teardown(function()
  for _, d in ipairs(made) do os.execute("rm -rf '" .. d .. "'") end
end)
