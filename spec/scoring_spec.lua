-- scoring_spec.lua — cocola.scoring: the window policy, the COCOLA score of waves against a hand
-- computation (features of each window, model:score(cond, gen) in each embedding mode), the
-- length rules, files and folders (matching by name, unmatched and failing pairs), window
-- embeddings, and the JSON / CSV writers.
-- The model is a random HPSS COCOLA whose BatchNorm running statistics are set from one batch (a
-- fresh random model in eval mode maps every input to the same embedding, which would hide
-- window-order mistakes).
local cocola = require "cocola"
local audio = require "cocola.audio"
local scoring = require "cocola.scoring"
local files = require "helpers.files"
local models = require "helpers.models"
local cjson = require "cjson"

cocola.set_num_threads(1)

local SR, WIN = 16000, 80000

local function close(a, b, tol)
  return math.abs(a - b) <= (tol or 1e-4) * math.max(1, math.abs(a), math.abs(b))
end

-- the windows of a (1, n) wave as a (B, WIN) batch, zero-padded, by hand
local function by_hand_batch(wave, starts, n)
  local rows = {}
  for _, s in ipairs(starts) do
    local len = math.min(WIN, n - s)
    local piece = wave:narrow(2, s + 1, len)
    if len < WIN then piece = cocola.cat({ piece, cocola.zeros({ 1, WIN - len }) }, 2) end
    rows[#rows + 1] = piece
  end
  return cocola.cat(rows, 1)
end

describe("scoring.windows", function()
  local function starts(n, o) return table.concat(scoring.windows(n, o), " ") end

  it("cuts 5 s windows, no overlap, by default", function()
    assert.are.equal("0", starts(WIN))
    assert.are.equal("0 80000", starts(2 * WIN))
    assert.are.equal("0 80000 160000", starts(3 * WIN))
  end)

  it("scores what is left after the last whole window, if at least min_last (2.5 s), as a window ending at the end", function()
    assert.are.equal("0", starts(WIN + 40000 - 1)) -- 2.5 s minus a sample: dropped
    assert.are.equal("0 40000", starts(WIN + 40000)) -- exactly 2.5 s: the last 5 s, overlapping
    assert.are.equal("0", starts(math.floor(10.24 * SR) - WIN)) -- 5.24 s -> one window
    assert.are.equal("0 80000", starts(math.floor(10.24 * SR))) -- 10.24 s -> two whole ones (0.24 s left)
    assert.are.equal("0 80000 128000", starts(13 * SR)) -- 13 s: a third, 8-13 s
    assert.are.equal("0 16000", starts(WIN + 16000, { min_last = 1.0 }))
    assert.are.equal("0", starts(WIN + 15999, { min_last = 1.0 }))
    assert.are.equal("0 1", starts(WIN + 1, { min_last = 0 }))
    -- every window is whole: no start runs past the end
    for _, n in ipairs { WIN, WIN + 40000, 2 * WIN + 39999, 3 * WIN + 77777 } do
      for _, s in ipairs(scoring.windows(n)) do assert.is_true(s + WIN <= n, n .. ": " .. s) end
    end
  end)

  it("refuses audio shorter than a window (padding would bias the score), unless min_duration allows it", function()
    assert.are.equal("0", starts(WIN))
    for _, n in ipairs { 1, 1600, 40000, WIN - 1 } do
      local ok, err = pcall(scoring.windows, n)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("audio too short: " .. string.format("%.3f", n / SR) .. " s", 1, true), err)
      assert.truthy(tostring(err):find("whole 5 s windows", 1, true), err)
    end
    -- opting in: one zero-padded window from min_duration on, never below 513 samples
    assert.are.equal("0", starts(1600, { min_duration = 0.1 }))
    assert.are.equal("0", starts(WIN - 1, { min_duration = 0.1 }))
    assert.is_false((pcall(scoring.windows, 1599, { min_duration = 0.1 })))
    assert.is_false((pcall(scoring.windows, 512, { min_duration = 0.001 })))
    assert.are.equal("0", starts(513, { min_duration = 0.001 }))
    assert.is_false((pcall(scoring.windows, WIN, { min_duration = 0 })))
  end)

  it("follows hop and window", function()
    assert.are.equal("0 40000 80000 120000", starts(200000, { hop = 2.5 }))
    -- the tail beyond the last full window (120000 + 80000 = 200000) is 40000 samples = 2.5 s
    assert.are.equal("0 40000 80000 120000 160000", starts(240000, { hop = 2.5 }))
    assert.are.equal("0 32000 64000", starts(96000, { window = 2.0, min_last = 0 }))
    assert.is_false((pcall(scoring.windows, WIN, { hop = 0 })))
  end)
end)

