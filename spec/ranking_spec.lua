-- ranking_spec.lua — cocola.ranking and the `cocola rank` / `cocola index` commands: the exact
-- query / library factorisation of every similarity, rank scores equal to scoring.score_files for
-- the same pairs (both roles, files of unequal lengths, tail windows), the order and --top,
-- the index file (reuse without re-embedding, a changed file embedded again, a missing file left
-- out, another model or other settings refused), bad inputs, and the command's table / CSV / JSON and
-- its --plot picture.
-- Audio fixtures are made in a temporary folder removed afterwards (also when a spec fails).
local cocola = require "cocola"
local audio = require "cocola.audio"
local scoring = require "cocola.scoring"
local ranking = require "cocola.ranking"
local files = require "helpers.files"
local models = require "helpers.models"
local cjson = require "cjson"
local lfs = require "lfs"

cocola.set_num_threads(1)

local SR = 16000
local cli = require "helpers.cli"
local read, one_line_error = cli.read, cli.one_line_error
local cocola_cmd = cli.cocola

local function close(a, b, tol)
  return type(a) == "number" and type(b) == "number"
    and math.abs(a - b) <= (tol or 1e-4) * math.max(1, math.abs(a), math.abs(b))
end

-- a small chroma-onset COCOLA model with its prior channels (frame-bilinear similarity)
local function frame_model(seed)
  cocola.manual_seed(seed or 5)
  return cocola.models.chroma_onset_cocola { dim = 8, width = 16, blocks = 2, prior = true }:eval()
end

local function frac(x) return x - x:to("int64"):to("float32") end

-- a wave of `seconds`: three gated sawtooth tones (pitches and gate rates drawn from seed) plus a
-- little noise, so that chroma and onsets differ from file to file
local function music(seconds, seed)
  cocola.manual_seed(seed)
  local n = math.floor(seconds * SR + 0.5)
  local t = cocola.arange(0, n, { dtype = "float32" }) * (1 / SR)
  local wave = cocola.randn({ n }) * 0.02
  local draws = cocola.rand({ 3, 2 }):totable()
  for k = 1, 3 do
    local pitch = 110 * 2 ^ (math.floor(draws[k][1] * 36) / 12)
    local rate = 1 + draws[k][2] * 4
    local gate = frac(t * rate + k / 3):lt(0.5):to("float32")
    wave = wave + (frac(t * pitch) - 0.5) * gate * (0.2 / k)
  end
  return wave:reshape({ 1, n })
end

describe("ranking.factorisation", function()
  local function check(model, d, n)
    cocola.manual_seed(11)
    local y, x = cocola.randn({ n, d }), cocola.randn({ n, d })
    local want = model.similarity:pairwise(y, x):totable()       -- sim(y_i, x_i), y the condition
    local as_cond = (ranking.query_vectors(model, y, "cond") * ranking.library_vectors(model, x)):sum(2):totable()
    local as_gen = (ranking.query_vectors(model, x, "gen") * ranking.library_vectors(model, y)):sum(2):totable()
    for i = 1, n do
      assert.is_true(close(as_cond[i], want[i], 1e-4), string.format("cond %d: %g vs %g", i, as_cond[i], want[i]))
      assert.is_true(close(as_gen[i], want[i], 1e-4), string.format("gen %d: %g vs %g", i, as_gen[i], want[i]))
    end
    -- order matters: W is not symmetric, so sim(x, y) differs
    local swapped = model.similarity:pairwise(x, y):totable()
    local differs = false
    for i = 1, n do differs = differs or not close(swapped[i], want[i], 1e-3) end
    return differs
  end

  it("splits the bilinear similarity of a COCOLA model exactly: y^T W x = (y W) . x = y . (x W^T)", function()
    cocola.manual_seed(1)
    local m = cocola.models.cocola { input = "mel", embedding_dim = 16 }
    assert.are.equal("bilinear", ranking.factorisation(m).kind)
    assert.is_true(check(m, 16, 5))
  end)

  it("splits the frame-bilinear similarity of the chroma-onset model exactly (frames plus their mean)", function()
    local m = frame_model()
    local f = ranking.factorisation(m)
    assert.are.equal("frame-bilinear", f.kind)
    local d, t = m.embedding_dim, 157
    assert.are.equal(t * d + d, f.key_size(t * d))
    assert.is_true(check(m, t * d, 4))
  end)

  it("uses the baseline's embeddings as they are (a dot product)", function()
    local b = require("cocola.baselines").load("chroma-onset")
    assert.are.equal("dot", ranking.factorisation(b).kind)
    cocola.manual_seed(2)
    local y, x = cocola.randn({ 3, 164 }), cocola.randn({ 3, 164 })
    local want = b.similarity:pairwise(y, x):totable()
    local got = (ranking.query_vectors(b, y, "cond") * ranking.library_vectors(b, x)):sum(2):totable()
    for i = 1, 3 do assert.is_true(close(got[i], want[i], 1e-5)) end
  end)

  it("refuses a model whose similarity it cannot split", function()
    local b = require("cocola.baselines").load("chroma-onset")
    local other = setmetatable({}, { __index = b })
    local ok, err = pcall(ranking.factorisation, other)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("factorises", 1, true), err)
  end)
