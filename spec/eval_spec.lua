-- eval_spec.lua — cocola.recipes.eval (recipes/eval_cocola.lua) on a tiny stems folder with a small
-- random model and the chroma-onset baseline: every protocol reports every K for every model; the
-- paper-protocol accuracies equal cocola.metrics.accuracy on the K x K blocks of the similarities of
-- the recipe's own embeddings; same-track negatives come from the anchor's own track at least
-- min_distance away; shifted negatives are the positive's stems read at the shifted offsets (beats
-- from shift_seconds, or from the MIDI tempo of a Slakh-layout track); transposed negatives are the
-- positive pitch-shifted; standard errors follow their formulas; scores and their separation; the
-- CSV / JSON / Markdown outputs; the pictures in <out>/plots/ (score histograms, accuracy heat maps),
-- none with plots=false, one log line without gnuplot; bad settings are errors naming them.
-- Accuracies are never compared across differently batched computations except where a row's
-- margin is far above float32 noise (an argmax over near-equal values may flip with summation order).
local cocola = require "cocola"
local fs = require "cocola.data.fs"
local midi = require "cocola.data.midi"
local recipe = require "cocola.recipe"
local eval = require "cocola.recipes.eval"
local cjson = require "cjson"

local RATE = 16000
local tmpdir = require("helpers.files").tmpdir
local made = {}
local function temp()
  local d = tmpdir()
  made[#made + 1] = d
  return d
end

local function stem_wave(t, s)
  local rows = {}
  for i = 1, 6 * RATE do
    local f = 110 * s * (1 + 0.25 * t)
    rows[i] = 0.2 * math.sin(2 * math.pi * f * i / RATE) * (1 + 0.8 * math.sin(2 * math.pi * (t + s) * i / RATE))
  end
  return cocola.tensor({ rows })
end

-- the same 3 tracks x 3 stems (6 s) as a plain stems folder and in the Slakh layout with MIDI
local root, slakh = temp(), temp()
for t = 1, 3 do
  local dir = string.format("%s/test/track%d", root, t)
  local sdir = string.format("%s/test/Track%05d", slakh, t)
  fs.mkdir_p(dir)
  fs.mkdir_p(sdir .. "/stems")
  for s = 1, 3 do
    local w = stem_wave(t, s)
    cocola.audio.save(dir .. "/stem" .. s .. ".wav", w, RATE, { subtype = "float" })
    cocola.audio.save(string.format("%s/stems/S%02d.wav", sdir, s - 1), w, RATE, { subtype = "float" })
  end
  -- 100 bpm (0.6 s beats) for the first 4 beats (2.4 s), then 150 bpm (0.4 s beats); division 480
  midi.write_file(sdir .. "/all_src.mid", {
    { tick = 0, kind = "meta", meta = 0x51, data = string.pack(">I3", 600000) },
    { tick = 1920, kind = "meta", meta = 0x51, data = string.pack(">I3", 400000) },
    { tick = 0, kind = "note_on", channel = 1, a = 60, b = 90 },
    { tick = 3840, kind = "note_off", channel = 1, a = 60, b = 0 },
  }, 480)
end

-- a small random model whose eval-mode embeddings depend on the input: BatchNorm statistics taken
-- from windows of the fixture's stems (a freshly initialised model embeds every window almost alike,
-- which would leave every ranking to float32 noise)
cocola.manual_seed(5)
local model = cocola.models.cocola { input = "mel", embedding_dim = 16 }
do
  local BN = require "cocola.nn.BatchNorm2d"
  for _, nm in ipairs(model:named_modules()) do
    if nm[2]:is_instance_of(BN) then
      nm[2]:reset_running_stats()
      nm[2].momentum = nil -- cumulative: the running statistics become this batch's
    end
  end
  local calib = {}
  for t = 1, 3 do
    for s = 1, 3 do calib[#calib + 1] = stem_wave(t, s):narrow(2, 1 + (t + s) * 4000, RATE):view(-1) end
  end
  model:train()
  cocola.no_grad(function() model:embed(model:features(cocola.stack(calib, 1))) end)
  model:eval()
end
local model_path = temp() .. "/tiny.safetensors"
cocola.save(model_path, model:state_dict())

local have_baselines = package.searchpath("cocola.baselines", package.path) ~= nil
local BASELINE = "chroma-onset"

local function config(out, extra)
  local args = {
    "models=" .. model_path, "datasets=stems_folder:" .. root, "split=test", "out=" .. out, "window=1.0", "max_overlap=0",
    "min_distance=2.0", "ks=2,3", "batch=16", "seed=4", "threads=2", "shift_seconds=0.25", "plots=false",
  }
  if not have_baselines then args[#args + 1] = "baseline=" end
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return recipe.config(eval.DEFAULTS, args)
end

local function quietly(fn)
  local out = io.output()
  local name = os.tmpname()
  io.output(name)
  local ok, a, b, c = pcall(fn)
  io.output():close()
  io.output(out)
  os.remove(name)
  if not ok then error(a, 0) end
  return a, b, c
end

local function file_part(name) return (name:gsub("[^%w_.-]+", "_")) end

local function close(a, b, tol) return math.abs(a - b) <= tol * math.max(1, math.abs(b)) end

describe("eval_cocola", function()
  local out = temp()
  local cfg = config(out, { "plots=true" })
  local logged = {}
  local rows, scores, details = quietly(function() return eval.run(cfg, function(l) logged[#logged + 1] = l end) end)
  local name = root:match("([^/]+)$")
  local d = details[name]
  local pairs_ = d.pairs
  local models = have_baselines and { "tiny", BASELINE } or { "tiny" }

  local function row(protocol, k, m)
    for i, r in ipairs(rows) do
      if r.protocol == protocol and r.k == k and r.model == (m or "tiny") then return r, d.outcomes[i] end
    end
  end

  local anchors, positives = {}, {}
  for i, pr in ipairs(pairs_) do anchors[i], positives[i] = pr.anchor, pr.positive end
  local tracks = cocola.data.open("stems_folder", root, "test")
  local loaded = cocola.models.cocola.from_checkpoint(model_path)
  -- the recipe's own embeddings (same chunks of `batch`, same calls): the very similarities it ranked
  local ea = eval.embed_all(loaded, anchors, cfg.batch, cfg.mode)
  local ep = eval.embed_all(loaded, positives, cfg.batch, cfg.mode)
  local sim = cocola.no_grad(function() return loaded.similarity(ea, ep) end)

  teardown(function()
    for _, dir in ipairs(made) do os.execute("rm -rf '" .. dir .. "'") end
  end)

  it("reports every protocol and K for every model, over every window of the split", function()
    assert.are.equal(4 * 2 * #models, #rows)
    assert.are.equal(#models, #scores)
    assert.are.equal(#pairs_, scores[1].windows)
    assert.is_true(#pairs_ >= 15)
    assert.are.equal((#pairs_ // 2) * 2, row("paper", 2).anchors)
    assert.are.equal((#pairs_ // 3) * 3, row("paper", 3).anchors)
    for _, r in ipairs(rows) do
      assert.is_true(r.accuracy >= 0 and r.accuracy <= 1, r.protocol)
      assert.are.equal(3, r.tracks)
    end
  end)

  it("paper protocol: accuracy of consecutive K x K groups, as metrics.accuracy computes it", function()
    for _, k in ipairs({ 2, 3 }) do
      local hits, n = 0, 0
      for g = 0, #pairs_ // k - 1 do
        local block = sim:narrow(1, g * k + 1, k):narrow(2, g * k + 1, k)
        hits = hits + cocola.metrics.accuracy(block) * k
        n = n + k
      end
      assert.is_true(math.abs(hits / n - row("paper", k).accuracy) < 1e-12, "K=" .. k)
    end
  end)

  it("paper protocol: embedding each group on its own changes no row whose margin is clear", function()
    -- another batching sums in another order: rows whose diagonal and best other entry lie within
    -- float32 noise may flip, so only rows with a clear margin are compared
    local k = 2
    local _, outcome = row("paper", k)
    local compared = 0
    for g = 0, #pairs_ // k - 1 do
      local a = table.move(anchors, g * k + 1, g * k + k, 1, {})
      local p = table.move(positives, g * k + 1, g * k + k, 1, {})
      local s = cocola.no_grad(function()
        return loaded.similarity(loaded:embed(loaded:features(cocola.stack(a, 1))), loaded:embed(loaded:features(cocola.stack(p, 1))))
      end):totable()
      for r = 1, k do
        local other = -math.huge
        for c = 1, k do if c ~= r then other = math.max(other, s[r][c]) end end
        local margin = s[r][r] - other
        if math.abs(margin) > 1e-3 * math.max(1, math.abs(s[r][r])) then
          compared = compared + 1
          assert.are.equal(margin > 0, outcome.hits[g * k + r], "group " .. g .. " row " .. r)
        end
      end
    end
    assert.is_true(compared >= #pairs_ // 2, compared .. " rows with a clear margin")
  end)

  it("ground-truth scores are the similarities of each window's own pair; separation is Cohen's d", function()
    local diagonal = sim:totable()
    local sum = 0
    for i = 1, #pairs_ do sum = sum + diagonal[i][i] end
    assert.is_true(close(sum / #pairs_, scores[1].ground_truth_mean, 1e-12))
    -- model:score pairs anchors with positives in one encoder batch: the same scores up to rounding
    local s = cocola.no_grad(function() return loaded:score(loaded:features(cocola.stack(anchors, 1)), loaded:features(cocola.stack(positives, 1))) end)
    assert.is_true(close(s:mean():item(), scores[1].ground_truth_mean, 1e-4))
    assert.is_true(scores[1].random_mean == scores[1].random_mean, "random-pair mean is a number")
    for _, sc in ipairs(scores) do
      assert.is_true(sc.separation == sc.separation, sc.model)
      assert.are.equal(sc.ground_truth_mean > sc.random_mean, sc.separation > 0)
    end
    -- means 2 and 1, standard deviations 1 and 1: pooled 1
    assert.is_true(close(eval.separation({ 1, 2, 3 }, { 0, 1, 2 }), 1.0, 1e-12))
    -- means 3 and 1, variances 1 and 4 (n 3 and 3): pooled sqrt(2.5)
    assert.is_true(close(eval.separation({ 2, 3, 4 }, { -1, 1, 3 }), 2 / math.sqrt(2.5), 1e-12))
  end)

  it("same-track protocol: K - 1 negatives per anchor; windows without room for them are left out", function()
    -- 6 s tracks, 1 s windows every second, negatives >= 2 s away: every window has at least 3
    local r2, r3 = row("same_track", 2), row("same_track", 3)
    assert.are.equal(#pairs_, r2.anchors)
    assert.are.equal(#pairs_, r3.anchors)
    assert.is_true(r3.accuracy <= r2.accuracy + 1e-12, "more negatives cannot make it easier")
    for pi, offsets in pairs(d.negatives.same_track.what) do
      assert.are.equal(2, #offsets)
      for _, off in ipairs(offsets) do assert.is_true(math.abs(off - pairs_[pi].offset) >= 2.0 - 1e-9) end
    end
    -- tracks too short for any negative leave nothing to evaluate
    local short = quietly(function()
      return eval.run(config(temp(), { "min_distance=100", "protocols=same_track", "ks=2", "max_windows=6", "baseline=" }),
        function() end)
    end)
    assert.are.equal(0, short[1].anchors)
    assert.is_true(short[1].accuracy ~= short[1].accuracy, "no anchors: accuracy is NaN (null in JSON)")
  end)

  it("shifted protocol: negatives are the positive's stems read at offset +- f * beat", function()
    local r2, r3 = row("shifted", 2), row("shifted", 3)
    assert.are.equal(#pairs_, r2.anchors)
    assert.are.equal(#pairs_, r3.anchors)
    assert.is_true(r3.accuracy <= r2.accuracy + 1e-12)
    local shifts = {}
    for f in cfg.shift_beats:gmatch("[^,]+") do shifts[#shifts + 1] = tonumber(f) * cfg.shift_seconds end
    local ctx = { tempo_cache = {}, shift_beats = {} }
    for f in cfg.shift_beats:gmatch("[^,]+") do ctx.shift_beats[#ctx.shift_beats + 1] = tonumber(f) end
    local checked = 0
    for pi = 1, #pairs_, 3 do
      local pr = pairs_[pi]
      local track = tracks[pr.track]
      local offsets = d.negatives.shifted.what[pi]
      assert.are.equal(2, #offsets)
      local seen = {}
      for _, off in ipairs(offsets) do
        local delta = math.abs(off - pr.offset)
        local match = false
        for _, s in ipairs(shifts) do match = match or math.abs(delta - s) < 1e-9 end
        assert.is_true(match, "offset " .. off .. " is not a shift of " .. pr.offset)
        assert.is_nil(seen[delta], "two negatives with the same shift")
        seen[delta] = true
      end
      -- the recipe's negatives: the positive stems read from their files at those offsets
      local waves, again = eval.NEGATIVES.shifted(tracks, pairs_, pi, 2, cfg, ctx)
      assert.are.same(offsets, again)
      for c, w in ipairs(waves) do
        local sum
        for _, i in ipairs(pr.info.positive) do
          local x = cocola.audio.load(track.stems[i].path, { sr = RATE, mono = true, offset = offsets[c], duration = 1.0 }):view(-1)
          sum = sum and sum + x or x
        end
        assert.are.equal(0, (w - sum):abs():max():item())
        assert.is_true((w - pr.positive):abs():max():item() > 1e-3, "a shifted read differs from the positive")
      end
      checked = checked + 1
    end
    assert.is_true(checked >= 5)
  end)

  it("shifted protocol: the beat is the MIDI tempo in force at the window, else shift_seconds", function()
    local st = cocola.data.open("slakh", slakh, "test")
    assert.are.equal(3, #st)
    local cache = {}
    local beat, from = eval.beat_seconds(st[1], 0.5, cfg, cache)
    assert.are.equal("midi", from)
    assert.is_true(math.abs(beat - 0.6) < 1e-12)
    beat = eval.beat_seconds(st[1], 3.0, cfg, cache)
    assert.is_true(math.abs(beat - 0.4) < 1e-12)
    beat, from = eval.beat_seconds(tracks[1], 0.5, cfg, cache)
    assert.are.equal("shift_seconds", from)
    assert.are.equal(0.25, beat)
    -- the negatives of a Slakh track move by fractions of its MIDI beat
    local pcfg = config(temp(), { "datasets=slakh:" .. slakh })
    local sp = quietly(function() return eval.draw_pairs(st, pcfg, function() end) end)
    local ctx = { tempo_cache = {}, shift_beats = { 0.25, 0.5, 0.75, 1.25, 1.5, 1.75, 2.5 } }
    local tested = 0
    for pi = 1, #sp, 3 do
      local pr = sp[pi]
      local b = pr.offset < 2.4 and 0.6 or 0.4
      local _, offsets = eval.NEGATIVES.shifted(st, sp, pi, 3, pcfg, ctx)
      for _, off in ipairs(offsets) do
        local f = math.abs(off - pr.offset) / b
        local match = false
        for _, g in ipairs(ctx.shift_beats) do match = match or math.abs(f - g) < 1e-9 end
        assert.is_true(match, string.format("window %.2f: offset %.4f is not a fraction of a %.1f s beat", pr.offset, off, b))
      end
      tested = tested + 1
    end
    assert.is_true(tested >= 5)
  end)

  it("transposed protocol: negatives are the positive pitch-shifted by distinct semitones", function()
    local r2, r3 = row("transposed", 2), row("transposed", 3)
    assert.are.equal(#pairs_, r2.anchors)
    assert.are.equal(#pairs_, r3.anchors)
    assert.is_true(r3.accuracy <= r2.accuracy + 1e-12)
    local ctx = { transpose_semitones = { 1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6 } }
    local drawn = {}
    for pi = 1, #pairs_ do
      local steps = d.negatives.transposed.what[pi]
      assert.are.equal(2, #steps)
      assert.are_not.equal(steps[1], steps[2])
      for _, s in ipairs(steps) do
        assert.is_true(s ~= 0 and math.abs(s) <= 6 and s == math.floor(s))
        drawn[s] = true
      end
    end
    local kinds = 0
    for _ in pairs(drawn) do kinds = kinds + 1 end
    assert.is_true(kinds >= 6, "the semitones are drawn per anchor")
    local waves, steps = eval.NEGATIVES.transposed(tracks, pairs_, 3, 2, cfg, ctx)
    assert.are.same(d.negatives.transposed.what[3], steps)
    for c, w in ipairs(waves) do
      assert.are.equal(0, (w - cocola.audio.pitch_shift(pairs_[3].positive, RATE, steps[c])):abs():max():item())
    end
  end)

  it("standard errors: naive sqrt(p (1 - p) / n) and clustered by track", function()
    -- by hand: hits {1, 0, 1, 1} in tracks {a, a, b, b}: p = 0.75; residuals -0.5, +0.5; G = 2
    local p, naive, cluster, g = eval.standard_errors({ true, false, true, true }, { "a", "a", "b", "b" })
    assert.are.equal(0.75, p)
    assert.is_true(close(naive, math.sqrt(0.75 * 0.25 / 4), 1e-15))
    assert.is_true(close(cluster, math.sqrt(2 * 0.5) / 4, 1e-15))
    assert.are.equal(2, g)
    local _, _, one = eval.standard_errors({ true, false }, { "a", "a" })
    assert.is_true(one ~= one, "one cluster: undefined")
    -- every row, recomputed from its per-anchor outcomes
    for i, r in ipairs(rows) do
      local o = d.outcomes[i]
      assert.are.equal(r.anchors, #o.hits)
      local hits, by = 0, {}
      for a, h in ipairs(o.hits) do
        local t = pairs_[o.anchors[a]].track
        by[t] = by[t] or { 0, 0 }
        by[t][2] = by[t][2] + 1
        if h then hits = hits + 1; by[t][1] = by[t][1] + 1 end
      end
      local n = #o.hits
      local acc = hits / n
      assert.is_true(close(r.accuracy, acc, 1e-12))
      assert.is_true(close(r.se_naive, math.sqrt(acc * (1 - acc) / n), 1e-12))
      local ss, G = 0, 0
      for _, c in pairs(by) do
        ss = ss + (c[1] - acc * c[2]) ^ 2
        G = G + 1
      end
      assert.is_true(close(r.se_cluster, math.sqrt(G / (G - 1) * ss) / n, 1e-12), r.protocol .. " K=" .. r.k)
    end
  end)

  it("compares every model with the baseline on the same anchors, with a paired cluster standard error", function()
    -- by hand: a = {1, 1, 0, 1}, b = {0, 1, 0, 0} in tracks {a, a, b, b}: differences 1, 0, 0, 1; d = 0.5;
    -- per track D = 1 and 1, residuals 1 - 0.5 * 2 = 0 and 0: SE 0
    local d0, se0, g0 = eval.paired_difference({ true, true, false, true }, { false, true, false, false }, { "a", "a", "b", "b" })
    assert.are.equal(0.5, d0)
    assert.are.equal(0, se0)
    assert.are.equal(2, g0)
    -- D = 1 and -1: d = 0, residuals 1 and -1: SE sqrt(2 * 2) / 4 = 0.5
    local d1, se1 = eval.paired_difference({ true, false, false, false }, { false, false, true, false }, { "a", "a", "b", "b" })
    assert.are.equal(0, d1)
    assert.is_true(close(se1, 0.5, 1e-15))
    assert.has_error(function() eval.paired_difference({ true }, {}, { "a" }) end)
    if not have_baselines then return end
    -- the rows carry it, recomputed from the per-anchor outcomes of the model and the baseline
    local checked = 0
    for i, r in ipairs(rows) do
      if r.model ~= BASELINE then
        local j
        for jj, rb in ipairs(rows) do
          if rb.model == BASELINE and rb.protocol == r.protocol and rb.k == r.k then j = jj end
        end
        local clusters = {}
        for a, pi in ipairs(d.outcomes[i].anchors) do clusters[a] = pairs_[pi].track end
        local want, want_se = eval.paired_difference(d.outcomes[i].hits, d.outcomes[j].hits, clusters)
        assert.are.equal(BASELINE, r.reference)
        assert.are.equal(want, r.vs_reference)
        assert.is_true(close(r.accuracy - rows[j].accuracy, r.vs_reference, 1e-12))
        assert.is_true(want_se == r.vs_reference_se or (want_se ~= want_se and r.vs_reference_se ~= r.vs_reference_se))
        checked = checked + 1
      else
        assert.is_nil(r.vs_reference)
      end
    end
    assert.are.equal(8, checked)
    assert.truthy(recipe.read(out .. "/results.md"):find("minus " .. BASELINE .. "'s on the same windows", 1, true))
  end)

  it("puts the chroma-onset baseline beside the learned model in every table", function()
    if not have_baselines then return pending("cocola.baselines is not installed") end
    for _, protocol in ipairs({ "paper", "same_track", "shifted", "transposed" }) do
      for _, k in ipairs({ 2, 3 }) do
        local r = row(protocol, k, BASELINE)
        assert.is_not_nil(r, protocol .. " K=" .. k)
        assert.are.equal(row(protocol, k).anchors, r.anchors)
      end
    end
    assert.are.equal(BASELINE, scores[2].model)
    local md = recipe.read(out .. "/results.md")
    local count = 0
    for _ in md:gmatch("| " .. BASELINE:gsub("%-", "%%-") .. " |") do count = count + 1 end
    assert.are.equal(8 + 1, count) -- 4 protocols x 2 K, and the scores table
  end)

  it("writes CSV, JSON and Markdown with every row", function()
    local csv = recipe.read(out .. "/results.csv")
    local lines = {}
    for l in csv:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal("model,dataset,protocol,k,accuracy,se_naive,se_cluster,tracks,anchors,vs_reference,vs_reference_se", lines[1])
    assert.are.equal(#rows + 1, #lines)
    local json = cjson.decode(recipe.read(out .. "/results.json"))
    assert.are.equal(#rows, #json.accuracy)
    assert.are.equal("tiny", json.accuracy[1].model)
    assert.truthy(json.accuracy[1].se_cluster)
    assert.truthy(json.scores[1].separation)
    local md = recipe.read(out .. "/results.md")
    for _, protocol in ipairs({ "paper", "same_track", "shifted", "transposed" }) do
      assert.truthy(md:find("protocol " .. protocol .. ", K = 2", 1, true), protocol)
    end
    assert.truthy(md:find("cluster (by track) standard error", 1, true))
    local r = row("shifted", 2)
    assert.truthy(md:find(string.format("| tiny | %.3f ± %.3f |", r.accuracy, r.se_cluster), 1, true))
    assert.truthy(md:find("ground truth", 1, true))
    assert.truthy(md:find("separation", 1, true))
  end)

  it("draws the score distributions and the accuracy matrices (plots=true), none with plots=false", function()
    if not os.execute("command -v gnuplot >/dev/null 2>&1") then return pending("gnuplot not installed") end
    local png = require "helpers.png"
    local dataset = file_part(name)
    for _, m in ipairs(models) do
      local img = png.read(out .. "/plots/scores-" .. file_part(m) .. "-" .. dataset .. ".png")
      assert.are.same({ 800, 500 }, { img.width, img.height })
    end
    for _, protocol in ipairs({ "paper", "same_track", "shifted", "transposed" }) do
      for _, k in ipairs({ 2, 3 }) do
        local img = png.read(string.format("%s/plots/accuracy-%s-k%d.png", out, protocol, k))
        assert.are.equal(220 + 45 * #models, img.height)
      end
    end
    assert.matches("^plots: 10 pictures in ", logged[#logged])
    -- the lists behind the histograms: one ground-truth score per window
    assert.are.equal(#pairs_, #d.score_lists.tiny.ground_truth)
  end)

  it("only logs when gnuplot is missing, and draws nothing with plots=false", function()
    local plot = require "cocola.plot"
    local saved, lines = plot.gnuplot, {}
    plot.gnuplot = "/nonexistent/gnuplot"
    local dir = temp()
    local ok, err = pcall(quietly, function()
      return eval.run(config(dir, { "plots=true", "protocols=paper", "ks=2", "baseline=" }), function(l) lines[#lines + 1] = l end)
    end)
    plot.gnuplot = saved
    assert(ok, err)
    assert.matches("^plots skipped: .*gnuplot not found", lines[#lines])
    assert.is_true(fs.is_file(dir .. "/results.md"))
    assert.is_false(fs.is_dir(dir .. "/plots"))
    local quiet = temp()
    quietly(function() return eval.run(config(quiet, { "protocols=paper", "ks=2", "baseline=" }), function() end) end)
    assert.is_false(fs.is_dir(quiet .. "/plots"))
  end)

  it("refuses bad settings with messages naming them", function()
    local function err(extra)
      local ok, e = pcall(function() quietly(function() return eval.run(config(temp(), extra), function() end) end) end)
      assert.is_false(ok)
      return tostring(e)
    end
    assert.truthy(err({ "ks=1" }):find("K must be an integer >= 2", 1, true))
    assert.truthy(err({ "protocols=bogus" }):find("unknown protocol 'bogus'", 1, true))
    assert.truthy(err({ "datasets=nolayout" }):find("expected layout:root", 1, true))
    assert.truthy(err({ "models=/nonexistent.safetensors" }):find("/nonexistent.safetensors", 1, true))
    assert.truthy(err({ "shift_beats=0.5" }):find("shift_beats: K = 3 needs at least 2 shifts", 1, true))
    assert.truthy(err({ "shift_beats=0.5,-1" }):find("shift_beats", 1, true))
    assert.truthy(err({ "transpose_semitones=1,7" }):find("at most 6 semitones", 1, true))
    assert.truthy(err({ "transpose_semitones=0,1" }):find("transpose_semitones", 1, true))
    assert.truthy(err({ "shift_seconds=0" }):find("shift_seconds", 1, true))
    assert.truthy(err({ "baseline=nope" }):find("nope", 1, true))
    local ok, e = pcall(recipe.config, eval.DEFAULTS, { "bogus=1" })
    assert.is_false(ok)
    assert.truthy(tostring(e):find("unknown setting 'bogus'", 1, true))
  end)

  it("names rows after their checkpoints, distinct even when paths end alike", function()
    assert.are.equal("x/best", eval.row_name("runs/x/best.safetensors"))
    assert.are.equal("x/last", eval.row_name("runs/x/last/model.safetensors"))
    assert.are.equal("cocola_midi", eval.row_name("assets/cocola_midi.safetensors"))
    assert.are.same({ "a/y/best", "b/y/best", "chroma-onset" },
      eval.distinct_names({ "a/y/best.safetensors", "b/y/best.safetensors", "chroma-onset" }, { "y/best", "y/best", "chroma-onset" }))
    assert.are.same({ "one/m", "two/m" }, eval.distinct_names({ "one/m.ckpt", "two/m.safetensors" }, { "m", "m" }))
    assert.are.same({ "m#1", "m#2" }, eval.distinct_names({ "m.ckpt", "m.safetensors" }, { "m", "m" }))
    -- a training run's folder: its best model, under the run's name
    local run = temp()
    local model = cocola.models.chroma_onset_cocola { dim = 4, width = 4, blocks = 1 }
    cocola.save(run .. "/best.safetensors", model:state_dict())
    local loaded, name, note = eval.load_model(run)
    assert.is_table(loaded)
    assert.are.equal(run:match("([^/]+)$") .. "/best", name)
    assert.truthy(note:find("best validation model", 1, true), note)
  end)

  it("checks that it can write its output before evaluating anything", function()
    local ok, e = pcall(function()
      quietly(function() return eval.run(config("/proc/cocola_no_such_folder", {}), function() end) end)
    end)
    assert.is_false(ok)
    assert.truthy(tostring(e):find("out: cannot create the folder '/proc/cocola_no_such_folder'", 1, true), e)
  end)
end)
