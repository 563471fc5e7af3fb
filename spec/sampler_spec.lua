-- sampler_spec.lua — the contrastive sampler on a stems folder built here: the window grid and its
-- overlap bound, sub-mixes that are disjoint, non-empty and drawn from active stems only, exact
-- sums, the noise level on positives, determinism for a seed, and exact resumption from state();
-- prefetching (background loads in C) gives the same batches, surfaces missing files and survives
-- handles dropped before their loads complete.
local cocola = require "cocola"
local core = require "cocola.core"
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

-- Prefetching: stereo 22.05 kHz tracks of uneven lengths (resampled, down-mixed, the last window
-- zero-padded), with stems that fall silent so that some windows are skipped.
local PF_RATE = 22050
local pf_root = tmpdir()
local function build_prefetch_fixture()
  local lengths = { 2.3, 3.0, 1.7, 2.6 }
  for t, seconds in ipairs(lengths) do
    local dir = string.format("%s/train/song%d", pf_root, t)
    fs.mkdir_p(dir)
    for s = 1, 3 + (t % 2) do
      local left, right = {}, {}
      for i = 1, math.floor(seconds * PF_RATE) do
        local time = i / PF_RATE
        -- in song 3, stems 2 and 3 stop after 0.8 s; in song 2, stem 1 rests in [1, 2) s
        local silent = (t == 3 and s >= 2 and time > 0.8) or (t == 2 and s == 1 and time >= 1 and time < 2)
        local f = 97 * s + 13 * t
        left[i] = silent and 0 or 0.3 * math.sin(2 * math.pi * f * time)
        right[i] = silent and 0 or 0.1 * math.sin(2 * math.pi * 1.5 * f * time)
      end
      cocola.audio.save(string.format("%s/stem%d.wav", dir, s), cocola.tensor({ left, right }), PF_RATE,
                        { subtype = "float" })
    end
  end
end
build_prefetch_fixture()
local pf_tracks = data.open("stems_folder", pf_root, "train")

local function pf_new(opts)
  local o, tracks = { batch_size = 3, window = 0.5, max_overlap = 0.5, seed = 11, noise = 1e-3 }, pf_tracks
  for k, v in pairs(opts or {}) do
    if k == "tracks" then tracks = v else o[k] = v end
  end
  return Sampler.new(tracks, o)
end

-- the batches of `calls` next_batch() calls (false for nil)
local function batches(sampler, calls)
  local out = {}
  for i = 1, calls do out[i] = sampler:next_batch() or false end
  return out
end

local function assert_same_batches(expected, got, first)
  for i = first or 1, #expected do
    local e, g = expected[i], got[i]
    if not e then
      assert.is_false(g, "batch " .. i .. " should be the end of an epoch")
    else
      assert.is_truthy(g, "batch " .. i)
      assert.is_true(e.anchor:allclose(g.anchor, 0, 0), "anchors of batch " .. i)
      assert.is_true(e.positive:allclose(g.positive, 0, 0), "positives of batch " .. i)
      assert.are.same(e.windows, g.windows, "windows of batch " .. i)
    end
  end
end

describe("the sampler's prefetching", function()
  it("gives batches bit-identical to loading on demand, across epochs", function()
    local s = pf_new()
    assert.is_true(s.opts.prefetch)
    assert.is_true(#s.windows > 3 * s.opts.batch_size)
    local skipped = 0
    for w = 1, #s.windows do
      if not s:pair(w) then skipped = skipped + 1 end
    end
    assert.is_true(skipped >= 2, "the fixture should have windows with fewer than two active stems")
    local calls = 3 * (s:batches_per_epoch() + 1)
    assert_same_batches(batches(pf_new({ prefetch = false }), calls), batches(s, calls))
    -- partial batches at the ends of epochs
    assert_same_batches(batches(pf_new({ prefetch = false, drop_last = false, batch_size = 4 }), calls),
                        batches(pf_new({ drop_last = false, batch_size = 4 }), calls))
  end)

  it("resumes exactly through set_state, discarding what was prefetched", function()
    local calls = 2 * (pf_new():batches_per_epoch() + 1) + 2
    local expected = batches(pf_new({ prefetch = false }), calls)
    local first = pf_new()
    batches(first, 4)
    local resumed = pf_new()
    batches(resumed, 2) -- its prefetches are for other windows
    resumed:set_state(first:state())
    local got = {}
    for i = 5, calls do got[i] = resumed:next_batch() or false end
    assert_same_batches(expected, got, 5)
    -- rewinding the first sampler mid-epoch, with loads still pending
    first:set_state({ epoch = 0, position = 0 })
    assert_same_batches(expected, batches(first, calls))
  end)

  it("raises an error naming a missing file", function()
    local broken = {}
    for i, t in ipairs(pf_tracks) do
      local stems = {}
      for j, stem in ipairs(t.stems) do stems[j] = { name = stem.name, path = stem.path } end
      broken[i] = { name = t.name, duration = t.duration, stems = stems }
    end
    for _, t in ipairs(broken) do t.stems[2].path = pf_root .. "/no_such_stem_" .. t.name .. ".wav" end
    for _, prefetch in ipairs({ true, false }) do
      local s = pf_new({ tracks = broken, prefetch = prefetch })
      local ok, err = pcall(s.next_batch, s)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("no_such_stem_song%d%.wav"), tostring(err))
    end
  end)

  it("survives handles and samplers dropped before their loads complete", function()
    local path = pf_tracks[2].stems[1].path
    local requests = {}
    for i = 1, 40 do requests[i] = { path = path, sr = 16000, mono = true, offset = 0.01 * i, duration = 1.0 } end
    for _ = 1, 5 do core.audio_prefetch(requests) end
    local s = pf_new()
    s:next_batch() -- leaves loads pending
    s = nil
    collectgarbage()
    collectgarbage()
    local h = core.audio_prefetch({ requests[1], requests[2] })
    local waves, rms = h:wait()
    assert.are.equal(2, #waves)
    assert.are.same({ 1, 16000 }, waves[1].shape)
    local r1 = requests[1]
    local ref = cocola.audio.load(path, { sr = r1.sr, mono = r1.mono, offset = r1.offset, duration = r1.duration })
    assert.is_true(waves[1]:allclose(ref, 0, 0))
    assert.is_true(math.abs(rms[1] - math.sqrt((ref:double() * ref:double()):mean():item())) < 1e-9)
    assert.is_true(h:ready())
    assert.has_error(function() h:wait() end, "audio prefetch: the handle was already waited on or cancelled")
  end)

  it("refuses bad requests with clear errors", function()
    local path = pf_tracks[1].stems[1].path
    assert.has_error(function() core.audio_prefetch("x") end)
    assert.has_error(function() core.audio_prefetch({ { offset = 1 } }) end, "audio_prefetch: request 1 has no path (a string)")
    assert.has_error(function() core.audio_prefetch({ { path = path }, 7 }) end, "audio_prefetch: request 2 is not a table")
    assert.has_error(function() core.audio_prefetch({ { path = path, duration = -1 } }) end,
                     "audio_prefetch: request 1 ('" .. path .. "'): duration must be a non-negative number of seconds")
    assert.has_error(function() core.audio_prefetch({ { path = path, offset = -0.5 } }) end)
    assert.has_error(function() core.audio_prefetch({ { path = path, sr = "fast" } }) end)
  end)
end)
