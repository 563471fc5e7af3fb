-- chroma_onset_model_spec.lua — the chroma-onset COCOLA model (cocola.models.chroma_onset_cocola): its
-- per-frame features against librosa 0.10.1 (spec/fixtures/gen_chroma_onset_frames.py), the frame
-- similarity against its formula written out, the model's interface (forward with negatives, score,
-- embedding mode), checkpoints through CoCola.from_checkpoint, and training it with the recipe.
local cocola = require "cocola"
local chroma_onset = require "cocola.baselines.chroma_onset"
local ChromaOnsetCoCola = require "cocola.models.chroma_onset_cocola"
local FrameBilinearSimilarity = require "cocola.models.cocola.FrameBilinearSimilarity"
local CoCola = require "cocola.models.cocola"
local fs = require "cocola.data.fs"
local recipe = require "cocola.recipe"
local train = require "cocola.recipes.train"
local files = require "helpers.files"

local waves = cocola.load("spec/fixtures/baselines.safetensors").wave
local fx = cocola.load("spec/fixtures/chroma_onset_frames.safetensors")

local function max_abs(t) return t:abs():max():item() end

describe("chroma_onset.frame_features", function()
  local f = chroma_onset.frame_features(waves)

  it("has 12 chroma and 4 onset channels per 32 ms frame", function()
    assert.are.same({ 3, 16, 1, 157 }, f:size())
  end)

  it("matches librosa's unnormalised chroma and onset_strength_multi, compressed and scaled as documented", function()
    local want = fx.frame_features
    local got = f:reshape({ 3, 16, 157 })
    -- chroma: log(1 + 1000 x) amplifies the float32 filterbank's rounding in near-silent frames
    assert.is_true(max_abs(got:narrow(2, 1, 12) - want:narrow(2, 1, 12)) < 1e-4)
    assert.is_true(max_abs(got:narrow(2, 13, 4) - want:narrow(2, 13, 4)) < 1e-4)
    -- and the unscaled parts they come from
    local raw = fx.chroma_raw
    local peak = raw:reshape({ 3, 12 * 157 }):max(2, true):reshape({ 3, 1, 1 })
    local ours = ((got:narrow(2, 1, 12) * math.log(1001)):exp() - 1) / 1000 * peak
    assert.is_true(max_abs(ours - raw) / max_abs(raw) < 1e-4)
  end)

  it("puts a tone's pitch class highest and gives a silent window zeros, not NaN", function()
    local n = 80000
    local rows = {}
    for i = 1, n do rows[i] = 0.3 * math.sin(2 * math.pi * 440 * i / 16000) end
    local g = chroma_onset.frame_features(cocola.stack({ cocola.tensor(rows), cocola.zeros({ n }) }, 1))
    local mean_chroma = g:select(1, 1):reshape({ 16, 157 }):narrow(1, 1, 12):mean(2)
    assert.are.equal(10, mean_chroma:argmax():item() + 1) -- A is the 10th pitch class from C
    assert.are.equal(0, max_abs(g:select(1, 2)))
  end)

  it("zeroes the onset envelopes' first five frames", function()
    assert.are.equal(0, max_abs(f:reshape({ 3, 16, 157 }):narrow(2, 13, 4):narrow(3, 1, 5)))
  end)

  it("names short or broken input", function()
    local ok, err = pcall(chroma_onset.frame_features, cocola.zeros({ 1, 100 }))
    assert.is_false(ok)
    assert.matches("at least 4096 samples", err, 1, true)
    local bad = waves:narrow(1, 1, 1):clone()
    bad:narrow(2, 10, 1):fill_(0 / 0)
    ok, err = pcall(chroma_onset.frame_features, bad)
    assert.is_false(ok)
    assert.matches("NaN", err, 1, true)
  end)
end)

