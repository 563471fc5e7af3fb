-- coherence_training_spec.lua — the training additions that teach coherence rather than song identity:
-- the sampler's hard negatives (shifted, same-song, transposed: what each row really is, their
-- layout and determinism), per-stem gains, anchors and positives from different renderings of the
-- same song, the model's K x (K + M K) similarity with negatives, the loss and accuracy over extra
-- columns, the feature equaliser, and a training run with all of them that resumes exactly.
local cocola = require "cocola"
local data = require "cocola.data"
local fs = require "cocola.data.fs"
local recipe = require "cocola.recipe"
local Rng = require "cocola.data.rng"
local Sampler = require "cocola.data.sampler"
local train = require "cocola.recipes.train"
local files = require "helpers.files"

local RATE = 16000
local SECONDS = 6

-- a stem whose content changes over time (a tone gliding in pitch with a pulse), so that reads at
-- two offsets differ; `flip` renders the "same notes" with another sound (here: an inverted sign and
-- a second harmonic)
local function stem_wave(t, s, flip)
  local rows = {}
  for i = 1, SECONDS * RATE do
    local time = i / RATE
    local f = 90 * s + 11 * t + 20 * time
    local pulse = 0.6 + 0.4 * math.cos(2 * math.pi * (1.5 + 0.2 * s) * time)
    local v = 0.2 * pulse * math.sin(2 * math.pi * f * time)
    if flip then v = -v + 0.05 * math.sin(4 * math.pi * f * time) end
    rows[i] = v
  end
  return cocola.tensor({ rows })
end

