-- recipes/bench_rank.lua — benchmark of `cocola rank` over a cached library: a synthetic index of
-- `stems` stems of `windows` windows each (30 s stems: 6 windows of 5 s) with random keys of the
-- real sizes (the bundled chroma-onset model: 157 frames x 48 + 48 = 7584 values per window; the
-- paper's HPSS model: 512), written to an index file and loaded back; then one query of `windows`
-- windows ranked against it (ranking.rank_embeddings: query vectors, one product per query window
-- over its block of keys, per-file means over the shared windows, the best 10). Median ms beside
-- PyTorch doing the same products, per-file means and sort in the same run (/usr/bin/python3 with
-- torch, `threads` threads; "n/a" without it). Loading the index checks the model's fingerprint
-- (a few hundred ms for the 5 M weights of the HPSS model); PyTorch reads the same file's bytes
-- with numpy.fromfile. Both loads come from the page cache (after a sync); writing is bound by the
-- disk (neither side waits for the data to reach it).
-- Usage: lua5.4 recipes/bench_rank.lua [stems=10000] [windows=6] [threads=2] [repeats=5] [torch=true]
--        [dir=/tmp] [hpss=true]
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local ranking = require "cocola.ranking"
local lfs = require "lfs"

local config = recipe.config({ stems = 10000, windows = 6, threads = 2, repeats = 5, torch = true, dir = "/tmp",
  hpss = true, seed = 0 }, arg)
recipe.log_config(config)
cocola.set_num_threads(config.threads)
cocola.manual_seed(config.seed)

local SR, SECONDS = 16000, 5 * config.windows

local function median_ms(label, repeats, fn)
  fn() -- warm-up
  local times = {}
  for r = 1, repeats do
    local t0 = cocola.wall_time()
    fn()
    times[#times + 1] = (cocola.wall_time() - t0) * 1000
    io.stderr:write(string.format("\r%s %d/%d", label, r, repeats))
  end
  io.stderr:write("\n")
  table.sort(times)
  return times[(#times + 1) // 2]
end

local function once_ms(fn)
  local t0 = cocola.wall_time()
  local out = fn()
  return (cocola.wall_time() - t0) * 1000, out
end

-- a synthetic index: `stems` files of `windows` windows, random keys (position-major blocks)
local function synthetic_index(model, key_size)
  local files, blocks = {}, {}
  for i = 1, config.stems do
    files[i] = {
      path = string.format("/synthetic/stem%05d.wav", i), size = SECONDS * SR * 2 + 44, mtime = 0,
      samples = SECONDS * SR, duration = SECONDS, windows = config.windows,
    }
  end
  for p = 1, config.windows do blocks[p] = { offset = (p - 1) * config.stems, rows = config.stems } end
  return {
    format = ranking.FORMAT, identity = ranking.model_identity(model), settings = {
      window = 5.0, hop = 5.0, min_last = 2.5, sample_rate = SR,
    }, key_size = key_size, files = files, blocks = blocks,
    keys = cocola.randn({ config.stems * config.windows, key_size }),
  }
end

local function torch_figures(spec)
  if not config.torch then return nil end
  local script = [[
import json, sys, time
try:
    import torch, numpy as np
except Exception:
    print("{}"); sys.exit(0)
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
torch.manual_seed(0)
N, W, F, T, d, R = a["stems"], a["windows"], a["key_size"], a["frames"], a["dim"], a["repeats"]
def median_ms(fn):
    fn()
    ts = []
    for _ in range(R):
        t0 = time.perf_counter(); fn(); ts.append((time.perf_counter() - t0) * 1000)
    ts.sort(); return ts[(len(ts) - 1) // 2]
out = {"torch": torch.__version__}
if a.get("index"):
    def load():
        with open(a["index"], "rb") as f:
            n = int.from_bytes(f.read(8), "little")
        return torch.from_numpy(np.fromfile(a["index"], dtype=np.float32, offset=8 + n)).reshape(N * W, F)
    keys = None
    def reload():
        global keys
        keys = None
        keys = load()
    load_R, R = R, 3
    out["load_ms"] = median_ms(reload)
    R = load_R
else:
    keys = torch.randn(N * W, F)
e = torch.randn(W, F - d if T > 1 else F)
Wm, Vm = torch.randn(d, d), torch.randn(d, d)
def rank():
    if T > 1:   # frame-bilinear: [(1/T) y_t W, mean(y) V]
        q = torch.cat([(e.reshape(W * T, d) @ Wm).reshape(W, T * d) / T, e.reshape(W, T, d).mean(1) @ Vm], 1)
    else:       # bilinear: y W
        q = e @ Wm
    acc = torch.zeros(N, dtype=torch.float64)
    for p in range(W):
        acc += (q[p:p + 1] @ keys[p * N:(p + 1) * N].t()).reshape(N).double()
    mean = acc / W
    return torch.argsort(mean, descending=True)
out["rank_ms"] = median_ms(rank)
if a.get("write"):
    t0 = time.perf_counter(); keys.numpy().tofile(a["write"]); out["write_ms"] = (time.perf_counter() - t0) * 1000
print(json.dumps(out))
]]
  local cjson = require "cjson"
  local args = cjson.encode(spec):gsub("'", "'\\''")
  local cmd = string.format("/usr/bin/python3 -c '%s' '%s' 2>/dev/null", script:gsub("'", "'\\''"), args)
  local p = io.popen(cmd)
  local out = p and p:read("a") or ""
  if p then p:close() end
  if out:match("^%s*{") then
    local t = cjson.decode(out)
    if t.torch then return t end
  end
  return nil
end

-- one layout: write, load, rank; returns the table rows and the torch version seen
local function bench(label, model, embedding_size, frames, dim)
  local key_size = ranking.factorisation(model).key_size(embedding_size)
  local index_path = string.format("%s/bench_rank_%d.cocola", config.dir, key_size)
  local raw_path = index_path .. ".raw"
  local rows, torch_version
  local ok, err = pcall(function()
    io.stderr:write(string.format("%s: %d stems x %d windows x %d values (%.2f GB)\n", label, config.stems,
      config.windows, key_size, config.stems * config.windows * key_size * 4 / 2 ^ 30))
    local index = synthetic_index(model, key_size)
    local write_ms = once_ms(function() ranking.save_index(index, index_path) end)
    index = nil
    collectgarbage()
    collectgarbage()
    os.execute("sync") -- the loads below read the page cache, not a file still being written back
    -- loads from the page cache (the file was just written): a warm-up, then the median of 3
    local load_ms = median_ms("load " .. label, 3, function()
      ranking.load_index(index_path, { model = model })
      collectgarbage()
      collectgarbage()
    end)
    local loaded = ranking.load_index(index_path, { model = model })
    local query = cocola.randn({ config.windows, embedding_size })
    local result
    local rank_ms = median_ms("rank " .. label, config.repeats, function()
      result = ranking.rank_embeddings(model, query, SECONDS * SR, loaded, { top = 10, tails = "cached" })
    end)
    assert(result.n == config.stems, "every stem ranked")
    loaded = nil
    collectgarbage()
    collectgarbage()
    local t = torch_figures({
      stems = config.stems, windows = config.windows, key_size = key_size, frames = frames, dim = dim,
      repeats = config.repeats, threads = config.threads, index = index_path, write = raw_path,
    })
    torch_version = t and t.torch
    local gb = string.format("%.2f GB", config.stems * config.windows * key_size * 4 / 2 ^ 30)
    rows = {
      { string.format("%s: rank 1 query (%d windows) vs %d stems", label, config.windows, config.stems), rank_ms, t and t.rank_ms },
      { string.format("%s: load the index file (%s)", label, gb), load_ms, t and t.load_ms },
      { string.format("%s: write the index file (%s; PyTorch: raw tofile)", label, gb), write_ms, t and t.write_ms },
    }
  end)
  os.remove(index_path)
  os.remove(raw_path)
  if not ok then error(err, 0) end
  return rows, torch_version
end

if lfs.attributes(config.dir, "mode") ~= "directory" then error("dir=" .. config.dir .. " is not a folder", 0) end
local rows, torch_version = {}, nil

-- the small layout first, so that its timings do not share the disk with the large file's writeback
if config.hpss then
  local hpss = cocola.models.cocola { input = "hpss" }:eval()
  local r, v = bench("HPSS (512-d)", hpss, 512, 1, 512)
  for _, row in ipairs(r) do rows[#rows + 1] = row end
  torch_version = torch_version or v
end

local bundled = require("cocola.models.cocola").default()
local T = bundled:features(cocola.zeros({ 1, 5 * SR })):size(4) -- frames of a 5 s window (157)
local r, v = bench("chroma-onset (bundled)", bundled, T * bundled.embedding_dim, T, bundled.embedding_dim)
for _, row in ipairs(r) do rows[#rows + 1] = row end
torch_version = torch_version or v

print(string.format("\nranking over a cached library: %d stems x %d windows (%d s each), %d threads, median of %d (load: of 3; write: once)",
  config.stems, config.windows, SECONDS, config.threads, config.repeats))
recipe.print_ratio_table(rows)
if torch_version then print("PyTorch " .. torch_version) else print("PyTorch not available: ratio not measured") end