describe("FrameBilinearSimilarity", function()
  cocola.manual_seed(11)
  local d, t = 3, 4
  local sim = FrameBilinearSimilarity(d)
  local x, y = cocola.randn({ 2, t * d }), cocola.randn({ 5, t * d })

  -- (1/T) sum_t x_t W y_t + mean(x) V mean(y), written out
  local function by_hand(xi, yj)
    local w, v = sim.w:totable(), sim.v:totable()
    local total = 0
    local mx, my = {}, {}
    for a = 1, d do mx[a], my[a] = 0, 0 end
    for f = 0, t - 1 do
      for a = 1, d do
        mx[a] = mx[a] + xi[f * d + a] / t
        my[a] = my[a] + yj[f * d + a] / t
        for b = 1, d do total = total + xi[f * d + a] * w[a][b] * yj[f * d + b] / t end
      end
    end
    for a = 1, d do
      for b = 1, d do total = total + mx[a] * v[a][b] * my[b] end
    end
    return total
  end

  it("is the frame-by-frame bilinear form plus the bilinear form of the averages", function()
    local s = sim(x, y)
    assert.are.same({ 2, 5 }, s:size())
    local xs, ys = x:totable(), y:totable()
    for i = 1, 2 do
      for j = 1, 5 do
        assert.is_true(math.abs(s:totable()[i][j] - by_hand(xs[i], ys[j])) < 1e-4)
      end
    end
  end)

  it("pairwise gives the matrix's diagonal", function()
    local y2 = y:narrow(1, 1, 2)
    local s, p = sim(x, y2), sim:pairwise(x, y2)
    assert.is_true(math.abs(p:totable()[1] - s:totable()[1][1]) < 1e-5)
    assert.is_true(math.abs(p:totable()[2] - s:totable()[2][2]) < 1e-5)
  end)

  it("names embeddings of other sizes", function()
    local ok, err = pcall(sim, x, cocola.randn({ 2, 5 * d }))
    assert.is_false(ok)
    assert.matches("different numbers of frames", err, 1, true)
    ok, err = pcall(sim, x, cocola.randn({ 2, 7 }))
    assert.is_false(ok)
    assert.matches("frame embeddings", err, 1, true)
  end)

  it("passes gradients to W, V and both inputs", function()
    local xa, ya = x:clone():requires_grad(true), y:clone():requires_grad(true)
    local s = sim(xa, ya):sum()
    s:backward()
    for _, g in ipairs({ xa.grad, ya.grad, sim.w.grad, sim.v.grad }) do
      assert.is_true(cocola.is_tensor(g) and max_abs(g) > 0)
    end
    sim:zero_grad()
  end)
end)

