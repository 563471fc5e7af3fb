-- vggish_spec.lua — cocola.models.vggish (VGGish as torchvggish defines it, the FAD libraries' default
-- embedding) against spec/fixtures/vggish/ (gen_vggish.py: a PyTorch/numpy restatement of torchvggish's
-- waveform_to_examples, mel_features and VGG, torch 1.13): the log-mel examples of a deterministic 3.5 s wave
-- (plus a tail shorter than an example, dropped), the embeddings of a narrow network of the real structure
-- loaded from a .pth with torchvggish's key names (without and with the final ReLU) and the PCA postprocess
-- (numpy and tensor PCA files), all rel. error < 1e-4; the real configuration's parameter count (72,141,184)
-- and output shape; the example count of 10.23 s clips (16 kHz, and 44.1 kHz stereo through mono and
-- resampling); clips shorter than an example (empty results); errors for a missing file, wrong keys or shapes
-- and bad inputs.
local cocola = require "cocola"
local compare = require "helpers.compare"
local files = require "helpers.files"
local vggish = require "cocola.models.vggish"
local VGGish = vggish.VGGish
local features = vggish.features

local DIR = "spec/fixtures/vggish/"
local WEIGHTS = DIR .. "vggish_small.pth"
local TOL = 1e-4
local fx = cocola.load(DIR .. "expected.pth")

-- the narrow network of the fixture
local function small(extra)
  local o = { channels = { 4, "M", 8, "M", 8, 8, "M", 8, 4, "M" }, embeddings = { 16, 16, 8 } }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- gen_vggish.py's test_wave(n): a chirp with a slow envelope, two sines and growing 64-bit LCG noise, float32
local function test_wave(n)
  local s, v = 20240607, {}
  for i = 0, n - 1 do
    s = s * 6364136223846793005 + 1442695040888963407
    local u = (s >> 40) / 16777216.0
    local t = i / 16000
    v[i + 1] = (0.3 + 0.2 * math.sin(2 * math.pi * 0.7 * t)) * math.sin(2 * math.pi * (300.0 * t + 200.0 * t * t))
      + 0.25 * math.sin(2 * math.pi * 1234.5 * t) + 0.1 * math.sin(2 * math.pi * 3000.0 * t)
      + (0.02 + 0.05 * t) * (2.0 * u - 1.0)
  end
  return cocola.tensor(v):to("float32")
end

