-- train_spec.lua — cocola.recipes.train (recipes/train_cocola.lua) on a tiny stems folder: it trains (finite losses,
-- metrics and checkpoints written), validates at epoch ends, and a run stopped after 2 steps and
-- resumed from its checkpoint gives exactly the losses of an uninterrupted 4-step run.
-- A wall-time limit (max_minutes) stops a run after the step that passes it, its checkpoint saved.
-- The curves of a run in <out>/plots/ (plots=true), none with plots=false, one log line without gnuplot.
local cocola = require "cocola"
local fs = require "cocola.data.fs"
local recipe = require "cocola.recipe"
local cjson = require "cjson"
local train = require "cocola.recipes.train"
local lfs = require "lfs"

local RATE = 16000

local tmpdir = require("helpers.files").tmpdir

local root = tmpdir()
for _, split in ipairs({ "train", "validation" }) do
  for t = 1, 3 do
    for s = 1, 3 do
      local rows = {}
      for i = 1, 2 * RATE do
        rows[i] = 0.2 * math.sin(2 * math.pi * (100 * s + 13 * t + (split == "train" and 0 or 5)) * i / RATE)
          * (1 + 0.5 * math.sin(2 * math.pi * s * i / RATE))
      end
      local dir = string.format("%s/%s/track%d", root, split, t)
      fs.mkdir_p(dir)
      cocola.audio.save(dir .. "/stem" .. s .. ".wav", cocola.tensor({ rows }), RATE, { subtype = "float" })
    end
  end
end