describe("scoring.score_waves", function()
  local model, cond, gen
  local n = 2 * WIN + 40000 -- 12.5 s: two whole windows, then the last 5 s (from 7.5 s)
  setup(function()
    model = models.calibrated("hpss")
    cocola.manual_seed(11)
    cond = cocola.randn({ 1, n }) * 0.1
    gen = cocola.randn({ 1, n + 800 }) * 0.05 -- 50 ms longer: scored over the overlap
  end)

  it("matches model:score(features(cond_w), features(gen_w)) window by window, in every mode", function()
    local r = scoring.score_waves(model, cond, gen, { batch = 2 }) -- batches of 2 + 1 windows
    assert.are.equal("both", r.mode)
    assert.are.equal(3, #r.windows)
    assert.are.equal(12.5, r.duration)
    assert.are.equal(12.5, r.cond_duration)
    assert.are.equal(12.55, r.gen_duration)
    -- by hand, in the same batches (a random model amplifies float32 rounding differences
    -- between batch sizes: the partition matters at the 1e-3 level)
    local parts = { { 0, WIN }, { n - WIN } }
    local fcs, fgs = {}, {}
    for i, starts in ipairs(parts) do
      fcs[i] = audio.cocola_features(by_hand_batch(cond, starts, n), { mode = "hpss" })
      fgs[i] = audio.cocola_features(by_hand_batch(gen, starts, n), { mode = "hpss" })
    end
    local fc, fg = fcs[1], fgs[1]
    for _, mode in ipairs { "both", "harmonic", "percussive" } do
      local want = {}
      for i = 1, #parts do
        for _, v in ipairs(cocola.no_grad(function() return model:score(fcs[i], fgs[i], mode) end):totable()) do
          want[#want + 1] = v
        end
      end
      local got = r[mode]
      assert.is_table(got, mode)
      local sum = 0
      for k = 1, 3 do
        assert.is_true(close(got.windows[k].score, want[k]),
          string.format("%s window %d: %g vs %g", mode, k, got.windows[k].score, want[k]))
        sum = sum + got.windows[k].score
      end
      assert.is_true(close(got.mean, sum / 3), mode .. " mean")
    end
    assert.are.equal(r.both.mean, r.mean)
    assert.are.same({ 0.0, 5.0, 7.5 }, { r.windows[1].start, r.windows[2].start, r.windows[3].start })
    assert.are.same({ 5.0, 5.0, 5.0 }, { r.windows[1].duration, r.windows[2].duration, r.windows[3].duration })
    -- the order is sim(h_cond, h_gen) (Eq. 4: y the conditioning); W is not symmetric
    local swapped = cocola.no_grad(function() return model:score(fg, fc) end):totable()
    assert.is_false(close(swapped[1], r.windows[1].score, 1e-3), "score(gen, cond) should differ")
    -- the windows differ (a calibrated model): a window-order mistake would show
    assert.is_false(close(r.windows[1].score, r.windows[2].score, 1e-3))
  end)

  it("takes (n) waves, a main mode and no variants", function()
    local r = scoring.score_waves(model, cond:reshape({ n }):narrow(1, 1, WIN), gen:reshape({ n + 800 }):narrow(1, 1, WIN),
      { mode = "percussive", variants = false })
    assert.are.equal("percussive", r.mode)
    assert.is_nil(r.harmonic)
    assert.is_nil(r.both)
    assert.are.equal(1, #r.windows)
    local fc = audio.cocola_features(cond:narrow(2, 1, WIN):contiguous(), { mode = "hpss" })
    local fg = audio.cocola_features(gen:narrow(2, 1, WIN):contiguous(), { mode = "hpss" })
    local want = cocola.no_grad(function() return model:score(fc, fg, "percussive") end):item()
    assert.is_true(close(r.mean, want))
  end)

  it("rejects a length mismatch beyond the tolerance, unless allowed", function()
    local short = cond:narrow(2, 1, WIN + 8000) -- 5.5 s against 12.5 s
    local ok, err = pcall(scoring.score_waves, model, cond, short)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("length mismatch: cond is 12.50 s, gen is 5.50 s", 1, true), err)
    ok, err = pcall(scoring.score_waves, model, cond, short, { tolerance = 1.0 })
    assert.is_false(ok)
    local r = scoring.score_waves(model, cond, short, { allow_mismatch = true, variants = false })
    assert.are.equal(5.5, r.duration)
    assert.are.equal(1, #r.windows) -- 0.5 s tail < 2.5 s
  end)

  it("rejects bad modes and arguments", function()
    assert.is_false((pcall(scoring.score_waves, model, cond, gen, { mode = "random" })))
    assert.is_false((pcall(scoring.score_waves, model, "x", gen)))
    assert.is_false((pcall(scoring.score_waves, {}, cond, gen)))
    local ok, err = pcall(scoring.score_waves, model, cond:narrow(2, 1, 1000), gen:narrow(2, 1, 1000))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("too short", 1, true), err)
  end)

  it("gives mel models one score (mode both only)", function()
    local mel = cocola.models.cocola { input = "mel" }:eval()
    local ok, err = pcall(scoring.score_waves, mel, cond, gen, { mode = "harmonic" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("HPSS", 1, true), err)
    local w = cond:narrow(2, 1, WIN)
    local r = scoring.score_waves(mel, w, w)
    assert.are.equal("both", r.mode)
    assert.is_nil(r.harmonic)
    assert.is_nil(r.percussive)
    assert.are.equal(1, #r.windows)
  end)
end)

describe("scoring files, folders and embeddings", function()
  local model, dir
  setup(function()
    model = models.calibrated("hpss")
    dir = files.tmpdir()
    cocola.manual_seed(5)
    local fs = require "cocola.data.fs"
    fs.mkdir_p(dir .. "/cond")
    fs.mkdir_p(dir .. "/gen")
    -- 5 s files: one window each
    audio.save(dir .. "/cond/song1.wav", cocola.randn({ 1, WIN }) * 0.1, SR)
    audio.save(dir .. "/gen/song1.flac", cocola.randn({ 1, WIN }) * 0.1, SR)
    audio.save(dir .. "/cond/song2.wav", cocola.randn({ 1, WIN }) * 0.1, SR)
    audio.save(dir .. "/gen/song2.wav", cocola.randn({ 2, 5 * 44100 }) * 0.1, 44100) -- stereo 44.1 kHz
    audio.save(dir .. "/cond/long.wav", cocola.randn({ 1, 8 * SR }) * 0.1, SR)
    audio.save(dir .. "/gen/long.wav", cocola.randn({ 1, 6 * SR }) * 0.1, SR) -- 8 s vs 6 s: mismatch
    audio.save(dir .. "/cond/only_cond.wav", cocola.randn({ 1, SR }) * 0.1, SR)
    audio.save(dir .. "/gen/only_gen.ogg", cocola.randn({ 1, SR }) * 0.1, SR)
    local f = assert(io.open(dir .. "/gen/notes.txt", "w"))
    f:write("not audio")
    f:close()
    f = assert(io.open(dir .. "/broken.wav", "w"))
    f:write("not a wave file")
    f:close()
  end)
  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("scores two files as score_waves on their 16 kHz mono waves", function()
    local r = scoring.score_files(model, dir .. "/cond/song2.wav", dir .. "/gen/song2.wav", { variants = false })
    local c = audio.load(dir .. "/cond/song2.wav", { sr = SR, mono = true })
    local g = audio.load(dir .. "/gen/song2.wav", { sr = SR, mono = true })
    local want = scoring.score_waves(model, c, g, { variants = false })
    assert.is_true(close(r.mean, want.mean))
    assert.are.equal(dir .. "/cond/song2.wav", r.cond)
    assert.are.equal(dir .. "/gen/song2.wav", r.gen)
  end)

  it("reads files a batch of windows at a time, as if decoded whole (44.1 kHz stereo, resampled in spans)", function()
    cocola.manual_seed(23)
    local path = dir .. "/long44.wav"
    audio.save(path, cocola.randn({ 2, math.floor(23.3 * 44100) }) * 0.1, 44100)
    local whole = audio.load(path, { sr = SR, mono = true })
    for _, batch in ipairs { 1, 2, 16 } do
      local streamed = scoring.score_files(model, path, path, { batch = batch, variants = false })
      local want = scoring.score_waves(model, whole, whole, { batch = batch, variants = false })
      assert.are.equal(#want.windows, #streamed.windows)
      assert.are.equal(5, #streamed.windows) -- 0, 5, 10, 15 s, then the last 5 s from 18.3 s
      for k, w in ipairs(want.windows) do
        assert.are.equal(w.start, streamed.windows[k].start)
        assert.is_true(close(w.score, streamed.windows[k].score, 1e-4),
          string.format("batch %d window %d: %g vs %g", batch, k, w.score, streamed.windows[k].score))
      end
    end
    local seen = {}
    scoring.score_files(model, path, path, { batch = 4, variants = false,
      window_progress = function(done, total) seen[#seen + 1] = done .. "/" .. total end })
    assert.are.same({ "0/5", "4/5", "5/5" }, seen)
  end)

  it("names the file it cannot read", function()
    local ok, err = pcall(scoring.score_files, model, dir .. "/broken.wav", dir .. "/gen/song2.wav")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("cannot read audio file '" .. dir .. "/broken.wav'", 1, true), err)
    ok, err = pcall(scoring.score_files, model, dir .. "/cond/song2.wav", dir .. "/missing.wav")
    assert.is_false(ok)
    assert.truthy(tostring(err):find(dir .. "/missing.wav", 1, true), err)
    ok, err = pcall(scoring.score_files, model, dir .. "/cond/long.wav", dir .. "/gen/long.wav")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("length mismatch: cond '" .. dir .. "/cond/long.wav' is 8.00 s", 1, true), err)
  end)

  it("matches folders by name, lists unmatched files, and stops at (or records) a failing pair", function()
    local ok, err = pcall(scoring.score_folders, model, dir .. "/cond", dir .. "/gen", { variants = false })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("^long: length mismatch"), err)

    local seen = {}
    local r = scoring.score_folders(model, dir .. "/cond", dir .. "/gen", {
      keep_going = true, progress = function(i, n, name) seen[#seen + 1] = i .. "/" .. n .. " " .. name end,
    })
    assert.are.same({ "1/3 long", "2/3 song1", "3/3 song2" }, seen)
    assert.are.equal(2, r.n)
    assert.are.same({ "song1", "song2" }, { r.rows[1].name, r.rows[2].name })
    assert.are.equal(dir .. "/gen/song1.flac", r.rows[1].gen)
    assert.are.same({ "only_cond.wav" }, { table.unpack(r.unmatched.cond) })
    assert.are.same({ "only_gen.ogg" }, { table.unpack(r.unmatched.gen) })
    assert.are.equal(1, #r.failed)
    assert.are.equal("long", r.failed[1].name)
    for _, row in ipairs(r.rows) do
      assert.are.equal(1, #row.windows)
      assert.is_number(row.harmonic)
      assert.is_number(row.percussive)
    end
    assert.is_true(close(r.mean, (r.rows[1].score + r.rows[2].score) / 2))
    assert.is_true(close(r.harmonic, (r.rows[1].harmonic + r.rows[2].harmonic) / 2))
    local one = scoring.score_files(model, dir .. "/cond/song1.wav", dir .. "/gen/song1.flac")
    assert.is_true(close(r.rows[1].score, one.mean))
    assert.is_true(close(r.rows[1].percussive, one.percussive.mean))

    -- the writers
    local decoded = cjson.decode(scoring.json(r))
    assert.are.equal(2, #decoded.rows)
    assert.are.equal("song2", decoded.rows[2].name)
    assert.is_true(close(decoded.rows[2].score, r.rows[2].score, 1e-8))
    assert.are.same({ "only_gen.ogg" }, decoded.unmatched.gen)
    assert.truthy(scoring.json({ a = scoring.list() }, { indent = false }) == '{"a":[]}')
    local lines = {}
    for l in scoring.csv(r):gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(3, #lines)
    assert.are.equal("name,cond,gen,score,harmonic,percussive,windows,duration", lines[1])
    assert.truthy(lines[2]:find("^song1," .. dir:gsub("%p", "%%%0") .. "/cond/song1.wav,"), lines[2])
    assert.is_true(close(tonumber(lines[2]:match("^[^,]*,[^,]*,[^,]*,([^,]*)")), r.rows[1].score, 1e-8), lines[2])
  end)

  it("rejects folders with nothing in common, and duplicate names", function()
    local fs = require "cocola.data.fs"
    fs.mkdir_p(dir .. "/other")
    audio.save(dir .. "/other/x.wav", cocola.zeros({ 1, SR }), SR)
    local ok, err = pcall(scoring.score_folders, model, dir .. "/cond", dir .. "/other")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("no audio file names", 1, true), err)
    audio.save(dir .. "/other/x.flac", cocola.zeros({ 1, SR }), SR)
    ok, err = pcall(scoring.score_folders, model, dir .. "/other", dir .. "/cond")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("two audio files named 'x'", 1, true), err)
    ok, err = pcall(scoring.score_folders, model, dir .. "/nope", dir .. "/cond")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("not a folder", 1, true), err)
  end)

  it("embeds the windows of files, with per-file means", function()
    local paths = { dir .. "/cond/long.wav", dir .. "/cond/song1.wav" }
    local e = scoring.embed_files(model, paths, { hop = 1.0, window = 1.0, min_last = 0 })
    -- 1 s windows: 8 for long.wav, 5 for song1.wav
    assert.are.same({ 13, 512 }, e.windows.shape)
    assert.are.same({ 2, 512 }, e.mean.shape)
    assert.are.same({ 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1 }, e.window_file:totable())
    assert.are.same({ 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4 }, e.window_start:totable())
    assert.is_true(e.mean:select(1, 1):allclose(e.per_file[1]:mean(1), 1e-5, 1e-6))
    local wave = audio.load(paths[2], { sr = SR, mono = true })
    local want = cocola.no_grad(function()
      return model:embed(audio.cocola_features(wave:narrow(2, 1, SR):contiguous()))
    end)
    assert.is_true(e.windows:select(1, 9):allclose(want:select(1, 1), 1e-4, 1e-5))
    local no_mean = scoring.embed_files(model, { paths[2] }, { mean = false, window = 1.0 })
    assert.is_nil(no_mean.mean)
    assert.are.same({ 5, 512 }, no_mean.windows.shape)
    -- the window rule is the scoring rule: a file shorter than a window is refused
    local ok, err = pcall(scoring.embed_files, model, { paths[2] }, { window = 6.0 })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("audio too short: 5.000 s", 1, true), err)
  end)
end)

describe("score arguments", function()
  -- every model reads score{cond = y, gen = x, mode = m} as score(y, x, m): CCS(y, x) = h_y^T W h_x
  local function all_models()
    cocola.manual_seed(13)
    local co = cocola.models.chroma_onset_cocola { dim = 8, width = 8, blocks = 1, prior = true }:eval()
    return { models.calibrated("hpss"), co, require("cocola.baselines").load("chroma-onset") }
  end
  cocola.manual_seed(17)
  local a = cocola.randn({ 2, WIN }) * 0.1
  local b = cocola.randn({ 2, WIN }) * 0.05

  it("names the condition and the accompaniment; the positional order is the same", function()
    for _, m in ipairs(all_models()) do
      local y, x = m:features(a), m:features(b)
      cocola.no_grad(function()
        local named = m:score { cond = y, gen = x }
        assert.are.same(m:score(y, x):totable(), named:totable())
        if #m:parameters() > 0 then
          if m.input == "hpss" then
            -- a random W is not symmetric: swapping the sides changes the score
            local swapped = m:score { cond = x, gen = y }
            assert.is_true((named - swapped):abs():max():item() > 1e-6, "swapped sides should differ")
          end
          -- the K x K matrix has the conditions as rows: its diagonal is the score
          local sim = m { anchor = y, positive = x }
          for i = 1, 2 do
            assert.is_true(close(sim:select(1, i):select(1, i):item(), named:select(1, i):item(), 1e-4))
          end
        end
      end)
    end
  end)

  it("rejects unknown names, a missing side, and a mix of both forms", function()
    for _, m in ipairs(all_models()) do
      local y = m:features(a)
      local ok, err = pcall(m.score, m, { cond = y, generated = y })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("unknown argument 'generated' (the names are cond, gen and mode)", 1, true), err)
      ok, err = pcall(m.score, m, { cond = y })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("gen is missing", 1, true), err)
      ok, err = pcall(m.score, m, { gen = y })
      assert.truthy(tostring(err):find("cond is missing", 1, true), err)
      ok, err = pcall(m.score, m, { cond = y, gen = y }, y)
      assert.truthy(tostring(err):find("not both", 1, true), err)
    end
  end)

  it("a fresh model gives every pair one score until trained or recalibrated", function()
    cocola.manual_seed(19)
    local m = cocola.models.cocola { input = "hpss" }:eval()
    local y, x = m:features(a), m:features(b)
    local before = cocola.no_grad(function() return m:score { cond = y, gen = x } end):totable()
    assert.is_true(math.abs(before[1] - before[2]) < 1e-4, "the initial BatchNorm statistics make embeddings alike")
    assert.are.equal(m, m:recalibrate_batchnorm({ y, x }))
    assert.is_false(m.training)
    local after = cocola.no_grad(function() return m:score { cond = y, gen = x } end):totable()
    assert.is_true(math.abs(after[1] - after[2]) > 1e-3, string.format("%g %g", after[1], after[2]))
    assert.is_false((pcall(m.recalibrate_batchnorm, m, "x")))
    assert.is_false((pcall(m.recalibrate_batchnorm, m, {})))
    assert.is_false((pcall(m.recalibrate_batchnorm, m, cocola.zeros({ 1, 1, 64, 501 })))) -- 1 channel, HPSS has 2
  end)
end)