local roots = {}
local function build(root, flip, splits)
  for _, split in ipairs(splits) do
    for t = 1, 3 do
      local dir = string.format("%s/%s/track%d", root, split, t)
      fs.mkdir_p(dir)
      for s = 1, 3 do
        cocola.audio.save(string.format("%s/stem%d.wav", dir, s), stem_wave(t + (split == "train" and 0 or 3), s, flip), RATE,
                          { subtype = "float" })
      end
    end
  end
  roots[#roots + 1] = root
  return root
end

local root = build(files.tmpdir(), false, { "train", "validation" })
local other = build(files.tmpdir(), true, { "train" })
teardown(function()
  for _, r in ipairs(roots) do os.execute("rm -rf '" .. r .. "'") end
end)

local function tracks() return data.open("stems_folder", root, "train") end

local function new(opts, list)
  local o = { batch_size = 3, window = 1.0, seed = 4, noise = 0, prefetch = false }
  for k, v in pairs(opts or {}) do o[k] = v end
  return Sampler.new(list or tracks(), o)
end

local function read(path, offset)
  return cocola.audio.load(path, { sr = RATE, mono = true, offset = offset, duration = 1.0 }):view(-1)
end

-- the positive's stems of a window summed at an offset
local function positive_at(track, info, offset)
  local s
  for _, i in ipairs(info.positive) do
    local w = read(track.stems[i].path, offset)
    s = s and s + w or w
  end
  return s
end

local function max_abs(t) return t:abs():max():item() end

describe("hard negatives", function()
  it("are the positive's stems moved in time, or elsewhere in the song, in blocks of K rows", function()
    local list = tracks()
    local s = new({ hard_negatives = "shifted,same_song", shift_min = 0.2, shift_max = 0.4, min_distance = 3 }, list)
    local b = s:next_batch()
    assert.are.same({ 6, RATE }, b.negative.shape)
    for i, info in ipairs(b.windows) do
      local track = list[info.track_index]
      -- block 1: shifted by 0.2 .. 0.4 s either way
      local shifted = b.negative:select(1, i)
      local neg = info.negatives[1]
      assert.are.equal("shifted", neg.kind)
      local d = math.abs(neg.offset - info.offset)
      assert.is_true(d >= 0.2 - 1e-9 and d <= 0.4 + 1e-9 and neg.offset >= 0, "shift " .. d)
      assert.is_true(max_abs(positive_at(track, info, neg.offset) - shifted) < 1e-6, "shifted row " .. i)
      assert.is_true(max_abs(shifted - b.positive:select(1, i)) > 0.05, "and differs from the positive")
      -- block 2: the same stems on the grid at least 3 s away
      local far = b.negative:select(1, 3 + i)
      local at = info.negatives[2].offset
      local found = math.abs(at - info.offset) >= 3 - 1e-9 and max_abs(positive_at(track, info, at) - far) < 1e-6
      assert.is_true(found, "same-song row " .. i .. " is the positive's stems >= 3 s away")
    end
  end)

  it("with shift_beats, move by fractions of the track's MIDI beat", function()
    local slakh = files.tmpdir()
    roots[#roots + 1] = slakh
    local midi = require "cocola.data.midi"
    for t = 1, 3 do
      local dir = string.format("%s/train/Track%05d", slakh, t)
      fs.mkdir_p(dir .. "/stems")
      for s = 1, 3 do
        cocola.audio.save(string.format("%s/stems/S%02d.wav", dir, s - 1), stem_wave(t, s), RATE, { subtype = "float" })
      end
      -- 100 bpm: a beat of 0.6 s
      midi.write_file(dir .. "/all_src.mid", {
        { tick = 0, kind = "meta", meta = 0x51, data = string.pack(">I3", 600000) },
        { tick = 0, kind = "note_on", channel = 1, a = 60, b = 90 },
        { tick = 3840, kind = "note_off", channel = 1, a = 60, b = 0 },
      }, 480)
    end
    local list = data.open("slakh", slakh, "train")
    local b = new({ hard_negatives = "shifted", shift_beats = "0.5,1.5" }, list):next_batch()
    for _, info in ipairs(b.windows) do
      local d = math.abs(info.negatives[1].offset - info.offset)
      assert.is_true(math.abs(d - 0.3) < 1e-9 or math.abs(d - 0.9) < 1e-9, "shift " .. d)
    end
    -- a track without MIDI keeps the range in seconds
    local plain = new({ hard_negatives = "shifted", shift_beats = "0.5", shift_min = 0.2, shift_max = 0.25 }):next_batch()
    for _, info in ipairs(plain.windows) do
      local d = math.abs(info.negatives[1].offset - info.offset)
      assert.is_true(d >= 0.2 - 1e-9 and d <= 0.25 + 1e-9, "shift " .. d)
    end
    assert.has_error(function() new({ shift_beats = "0.5,-1" }) end,
      "sampler: shift_beats must be positive fractions of a beat, got '-1'")
  end)

  it("transposed rows are the positive pitch-shifted by whole semitones", function()
    local s = new({ hard_negatives = "transposed", transpose_max = 3 })
    local b = s:next_batch()
    for i = 1, 3 do
      local n = b.windows[i].negatives[1].semitones
      assert.is_true(n ~= 0 and math.abs(n) <= 3 and math.type(n) == "integer")
      local hit = max_abs(cocola.audio.pitch_shift(b.positive:select(1, i), RATE, n) - b.negative:select(1, i)) < 1e-5
      assert.is_true(hit, "row " .. i)
    end
  end)

  it("are deterministic, get the positives' noise, and leave the plain batches unchanged", function()
    local plain = new():next_batch()
    local a = new({ hard_negatives = "shifted", noise = 1e-3 }):next_batch()
    local b = new({ hard_negatives = "shifted", noise = 1e-3 }):next_batch()
    assert.are.equal(0, max_abs(a.negative - b.negative))
    assert.are.equal(0, max_abs(plain.anchor - a.anchor))
    local clean = new({ hard_negatives = "shifted" }):next_batch()
    local noise = (a.negative - clean.negative)
    local std = math.sqrt((noise * noise):mean():item())
    assert.is_true(std > 0.5e-3 and std < 2e-3, "noise std " .. std)
  end)

  it("refuse unknown kinds and bad ranges by name", function()
    assert.has_error(function() new({ hard_negatives = "reversed" }) end,
      "sampler: unknown hard negative 'reversed' (known: shifted, same_song, transposed)")
    assert.has_error(function() new({ shift_min = 0.5, shift_max = 0.1 }) end, "sampler: need 0 < shift_min <= shift_max")
    assert.has_error(function() new({ transpose_max = 12 }) end,
      "sampler: transpose_max must be an integer in 1..11 (an octave keeps the pitch classes)")
    assert.has_error(function() new({ min_distance = 0.5 }) end,
      "sampler: min_distance must be at least the window (same-song negatives must not overlap the positive)")
  end)

  it("same-song negatives never overlap the positive, even without a place min_distance away", function()
    local list = tracks()
    local b = new({ hard_negatives = "same_song", min_distance = 100 }, list):next_batch()
    for _, info in ipairs(b.windows) do
      assert.is_true(math.abs(info.negatives[1].offset - info.offset) >= 1 - 1e-9)
    end
  end)
end)

describe("augmentations", function()
  it("gain_db scales each stem by one gain within the bound before the sub-mixes are summed", function()
    local list = tracks()
    local b = new({ gain_db = 6 }, list):next_batch()
    local plain = new({}, list):next_batch()
    for i, info in ipairs(b.windows) do
      local track = list[info.track_index]
      local sum
      for _, st in ipairs(info.anchor) do
        local g = info.gains[st]
        assert.is_true(g >= 10 ^ (-6 / 20) - 1e-12 and g <= 10 ^ (6 / 20) + 1e-12)
        local w = read(track.stems[st].path, info.offset) * g
        sum = sum and sum + w or w
      end
      assert.is_true(max_abs(sum - b.anchor:select(1, i)) < 1e-5)
      assert.is_true(max_abs(plain.anchor:select(1, i) - b.anchor:select(1, i)) > 1e-3, "the gains change the sub-mix")
    end
  end)

  it("leaves out a rendering that lacks one of the track's stems", function()
    local partial = files.tmpdir()
    roots[#roots + 1] = partial
    for t = 1, 3 do
      local dir = string.format("%s/train/track%d", partial, t)
      fs.mkdir_p(dir)
      for s = 1, (t == 2 and 2 or 3) do
        cocola.audio.save(string.format("%s/stem%d.wav", dir, s), stem_wave(t, s, true), RATE, { subtype = "float" })
      end
    end
    local list = tracks()
    assert.are.equal(2, Sampler.attach_renderings(list, { data.open("stems_folder", partial, "train") }))
    for _, t in ipairs(list) do
      for _, stem in ipairs(t.stems) do assert.are.equal(t.name == "track2" and 1 or 2, #stem.paths, t.name) end
    end
  end)

  it("draws anchor and positive from different renderings of the same song", function()
    local list = tracks()
    local matched = Sampler.attach_renderings(list, { data.open("stems_folder", other, "train") })
    assert.are.equal(3, matched)
    local s = new({}, list)
    local b = s:next_batch()
    for i, info in ipairs(b.windows) do
      assert.are_not.equal(info.anchor_rendering, info.positive_rendering)
      local track = list[info.track_index]
      local function sum(picks, rendering)
        local out
        for _, st in ipairs(picks) do
          local w = read(track.stems[st].paths[rendering], info.offset)
          out = out and out + w or w
        end
        return out
      end
      assert.is_true(max_abs(sum(info.anchor, info.anchor_rendering) - b.anchor:select(1, i)) < 1e-6)
      assert.is_true(max_abs(sum(info.positive, info.positive_rendering) - b.positive:select(1, i)) < 1e-6)
    end
  end)

  it("equalize tilts the log-mel bands and restores the 0 dB peak and the -80 dB floor", function()
    local f = cocola.audio.cocola_features(read(roots[1] .. "/train/track1/stem1.wav", 0):view(1, -1), { mode = "hpss" })
    local same = train.equalize(f, 0, Rng.new(1))
    assert.is_true(max_abs(same - f) < 1e-5, "no change at 0 dB")
    local eq = train.equalize(f, 6, Rng.new(1))
    assert.are.same(f.shape, eq.shape)
    local peak = eq:reshape({ 2, 64 * f:size(4) }):max(2)
    assert.is_true(max_abs(peak) < 1e-5, "peak at 0 dB")
    assert.is_true(eq:min():item() >= -80 - 1e-4, "floor at -80 dB")
    assert.is_true(max_abs(eq - f) > 0.5 and max_abs(eq - f) <= 4 * 6 + 1e-3, "a change within the bound")
    assert.are.equal(0, max_abs(eq - train.equalize(f, 6, Rng.new(1))), "deterministic for an Rng")
  end)
end)

describe("the loss with negative columns", function()
  it("is the cross-entropy over K + M columns, and the accuracy counts every column", function()
    local sim = cocola.tensor({ { 2, 0, 3, -1 }, { 0, 1, -2, 0.5 } })
    local expected = 0
    for i, row in ipairs(sim:totable()) do
      local z = 0
      for _, v in ipairs(row) do z = z + math.exp(v) end
      expected = expected + (math.log(z) - row[i])
    end
    assert.is_true(math.abs(cocola.metrics.contrastive_loss(sim):item() - expected / 2) < 1e-5)
    assert.are.equal(0.5, cocola.metrics.accuracy(sim)) -- row 1 loses to a negative column
    assert.has_error(function() cocola.metrics.contrastive_loss(cocola.zeros({ 3, 2 })) end)
  end)

  it("model(anchors, positives, negatives) puts the negatives' columns after the positives'", function()
    cocola.manual_seed(2)
    local model = cocola.models.cocola { input = "hpss", embedding_mode = "both" }
    model:eval()
    local x = cocola.randn({ 6, 2, 64, 101 })
    local a, p, n = x:narrow(1, 1, 2), x:narrow(1, 3, 2), x:narrow(1, 5, 2)
    local sim = cocola.no_grad(function() return model(a, p, n) end)
    assert.are.same({ 2, 4 }, sim.shape)
    local plain = cocola.no_grad(function() return model(a, p) end)
    local en = cocola.no_grad(function() return model:embed(n) end)
    local ea = cocola.no_grad(function() return model:embed(a) end)
    local neg = cocola.no_grad(function() return model.similarity(ea, en) end)
    local scale = max_abs(plain)
    assert.is_true(max_abs(sim:narrow(2, 1, 2) - plain) < 1e-4 * scale)
    assert.is_true(max_abs(sim:narrow(2, 3, 2) - neg) < 1e-4 * scale)
    assert.has_error(function() model(a, p, x:narrow(1, 1, 3)) end,
      "expected a multiple of 2 negatives (blocks of one per anchor), got 3")
  end)
end)

describe("training with hard negatives, gains, equalisation and renderings", function()
  local function config(out, extra)
    local args = {
      "layout=stems_folder", "root=" .. root, "valid_split=validation", "out=" .. out, "batch_size=2",
      "window=1.0", "valid_batches=1", "checkpoint_every=1", "seed=3", "threads=2", "min_distance=2",
      "hard_negatives=shifted,same_song", "gain_db=3", "eq_db=3", "renderings=" .. root .. "=" .. other,
    }
    for _, a in ipairs(extra) do args[#args + 1] = a end
    return recipe.config(train.DEFAULTS, args)
  end
  local function quietly(cfg)
    local out = io.output()
    local sink = os.tmpname()
    io.output(sink)
    local ok, losses = pcall(train.run, cfg, function() end)
    io.output():close()
    io.output(out)
    os.remove(sink)
    assert(ok, losses)
    return losses
  end

  it("trains and resumes exactly", function()
    local straight_dir, dir = files.tmpdir(), files.tmpdir()
    local straight = quietly(config(straight_dir, { "max_steps=3" }))
    assert.are.equal(3, #straight)
    for _, l in ipairs(straight) do assert.is_true(l == l and l > 0, "loss " .. l) end
    quietly(config(dir, { "max_steps=1" }))
    local rest = quietly(config(dir, { "max_steps=3", "resume=" .. dir .. "/last" }))
    assert.are.same({ straight[2], straight[3] }, rest)
    os.execute("rm -rf '" .. straight_dir .. "' '" .. dir .. "'")
  end)

  it("validates on valid_root when the training roots have no validation split", function()
    local dir = files.tmpdir()
    local losses = quietly(config(dir, { "root=" .. other, "valid_root=" .. root, "renderings=", "max_steps=1", "valid_every=1" }))
    assert.are.equal(1, #losses)
    local validated = false
    for line in io.lines(dir .. "/metrics.jsonl") do
      if line:find("valid_loss", 1, true) then validated = true end
    end
    assert.is_true(validated)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("names a malformed renderings setting", function()
    local dir = files.tmpdir()
    local out = io.output()
    local sink = os.tmpname()
    io.output(sink)
    local ok, err = pcall(train.run, config(dir, { "renderings=nothing" }), function() end)
    io.output():close()
    io.output(out)
    os.remove(sink)
    assert.is_false(ok)
    assert.matches("renderings: expected root=other", err, 1, true)
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
