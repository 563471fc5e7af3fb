-- fad_spec.lua — cocola.metrics.fad, the Fréchet audio distance: statistics (mean, np.cov with N - 1)
-- and the distance against NumPy/SciPy references (spec/fixtures/gen_fad.py: scipy.linalg.sqrtm of
-- cov_a cov_b and the eigenvalue route) for random sets of several D and N, rank-deficient sets (N < D,
-- duplicated columns) and a nearly identical pair; streaming statistics (file by file, merged halves,
-- saved and loaded) equal to one-shot ones; the eps retry; FAD-inf's determinism; and every misuse as a
-- clear error.
local cocola = require "cocola"
local fad = require "cocola.metrics.fad"

local fx, md = cocola.load("spec/fixtures/fad.safetensors")
local CASES = {}
for name in md.cases:gmatch("[^,]+") do CASES[#CASES + 1] = name end

local function num(t) return t:totable()[1] end

--- max |a - b| / max |b| over two tensors of one shape
local function max_rel(a, b)
  local scale = b:abs():max():item()
  local diff = (a:double() - b:double()):abs():max():item()
  return scale > 0 and diff / scale or diff
end

local raises = require("helpers.compare").raises

describe("fad statistics", function()
  it("is cocola.metrics.fad", function() assert.are.equal(fad, cocola.metrics.fad) end)

  it("mean and covariance (N - 1) match NumPy within 1e-12", function()
    for _, name in ipairs(CASES) do
      for _, side in ipairs({ "a", "b" }) do
        local st = fad.stats():add(fx[name .. "/" .. side])
        assert.are.equal(fx[name .. "/" .. side]:size(1), st:count())
        assert.are.equal("float64", st:mean():dtype())
        assert.are.equal("float64", st:cov():dtype())
        assert(max_rel(st:mean(), fx[name .. "/mu_" .. side]) < 1e-12, name .. " mean")
        assert(max_rel(st:cov(), fx[name .. "/cov_" .. side]) < 1e-12, name .. " cov")
      end
    end
  end)

  it("file by file, in merged parts, and saved and loaded, equals one-shot statistics within 1e-12", function()
    local x = fx["rand_d32/a"] -- (300, 32)
    local once = fad.stats():add(x)
    -- uneven files, some of a single frame
    local sizes, files, pos = { 1, 7, 40, 1, 2, 99, 50, 100 }, {}, 0
    for _, s in ipairs(sizes) do
      files[#files + 1] = x:narrow(1, pos + 1, s)
      pos = pos + s
    end
    assert.are.equal(300, pos)
    local streamed = fad.stats()
    for _, f in ipairs(files) do streamed:add(f) end
    -- two "folders" merged, and a merge into a fresh accumulator
    local left, right = fad.stats(32), fad.stats()
    for i = 1, 4 do left:add(files[i]) end
    for i = 5, #files do right:add(files[i]) end
    local merged = fad.stats():merge(left):merge(right)
    local reversed = fad.stats():merge(right):merge(left)
    local dir = os.tmpname()
    local p1, p2 = dir .. ".left.safetensors", dir .. ".right.safetensors"
    left:save(p1)
    right:save(p2)
    local loaded = fad.load_stats(p1):merge(fad.load_stats(p2))
    os.remove(p1)
    os.remove(p2)
    os.remove(dir)
    for _, st in ipairs({ streamed, merged, reversed, loaded }) do
      assert.are.equal(300, st:count())
      assert(max_rel(st:mean(), once:mean()) < 1e-12)
      assert(max_rel(st:cov(), once:cov()) < 1e-12)
      assert(max_rel(st:cov(), fx["rand_d32/cov_a"]) < 1e-12)
    end
    -- float32 input is widened: the same as its float64 copy
    local x32 = x:float()
    assert(max_rel(fad.stats():add(x32):cov(), fad.stats():add(x32:double()):cov()) < 1e-15)
    -- an empty file changes nothing
    local before = streamed:cov()
    streamed:add(cocola.zeros({ 0, 32 }))
    assert.are.equal(300, streamed:count())
    assert(max_rel(streamed:cov(), before) == 0)
  end)

  it("mean() and cov() are copies", function()
    local st = fad.stats():add(fx["rand_d8/a"])
    local m = st:mean()
    m:fill_(0)
    assert(max_rel(st:mean(), fx["rand_d8/mu_a"]) < 1e-12)
  end)
end)

describe("fad distance", function()
  local report = {}

  it("matches scipy.linalg.sqrtm's and the eigenvalue route within 1e-6 relative (1e-9 absolute near 0)", function()
    for _, name in ipairs(CASES) do
      local a, b = fx[name .. "/a"], fx[name .. "/b"]
      local ref, ref_eig = num(fx[name .. "/fad_sqrtm"]), num(fx[name .. "/fad_eig"])
      local d1, used1 = fad.score(a, b)
      local d2, used2 = fad.frechet_distance(fx[name .. "/mu_a"], fx[name .. "/cov_a"], fx[name .. "/mu_b"], fx[name .. "/cov_b"])
      assert.is_false(used1)
      assert.is_false(used2)
      assert.are.equal(md[name .. "/fallback"] == "1", false)
      for _, d in ipairs({ d1, d2 }) do
        if math.abs(ref) < 1e-6 then
          assert(math.abs(d - ref) < 1e-9, string.format("%s: %.17g vs %.17g", name, d, ref))
          assert(math.abs(d - ref_eig) < 1e-9, string.format("%s: %.17g vs %.17g", name, d, ref_eig))
        else
          assert(math.abs(d - ref) / math.abs(ref) < 1e-6, string.format("%s: %.17g vs %.17g", name, d, ref))
          assert(math.abs(d - ref_eig) / math.abs(ref_eig) < 1e-6, string.format("%s: %.17g vs %.17g", name, d, ref_eig))
        end
      end
      if math.abs(ref) < 1e-6 then
        report[#report + 1] = string.format("%s %.3e (absolute)", name, math.abs(d1 - ref))
      else
        report[#report + 1] = string.format("%s %.3e", name, math.abs(d1 - ref) / math.abs(ref))
      end
    end
  end)

  it("takes statistics, tensors, lists of files, and float32 moments", function()
    local a, b = fx["rand_d8/a"], fx["rand_d8/b"]
    local ref = num(fx["rand_d8/fad_sqrtm"])
    local files = { a:narrow(1, 1, 20), a:narrow(1, 21, 30) }
    assert(math.abs(fad.score(files, fad.stats():add(b)) - ref) / ref < 1e-9)
    local d32 = fad.frechet_distance(fx["rand_d8/mu_a"]:float(), fx["rand_d8/cov_a"]:float(), fx["rand_d8/mu_b"],
      fx["rand_d8/cov_b"])
    assert(math.abs(d32 - ref) / ref < 1e-5)
  end)

  it("is 0 for a set against itself and symmetric", function()
    local a, b = fx["rand_d64/a"], fx["rand_d64/b"]
    assert(math.abs(fad.score(a, a)) < 1e-9)
    local ab, ba = fad.score(a, b), fad.score(b, a)
    assert(math.abs(ab - ba) / ab < 1e-10)
  end)

  it("retries with eps on the diagonals when the square root term is not finite, and says so", function()
    -- overflowing covariances make the first attempt non-finite; the retry fails too, with a clear error
    local big = cocola.tensor({ { 1e300, 0 }, { 0, 1e300 } }, { dtype = "float64" })
    local mu = cocola.zeros({ 2 }, { dtype = "float64" })
    raises(function() fad.frechet_distance(mu, big, mu, big) end, "not finite", "eps")
    -- the retry adds eps inside the square root only: compare with the closed form for diagonal covariances
    local s1 = cocola.tensor({ { 4, 0 }, { 0, 0 } }, { dtype = "float64" })
    local s2 = cocola.tensor({ { 1, 0 }, { 0, 9 } }, { dtype = "float64" })
    local d, used = fad.frechet_distance(mu, s1, mu, s2, { eps = 1e-6 })
    assert.is_false(used)
    assert(math.abs(d - (4 + 10 - 2 * 2)) < 1e-12)
  end)

  it("rejects bad input with clear errors", function()
    local a = fx["rand_d8/a"]
    local mu, cov = fx["rand_d8/mu_a"], fx["rand_d8/cov_a"]
    raises(function() fad.score(a:narrow(1, 1, 1), a) end, "needs at least 2 embedding frames, got 1")
    raises(function() fad.score(a, fad.stats(8)) end, "needs at least 2 embedding frames, got 0")
    raises(function() fad.stats():add(a:narrow(1, 1, 1)):cov() end, "needs at least 2 embedding frames, got 1")
    raises(function() fad.stats():add(cocola.zeros({ 3, 4, 5 })) end, "(frames, D)", "3-d")
    raises(function() fad.stats():add(cocola.tensor({ { 1, 2 }, { 3, 4 } }, { dtype = "int64" })) end, "int64")
    raises(function() fad.stats():add(a):add(cocola.zeros({ 4, 9 })) end, "D = 9", "D = 8")
    raises(function() fad.stats():add({ 1, 2 }) end, "expected an embedding tensor")
    raises(function() fad.stats(8):merge(fad.stats():add(fx["rand_d32/a"])) end, "D = 8", "D = 32")
    raises(function() fad.stats():merge({}) end, "expected statistics")
    raises(function() fad.score(a, fx["rand_d32/b"]) end, "D = 8", "D = 32")
    raises(function() fad.score(a, "x") end, "second set")
    raises(function() fad.frechet_distance(cov, cov, mu, cov) end, "mu1", "vector")
    raises(function() fad.frechet_distance(mu, mu, mu, cov) end, "cov1", "matrix")
    raises(function() fad.frechet_distance(mu, cov, fx["rand_d32/mu_a"], cov) end, "mismatched dimensions")
    raises(function() fad.frechet_distance(mu, cov, mu:to("int64"), cov) end, "mu2", "int64")
    raises(function() fad.frechet_distance(mu, cov, mu, cov, { eps = -1 }) end, "eps")
    local nan = cov:clone()
    nan:fill_(0 / 0)
    raises(function() fad.frechet_distance(mu, cov, mu, nan) end, "cov2", "NaN")
    raises(function() fad.stats():add(cocola.full({ 3, 2 }, 1 / 0)) end, "NaN or infinite")
    raises(function() fad.load_stats("spec/fixtures/fad.safetensors") end, "not a file of FAD statistics")
    raises(function() fad.stats():save("never-written.safetensors") end, "no embedding frames")
  end)

  teardown(function()
    if #report > 0 then print("\nFAD error against scipy sqrtm (relative): " .. table.concat(report, ", ")) end
  end)
end)

describe("fad.score_inf", function()
  it("is deterministic for a seed, leaves the global random state alone, and fits FAD against 1/n", function()
    local base, x = fx["rand_d32/a"], fx["rand_d32/b"] -- 250 eval frames
    cocola.manual_seed(7)
    local s0, o0 = cocola.get_rng_state()
    local r1 = fad.score_inf(base, x, { seed = 3, steps = 6, min_n = 100 })
    local s1, o1 = cocola.get_rng_state()
    assert.are.equal(s0, s1)
    assert.are.equal(o0, o1)
    local r2 = fad.score_inf(fad.stats():add(base), { x:narrow(1, 1, 100), x:narrow(1, 101, 150) },
      { seed = 3, steps = 6, min_n = 100 })
    assert.are.equal(r1.score, r2.score)
    local r3 = fad.score_inf(base, x, { seed = 4, steps = 6, min_n = 100 })
    assert.are_not.equal(r1.score, r3.score)
    -- the sizes of numpy.linspace(100, 250, 6) as int(): 100, 130, 160, 190, 220, 250
    local ns = {}
    for i, p in ipairs(r1.points) do ns[i] = p[1] end
    assert.are.same({ 100, 130, 160, 190, 220, 250 }, ns)
    -- the intercept and slope are the least-squares line through the points
    local sx, sy, sxx, sxy = 0, 0, 0, 0
    for _, p in ipairs(r1.points) do
      local xi, yi = 1 / p[1], p[2]
      sx, sy, sxx, sxy = sx + xi, sy + yi, sxx + xi * xi, sxy + xi * yi
    end
    local n = #r1.points
    local slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    assert(math.abs(slope - r1.slope) / math.abs(slope) < 1e-6)
    assert(math.abs((sy - slope * sx) / n - r1.score) < 1e-6 * math.abs(r1.score) + 1e-9)
    assert(r1.r2 <= 1)
    raises(function() fad.score_inf(base, x, { min_n = 500 }) end, "fewer than min_n = 500")
    raises(function() fad.score_inf(base, fx["rand_d8/b"], { min_n = 10 }) end, "D = 32", "D = 8")
  end)
end)