describe("the chroma-onset model", function()
  cocola.manual_seed(5)
  local model = ChromaOnsetCoCola { dim = 8, width = 16, blocks = 2 }
  model:eval()
  local f = model:features(waves)

  it("embeds each frame and compares windows as cocola.models.cocola does", function()
    local e = model:embed(f)
    assert.are.same({ 3, 157 * 8 }, e:size())
    assert.is_true(max_abs(e) <= 1)
    local s = model(f:narrow(1, 1, 2), f:narrow(1, 2, 2))
    assert.are.same({ 2, 2 }, s:size())
    local with_negatives = model(f:narrow(1, 1, 1), f:narrow(1, 2, 1), f:narrow(1, 3, 1))
    assert.are.same({ 1, 2 }, with_negatives:size())
    local score = model:score(f:narrow(1, 1, 2), f:narrow(1, 2, 2))
    local direct = model.similarity(e:narrow(1, 1, 2), e:narrow(1, 2, 2))
    assert.is_true(math.abs(score:totable()[1] - direct:totable()[1][1]) < 1e-4)
    assert.is_true(math.abs(score:totable()[2] - direct:totable()[2][2]) < 1e-4)
  end)

  it("has one embedding mode and names features of another model", function()
    assert.are.equal(model, model:set_embedding_mode("both"))
    local ok, err = pcall(model.set_embedding_mode, model, "harmonic")
    assert.is_false(ok)
    assert.matches("one mode, 'both'", err, 1, true)
    ok, err = pcall(model.embed, model, cocola.zeros({ 1, 2, 64, 501 }))
    assert.is_false(ok)
    assert.matches("expected chroma-onset features (B, 16, 1, frames)", err, 1, true)
  end)

  it("loads through CoCola.from_checkpoint with its architecture read off the weights", function()
    local dir = files.tmpdir()
    cocola.save(dir .. "/m.safetensors", model:state_dict())
    local loaded = CoCola.from_checkpoint(dir .. "/m.safetensors")
    assert.are.equal("chroma_onset", loaded.input)
    assert.are.equal(2, #loaded.encoder.blocks)
    assert.are.equal(0, max_abs(loaded:score(f, f) - model:score(f, f)))
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)

describe("the chroma-onset model with the prior channels", function()
  cocola.manual_seed(6)
  local model = ChromaOnsetCoCola { dim = 8, width = 16, blocks = 1, prior = true }
  model:eval()
  local silent = cocola.zeros({ 1, 80000 })
  local f = model:features(cocola.cat({ waves, silent }, 1))
  local scale = ChromaOnsetCoCola.PRIOR_SCALE

  -- the baseline-like similarity written out from the frame features: cosine of the averaged
  -- chroma channels plus the correlation of the centred onset channels (pooled over bands and frames)
  local function prior_similarity(a, b)
    local fa, fb = f:select(1, a):reshape({ 16, 157 }):totable(), f:select(1, b):reshape({ 16, 157 }):totable()
    local function avg(row) local s = 0; for _, x in ipairs(row) do s = s + x end; return s / #row end
    local ca, cb, dot, na, nb = {}, {}, 0, 0, 0
    for c = 1, 12 do
      ca[c], cb[c] = avg(fa[c]), avg(fb[c])
      dot, na, nb = dot + ca[c] * cb[c], na + ca[c] ^ 2, nb + cb[c] ^ 2
    end
    local cosine = (na > 0 and nb > 0) and dot / math.sqrt(na * nb) or 0
    local cross, sa, sb = 0, 0, 0
    for c = 13, 16 do
      local ma, mb = avg(fa[c]), avg(fb[c])
      for t = 1, 157 do
        local xa, xb = fa[c][t] - ma, fb[c][t] - mb
        cross, sa, sb = cross + xa * xb, sa + xa * xa, sb + xb * xb
      end
    end
    local corr = (sa > 0 and sb > 0) and cross / math.sqrt(sa * sb) or 0
    return scale * (cosine + corr)
  end

  it("adds 16 parameter-free channels to every frame and names its architecture", function()
    local e = model:embed(f)
    assert.are.same({ 4, 157 * 24 }, e:size())
    assert.are.equal(24, model.embedding_dim)
    assert.truthy(tostring(model):find("prior=true", 1, true))
    for _, x in ipairs(e:reshape({ 4 * 157 * 24 }):totable()) do assert.is_true(x == x) end
    -- the silent window's prior channels are zeros, not NaN
    local last = e:select(1, 4):reshape({ 157, 24 }):narrow(2, 9, 16)
    assert.are.equal(0, max_abs(last))
  end)

  it("starts W and V as the baseline's similarity on those channels, PRIOR_SCALE on their diagonal", function()
    local bare = ChromaOnsetCoCola { dim = 8, width = 16, blocks = 1, prior = true }
    local sd = bare:state_dict()
    local plain = ChromaOnsetCoCola { dim = 8, width = 16, blocks = 1, prior = false }
    -- the random part is N(0, 0.05): the diagonal of the prior channels stands out by PRIOR_SCALE
    local w, v = sd["similarity.w"]:totable(), sd["similarity.v"]:totable()
    for i = 1, 16 do
      local onv, onw = v[8 + i][8 + i], w[8 + i][8 + i]
      if i <= 12 then assert.is_true(math.abs(onv - scale) < 0.5 and math.abs(onw) < 0.5, tostring(i))
      else assert.is_true(math.abs(onw - scale) < 0.5 and math.abs(onv) < 0.5, tostring(i)) end
    end
    assert.is_false(plain.prior)
    -- with the random part and the learned channels set to zero, the similarity is the written-out one
    cocola.no_grad(function()
      for _, name in ipairs({ "w", "v" }) do
        local p = model.similarity[name]
        local keep = {}
        for r = 1, 24 do
          keep[r] = {}
          for c = 1, 24 do keep[r][c] = 0 end
        end
        for i = 1, 16 do keep[8 + i][8 + i] = ((i <= 12) == (name == "v")) and scale or 0 end
        p:copy_(cocola.tensor(keep))
      end
    end)
    local s = model.similarity(model:embed(f), model:embed(f)):totable()
    for a = 1, 4 do
      for b = 1, 4 do
        local want = prior_similarity(a, b)
        assert.is_true(math.abs(s[a][b] - want) < 1e-3 * scale, string.format("%d,%d: %g vs %g", a, b, s[a][b], want))
      end
    end
  end)

  it("passes gradients through the prior channels (float64 finite differences)", function()
    local gc = require "helpers.gradcheck"
    cocola.manual_seed(7)
    local enc = require("cocola.models.cocola.FrameEncoder") { in_channels = 16, width = 4, dim = 2, blocks = 1, prior = true }
    enc:double()
    local x = (cocola.rand({ 2, 16, 1, 9 }, { dtype = "float64" }) + 0.1)
    gc.assert(function(t) return enc(t[1]) end, { x }, { atol = 1e-5, rtol = 1e-5 })
  end)

  it("loads back with the prior read off the similarity's width, and names a width that fits neither", function()
    local loaded = ChromaOnsetCoCola.from_state_dict(model:state_dict())
    assert.is_true(loaded.prior)
    assert.are.equal(0, max_abs(loaded:score(f, f) - model:score(f, f)))
    local sd = model:state_dict()
    sd["similarity.w"] = cocola.zeros({ 20, 20 })
    sd["similarity.v"] = cocola.zeros({ 20, 20 })
    local ok, err = pcall(ChromaOnsetCoCola.from_state_dict, sd)
    assert.is_false(ok)
    assert.matches("similarity.w is 20 wide; the encoder gives 8 (or 24 with the prior)", err, 1, true)
  end)
end)

describe("training the chroma-onset model", function()
  local RATE, SECONDS = 16000, 7
  local root = files.tmpdir()
  -- three songs of three stems: tones of song-specific pitches with a song-specific pulse
  for _, split in ipairs({ "train", "validation" }) do
    for song = 1, 3 do
      local dir = string.format("%s/%s/song%d", root, split, song)
      fs.mkdir_p(dir)
      for s = 1, 3 do
        local rows = {}
        for i = 1, SECONDS * RATE do
          local time = i / RATE
          local pulse = (time * (1.5 + 0.5 * song)) % 1 < 0.2 and 1 or 0.3
          rows[i] = 0.2 * pulse * math.sin(2 * math.pi * (110 * s + 37 * song + 13 * (split == "train" and 0 or 1)) * time)
        end
        cocola.audio.save(string.format("%s/stem%d.wav", dir, s), cocola.tensor({ rows }), RATE, { subtype = "float" })
      end
    end
  end
  teardown(function() os.execute("rm -rf '" .. root .. "'") end)

  local function config(out, extra)
    local args = { "layout=stems_folder", "root=" .. root, "out=" .. out, "input=chroma_onset", "batch_size=3",
      "valid_batches=1", "checkpoint_every=1", "seed=2", "threads=2", "frame_dim=8", "frame_width=16",
      "frame_blocks=1", "hard_negatives=shifted", "lr=3e-3" }
    for _, a in ipairs(extra) do args[#args + 1] = a end
    return recipe.config(train.DEFAULTS, args)
  end
  local function quietly(cfg)
    local out, sink = io.output(), os.tmpname()
    io.output(sink)
    local ok, result = pcall(train.run, cfg, function() end)
    io.output():close()
    io.output(out)
    os.remove(sink)
    return ok, result
  end

  it("trains, resumes exactly and writes a checkpoint the scorer loads", function()
    local straight_dir, dir = files.tmpdir(), files.tmpdir()
    local ok, straight = quietly(config(straight_dir, { "max_steps=3" }))
    assert(ok, straight)
    assert.are.equal(3, #straight)
    quietly(config(dir, { "max_steps=1" }))
    local ok2, rest = quietly(config(dir, { "max_steps=3", "resume=" .. dir .. "/last" }))
    assert(ok2, rest)
    assert.are.same({ straight[2], straight[3] }, rest)
    local model = CoCola.from_checkpoint(straight_dir .. "/last")
    assert.are.equal("chroma_onset", model.input)
    local scoring = require "cocola.scoring"
    local r = scoring.score_waves(model, waves:select(1, 1), waves:select(1, 3))
    assert.is_true(r.score == r.score)
    os.execute("rm -rf '" .. straight_dir .. "' '" .. dir .. "'")
  end)

  it("names settings that do not apply to it", function()
    local dir = files.tmpdir()
    local ok, err = quietly(config(dir, { "eq_db=3" }))
    assert.is_false(ok)
    assert.matches("eq_db shapes log-mel features", err, 1, true)
    ok, err = quietly(config(dir, { "input=chroma" }))
    assert.is_false(ok)
    assert.matches("input must be hpss, mel or chroma_onset", err, 1, true)
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
