-- cocola_model_spec.lua — cocola.models.cocola (the COCOLA model) and cocola.metrics: the reference
-- checkpoint's state-dict names (checked against the PyTorch module tree's key list), strict
-- loading, parity with PyTorch 1.13 (spec/fixtures/gen_cocola_model.py) of embeddings, similarity
-- matrices and scores in eval mode (every embedding mode) and of the loss gradient w.r.t. W, the
-- stem conv and the projection in train mode (dropout and drop-connect off, BatchNorm on batch
-- statistics), the embedding-mode masks, and the contrastive loss / accuracy.
-- The fixture stores no weights: both sides fill every float parameter and buffer with the same
-- integer-hash formula (FNV-1a of the name, splitmix64 per element), see fill_state below; the
-- eval checks then take BatchNorm running statistics from the fixture (calibrated_model).
local cocola = require "cocola"
local models = require "cocola.models"
local metrics = require "cocola.metrics"
local compare = require "helpers.compare"

cocola.set_num_threads(2)

-- COCOLA_SPEC_VERBOSE=1 prints the parity errors
local function report(...)
  if os.getenv("COCOLA_SPEC_VERBOSE") then print(string.format(...)) end
end

local FIX, META = cocola.load("spec/fixtures/cocola_model.safetensors")

-- ---- the deterministic weights (keep in sync with gen_cocola_model.py) ----------------------
local function fnv1a64(name)
  local h = 0xcbf29ce484222325
  for i = 1, #name do h = (h ~ name:byte(i)) * 0x100000001b3 end
  return h
end

local GOLDEN, M1, M2 = 0x9e3779b97f4a7c15, 0xbf58476d1ce4e5b9, 0x94d049bb133111eb

local function base_amp(name, shape)
  if name:match("similarity%.w$") then return 0.0, 0.05 * math.sqrt(3.0) end
  if #shape == 4 then return 0.0, math.sqrt(6.0 / (shape[2] * shape[3] * shape[4])) end
  if #shape == 2 then return 0.0, 1.0 / math.sqrt(shape[2]) end
  if name:match("running_var$") then return 1.0, 0.5 end
  if name:match("running_mean$") or name:match("bias$") then return 0.0, 0.1 end
  if name:match("weight$") then return 1.0, 0.2 end
  error("no fill rule for " .. name)
end

