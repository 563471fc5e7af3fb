-- baselines_spec.lua — cocola.baselines and its chroma-onset baseline: the chroma filterbank, chroma
-- and onset-strength envelope against librosa 0.10.1 (spec/fixtures/gen_baselines.py), the similarity
-- of the embeddings, properties a coherence measure must have (key, timing, silence), the model-like
-- interface, and scoring / the cocola command with --model chroma-onset.
local cocola = require "cocola"
local audio = require "cocola.audio"
local baselines = require "cocola.baselines"
local chroma_onset = require "cocola.baselines.chroma_onset"
local scoring = require "cocola.scoring"
local compare = require "helpers.compare"
local files = require "helpers.files"
local cjson = require "cjson"

cocola.set_num_threads(1)

local SR, WIN = 16000, 80000
local FRAMES = 1 + WIN // 512 -- 157
local DIM = 12 + FRAMES - chroma_onset.ONSET_SKIP
local cli = require "helpers.cli"

local fx = cocola.load("spec/fixtures/baselines.safetensors")

-- ---- synthetic windows ----------------------------------------------------------------------

local sin, exp, min, floor, pi = math.sin, math.exp, math.min, math.floor, math.pi -- locals: fast in busted's sandbox

-- notes {freq, start, stop (s), amp, partials = {a1, a2, ...}} with a 10 ms attack and a decay -> (n)
local function synth(notes, n)
  n = n or WIN
  local v = {}
  for i = 1, n do v[i] = 0.0 end
  for _, nt in ipairs(notes) do
    local s0, s1 = floor(nt.start * SR) + 1, min(n, floor(nt.stop * SR))
    local partials, w, amp = nt.partials, 2 * pi * nt.freq, nt.amp
    for i = s0, s1 do
      local tt = (i - s0) / SR
      local x = 0
      for h = 1, #partials do x = x + partials[h] * sin(w * h * tt) end
      v[i] = v[i] + amp * min(1, tt / 0.01) * exp(-3 * tt) * x
    end
  end
  return cocola.tensor(v)
end