local function failure(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

local function has(msg, text)
  assert(msg:find(text, 1, true), string.format("expected %q in the message: %s", text, msg))
end

describe("VGGish (torchvggish)", function()
  local wave = test_wave(fx.samples)

  it("builds the restatement's test wave", function()
    assert.are.equal(56123, wave:size(1))
    assert.are.equal(0, compare.rel_err(wave:narrow(1, 1, 16), fx.wave_head))
    assert.is_true(math.abs(wave:to("float64"):sum():item() - fx.wave_sum) < 1e-9)
  end)

  it("log-mel examples match waveform_to_examples (tail dropped)", function()
    local ex = features.examples(wave)
    assert.are.same({ 3, 1, 96, 64 }, ex.shape)
    assert.are.equal("float32", ex:dtype())
    compare.assert_close(ex, fx.examples, TOL, "examples")
    assert.is_true((ex - fx.examples):abs():max():item() < 1e-4)
    assert.are.equal(3, features.number_of_examples(fx.samples))
    -- a (1, samples) wave is the same
    compare.assert_close(features.examples(wave:unsqueeze(1)), fx.examples, TOL, "examples of (1, samples)")
    -- frames: 1 + floor((N - 400) / 160)
    assert.are.same({ 1 + (56123 - 400) // 160, 64 }, features.log_mel(wave).shape)
  end)

  it("mel matrix: HTK mel triangles on the 257 bins, DC row zeroed", function()
    local m = features.mel_matrix()
    assert.are.same({ 64, 257 }, m.shape)
    assert.are.equal(0, m:select(2, 1):abs():sum():item())
    assert.is_true(m:min():item() >= 0 and m:max():item() <= 1)
    -- no weight above 7500 Hz (bin 240 = 7500 Hz exactly is an upper edge: weight 0)
    assert.are.equal(0, m:narrow(2, 241, 17):abs():sum():item())
  end)

  it("a 10.23 s clip at 16 kHz gives 10 examples", function()
    assert.are.equal(fx.examples_10_23s, features.number_of_examples(163680))
    assert.are.same({ 10, 1, 96, 64 }, features.examples(cocola.zeros({ 163680 })).shape)
  end)

  it("embeddings without the final ReLU (the FAD default) match", function()
    local m = VGGish.from_file(WEIGHTS, small())
    assert.is_false(m.activation)
    assert.is_false(m.pca)
    compare.assert_close(m(fx.examples), fx.embeddings_linear, TOL, "embeddings (activation = false)")
    -- wave -> embeddings end to end
    compare.assert_close(m:embed(wave, 16000), fx.embeddings_linear, TOL, "embed(wave, 16000)")
  end)

  it("embeddings with the final ReLU match", function()
    local m = VGGish.from_file(WEIGHTS, small({ activation = true }))
    compare.assert_close(m(fx.examples), fx.embeddings_relu, TOL, "embeddings (activation = true)")
  end)

  it("PCA postprocess matches (numpy and tensor PCA files)", function()
    for _, name in ipairs({ "pca_small.pth", "pca_small_tensors.pth" }) do
      local m = VGGish.from_file(WEIGHTS, small({ pca_path = DIR .. name }))
      assert.is_true(m.pca)
      local lin = VGGish.from_file(WEIGHTS, small())(fx.examples)
      compare.assert_close(m:pca_project(lin), fx.pca_projection, TOL, name .. " projection")
      local q = m(fx.examples)
      assert.are.equal(0, compare.rel_err(q, fx.pca_quantized), name .. " quantised")
      compare.assert_close(m:embed(wave, 16000), fx.pca_quantized, TOL, name .. " embed")
    end
    -- pca = false keeps the parameters unused
    local m = VGGish.from_file(WEIGHTS, small({ pca_path = DIR .. "pca_small.pth", pca = false }))
    compare.assert_close(m(fx.examples), fx.embeddings_linear, TOL, "pca = false")
  end)

  it("quantisation clamps to [-2, 2] and rounds (P + 2) * 255 / 4", function()
    local m = VGGish(small())
    rawset(m, "pca_eigen_vectors", cocola.tensor({ { 1, 0 }, { 0, 1 } }):to("float32"))
    rawset(m, "pca_means", cocola.zeros({ 2, 1 }))
    local e = cocola.tensor({ { -3.0, 2.5 }, { 0.0, 1.0 } }):to("float32")
    assert.are.same({ { 0, 255 }, { 128, 191 } }, m:postprocess(e):totable()) -- 127.5 -> 128, 191.25 -> 191
  end)

  it("the real configuration has torchvggish's 72,141,184 parameters", function()
    local m = VGGish()
    assert.are.equal(fx.real_parameter_count, m:num_parameters())
    assert.are.equal(VGGish.PARAMETER_COUNT, m:num_parameters())
    assert.are.equal(512 * 6 * 4, m.flat_size)
    local keys = m:state_dict_keys()
    table.sort(keys)
    local want = {}
    for _, i in ipairs({ 0, 3, 6, 8, 11, 13 }) do
      want[#want + 1] = "features." .. i .. ".weight"
      want[#want + 1] = "features." .. i .. ".bias"
    end
    for _, i in ipairs({ 0, 2, 4 }) do
      want[#want + 1] = "embeddings." .. i .. ".weight"
      want[#want + 1] = "embeddings." .. i .. ".bias"
    end
    table.sort(want)
    assert.are.same(want, keys)
    local out = cocola.no_grad(function() return m(cocola.randn({ 1, 1, 96, 64 })) end)
    assert.are.same({ 1, 128 }, out.shape)
  end)

  it("44.1 kHz stereo: mono, resampled to 16 kHz, 10 examples for 10.23 s", function()
    local m = VGGish.from_file(WEIGHTS, small())
    local n = 451143 -- 10.23 s at 44.1 kHz
    local st = cocola.stack({ cocola.randn({ n }) * 0.1, cocola.randn({ n }) * 0.2 }, 1)
    local ex = VGGish.examples(st, 44100)
    assert.are.same({ 10, 1, 96, 64 }, ex.shape)
    local mono = cocola.audio.resample(st:mean(1):unsqueeze(1), 44100, 16000)
    assert.are.equal(163680, mono:size(2))
    compare.assert_close(ex, features.examples(mono), 1e-6, "stereo -> mono -> 16 kHz")
    local e = m:embed(st, 44100)
    assert.are.same({ 10, 8 }, e.shape)
    -- 22.05 kHz, 2.5 s -> 40000 samples -> 248 frames -> 2 examples
    assert.are.same({ 2, 8 }, m:embed(cocola.randn({ 2, 55125 }), 22050).shape)
  end)

  it("embed_batch gives each clip what embed gives it, short clips included", function()
    local m = VGGish.from_file(WEIGHTS, small())
    cocola.manual_seed(9)
    local clips = { { cocola.randn({ 40000 }) * 0.1, 16000 }, { cocola.zeros({ 100 }), 16000 },
      { cocola.randn({ 2, 55125 }) * 0.2, 22050 }, { cocola.randn({ 16000 }) * 0.3, 16000 } }
    local batch = m:embed_batch(clips)
    assert.equal(#clips, #batch)
    for i, clip in ipairs(clips) do
      local one = m:embed(clip[1], clip[2])
      assert.are.same(one.shape, batch[i].shape)
      if one:size(1) > 0 then compare.assert_close(batch[i], one, 1e-5, "clip " .. i) end
    end
  end)

  it("a clip shorter than one example gives an empty result", function()
    local m = VGGish.from_file(WEIGHTS, small())
    assert.are.same({ 0, 8 }, m:embed(cocola.zeros({ 15599 }), 16000).shape)
    assert.are.same({ 1, 8 }, m:embed(cocola.zeros({ 15600 }), 16000).shape)
    assert.are.same({ 0, 8 }, m:embed(cocola.zeros({ 100 }), 16000).shape)
    assert.are.same({ 0, 1, 96, 64 }, features.examples(cocola.zeros({ 399 })).shape)
    assert.are.same({ 0, 8 }, m:embed(cocola.zeros({ 2, 20000 }), 44100).shape)
    local p = VGGish.from_file(WEIGHTS, small({ pca_path = DIR .. "pca_small.pth" }))
    assert.are.same({ 0, 8 }, p:embed(cocola.zeros({ 8000 }), 16000).shape)
  end)

  it("a missing weights file names the file to supply", function()
    local msg = failure(VGGish.from_file, "/nonexistent/vggish-10086976.pth")
    has(msg, "/nonexistent/vggish-10086976.pth: no such file")
    has(msg, "vggish-10086976.pth")
    has(msg, "torchvggish")
    has(msg, "releases/download/v0.1/")
    msg = failure(VGGish.from_file, WEIGHTS, small({ pca_path = "/nonexistent/pca.pth" }))
    has(msg, "vggish_pca_params-970ea276.pth")
    msg = failure(VGGish.from_file, WEIGHTS, small({ pca = true }))
    has(msg, "pca_path")
    has(msg, "vggish_pca_params-970ea276.pth")
  end)

  it("wrong keys or shapes name the key", function()
    local dir = files.tmpdir()
    local sd = cocola.load(WEIGHTS)
    local renamed = {}
    for k, v in pairs(sd) do renamed[k] = v end
    renamed["features.13.weight"], renamed["features.14.weight"] = nil, sd["features.13.weight"]
    local p1 = dir .. "/renamed.safetensors"
    cocola.save(p1, renamed)
    local msg = failure(VGGish.from_file, p1, small())
    has(msg, p1)
    has(msg, "missing: features.13.weight")
    has(msg, "unexpected: features.14.weight")
    -- the real configuration against the small file: shapes named
    msg = failure(VGGish.from_file, WEIGHTS)
    has(msg, "features.0.weight has shape {4,1,3,3} in the file, {64,1,3,3} in the model")
    local bad = {}
    for k, v in pairs(sd) do bad[k] = v end
    bad["embeddings.4.bias"] = cocola.zeros({ 9 })
    local p2 = dir .. "/shape.safetensors"
    cocola.save(p2, bad)
    msg = failure(VGGish.from_file, p2, small())
    has(msg, "embeddings.4.bias has shape {9} in the file, {8} in the model")
    -- a PCA file of the wrong size
    msg = failure(VGGish.from_file, WEIGHTS, small({ embeddings = { 16, 16, 8 }, pca_path = p2 }))
    has(msg, "pca_eigen_vectors")
    os.remove(p1)
    os.remove(p2)
    os.remove(dir)
  end)

  it("bad inputs and options are refused", function()
    local m = VGGish.from_file(WEIGHTS, small())
    has(failure(m.embed, m, wave, 16000.5), "sample rate")
    has(failure(m.embed, m, cocola.zeros({ 1, 2, 3 }), 16000), "(channels, samples)")
    has(failure(m.forward, m, cocola.zeros({ 1, 1, 95, 64 })), "(N, 1, 96, 64)")
    has(failure(VGGish.from_file, WEIGHTS, small({ activaton = true })), "unknown option 'activaton'")
    has(failure(VGGish, { channels = { 4, "X" } }), "channels[2]")
    local nan = cocola.zeros({ 20000 })
    nan = nan / nan
    has(failure(m.embed, m, nan, 16000), "NaN")
  end)
end)