local function fill_values(name, shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local base, amp = base_amp(name, shape)
  local seed, vals = fnv1a64(name), {}
  for i = 1, n do
    local z = seed + GOLDEN * i
    z = (z ~ (z >> 30)) * M1
    z = (z ~ (z >> 27)) * M2
    z = z ~ (z >> 31)
    vals[i] = base + amp * ((z >> 40) / 16777216.0 * 2.0 - 1.0)
  end
  return cocola.tensor(vals, { dtype = "float64" }):reshape(shape):float()
end

-- name -> tensor for every entry of a model's state dict (num_batches_tracked kept at 0)
local STATES = {}
local function fill_state(model)
  if STATES[model.input] then return STATES[model.input] end
  local sd = {}
  for name, t in pairs(model:state_dict()) do
    sd[name] = t:dtype() == "int64" and cocola.zeros({}, { dtype = "int64" }) or fill_values(name, t.shape)
  end
  STATES[model.input] = sd
  return sd
end

local function filled_model(opts)
  local model = models.cocola(opts)
  model:load_state_dict(fill_state(model))
  return model
end

-- the formula's weights with the fixture's eval-mode BatchNorm statistics (gen_cocola_model.py's
-- calibrate(): float16 batch statistics that keep the eval-mode activations normalised)
local function calibrated_model(opts)
  local model = models.cocola(opts)
  local sd, n = {}, 0
  for name, t in pairs(fill_state(model)) do
    local stat = FIX[model.input .. ".bn." .. name]
    if stat then n = n + 1 end
    sd[name] = stat or t
  end
  assert(n == 2 * 49, "expected the running stats of 49 BatchNorm layers in the fixture")
  model:load_state_dict(sd)
  return model
end

local function split_keys(s)
  local out = {}
  for k in s:gmatch("[^,]+") do out[#out + 1] = k end
  return out
end

local function rows(t, n) return t:narrow(1, 1, n) end

-- ---- structure ------------------------------------------------------------------------------
describe("cocola.models.cocola structure", function()
  it("has the reference checkpoint's state-dict keys, in the PyTorch tree's order", function()
    for _, kind in ipairs({ "hpss", "mel" }) do
      local model = models.cocola { input = kind }
      local want = split_keys(META[kind .. ".state_dict_keys"])
      assert.are.equal(363, #want)
      assert.same(want, model:state_dict_keys())
    end
  end)

  it("builds B0 with the checkpoint's shapes and options", function()
    local model = models.cocola { input = "hpss" }
    local sd = model:state_dict()
    assert.same({ 32, 2, 3, 3 }, sd["encoder.encoder.model.0._conv_stem.weight"].shape)
    assert.same({ 1280, 320, 1, 1 }, sd["encoder.encoder.model.0._conv_head.weight"].shape)
    assert.same({ 1152, 1, 5, 5 }, sd["encoder.encoder.model.0._blocks.14._depthwise_conv.weight"].shape)
    assert.same({ 48, 1152, 1, 1 }, sd["encoder.encoder.model.0._blocks.14._se_reduce.weight"].shape)
    assert.same({ 512, 1280 }, sd["encoder.projection.weight"].shape)
    assert.same({ 512 }, sd["layer_norm.weight"].shape)
    assert.same({ 512, 512 }, sd["similarity.w"].shape)
    assert.are.equal("int64", sd["encoder.encoder.model.0._bn0.num_batches_tracked"]:dtype())
    assert.same({ 32, 1, 3, 3 }, models.cocola({ input = "mel" }):state_dict()["encoder.encoder.model.0._conv_stem.weight"].shape)
    local net = model.encoder.encoder.model[1]
    assert.are.equal(0.1, model.encoder.encoder.model[2].p)
    assert.are.equal(1e-3, net._bn0.eps)
    assert.are.equal(0.01, net._blocks[16]._bn2.momentum)
    for i = 1, 16 do assert.is_true(math.abs(net._blocks[i].drop_connect - 0.2 * (i - 1) / 16) < 1e-12) end
    assert.same({ 0, 1, 0, 1 }, net._conv_stem.static_padding)          -- 3x3/2 at 224
    assert.same({ 1, 2, 1, 2 }, net._blocks[4]._depthwise_conv.static_padding) -- 5x5/2 at 56
    assert.same({ 2, 2, 2, 2 }, net._blocks[5]._depthwise_conv.static_padding) -- 5x5/1
    local m2 = models.cocola { input = "hpss", dropout = 0, drop_connect_rate = 0, embedding_dim = 64 }
    assert.are.equal(0, m2.encoder.encoder.model[2].p)
    assert.are.equal(0, m2.encoder.encoder.model[1]._blocks[16].drop_connect)
    assert.same({ 64, 64 }, m2.similarity.w.shape)
  end)

  it("initialises W from N(0, 0.05)", function()
    cocola.manual_seed(7)
    local w = models.cocola({ input = "mel" }).similarity.w:double()
    local mean = w:mean():item()
    local std = ((w - mean) ^ 2):mean():sqrt():item()
    assert.is_true(math.abs(mean) < 0.05 * 4 / 512)
    assert.is_true(math.abs(std - 0.05) < 0.05 * 0.01)
  end)

  it("loads its own state dict strictly and names what is wrong", function()
    local a, b = models.cocola { input = "mel" }, models.cocola { input = "mel" }
    b:load_state_dict(a:state_dict())
    assert.are.equal(0, (a.similarity.w - b.similarity.w):abs():max():item())
    local sd = a:state_dict()
    sd["similarity.w"] = nil
    local ok, err = pcall(function() b:load_state_dict(sd) end)
    assert.is_false(ok)
    assert.matches("Missing key%(s%) in state_dict: \"similarity.w\"", err)
    local ok2, err2 = pcall(function() models.cocola({ input = "hpss" }):load_state_dict(a:state_dict()) end)
    assert.is_false(ok2)
    assert.matches("size mismatch for encoder.encoder.model.0._conv_stem.weight", err2)
  end)

  it("rejects bad options and bad features with clear errors", function()
    assert.has_error(function() models.cocola { input = "wav" } end)
    assert.has_error(function() models.cocola { input = "mel", embedding_mode = "harmonic" } end)
    assert.has_error(function() models.cocola { input = "hpss", embedding_mode = "left" } end)
    local model = models.cocola { input = "hpss" }
    local ok, err = pcall(function() return model:embed(cocola.zeros({ 1, 1, 64, 40 })) end)
    assert.is_false(ok)
    assert.matches("expected features %(B, 2, n_mels, frames%)", err)
    assert.has_error(function() model:score(cocola.zeros({ 2, 2, 64, 40 }), cocola.zeros({ 1, 2, 64, 40 })) end)
  end)
end)

-- ---- parity with PyTorch ---------------------------------------------------------------------
describe("cocola.models.cocola parity with PyTorch (eval mode)", function()
  for _, kind in ipairs({ "hpss", "mel" }) do
    it(kind .. ": embeddings, similarity matrix and scores to 1e-4", function()
      local model = calibrated_model({ input = kind }):eval()
      local x, y = FIX[kind .. ".x"], FIX[kind .. ".y"]
      cocola.no_grad(function()
        local ex, ey = model:embed(x), model:embed(y)
        local e1 = compare.assert_close(ex, FIX[kind .. ".embed_x"], 1e-4, kind .. " embed")
        local e2 = compare.assert_close(model:similarity(ex, ey), FIX[kind .. ".sim"], 1e-4, kind .. " sim")
        local e3 = compare.assert_close(model:score(y, x), FIX[kind .. ".score"], 1e-4, kind .. " score")
        report("  %s eval rel. errors: embed %.2e, sim %.2e, score %.2e", kind, e1, e2, e3)
        if kind == "hpss" then
          for _, mode in ipairs({ "harmonic", "percussive" }) do
            local em = model:embed(x, mode)
            compare.assert_close(em, FIX["hpss.embed_x_" .. mode], 1e-4, "embed " .. mode)
            -- the mode set on the model applies to score() too
            model:set_embedding_mode(mode)
            local err = compare.assert_close(model:score(y, x), FIX["hpss.score_" .. mode], 1e-4, "score " .. mode)
            report("  hpss %s score rel. error %.2e", mode, err)
            model:set_embedding_mode("both")
          end
          -- "random" is "both" outside training
          model:set_embedding_mode("random")
          compare.assert_close(model:score(y, x), FIX["hpss.score"], 1e-4, "score random (eval)")
        end
      end)
    end)
  end
end)

describe("cocola.models.cocola parity with PyTorch (train mode, dropout off)", function()
  for _, kind in ipairs({ "hpss", "mel" }) do
    it(kind .. ": loss and its gradients w.r.t. W, the stem conv and the projection", function()
      local model = filled_model({ input = kind, dropout = 0, drop_connect_rate = 0 }):train()
      local a, p = rows(FIX[kind .. ".x"], 2), rows(FIX[kind .. ".y"], 2)
      local sim = model(a, p)
      local loss = metrics.contrastive_loss(sim)
      loss:backward()
      compare.assert_close(sim, FIX[kind .. ".train.sim"], 1e-4, kind .. " train sim")
      compare.assert_close(loss:reshape({ 1 }), FIX[kind .. ".train.loss"], 1e-4, kind .. " loss")
      local gw = model.similarity.w.grad
      local want_gw = FIX[kind .. ".train.grad_w"]
      local e1 = compare.assert_close(rows(gw, want_gw:size(1)), want_gw, 1e-4, kind .. " grad W")
      local stem = model.encoder.encoder.model[1]._conv_stem.weight
      local e2 = compare.assert_close(stem.grad, FIX[kind .. ".train.grad_stem"], 1e-4, kind .. " grad stem")
      local e3 = compare.assert_close(rows(model.encoder.projection.weight.grad, 8),
        FIX[kind .. ".train.grad_projection_rows"], 1e-4, kind .. " grad projection")
      report("  %s train rel. errors: grad W %.2e, grad stem %.2e, grad projection %.2e", kind, e1, e2, e3)
      -- BatchNorm saw one batch (anchors and positives together) and updated its running stats
      local bn = model.encoder.encoder.model[1]._bn0
      assert.are.equal(1, bn.num_batches_tracked:item())
    end)
  end
end)

-- ---- embedding modes -----------------------------------------------------------------------
describe("cocola.models.cocola embedding modes", function()
  local model = models.cocola { input = "hpss", embedding_dim = 16 }
  local x = cocola.rand({ 6, 2, 4, 5 }) - 2 -- strictly negative: a zeroed channel is exactly 0

  local function channel_zero(t, i, c) return t:select(1, i):select(1, c):abs():max():item() == 0 end

  it("harmonic zeroes the percussive channel, percussive the harmonic one, both keeps them", function()
    local h = model:apply_mode(x, "harmonic")
    local p = model:apply_mode(x, "percussive")
    for i = 1, 6 do
      assert.is_true(channel_zero(h, i, 2) and not channel_zero(h, i, 1))
      assert.is_true(channel_zero(p, i, 1) and not channel_zero(p, i, 2))
    end
    assert.are.equal(0, (h:select(2, 1) - x:select(2, 1)):abs():max():item())
    assert.are.equal(x, (model:apply_mode(x, "both")))
  end)

  it("random picks one of the three per example in training, the same for an anchor and its positive", function()
    model:train()
    cocola.manual_seed(3)
    local seen = {}
    for _ = 1, 5 do
      local a, choices = model:apply_mode(x, "random")
      local p = model:apply_mode(x * 2, "random", choices)
      for i = 1, 6 do
        local c = choices[i]
        seen[c] = true
        assert.are.equal(c == 0, channel_zero(a, i, 1))
        assert.are.equal(c == 1, channel_zero(a, i, 2))
        assert.are.equal(channel_zero(a, i, 1), channel_zero(p, i, 1))
        assert.are.equal(channel_zero(a, i, 2), channel_zero(p, i, 2))
      end
    end
    assert.is_true(seen[0] and seen[1] and seen[2])
    model:eval()
    local e, choices = model:apply_mode(x, "random")
    assert.is_nil(choices)
    assert.are.equal(x, e)
  end)

  it("changes the embedding and the score when a channel is dropped", function()
    local m = calibrated_model({ input = "hpss" }):eval()
    local xs, ys = rows(FIX["hpss.x"], 1), rows(FIX["hpss.y"], 1)
    cocola.no_grad(function()
      local both = m:score(ys, xs):item()
      local harm = m:score(ys, xs, "harmonic"):item()
      local perc = m:score(ys, xs, "percussive"):item()
      assert.is_true(math.abs(both - harm) > 1e-3 and math.abs(both - perc) > 1e-3 and math.abs(harm - perc) > 1e-3)
    end)
  end)
end)

-- ---- metrics ---------------------------------------------------------------------------------
describe("cocola.metrics", function()
  it("contrastive_loss is the mean row cross-entropy against the diagonal", function()
    local sim = cocola.tensor({ { 2.0, 0.5, -1.0 }, { 0.1, 0.3, 0.2 }, { 1.0, 4.0, 0.0 } }, { dtype = "float64" })
    local want = 0
    local t = sim:totable()
    for i = 1, 3 do
      local z = 0
      for j = 1, 3 do z = z + math.exp(t[i][j]) end
      want = want + (math.log(z) - t[i][i])
    end
    want = want / 3
    assert.is_true(math.abs(metrics.contrastive_loss(sim):item() - want) < 1e-12)
    local s = sim:clone():requires_grad(true)
    metrics.contrastive_loss(s):backward()
    -- d/ds_ij = (softmax_ij - [i == j]) / K
    local g, sm = s.grad:totable(), sim:softmax(2):totable()
    for i = 1, 3 do
      for j = 1, 3 do assert.is_true(math.abs(g[i][j] - (sm[i][j] - (i == j and 1 or 0)) / 3) < 1e-12) end
    end
  end)

  it("accuracy counts the rows whose argmax is on the diagonal", function()
    local sim = cocola.tensor({ { 2.0, 0.5, -1.0 }, { 0.1, 0.3, 0.2 }, { 1.0, 4.0, 0.0 } })
    assert.are.equal(2 / 3, metrics.accuracy(sim))
    assert.are.equal(1, metrics.accuracy(cocola.tensor({ { 1, 0 }, { 0, 1 } })))
    assert.are.equal(0, metrics.accuracy(cocola.tensor({ { 0, 1 }, { 1, 0 } })))
  end)

  it("rejects a similarity matrix with fewer columns than rows, or not a matrix", function()
    assert.has_error(function() metrics.contrastive_loss(cocola.zeros({ 3, 2 })) end)
    assert.has_error(function() metrics.accuracy(cocola.zeros({ 4 })) end)
    -- K x (K + M): M columns of hard negatives after the positives
    assert.is_true(math.abs(metrics.contrastive_loss(cocola.zeros({ 2, 3 })):item() - math.log(3)) < 1e-6)
  end)
end)

describe("CoCola.from_checkpoint", function()
  local cocola = require "cocola"
  local CoCola = require "cocola.models.cocola"

  it("rebuilds a model from its saved state dict (architecture read off the weights)", function()
    local model = cocola.models.cocola { input = "mel", embedding_dim = 64 }
    model:eval()
    local path = os.tmpname() .. ".safetensors"
    cocola.save(path, model:state_dict())
    local back = CoCola.from_checkpoint(path)
    os.remove(path)
    assert.are.equal("mel", back.input)
    assert.are.equal(64, back.embedding_dim)
    local x = cocola.rand({ 2, 1, 64, 101 }) * -80
    local a = cocola.no_grad(function() return model:score(x, x) end)
    local b = cocola.no_grad(function() return back:score(x, x) end)
    assert.is_true(a:allclose(b, 0, 0))
  end)

  it("refuses files without COCOLA weights", function()
    local path = os.tmpname() .. ".safetensors"
    cocola.save(path, { other = cocola.zeros({ 2 }) })
    local ok, err = pcall(CoCola.from_checkpoint, path)
    os.remove(path)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("holds no COCOLA weights", 1, true))
    ok, err = pcall(CoCola.from_checkpoint, "/nonexistent.ckpt")
    assert.truthy(tostring(err):find("no such file", 1, true))
  end)
end)
