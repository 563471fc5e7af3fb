-- sampler_spec.lua — the contrastive sampler on a stems folder built here: the window grid and its
-- overlap bound, sub-mixes that are disjoint, non-empty and drawn from active stems only, exact
-- sums, the noise level on positives, determinism for a seed, and exact resumption from state().
local cocola = require "cocola"
local data = require "cocola.data"
local fs = require "cocola.data.fs"
local Sampler = require "cocola.data.sampler"

local RATE = 16000

local tmpdir = require("helpers.files").tmpdir

-- tracks of 3 s: a tone per stem (distinct frequencies), the third stem of track 1 silent
local root = tmpdir()
local function build()
  for t = 1, 3 do
    for s = 1, 3 do
      local rows = {}
      for i = 1, 3 * RATE do
        rows[i] = (t == 1 and s == 3) and 0 or 0.2 * math.sin(2 * math.pi * (110 * s + 7 * t) * i / RATE)
      end
      local dir = string.format("%s/train/track%d", root, t)
      fs.mkdir_p(dir)
      cocola.audio.save(string.format("%s/stem%d.wav", dir, s), cocola.tensor({ rows }), RATE, { subtype = "float" })
    end
  end
end
build()
local tracks = data.open("stems_folder", root, "train")

local function new(opts)
  local o = { batch_size = 4, window = 1.0, seed = 5, noise = 0 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return Sampler.new(tracks, o)
end

describe("the contrastive sampler", function()
  it("cuts tracks into windows overlapping at most max_overlap", function()
    local s = new()
    assert.are.equal(3 * 6, #s.windows) -- offsets 0, 0.5, ..., 2.5 s in each 3 s track
    local s2 = new({ max_overlap = 0 })
    assert.are.equal(3 * 3, #s2.windows)
  end)

  it("draws disjoint non-empty sub-mixes of active stems, summed exactly", function()
    local s = new()
    local waves = {}
    for w = 1, #s.windows do
      local a, p, info = s:pair(w)
      assert.is_not_nil(a)
      assert.is_true(#info.anchor >= 1 and #info.positive >= 1)
      local used = {}
      for _, i in ipairs(info.anchor) do used[i] = true end
      for _, i in ipairs(info.positive) do
        assert.is_nil(used[i], "a stem on both sides")
        used[i] = true
      end
      if info.track == "track1" then assert.is_nil(used[3], "the silent stem was chosen") end
      assert.are.same({ RATE }, a.shape)
      -- recompute the anchor from the files
      local track = s.tracks[s.windows[w][1]]
      local sum = cocola.zeros({ RATE })
      for _, i in ipairs(info.anchor) do
        waves[i] = cocola.audio.load(track.stems[i].path, { offset = info.offset, duration = 1.0 }):view(-1)
        sum = sum + waves[i]
      end
      assert.is_true((sum - a):abs():max():item() < 1e-6)
    end
  end)

  it("adds Gaussian noise of the given std to positives only", function()
    local clean = new({ noise = 0 }):next_batch()
    local noisy = new({ noise = 1e-3 }):next_batch()
    assert.is_true((clean.anchor - noisy.anchor):abs():max():item() == 0)
    local d = noisy.positive - clean.positive
    local std = math.sqrt((d * d):mean():item())
    assert.is_true(std > 0.9e-3 and std < 1.1e-3, "noise std " .. std)
  end)

  it("gives the same batches for the same seed and others for another", function()
    local a, b, c = new({ noise = 1e-3 }), new({ noise = 1e-3 }), new({ seed = 6, noise = 1e-3 })
    local ba, bb, bc = a:next_batch(), b:next_batch(), c:next_batch()
    assert.is_true(ba.anchor:allclose(bb.anchor, 0, 0) and ba.positive:allclose(bb.positive, 0, 0))
    assert.is_false(ba.anchor:allclose(bc.anchor, 0, 0))
  end)

  it("resumes exactly from a saved state, across epochs", function()
    local straight = new({ noise = 1e-3 })
    local expected = {}
    for i = 1, 12 do
      local b = straight:next_batch()
      expected[i] = b and b.positive or false
    end
    local first = new({ noise = 1e-3 })
    for _ = 1, 5 do first:next_batch() end
    local resumed = new({ noise = 1e-3 })
    resumed:set_state(first:state())
    for i = 6, 12 do
      local b = resumed:next_batch()
      if expected[i] then
        assert.is_not_nil(b, "batch " .. i)
        assert.is_true(b.positive:allclose(expected[i], 0, 0), "batch " .. i)
      else
        assert.is_nil(b)
      end
    end
    assert.is_true(resumed.epoch >= 1)
  end)

  it("refuses bad options", function()
    assert.has_error(function() new({ bogus = 1 }) end, "sampler: unknown option 'bogus'")
    assert.has_error(function() new({ batch_size = 100 }) end)
  end)
end)