end)

describe("ranking.search and ranking.rank_embeddings", function()
  -- an in-memory index of `n` files with 1 to 3 windows of random keys (the baseline: a dot product)
  local function synthetic(n)
    cocola.manual_seed(21)
    local files, per_file = {}, {}
    for i = 1, n do
      local w = (i % 3) + 1
      files[i] = { path = string.format("/lib/f%02d.wav", i), samples = (5 * w) * SR, windows = w }
      per_file[i] = cocola.randn({ w, 20 })
    end
    -- most windows first, then by path: the order ranking.index keeps
    local order = {}
    for i = 1, n do order[i] = i end
    table.sort(order, function(a, b)
      if files[a].windows ~= files[b].windows then return files[a].windows > files[b].windows end
      return files[a].path < files[b].path
    end)
    local sorted, keys, blocks = {}, {}, {}
    for r, i in ipairs(order) do sorted[r] = files[i] end
    for p = 1, 3 do
      local offset = #keys
      for r, i in ipairs(order) do
        if files[i].windows >= p then keys[#keys + 1] = per_file[i]:narrow(1, p, 1) end
        if r == #order then blocks[p] = { offset = offset, rows = #keys - offset } end
      end
    end
    return {
      format = ranking.FORMAT, settings = { window = 5.0, hop = 5.0, min_last = 2.5, sample_rate = SR },
      identity = { kind = "chroma-onset", mode = "both" }, key_size = 20, files = sorted, blocks = blocks,
      keys = cocola.cat(keys, 1),
    }, per_file, files
  end

  it("averages the query's window products over each file's shared windows", function()
    local index, per_file, files = synthetic(10)
    local q = cocola.randn({ 2, 20 })
    local found = ranking.search(index, q, 10 * SR)
    local qt = q:totable()
    for r, f in ipairs(index.files) do
      local i = tonumber(f.path:match("f(%d+)"))
      local k = math.min(2, files[i].windows)
      local e, want = per_file[i]:totable(), 0
      for p = 1, k do
        for c = 1, 20 do want = want + qt[p][c] * e[p][c] end
      end
      assert.are.equal(k, found.windows[r])
      assert.is_true(close(found.scores[r], want / k, 1e-5), f.path)
    end
  end)

  it("keeps the best N in the order of the full ranking", function()
    local index = synthetic(40)
    local b = require("cocola.baselines").load("chroma-onset")
    local q = cocola.randn({ 3, 20 })
    local all = ranking.rank_embeddings(b, q, 15 * SR, index)
    local best = ranking.rank_embeddings(b, q, 15 * SR, index, { top = 3 })
    assert.are.equal(40, all.n)
    assert.are.equal(40, best.n)
    assert.are.equal(3, #best.rows)
    for r = 1, 3 do
      assert.are.equal(all.rows[r].path, best.rows[r].path)
      assert.are.equal(r, best.rows[r].rank)
    end
    for r = 2, 40 do assert.is_true(all.rows[r - 1].score >= all.rows[r].score) end
    -- a query shorter than some files ends in a tail window: exact tails need its audio
    local ok, err = pcall(ranking.rank_embeddings, b, q:narrow(1, 1, 2), 8 * SR, index)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("exact tails need the query's audio", 1, true), err)
  end)
end)

describe("ranking.rank", function()
  local tmp, model
  -- lengths chosen for every case of the shared windows: equal lengths, a longer and a shorter file
  -- whose shared part ends in a tail window (ending at the shared length), a file of one window, one
  -- with the same windows but 0.3 s longer, and one whose last 2 s are too short for a tail
  local LENGTHS = { same = 13, long = 30, partial = 8, short = 6, near = 13.3, tailless = 12 }

  setup(function()
    tmp = files.tmpdir()
    model = frame_model()
    local fs = require "cocola.data.fs"
    fs.mkdir_p(tmp .. "/lib")
    fs.mkdir_p(tmp .. "/empty")
    audio.save(tmp .. "/cond.wav", music(13, 1), SR)
    local seed = 10
    for name, seconds in pairs(LENGTHS) do
      seed = seed + 1
      audio.save(tmp .. "/lib/" .. name .. ".wav", music(seconds, seed), SR)
    end
    local f = assert(io.open(tmp .. "/lib/readme.txt", "w"))
    f:write("not audio")
    f:close()
    f = assert(io.open(tmp .. "/broken.wav", "w"))
    f:write("RIFF but not really")
    f:close()
  end)
  teardown(function() os.execute("rm -rf '" .. tmp .. "'") end)

  local function by_name(result)
    local out = {}
    for _, row in ipairs(result.rows) do out[row.name] = row end
    return out
  end

  it("gives every candidate the score of scoring.score_files for that pair, best first", function()
    local r = ranking.rank(model, tmp .. "/cond.wav", { tmp .. "/lib" })
    assert.are.equal(6, r.n)
    assert.are.equal(6, #r.rows)
    assert.are.equal("cond", r.role)
    for i, row in ipairs(r.rows) do
      assert.are.equal(i, row.rank)
      if i > 1 then assert.is_true(r.rows[i - 1].score >= row.score) end
      local want = scoring.score_files(model, tmp .. "/cond.wav", row.path, { allow_mismatch = true })
      assert.is_true(close(row.score, want.mean), string.format("%s: %g vs %g", row.name, row.score, want.mean))
      assert.are.equal(#want.windows, row.windows, row.name)
      assert.is_true(close(row.overlap, want.duration), row.name)
      assert.is_true(close(row.duration, LENGTHS[row.name:gsub("%.wav$", "")]), row.name)
    end
    -- partial (8 s: 0-5 s and the tail 3-8 s) is shorter than the query and ends in a tail; long and
    -- near are longer while the shared 13 s ends in one (8-13 s); short (6 s) has no tail (1 s < 2.5 s):
    -- three windows embedded for their pairs
    assert.are.equal(3, r.tail_windows)
  end)

  it("ranks conditions against one accompaniment (the reverse) with CCS(condition, gen)", function()
    local r = ranking.rank(model, tmp .. "/cond.wav", { tmp .. "/lib" }, { role = "gen" })
    assert.are.equal("gen", r.role)
    for _, row in ipairs(r.rows) do
      local want = scoring.score_files(model, row.path, tmp .. "/cond.wav", { allow_mismatch = true })
      assert.is_true(close(row.score, want.mean), string.format("%s: %g vs %g", row.name, row.score, want.mean))
    end
    -- W is not symmetric: the reverse scores differ from the forward ones
    local forward = by_name(ranking.rank(model, tmp .. "/cond.wav", { tmp .. "/lib" }))
    local differs = false
    for _, row in ipairs(r.rows) do differs = differs or not close(row.score, forward[row.name].score, 1e-3) end
    assert.is_true(differs)
  end)

  it("with cached tails reads no audio and changes only the pairs that end in a tail window", function()
    local exact = by_name(ranking.rank(model, tmp .. "/cond.wav", { tmp .. "/lib" }))
    local cached = ranking.rank(model, tmp .. "/cond.wav", { tmp .. "/lib" }, { tails = "cached" })
    assert.are.equal(0, cached.tail_windows)
    for _, row in ipairs(cached.rows) do
      local name = row.name:gsub("%.wav$", "")
      if name == "same" or name == "tailless" or name == "short" then
        assert.is_true(close(row.score, exact[row.name].score, 1e-6), name)
      else
        assert.is_false(close(row.score, exact[row.name].score, 1e-6), name)
      end
    end
  end)

  it("puts a copy of the condition first with the chroma-onset baseline, and keeps the top N", function()
    local fs = require "cocola.data.fs"
    local b = require("cocola.baselines").load("chroma-onset")
    local lib = tmp .. "/with_copy"
    fs.mkdir_p(lib)
    audio.save(lib .. "/copy.wav", scoring.load(tmp .. "/cond.wav"), SR)
    audio.save(lib .. "/other.wav", music(13, 99), SR)
    audio.save(lib .. "/another.wav", music(13, 98), SR)
    local r = ranking.rank(b, tmp .. "/cond.wav", { lib }, { top = 2 })
    assert.are.equal(3, r.n)
    assert.are.equal(2, #r.rows)
    assert.are.equal("copy.wav", r.rows[1].name)
    assert.is_true(close(r.rows[1].score, 1.0, 1e-4), tostring(r.rows[1].score))
    for _, row in ipairs(r.rows) do
      local want = scoring.score_files(b, tmp .. "/cond.wav", row.path)
      assert.is_true(close(row.score, want.mean, 1e-5))
    end
  end)

  it("equals scoring.score_files for a paper-architecture HPSS model too (bilinear W)", function()
    local m = models.calibrated("hpss", 7)
    local r = ranking.rank(m, tmp .. "/lib/partial.wav", { tmp .. "/lib/short.wav", tmp .. "/lib/tailless.wav" })
    assert.are.equal(2, r.n)
    -- to 1e-3: score_files runs a pair's windows through the encoder as one batch, rank each file's
    -- on its own, and float32 convolutions of this random EfficientNet differ with the batch by that much
    for _, row in ipairs(r.rows) do
      local want = scoring.score_files(m, tmp .. "/lib/partial.wav", row.path, { allow_mismatch = true })
      assert.is_true(close(row.score, want.mean, 1e-3), string.format("%s: %g vs %g", row.name, row.score, want.mean))
    end
    assert.are.equal(1, r.tail_windows) -- tailless (12 s): its window ending at the query's 8 s; short (6 s) has no tail
  end)

  it("ranks a wave given in memory like its file", function()
    local from_file = by_name(ranking.rank(model, tmp .. "/cond.wav", { tmp .. "/lib" }))
    local r = ranking.rank(model, scoring.load(tmp .. "/cond.wav"), { tmp .. "/lib" })
    for _, row in ipairs(r.rows) do assert.is_true(close(row.score, from_file[row.name].score, 1e-6)) end
  end)

  it("names bad inputs clearly", function()
    local function err_of(...)
      local ok, err = pcall(...)
      assert.is_false(ok)
      return tostring(err)
    end
    assert.truthy(err_of(ranking.rank, model, tmp .. "/cond.wav", { tmp .. "/empty" }):find("no audio files", 1, true))
    assert.truthy(err_of(ranking.rank, model, tmp .. "/cond.wav", { tmp .. "/nope.wav" })
      :find("no such file or folder: '" .. tmp .. "/nope.wav'", 1, true))
    audio.save(tmp .. "/tiny.wav", music(4, 5), SR)
    assert.truthy(err_of(ranking.rank, model, tmp .. "/cond.wav", { tmp .. "/tiny.wav" })
      :find("'" .. tmp .. "/tiny.wav': audio too short: 4.000 s", 1, true))
    os.remove(tmp .. "/tiny.wav")
    assert.truthy(err_of(ranking.rank, model, tmp .. "/cond.wav", { tmp .. "/broken.wav" })
      :find("cannot read audio file '" .. tmp .. "/broken.wav'", 1, true))
    assert.truthy(err_of(ranking.rank, model, tmp .. "/missing-query.wav", { tmp .. "/lib" })
      :find("cannot read audio file", 1, true))
    assert.truthy(err_of(ranking.rank, model, tmp .. "/cond.wav", { tmp .. "/lib" }, { role = "both" })
      :find("role must be", 1, true))
    assert.truthy(err_of(ranking.rank, model, tmp .. "/cond.wav", { tmp .. "/lib" }, { top = 0 }):find("top", 1, true))
    -- keep_going records the unreadable file and ranks the rest
    local r = ranking.rank(model, tmp .. "/cond.wav", { tmp .. "/broken.wav", tmp .. "/lib/same.wav" }, { keep_going = true })
    assert.are.equal(1, r.n)
    assert.are.equal(1, #r.failed)
    assert.are.equal(tmp .. "/broken.wav", r.failed[1].path)
  end)
end)

describe("the rank index", function()
  local tmp, model

  setup(function()
    tmp = files.tmpdir()
    model = frame_model()
    local fs = require "cocola.data.fs"
    fs.mkdir_p(tmp .. "/lib")
    audio.save(tmp .. "/cond.wav", music(11, 1), SR)
    for i, seconds in ipairs({ 11, 16, 8 }) do audio.save(string.format("%s/lib/s%d.wav", tmp, i), music(seconds, 20 + i), SR) end
  end)
  teardown(function() os.execute("rm -rf '" .. tmp .. "'") end)

  local function scores(r)
    local out = {}
    for _, row in ipairs(r.rows) do out[ranking.absolute(row.path)] = row.score end
    return out
  end

  it("stores the window keys position-major with the files' metadata, and ranks as the files do", function()
    local path = tmp .. "/lib.cocola"
    local index = ranking.index(model, { tmp .. "/lib" }, { out = path })
    assert.are.equal(3, #index.report.embedded)
    -- 16 s: 3 windows (the 1 s tail is dropped), 11 s: 2, 8 s: 2 (the 3 s tail is kept); most first
    local windows = {}
    for i, f in ipairs(index.files) do windows[i] = f.windows end
    assert.are.same({ 3, 2, 2 }, windows)
    assert.are.equal(tmp .. "/lib/s2.wav", index.files[1].path)
    assert.are.same({ { offset = 0, rows = 3 }, { offset = 3, rows = 3 }, { offset = 6, rows = 1 } }, index.blocks)
    assert.are.equal(7, index.keys:size(1))
    local loaded = ranking.load_index(path, { model = model })
    assert.are.equal(index.identity.fingerprint, loaded.identity.fingerprint)
    assert.are.equal(16 * SR, loaded.files[1].samples)
    assert.is_true(loaded.keys:allclose(index.keys))
    local from_index = scores(ranking.rank(model, tmp .. "/cond.wav", path))
    local from_files = scores(ranking.rank(model, tmp .. "/cond.wav", { tmp .. "/lib" }))
    for p, s in pairs(from_files) do assert.is_true(close(from_index[p], s, 1e-6), p) end
  end)

  it("reuses unchanged files without embedding them and embeds a changed one again", function()
    local path = tmp .. "/reuse.cocola"
    ranking.index(model, { tmp .. "/lib" }, { out = path })
    local again = ranking.index(model, { tmp .. "/lib" }, { previous = path, out = path })
    assert.are.equal(0, #again.report.embedded)
    assert.are.equal(3, again.report.reused)
    -- a changed file (new audio, a different mtime) is embedded again, and only it
    local changed = tmp .. "/lib/s3.wav"
    audio.save(changed, music(8, 77), SR)
    lfs.touch(changed, os.time() + 5, os.time() + 5)
    local st = ranking.stale(ranking.load_index(path))
    assert.are.same({ changed }, { table.unpack(st.changed) })
    local updated = ranking.index(model, { tmp .. "/lib" }, { previous = path, out = path })
    assert.are.same({ changed }, { table.unpack(updated.report.embedded) })
    assert.are.equal(2, updated.report.reused)
    local r = ranking.rank(model, tmp .. "/cond.wav", path)
    local want = scoring.score_files(model, tmp .. "/cond.wav", changed, { allow_mismatch = true })
    assert.is_true(close(scores(r)[changed], want.mean))
  end)

  it("embeds a file that changed since indexing when ranking, and leaves out a missing one", function()
    local fs = require "cocola.data.fs"
    local lib = tmp .. "/lib2"
    fs.mkdir_p(lib)
    for i = 1, 3 do audio.save(string.format("%s/t%d.wav", lib, i), music(6 + i, 40 + i), SR) end
    local path = tmp .. "/refresh.cocola"
    ranking.index(model, { lib }, { out = path })
    audio.save(lib .. "/t1.wav", music(9, 50), SR)
    lfs.touch(lib .. "/t1.wav", os.time() + 7, os.time() + 7)
    os.remove(lib .. "/t3.wav")
    local r = ranking.rank(model, tmp .. "/cond.wav", path)
    assert.are.same({ lib .. "/t1.wav" }, { table.unpack(r.reembedded) })
    assert.are.same({ lib .. "/t3.wav" }, { table.unpack(r.missing) })
    assert.are.equal(2, r.n)
    local got = scores(r)
    assert.is_nil(got[lib .. "/t3.wav"])
    local want = scoring.score_files(model, tmp .. "/cond.wav", lib .. "/t1.wav", { allow_mismatch = true })
    assert.is_true(close(got[lib .. "/t1.wav"], want.mean))
    -- the index file was rewritten: nothing is stale the second time
    local second = ranking.rank(model, tmp .. "/cond.wav", path)
    assert.are.equal(0, #second.reembedded)
  end)

  it("drops files not listed when rebuilt, and keeps them as a cache with keep_previous", function()
    local path = tmp .. "/subset.cocola"
    ranking.index(model, { tmp .. "/lib" }, { out = path })
    local kept = ranking.index(model, { tmp .. "/lib/s1.wav" }, { previous = path, keep_previous = true })
    assert.are.equal(3, #kept.files)
    assert.are.equal(0, #kept.report.embedded)
    local only = ranking.index(model, { tmp .. "/lib/s1.wav" }, { previous = path })
    assert.are.equal(1, #only.files)
    assert.are.equal(2, #only.report.removed)
    -- ranking a subset of an index
    local r = ranking.rank(model, tmp .. "/cond.wav", kept, { files = { tmp .. "/lib/s2.wav" } })
    assert.are.equal(1, r.n)
    assert.are.equal(tmp .. "/lib/s2.wav", r.rows[1].path)
  end)

  it("refuses an index made with another model or other settings, and a file that is no index", function()
    local path = tmp .. "/other.cocola"
    ranking.index(model, { tmp .. "/lib/s1.wav" }, { out = path })
    local ok, err = pcall(ranking.load_index, path, { model = frame_model(6) })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("was made with another model", 1, true), err)
    ok, err = pcall(ranking.rank, require("cocola.baselines").load("chroma-onset"), tmp .. "/cond.wav", path)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("was made with another model", 1, true), err)
    ok, err = pcall(ranking.rank, model, tmp .. "/cond.wav", path, { hop = 2.5 })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("hop = 5, not 2.5", 1, true), err)
    -- the same weights in another object are the same model
    assert.is_truthy(ranking.load_index(path, { model = frame_model(5) }))
    local weights = tmp .. "/weights.safetensors"
    cocola.save(weights, model:state_dict())
    ok, err = pcall(ranking.load_index, weights)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("is not a cocola rank index", 1, true), err)
    ok, err = pcall(ranking.load_index, tmp .. "/lib/s1.wav")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("is not a cocola rank index", 1, true), err)
  end)
end)

describe("cocola rank and cocola index", function()
  local tmp, model_path, model

  setup(function()
    tmp = files.tmpdir()
    model = frame_model()
    model_path = tmp .. "/model.safetensors"
    cocola.save(model_path, model:state_dict())
    local fs = require "cocola.data.fs"
    fs.mkdir_p(tmp .. "/gens")
    fs.mkdir_p(tmp .. "/empty")
    audio.save(tmp .. "/cond.wav", music(9, 1), SR)
    for i, seconds in ipairs({ 9, 12, 6 }) do audio.save(string.format("%s/gens/g%d.wav", tmp, i), music(seconds, 60 + i), SR) end
  end)
  teardown(function() os.execute("rm -rf '" .. tmp .. "'") end)

  it("prints a ranked table, and writes CSV and JSON with the scores of score_files", function()
    local status, out, err = cocola_cmd(string.format(
      "rank --model '%s' --cond '%s/cond.wav' --candidates '%s/gens' --csv '%s/out.csv' --json '%s/out.json' -q --threads 1 --plot '%s/rank.png'",
      model_path, tmp, tmp, tmp, tmp, tmp), tmp)
    assert.are.equal(0, status, err)
    -- --plot: the three scores, one row of the picture each
    if os.execute("command -v gnuplot >/dev/null 2>&1") then
      local img = require("helpers.png").read(tmp .. "/rank.png")
      assert.are.same({ 900, 160 + 22 * 3 }, { img.width, img.height })
    end
    assert.truthy(out:find("rank%s+score%s+windows%s+seconds%s+file\n"), out)
    assert.truthy(out:find("3 accompaniments ranked against the condition", 1, true), out)
    local result = cjson.decode(read(tmp .. "/out.json"))
    assert.are.equal(3, #result.rows)
    assert.are.equal("cond", result.role)
    local csv = read(tmp .. "/out.csv")
    local lines = {}
    for line in csv:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal("rank,name,path,score,windows,overlap,duration", lines[1])
    assert.are.equal(4, #lines)
    for i, row in ipairs(result.rows) do
      assert.are.equal(i, row.rank)
      local want = scoring.score_files(model, tmp .. "/cond.wav", row.path, { allow_mismatch = true })
      assert.is_true(close(row.score, want.mean), row.path)
      local rank, name, path, score = lines[i + 1]:match("^(%d+),([^,]+),([^,]+),([^,]+),")
      assert.are.equal(i, tonumber(rank))
      assert.are.equal(row.name, name)
      assert.are.equal(row.path, path)
      assert.is_true(close(tonumber(score), row.score, 1e-8))
      -- the table shows the same order
      assert.truthy(out:find(string.format("\n%4d  %10.4f", i, row.score), 1, true), out)
    end
  end)

  it("ranks conditions against an accompaniment with --gen --conditions, the best N with --top", function()
    local status, out, err = cocola_cmd(string.format(
      "rank -m '%s' --gen '%s/cond.wav' --conditions '%s/gens/g1.wav' '%s/gens/g2.wav' '%s/gens/g3.wav' --top 2 --json -q --threads 1",
      model_path, tmp, tmp, tmp, tmp), tmp)
    assert.are.equal(0, status, err)
    local result = cjson.decode(out)
    assert.are.equal("gen", result.role)
    assert.are.equal(3, result.n)
    assert.are.equal(2, #result.rows)
    for _, row in ipairs(result.rows) do
      local want = scoring.score_files(model, row.path, tmp .. "/cond.wav", { allow_mismatch = true })
      assert.is_true(close(row.score, want.mean), row.path)
    end
  end)

  it("builds an index once and ranks against it; a second index run embeds nothing", function()
    local idx = tmp .. "/lib.cocola"
    local status, out, err = cocola_cmd(string.format("index -m '%s' --out '%s' '%s/gens' -q --threads 1", model_path, idx, tmp), tmp)
    assert.are.equal(0, status, err)
    assert.truthy(out:find("wrote " .. idx .. ": 3 files, ", 1, true), out)
    assert.truthy(out:find("embedded 3, reused 0, removed 0", 1, true), out)
    status, out, err = cocola_cmd(string.format("index -m '%s' --out '%s' '%s/gens' -q --threads 1", model_path, idx, tmp), tmp)
    assert.are.equal(0, status, err)
    assert.truthy(out:find("embedded 0, reused 3, removed 0", 1, true), out)
    status, out, err = cocola_cmd(string.format("rank -m '%s' --cond '%s/cond.wav' --index '%s' --csv - -q --threads 1",
      model_path, tmp, idx), tmp)
    assert.are.equal(0, status, err)
    local n = 0
    for line in out:gmatch("[^\n]+") do
      n = n + 1
      if n > 1 then
        local path, score = line:match("^%d+,[^,]+,([^,]+),([^,]+),")
        local want = scoring.score_files(model, tmp .. "/cond.wav", path, { allow_mismatch = true })
        assert.is_true(close(tonumber(score), want.mean), line)
      end
    end
    assert.are.equal(4, n)
    -- --index with --candidates keeps them there and reuses them
    local cache = tmp .. "/cache.cocola"
    status, out, err = cocola_cmd(string.format("rank -m '%s' -c '%s/cond.wav' --candidates '%s/gens/g1.wav' --index '%s' -q --threads 1",
      model_path, tmp, tmp, cache), tmp)
    assert.are.equal(0, status, err)
    assert.truthy(out:find("(1 files; 1 embedded now)", 1, true), out)
    status, out, err = cocola_cmd(string.format("rank -m '%s' -c '%s/cond.wav' --candidates '%s/gens' --index '%s' -q --threads 1",
      model_path, tmp, tmp, cache), tmp)
    assert.are.equal(0, status, err)
    assert.truthy(out:find("(3 files; 2 embedded now)", 1, true), out)
  end)

  it("fails with one line for bad inputs and an index of another model", function()
    local idx = tmp .. "/mine.cocola"
    local status, _, err = cocola_cmd(string.format("index -m '%s' --out '%s' '%s/gens/g1.wav' -q", model_path, idx, tmp), tmp)
    assert.are.equal(0, status, err)
    local cases = {
      { string.format("rank -m chroma-onset --cond '%s/cond.wav' --index '%s'", tmp, idx), "was made with another model" },
      { string.format("index -m chroma-onset --out '%s' '%s/gens'", idx, tmp), "was made with another model" },
      { string.format("rank -m '%s' --cond '%s/cond.wav' --candidates '%s/empty'", model_path, tmp, tmp), "no audio files" },
      { string.format("rank -m '%s' --cond '%s/nope.wav' --candidates '%s/gens'", model_path, tmp, tmp), "no such file: '" .. tmp .. "/nope.wav'" },
      { string.format("rank -m '%s' --cond '%s/cond.wav' --candidates '%s/gens/none.wav'", model_path, tmp, tmp), "no such file or folder" },
      { string.format("rank -m '%s' --cond '%s/cond.wav' --candidates '%s/model.safetensors'", model_path, tmp, tmp), "cannot read audio file" },
      { string.format("rank -m '%s' --cond '%s/cond.wav' --gen '%s/cond.wav' --candidates '%s/gens'", model_path, tmp, tmp, tmp), "one of --cond and --gen" },
      { string.format("rank -m '%s' --cond '%s/cond.wav' --conditions '%s/gens'", model_path, tmp, tmp), "with --cond, give the accompaniments" },
      { string.format("rank -m '%s' --cond '%s/cond.wav'", model_path, tmp), "nothing to rank" },
      { string.format("rank -m '%s' --cond '%s/cond.wav' --index '%s/none.cocola'", model_path, tmp, tmp), "no such index file" },
      { string.format("rank -m '%s' --cond '%s/cond.wav' --index '%s/model.safetensors'", model_path, tmp, tmp), "is not a cocola rank index" },
      { string.format("rank -m '%s' --cond '%s/cond.wav' --candidates '%s/gens' --top 0", model_path, tmp, tmp), "--top must be at least 1" },
      { string.format("index -m '%s' --out '%s/cond.wav' '%s/gens'", model_path, tmp, tmp), "is not a cocola rank index" },
    }
    for _, c in ipairs(cases) do
      local st, _, e = cocola_cmd(c[1] .. " -q --threads 1", tmp)
      one_line_error(st, e, c[2])
    end
    -- --rebuild replaces an index of another model
    status, _, err = cocola_cmd(string.format("index -m chroma-onset --rebuild --out '%s' '%s/gens/g1.wav' -q", idx, tmp), tmp)
    assert.are.equal(0, status, err)
    assert.are.equal("chroma-onset", ranking.load_index(idx).identity.kind)
  end)
end)