-- a note (or a chord: a list of frequencies) every `beat` seconds over seconds, cycling through freqs
local function line(freqs, beat, amp, partials, seconds)
  local notes, k = {}, 0
  for step = 0, math.floor((seconds or 5) / beat) - 1 do
    local f = freqs[k % #freqs + 1]
    k = k + 1
    if type(f) ~= "table" then f = { f } end
    for _, freq in ipairs(f) do
      notes[#notes + 1] = { freq = freq, start = step * beat, stop = (step + 1) * beat, amp = amp, partials = partials }
    end
  end
  return notes
end

local C_TRIAD = { { 261.63, 329.63, 392.00 } }              -- C4 E4 G4
local C_BASS = { 130.81, 196.00, 164.81, 196.00 }           -- C3 G3 E3 G3
local FS_BASS = { 185.00, 138.59, 233.08, 138.59 }          -- F#3 C#3 A#3 C#3

-- synthesised once per (notes, seconds)
local cache = {}
local function cached(key, make)
  if not cache[key] then cache[key] = make() end
  return cache[key]
end
local function triad(seconds)
  seconds = seconds or 5
  return cached("triad" .. seconds, function()
    return synth(line(C_TRIAD, 0.5, 0.15, { 1, 0.4, 0.2 }, seconds), floor(seconds * SR))
  end)
end
local function bass(freqs, seconds)
  seconds = seconds or 5
  return cached(table.concat(freqs, ",") .. "/" .. seconds, function()
    return synth(line(freqs, 0.5, 0.3, { 1, 0.5, 0.25 }, seconds), floor(seconds * SR))
  end)
end

-- decaying noise clicks every 0.5 s from `first` seconds on; the click's noise drawn with `seed`
local function clicks(first, seed)
  cocola.manual_seed(seed)
  local noise = cocola.randn({ 400 }):totable()
  local v = {}
  for i = 1, WIN do v[i] = 0.0 end
  for k = 0, 9 do
    local s = floor((first + 0.5 * k) * SR)
    for j = 1, 400 do
      if s + j <= WIN then v[s + j] = v[s + j] + 0.5 * noise[j] * exp(-(j - 1) / 60) end
    end
  end
  return cocola.tensor(v)
end

local function all_finite(t)
  for _, v in ipairs(files.flat(t:totable())) do
    if v ~= v or v == math.huge or v == -math.huge then return false end
  end
  return true
end

local function row(t, i) return t:narrow(1, i, 1) end

-- ---- parity with librosa --------------------------------------------------------------------

describe("chroma-onset features against librosa 0.10.1", function()
  -- Every tolerance is a norm-wise relative error (helpers.compare). The filterbank is computed in
  -- double precision as librosa does, then rounded to float32: it matches to float32 rounding (measured
  -- 0). Chroma and envelope come from float32 STFTs of FFTW and of NumPy's FFT, which differ by float32
  -- rounding (~1e-7); the envelope differences dB values, so those errors are relative to a level of up
  -- to 100 dB, not to the differences (measured 7e-8 for chroma, 3e-7 for the envelope): 1e-5 and 1e-4
  -- leave a margin of ~100 times while a wrong frame offset, filter or dB floor gives errors above 1e-2.
  it("builds librosa.filters.chroma (tuning 0)", function()
    compare.assert_close(chroma_onset.chroma_filterbank(SR, 2048), fx.chroma_fb, 1e-6, "chroma filterbank")
  end)

  it("computes chroma_stft averaged over frames", function()
    local got = chroma_onset.chroma(fx.wave)
    assert.are.same({ 3, 12 }, got.shape)
    for i = 1, 3 do compare.assert_close(row(got, i), row(fx.chroma, i), 1e-5, "chroma of window " .. i) end
  end)

  it("computes onset_strength, frame by frame", function()
    local got = chroma_onset.onset_envelope(fx.wave)
    assert.are.same({ 3, FRAMES }, got.shape)
    for i = 1, 3 do compare.assert_close(row(got, i), row(fx.onset, i), 1e-4, "onset envelope of window " .. i) end
  end)

  it("embeds so that e_a . e_b = 0.5 cos(chroma) + 0.5 pearson(onset) computed from librosa's features", function()
    local b = baselines.load("chroma-onset")
    local e = b:features(fx.wave)
    assert.are.same({ 3, DIM }, e.shape)
    local got, want = b.similarity(e, e):totable(), fx.similarity:totable()
    for i = 1, 3 do
      for j = 1, 3 do
        -- float32 dot products of unit vectors (~1e-7) from features within 1e-4 of librosa's
        assert.is_true(math.abs(got[i][j] - want[i][j]) < 1e-4,
          string.format("similarity (%d, %d): %.6f, librosa %.6f", i, j, got[i][j], want[i][j]))
      end
    end
  end)
end)

-- ---- properties -----------------------------------------------------------------------------

describe("the chroma-onset baseline", function()
  local b = baselines.load("chroma-onset")

  it("scores a C-major triad higher against a C-major bass line than against an F#-major one", function()
    local e = b:features(cocola.stack({ triad(), bass(C_BASS), bass(FS_BASS) }, 1))
    local same_key = b:score(row(e, 1), row(e, 2)):item()
    local tritone = b:score(row(e, 1), row(e, 3)):item()
    -- same rhythm in all three: only the chroma differs (measured 0.97 against 0.68)
    assert.is_true(same_key > tritone + 0.15, string.format("C major %.4f, F# major %.4f", same_key, tritone))
  end)

  it("scores a click track higher against itself than against itself shifted by half a beat", function()
    local e = b:features(cocola.stack({ clicks(0.1, 1), clicks(0.1, 2), clicks(0.35, 1) }, 1))
    local itself = b:score(row(e, 1), row(e, 1)):item()
    local same_times = b:score(row(e, 1), row(e, 2)):item() -- other noise in each click, same times
    local shifted = b:score(row(e, 1), row(e, 3)):item()
    assert.is_true(math.abs(itself - 1) < 1e-5, "a window against itself: " .. itself)
    -- measured 0.96 against 0.44: the envelopes are in antiphase, the chroma nearly equal
    assert.is_true(same_times > shifted + 0.3, string.format("same times %.4f, shifted %.4f", same_times, shifted))
    assert.is_true(itself > shifted + 0.3, string.format("itself %.4f, shifted %.4f", itself, shifted))
  end)

  it("gives silent windows a zero embedding and finite scores", function()
    local silent = cocola.zeros({ 2, WIN })
    local half = triad():clone()
    half:narrow(1, 1, WIN // 2):fill_(0)
    cocola.manual_seed(7)
    local faint = cocola.randn({ 1, WIN }) * 1e-6 -- below power_to_db's floor: a flat envelope
    local waves = cocola.cat({ silent, half:reshape({ 1, WIN }), faint, triad():reshape({ 1, WIN }) }, 1)
    local e = b:features(waves)
    assert.is_true(all_finite(e), "embeddings hold NaN or infinities")
    assert.are.equal(0, row(e, 1):abs():sum():item())
    local sim = b.similarity(e, e)
    assert.is_true(all_finite(sim), "similarities hold NaN or infinities")
    local s = sim:totable()
    assert.are.equal(0, s[1][2])
    assert.are.equal(0, s[1][5])
    for i = 3, 5 do assert.is_true(s[i][i] <= 1 + 1e-5 and s[i][i] > 0.4, "self-similarity " .. s[i][i]) end
    local scores = b:score(e:narrow(1, 1, 4), e:narrow(1, 2, 4)) -- silent-silent, silent-half, ...
    assert.is_true(all_finite(scores), "scores hold NaN or infinities")
    assert.are.equal(0, scores:narrow(1, 1, 2):abs():sum():item())
  end)

  it("keeps every score in [-1, 1] and score equal to the diagonal of similarity", function()
    local ys = cocola.cat({ fx.wave, cocola.stack({ clicks(0.1, 3), bass(C_BASS) }, 1) }, 1)
    local xs = cocola.cat({ cocola.stack({ clicks(0.2, 4), triad(), bass(FS_BASS) }, 1), fx.wave:narrow(1, 1, 2) }, 1)
    local ey, ex = b:features(ys), b:features(xs)
    local sim = b.similarity(ey, ex)
    assert.are.same({ 5, 5 }, sim.shape)
    local method = b:similarity(ey, ex) -- called as a method, like the COCOLA model's
    assert.are.equal(0, (method - sim):abs():max():item())
    local scores, s = b:score(ey, ex):totable(), sim:totable()
    assert.are.equal(5, #scores)
    for i = 1, 5 do
      assert.is_true(math.abs(scores[i] - s[i][i]) < 1e-6, string.format("row %d: %.7f vs %.7f", i, scores[i], s[i][i]))
      for j = 1, 5 do assert.is_true(s[i][j] >= -1 and s[i][j] <= 1 + 1e-6, "out of range: " .. s[i][j]) end
    end
    assert.are.equal(0, (b.similarity:pairwise(ey, ex) - b:score(ey, ex)):abs():max():item())
  end)

  it("has the COCOLA model's interface", function()
    assert.are.equal("chroma_onset", b.input)
    assert.are.equal("both", b.embedding_mode)
    assert.are.equal(false, b.training)
    assert.are.equal("chroma-onset", b.name)
    assert.are.equal(b, b:eval())
    assert.are.equal(b, b:train())
    assert.are.equal(false, b.training)
    assert.are.same({}, b:parameters())
    assert.is_truthy(b:extra_repr():find("chroma", 1, true))
    assert.is_nil(b:extra_repr():find("\n", 1, true))
    local w = triad()
    local e1 = b:features(w)
    assert.are.same({ 1, DIM }, e1.shape)
    assert.are.equal(e1, b:embed(e1))
    assert.are.equal(e1, b:embed(e1, "both"))
    assert.has_error(function() b:embed(e1, "harmonic") end,
      "embed: the chroma-onset baseline has one embedding mode, 'both'; got 'harmonic'")
    assert.has_error(function() b:score(e1, e1, "percussive") end)
    assert.has_error(function() b:features("not a wave") end)
    assert.has_error(function() b:features(cocola.zeros({ 1, 2, WIN })) end)
    assert.has_error(function() b:features(cocola.zeros({ 100 })) end)
    local bad = w:clone()
    bad:narrow(1, 10, 1):fill_(0 / 0)
    local ok, err = pcall(b.features, b, bad)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("NaN", 1, true), tostring(err))
    ok, err = pcall(b.similarity, e1, b:features(cocola.zeros({ 1, 2 * WIN })))
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("different lengths", 1, true), tostring(err))
  end)

  it("is found by name through cocola.baselines and require 'cocola'", function()
    assert.is_true(baselines.is_baseline("chroma-onset"))
    assert.is_true(baselines.is_baseline("chroma_onset"))
    assert.is_false(baselines.is_baseline("chroma"))
    assert.is_false(baselines.is_baseline(nil))
    assert.are.equal("chroma-onset", baselines.load("chroma_onset").name)
    assert.are.equal(baselines, cocola.baselines)
    assert.are.equal(chroma_onset, baselines.chroma_onset)
    local ok, err = pcall(baselines.load, "mfcc")
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("unknown baseline 'mfcc'; known baselines: chroma-onset", 1, true), tostring(err))
  end)
end)

-- ---- scoring and the command line -----------------------------------------------------------

describe("scoring with the chroma-onset baseline", function()
  local tmp
  local b = baselines.load("chroma-onset")
  setup(function()
    tmp = files.tmpdir()
    -- 8 s: two windows (the 3 s tail is scored as the last 5 s, from 3 s on)
    audio.save(tmp .. "/a.wav", triad(8):reshape({ 1, 8 * SR }), SR)
    audio.save(tmp .. "/b.wav", bass(C_BASS, 8):reshape({ 1, 8 * SR }), SR)
    local f = assert(io.open(tmp .. "/chroma-onset", "w")) -- a file named like the baseline
    f:write("not a checkpoint")
    f:close()
  end)
  teardown(function() os.execute("rm -rf '" .. tmp .. "'") end)

  -- the two windows of a (1, 8 s) wave: 0-5 s and the last 5 s
  local function two_windows(wave)
    return cocola.cat({ wave:narrow(2, 1, WIN), wave:narrow(2, 3 * SR + 1, WIN) }, 1):contiguous()
  end

  it("score_files, score_waves and embed_files take it as a model", function()
    local r = scoring.score_files(b, tmp .. "/a.wav", tmp .. "/b.wav")
    assert.are.equal("both", r.mode)
    assert.are.equal(2, #r.windows)
    assert.is_nil(r.harmonic)
    assert.is_nil(r.percussive)
    local cond, gen = scoring.load(tmp .. "/a.wav"), scoring.load(tmp .. "/b.wav")
    local want = b:score(b:features(two_windows(cond)), b:features(two_windows(gen))):totable()
    for i = 1, 2 do
      assert.is_true(math.abs(r.windows[i].score - want[i]) < 1e-6, string.format("window %d: %.7f vs %.7f", i, r.windows[i].score, want[i]))
    end
    assert.is_true(math.abs(r.mean - (want[1] + want[2]) / 2) < 1e-6)
    assert.has_error(function() scoring.score_waves(b, cond, gen, { mode = "harmonic" }) end)

    local e = scoring.embed_files(b, { tmp .. "/a.wav", tmp .. "/b.wav" })
    assert.are.same({ 4, DIM }, e.windows.shape)
    compare.assert_close(e.per_file[1], b:features(two_windows(cond)), 1e-6, "embed_files windows")
    assert.are.same({ 2, DIM }, e.mean.shape)
  end)

  local function run(args) return cli.cocola(args, tmp, nil, tmp) end

  it("is what `cocola score --model chroma-onset` uses, even beside a file of that name", function()
    local status, out, err = run("score --model chroma-onset --cond a.wav --gen b.wav --json --threads 1")
    assert.are.equal(0, status, err)
    local got = cjson.decode(out)
    local want = scoring.score_files(b, tmp .. "/a.wav", tmp .. "/b.wav")
    assert.are.equal("both", got.mode)
    assert.are.equal(2, #got.windows)
    assert.is_nil(got.harmonic)
    assert.is_true(math.abs(got.mean - want.mean) < 1e-6, string.format("%s vs %s", tostring(got.mean), tostring(want.mean)))

    status, _, err = run("score --model chroma_onset --cond a.wav --gen b.wav --mode harmonic")
    assert.are.equal(1, status)
    assert.is_truthy(err:match("^cocola: [^\n]*HPSS[^\n]*\n$"), err)
  end)

  it("is what `cocola embed --model chroma-onset` uses", function()
    local status, _, err = run("embed --model chroma-onset --out e.safetensors --quiet a.wav b.wav")
    assert.are.equal(0, status, err)
    local t, meta = cocola.load(tmp .. "/e.safetensors")
    assert.are.same({ 4, DIM }, t.windows.shape)
    assert.are.equal("chroma_onset", meta.input)
    assert.are.equal("chroma-onset", meta.model)
  end)
end)
