-- eval_spec.lua — cocola.recipes.eval (recipes/eval_cocola.lua) on a tiny stems folder with a small
-- random model: the paper-protocol accuracies equal cocola.metrics.accuracy on the K x K matrices of
-- the same windows computed directly, the same-track negatives come from the anchor's own track at
-- least min_distance away, scores are the diagonal of the similarity matrix, the CSV / JSON /
-- Markdown outputs hold every row, and bad settings are errors naming them.
local cocola = require "cocola"
local fs = require "cocola.data.fs"
local recipe = require "cocola.recipe"
local Sampler = require "cocola.data.sampler"
local eval = require "cocola.recipes.eval"
local cjson = require "cjson"

local RATE = 16000
local tmpdir = require("helpers.files").tmpdir

local root = tmpdir()
for t = 1, 3 do
  for s = 1, 3 do
    local rows = {}
    for i = 1, 6 * RATE do
      local f = 110 * s * (1 + 0.25 * t)
      rows[i] = 0.2 * math.sin(2 * math.pi * f * i / RATE) * (1 + 0.8 * math.sin(2 * math.pi * (t + s) * i / RATE))
    end
    local dir = string.format("%s/test/track%d", root, t)
    fs.mkdir_p(dir)
    cocola.audio.save(dir .. "/stem" .. s .. ".wav", cocola.tensor({ rows }), RATE, { subtype = "float" })
  end
end

cocola.manual_seed(5)
local model = cocola.models.cocola { input = "mel", embedding_dim = 16 }
model:eval()
-- train-mode statistics once, so that eval-mode embeddings differ between windows
cocola.no_grad(function()
  model:train()
  local x = cocola.randn({ 8, 1, 64, 101 })
  model(x, x)
  model:eval()
end)
local model_path = tmpdir() .. "/tiny.safetensors"
cocola.save(model_path, model:state_dict())

local function config(out, extra)
  local args = {
    "models=" .. model_path, "datasets=stems_folder:" .. root, "split=test", "out=" .. out, "window=1.0",
    "min_distance=2.0", "ks=2,3", "batch=16", "seed=4", "threads=2",
  }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return recipe.config(eval.DEFAULTS, args)
end

local function quietly(fn)
  local out = io.output()
  io.output(os.tmpname())
  local ok, a, b = pcall(fn)
  io.output():close()
  io.output(out)
  if not ok then error(a, 0) end
  return a, b
end

describe("eval_cocola", function()
  local out = tmpdir()
  local rows, scores = quietly(function() return eval.run(config(out), function() end) end)

  local function row(protocol, k)
    for _, r in ipairs(rows) do
      if r.protocol == protocol and r.k == k then return r end
    end
  end

  -- the pairs as the recipe draws them: the sampler's order, noise off
  local tracks = cocola.data.open("stems_folder", root, "test")
  local sampler = Sampler.new(tracks, { batch_size = 2, window = 1.0, seed = 4, noise = 0 })
  local anchors, positives, where = {}, {}, {}
  for pos = 1, #sampler.order do
    local a, p = sampler:pair(sampler.order[pos])
    if a then
      anchors[#anchors + 1], positives[#positives + 1] = a, p
      where[#where + 1] = sampler.windows[sampler.order[pos]]
    end
  end
  local loaded = cocola.models.cocola.from_checkpoint(model_path)
  local function features(waves) return cocola.audio.cocola_features(cocola.stack(waves, 1), { mode = "mel" }) end

  it("reports every protocol and K, over every window of the split", function()
    assert.are.equal(4, #rows)
    assert.are.equal(1, #scores)
    assert.are.equal(#anchors, scores[1].windows)
    assert.is_true(#anchors >= 30)
    assert.are.equal((#anchors // 2) * 2, row("paper", 2).anchors)
    assert.are.equal((#anchors // 3) * 3, row("paper", 3).anchors)
    for _, r in ipairs(rows) do assert.is_true(r.accuracy >= 0 and r.accuracy <= 1) end
  end)

  it("paper protocol: accuracy of consecutive K x K groups, as metrics.accuracy computes it", function()
    for _, k in ipairs({ 2, 3 }) do
      local hits, n = 0, 0
      for g = 0, #anchors // k - 1 do
        local a = table.move(anchors, g * k + 1, g * k + k, 1, {})
        local p = table.move(positives, g * k + 1, g * k + k, 1, {})
        local sim = cocola.no_grad(function() return loaded.similarity(loaded:embed(features(a)), loaded:embed(features(p))) end)
        hits = hits + cocola.metrics.accuracy(sim) * k
        n = n + k
      end
      assert.is_true(math.abs(hits / n - row("paper", k).accuracy) < 1e-9, "K=" .. k)
    end
  end)

  it("ground-truth scores are model:score of each window's own pair", function()
    local s = cocola.no_grad(function() return loaded:score(features(anchors), features(positives)) end)
    local mean = s:mean():item()
    assert.is_true(math.abs(mean - scores[1].ground_truth_mean) < 1e-4 * math.max(1, math.abs(mean)))
    assert.is_true(scores[1].random_mean == scores[1].random_mean, "random-pair mean is a number")
  end)

  it("same-track protocol: K - 1 negatives per anchor; windows without room for them are left out", function()
    -- 6 s tracks, 1 s windows every 0.5 s, negatives >= 2 s away: every window has at least 2
    local r2, r3 = row("same_track", 2), row("same_track", 3)
    assert.are.equal(#anchors, r2.anchors)
    assert.are.equal(#anchors, r3.anchors)
    assert.is_true(r3.accuracy <= r2.accuracy + 1e-12, "more negatives cannot make it easier")
    -- tracks too short for any negative leave nothing to evaluate
    local out2 = tmpdir()
    local short = quietly(function()
      return eval.run(config(out2, { "min_distance=100", "protocols=same_track", "ks=2" }), function() end)
    end)
    assert.are.equal(0, short[1].anchors)
  end)

  it("writes CSV, JSON and Markdown with every row", function()
    local csv = recipe.read(out .. "/results.csv")
    local lines = {}
    for l in csv:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal("model,dataset,protocol,k,accuracy,anchors", lines[1])
    assert.are.equal(5, #lines)
    local json = cjson.decode(recipe.read(out .. "/results.json"))
    assert.are.equal(4, #json.accuracy)
    assert.are.equal("tiny", json.accuracy[1].model)
    local md = recipe.read(out .. "/results.md")
    assert.truthy(md:find("Accuracy, protocol paper, K = 2", 1, true))
    assert.truthy(md:find("| tiny |", 1, true))
    assert.truthy(md:find("ground truth", 1, true))
  end)

  it("refuses bad settings with messages naming them", function()
    local function err(extra)
      local ok, e = pcall(function() quietly(function() return eval.run(config(tmpdir(), extra), function() end) end) end)
      assert.is_false(ok)
      return tostring(e)
    end
    assert.truthy(err({ "ks=1" }):find("K must be an integer >= 2", 1, true))
    assert.truthy(err({ "protocols=bogus" }):find("unknown protocol 'bogus'", 1, true))
    assert.truthy(err({ "datasets=nolayout" }):find("expected layout:root", 1, true))
    assert.truthy(err({ "models=/nonexistent.safetensors" }):find("/nonexistent.safetensors", 1, true))
    local ok, e = pcall(recipe.config, eval.DEFAULTS, { "bogus=1" })
    assert.is_false(ok)
    assert.truthy(tostring(e):find("unknown setting 'bogus'", 1, true))
  end)
end)