local function config(out, extra)
  local args = {
    "layout=stems_folder", "root=" .. root, "valid_split=validation", "out=" .. out, "batch_size=2",
    "window=1.0", "valid_batches=1", "checkpoint_every=1", "seed=3", "threads=2", "plots=false",
  }
  for _, a in ipairs(extra) do args[#args + 1] = a end
  return recipe.config(train.DEFAULTS, args)
end

-- pcall(fn, cfg) with the recipe's printing silenced (its log function and io.output)
local function quiet_pcall(fn, cfg)
  local out = io.output()
  io.output(os.tmpname())
  local results = table.pack(pcall(fn, cfg, function() end))
  io.output():close()
  io.output(out)
  return results
end

-- runs fn silenced, raising its error
local function quietly(fn, cfg)
  local results = quiet_pcall(fn, cfg)
  assert(results[1], results[2])
  return table.unpack(results, 2, results.n)
end

describe("train_cocola", function()
  it("trains, checkpoints and resumes exactly", function()
    local straight_dir = tmpdir()
    local straight = quietly(train.run, config(straight_dir, { "max_steps=4" }))
    assert.are.equal(4, #straight)
    for _, l in ipairs(straight) do assert.is_true(l == l and l > 0, "loss " .. l) end
    assert.is_true(fs.is_file(straight_dir .. "/last/model.safetensors"))
    assert.is_true(fs.is_file(straight_dir .. "/last/optimizer.safetensors"))
    assert.is_true(fs.is_file(straight_dir .. "/metrics.jsonl"))
    local logged = cjson.decode(io.lines(straight_dir .. "/config.jsonl")())
    assert.are.equal(4, logged.max_steps)
    assert.are.equal("stems_folder", logged.layout)

    local dir = tmpdir()
    local first = quietly(train.run, config(dir, { "max_steps=2" }))
    assert.are.same({ straight[1], straight[2] }, first)
    -- a run killed after logging step 3 but before checkpointing it
    recipe.append_jsonl(dir .. "/metrics.jsonl", { epoch = 0, step = 3, loss = 99, accuracy = 0 })
    local rest = quietly(train.run, config(dir, { "max_steps=4", "resume=" .. dir .. "/last" }))
    assert.are.equal(2, #rest)
    assert.are.equal(straight[3], rest[1])
    assert.are.equal(straight[4], rest[2])
    -- the metrics log has each step once, with the resumed run's values
    local logged_steps = {}
    for line in io.lines(dir .. "/metrics.jsonl") do
      local m = cjson.decode(line)
      if m.loss then logged_steps[#logged_steps + 1] = m.step end
      if m.step == 3 and m.loss then assert.is_true(math.abs(m.loss - straight[3]) < 1e-9 * straight[3]) end
    end
    assert.are.same({ 1, 2, 3, 4 }, logged_steps)
  end)

  it("validates at the end of an epoch and keeps the best model", function()
    local dir = tmpdir()
    local _, state = quietly(train.run, config(dir, { "epochs=1", "plots=true" }))
    -- the run's curves (plots=true, the default), unless gnuplot is missing
    if os.execute("command -v gnuplot >/dev/null 2>&1") then
      for _, name in ipairs({ "metrics-loss.png", "metrics-accuracy.png" }) do
        local img = require("helpers.png").read(dir .. "/plots/" .. name)
        assert.are.same({ 800, 500 }, { img.width, img.height })
      end
    end
    assert.are.equal(1, state.epoch)
    assert.is_true(fs.is_file(dir .. "/best.safetensors"))
    local saw_valid = false
    for line in io.lines(dir .. "/metrics.jsonl") do
      if line:find("valid_accuracy", 1, true) then saw_valid = true end
    end
    assert.is_true(saw_valid)
    local sd, meta = cocola.load(dir .. "/best.safetensors")
    assert.is_not_nil(sd["similarity.w"])
    assert.are.equal("hpss", meta.input)
  end)

  it("recalibrates BatchNorm statistics from training batches, leaving the sampler where it was", function()
    local Sampler = require "cocola.data.sampler"
    cocola.manual_seed(1)
    local model = cocola.models.cocola { input = "hpss", embedding_dim = 16 }
    local tracks = cocola.data.open("stems_folder", root, "train")
    local sampler = Sampler.new(tracks, { batch_size = 2, window = 1.0, seed = 9 })
    sampler:next_batch()
    local before = sampler:state()
    local modules = {}
    for _, nm in ipairs(model:named_modules()) do modules[nm[1]] = nm[2] end
    local stem, bn0 = modules["encoder.encoder.model.0._conv_stem"], modules["encoder.encoder.model.0._bn0"]
    -- what the first BatchNorm sees for the next batch: its per-channel mean is the new running mean
    local probe = sampler:next_batch()
    sampler:set_state(before)
    local x = cocola.cat({ cocola.audio.cocola_features(probe.anchor, { mode = "hpss" }),
                           cocola.audio.cocola_features(probe.positive, { mode = "hpss" }) }, 1)
    local expected = cocola.no_grad(function() return stem(x):mean(1):mean(-1):mean(-1) end)
    train.recalibrate_batchnorm(model, sampler, 1)
    assert.is_true(bn0.running_mean:allclose(expected:view(-1), 1e-4, 1e-5))
    assert.are.same(before, sampler:state())
    for _, m in ipairs(model:modules()) do
      if m:type_name() == "BatchNorm2d" then
        assert.are.equal(1, m.num_batches_tracked:item())
        assert.are.equal(0.01, m.momentum)
        assert.is_false(m.training)
      end
    end
  end)

  it("never keeps a validation whose similarities are all equal as the best; recalibrates BatchNorm by default", function()
    -- without recalibration a young encoder's eval-mode embeddings are all alike (the initial
    -- BatchNorm statistics), the validation loss is ln K, and nothing is kept as the best
    local dir = tmpdir()
    quietly(train.run, config(dir, { "max_steps=2", "valid_every=1", "bn_recalibration_batches=0" }))
    local degenerate = 0
    for line in io.lines(dir .. "/metrics.jsonl") do
      local m = cjson.decode(line)
      if m.valid_loss then
        assert.is_true(m.valid_degenerate, line)
        assert.is_true(math.abs(m.valid_loss - math.log(2)) < 1e-4, line)
        degenerate = degenerate + 1
      end
    end
    assert.are.equal(2, degenerate)
    assert.is_false(fs.is_file(dir .. "/best.safetensors"))
    -- the default (-1, automatic) re-estimates the statistics before validating: a real validation
    local auto = tmpdir()
    quietly(train.run, config(auto, { "max_steps=2", "valid_every=1" }))
    for line in io.lines(auto .. "/metrics.jsonl") do
      local m = cjson.decode(line)
      if m.valid_loss then assert.is_nil(m.valid_degenerate, line) end
    end
    assert.is_true(fs.is_file(auto .. "/best.safetensors"))
    assert.are.equal(4, cjson.decode(io.lines(auto .. "/config.jsonl")()).bn_recalibration_batches)
    assert.is_true(train.constant_similarities(cocola.ones({ 3, 3 }) * 2.5))
    assert.is_false(train.constant_similarities(cocola.tensor({ { 1, 2 }, { 3, 4 } })))
  end)

  it("documents every setting (--help) and restores a run's settings on resume, given ones winning", function()
    for key in pairs(train.DEFAULTS) do assert.is_string(train.DOCS[key], key) end
    local help = recipe.help("train_cocola", train.DEFAULTS, train.DOCS)
    assert.truthy(help:find("  batch_size=32 +K: windows per contrastive batch"), help)
    local straight_dir = tmpdir()
    local straight = quietly(train.run, config(straight_dir, { "max_steps=3", "lr=0.002" }))
    local dir = tmpdir()
    quietly(train.run, config(dir, { "max_steps=2", "lr=0.002" }))
    -- only resume= and the step budget: root, batch_size, window, seed, lr ... come from the run
    local lines = {}
    local out = io.output()
    io.output(os.tmpname())
    local ok, rest = pcall(train.run, recipe.config(train.DEFAULTS, { "resume=" .. dir .. "/last", "max_steps=3" }),
      function(line) lines[#lines + 1] = line end)
    io.output():close()
    io.output(out)
    assert(ok, rest)
    assert.are.same({ straight[3] }, rest)
    local text = table.concat(lines, "\n")
    assert.truthy(text:find("resume: settings of " .. dir .. "/config.jsonl restored; given again: max_steps=3 (was 2)", 1, true), text)
    local last
    for line in io.lines(dir .. "/config.jsonl") do last = cjson.decode(line) end
    assert.are.equal(0.002, last.lr)
    assert.are.equal(2, last.batch_size)
    assert.are.equal(root, last.root)
    local bad = quiet_pcall(train.run, recipe.config(train.DEFAULTS, { "resume=" .. dir .. "/nothing" }))
    assert.is_false(bad[1])
    assert.truthy(tostring(bad[2]):find("is not a checkpoint folder", 1, true), bad[2])
  end)

  it("creates out with its parents, names a missing data folder first, and cleans up after an early failure", function()
    local base = tmpdir()
    quietly(train.run, config(base .. "/a/b/run", { "max_steps=1" }))
    assert.is_true(fs.is_file(base .. "/a/b/run/last/model.safetensors"))
    -- a missing data folder: said before any output exists
    local r = quiet_pcall(train.run, recipe.config(train.DEFAULTS, { "root=" .. base .. "/no_data", "out=" .. base .. "/x" }))
    assert.is_false(r[1])
    assert.truthy(tostring(r[2]):find("the data folder '" .. base .. "/no_data' does not exist", 1, true), r[2])
    assert.is_nil(lfs.attributes(base .. "/x"))
    -- a failure after the folder was made and before the first checkpoint leaves nothing behind
    r = quiet_pcall(train.run, config(base .. "/y/z", { "max_steps=1", "init=" .. base .. "/missing.safetensors" }))
    assert.is_false(r[1])
    assert.is_nil(lfs.attributes(base .. "/y/z"))
  end)

  it("trains on several roots at once (root=a,b: their mixture)", function()
    local one = train.open_split("stems_folder", root, "train")
    local two = train.open_split("stems_folder", root .. "," .. root, "train")
    assert.are.equal(3, #one)
    assert.are.equal(2 * #one, #two)
    assert.are.equal(one[1].stems[1].path, two[#one + 1].stems[1].path)
  end)

  it("validates every valid_every steps too, and still resumes exactly", function()
    local straight_dir = tmpdir()
    local straight = quietly(train.run, config(straight_dir, { "max_steps=4", "valid_every=2", "bn_recalibration_batches=1" }))
    local steps = {}
    for line in io.lines(straight_dir .. "/metrics.jsonl") do
      local m = cjson.decode(line)
      if m.valid_loss then steps[#steps + 1] = m.step end
    end
    assert.are.same({ 2, 4 }, steps)
    assert.is_true(fs.is_file(straight_dir .. "/best.safetensors"))
    local dir = tmpdir()
    quietly(train.run, config(dir, { "max_steps=3", "valid_every=2", "bn_recalibration_batches=1" }))
    local rest = quietly(train.run, config(dir, { "max_steps=4", "valid_every=2", "bn_recalibration_batches=1",
      "resume=" .. dir .. "/last" }))
    assert.are.same({ straight[4] }, rest)
  end)

  it("says when a resume changes the data or the batches", function()
    local dir = tmpdir()
    quietly(train.run, config(dir, { "max_steps=1" }))
    local lines = {}
    local out = io.output()
    io.output(os.tmpname())
    local ok, err = pcall(train.run, config(dir, { "max_steps=2", "batch_size=3", "resume=" .. dir .. "/last" }),
      function(line) lines[#lines + 1] = line end)
    io.output():close()
    io.output(out)
    assert(ok, err)
    local text = table.concat(lines, "\n")
    assert.truthy(text:find("note: batch_size changed since the last start (2 -> 3)", 1, true), text)
    assert.falsy(text:find("note: root", 1, true))
  end)

  it("starts from given weights (init=) with a fresh optimizer and schedule", function()
    local source = tmpdir()
    quietly(train.run, config(source, { "max_steps=3" }))
    local weights = cocola.load(source .. "/last/model.safetensors")
    -- lr 0: the step changes nothing, so the saved model is exactly the initial one
    local dir = tmpdir()
    quietly(train.run, config(dir, { "max_steps=1", "lr=0", "init=" .. source .. "/last/model.safetensors" }))
    local saved = cocola.load(dir .. "/last/model.safetensors")
    local compared = 0
    for name, w in pairs(weights) do
      if name:match("weight$") then
        assert.are.equal(0, (saved[name] - w):abs():max():item(), name)
        compared = compared + 1
      end
    end
    assert.is_true(compared > 50)
    local state = cjson.decode(recipe.read(dir .. "/last/state.json"))
    assert.are.equal(1, state.step)
    -- a missing file is a clear error
    local failed = quiet_pcall(train.run, config(tmpdir(), { "max_steps=1", "init=/nonexistent/model.safetensors" }))
    assert.is_false(failed[1])
    assert.truthy(tostring(failed[2]):find("nonexistent", 1, true))
  end)

  it("names the problem with the device settings", function()
    for _, case in ipairs({
      { { "device=tpu", "max_steps=1" }, "device must be cpu or cuda, got 'tpu'" },
      { { "autocast=bf16", "max_steps=1" }, "autocast=bf16 needs device=cuda" },
    }) do
      local results = quiet_pcall(train.run, config(tmpdir(), case[1]))
      assert.is_false(results[1])
      assert.truthy(tostring(results[2]):find(case[2], 1, true), tostring(results[2]))
    end
    if not cocola.cuda.is_available() then
      local results = quiet_pcall(train.run, config(tmpdir(), { "device=cuda", "max_steps=1" }))
      assert.is_false(results[1])
      assert.truthy(tostring(results[2]):find("device=cuda, but CUDA is not available", 1, true), tostring(results[2]))
    end
  end)

  -- #cuda: the same run on the GPU; checkpoints move between devices. Only losses computed from the
  -- same weights are compared (the first step; a step resumed from the other device's checkpoint):
  -- after an Adam step the two devices' trajectories part by more than rounding (the tiny set's
  -- losses are large and Adam normalises near-zero gradients)
  if cocola.cuda.is_available() then
    it("trains on the GPU as on the CPU, and resumes across devices #cuda", function()
      local function near(a, b, what)
        assert.is_true(math.abs(a - b) <= 1e-3 * math.abs(b), string.format("%s: GPU %.6f, CPU %.6f", what, a, b))
      end
      local cpu_run = quietly(train.run, config(tmpdir(), { "max_steps=3" }))
      local dir = tmpdir()
      local gpu_first = quietly(train.run, config(dir, { "max_steps=2", "device=cuda" }))
      near(gpu_first[1], cpu_run[1], "step 1")
      local cpu_after_gpu = quietly(train.run, config(dir, { "max_steps=3", "resume=" .. dir .. "/last" }))
      assert.equals(1, #cpu_after_gpu)
      assert.is_true(cpu_after_gpu[1] == cpu_after_gpu[1] and cpu_after_gpu[1] > 0)
      local sd = cocola.load(dir .. "/last/model.safetensors")
      assert.equals("cpu", sd["similarity.w"]:device())
      -- the CPU's first two steps, the third on the GPU: the CPU's third loss
      local dir2 = tmpdir()
      quietly(train.run, config(dir2, { "max_steps=2" }))
      local gpu_after_cpu = quietly(train.run, config(dir2, { "max_steps=3", "device=cuda", "resume=" .. dir2 .. "/last" }))
      near(gpu_after_cpu[1], cpu_run[3], "step 3 resumed on the GPU")
    end)
  end

  it("stops at the wall-time limit (max_minutes) after saving the checkpoint", function()
    local dir = tmpdir()
    -- a limit already passed when the first step ends: one step, then the checkpoint
    local losses, state = quietly(train.run, config(dir, { "max_steps=5", "checkpoint_every=100", "max_minutes=1e-9" }))
    assert.are.equal(1, #losses)
    assert.are.equal(1, state.step)
    local saved = cjson.decode(recipe.read(dir .. "/last/state.json"))
    assert.are.equal(1, saved.step)
    assert.is_true(fs.is_file(dir .. "/last/model.safetensors"))
    assert.is_true(fs.is_file(dir .. "/last/optimizer.safetensors"))
    -- a resume counts from its own start and goes on
    local more = quietly(train.run, config(dir, { "max_steps=5", "max_minutes=1e-9", "resume=" .. dir .. "/last" }))
    assert.are.equal(1, #more)
    -- a generous limit changes nothing
    local free = quietly(train.run, config(tmpdir(), { "max_steps=2", "max_minutes=60" }))
    assert.are.equal(2, #free)
  end)

  it("draws no plots with plots=false, and only logs when gnuplot is missing", function()
    local plot = require "cocola.plot"
    local dir = tmpdir()
    quietly(train.run, config(dir, { "max_steps=1" }))
    assert.is_nil(lfs.attributes(dir .. "/plots"), "plots=false draws nothing")
    local saved, lines = plot.gnuplot, {}
    plot.gnuplot = "/nonexistent/gnuplot"
    local out, name = io.output(), os.tmpname()
    io.output(name)
    local missing = tmpdir()
    local ok, err = pcall(train.run, config(missing, { "max_steps=1", "plots=true" }), function(l) lines[#lines + 1] = l end)
    io.output():close()
    io.output(out)
    os.remove(name)
    plot.gnuplot = saved
    assert(ok, err)
    assert.matches("plots skipped: .*gnuplot not found", lines[#lines])
    assert.is_nil(lfs.attributes(missing .. "/plots"))
  end)

  it("rejects unknown settings", function()
    local ok, err = pcall(recipe.config, train.DEFAULTS, { "bogus=1" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("unknown setting 'bogus'", 1, true))
  end)
end)
