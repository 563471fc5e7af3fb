-- distributed_spec.lua — cocola.distributed and data-parallel COCOLA training under
-- `mpirun --oversubscribe -np 2` on this machine:
--  * the collectives (all_reduce sum/mean/max, all_gather, broadcast, barrier, int64), the gradient
--    paths of gather_with_grad and all_reduce_with_grad, bucketed gradient averaging, a shape
--    mismatch named with both shapes, and a barrier that a departed rank never joins timing out;
--  * 2 ranks of K/2 windows with synchronised BatchNorm give the losses and weights of one process
--    with K (float32 reduction-order tolerance) for several steps;
--  * 2 ranks with per-rank BatchNorm give what one process computes with simulate_ranks=2 (the
--    documented semantics: each rank's BatchNorm sees its own rows), not the one-process losses;
--  * a rank killed (SIGKILL) mid-run makes the run exit non-zero promptly; a rank that hangs (SIGSTOP)
--    makes the others stop with the timeout error; a resume from the last checkpoint continues
--    exactly as the uninterrupted run.
-- Pending where this build has no MPI or mpirun is not installed.
local cocola = require "cocola"
local core = require "cocola.core"
local files = require "helpers.files"
local stems = require "helpers.stems"

local has_mpirun = os.execute("command -v mpirun >/dev/null 2>&1") == true
local usable = core._dist_available() and has_mpirun
local MPIRUN = "mpirun --oversubscribe --allow-run-as-root -np 2 "
-- where the shared-memory single-copy mechanism (CMA) is refused (some containers forbid
-- process_vm_readv), large messages fail: fall back to copy-in/copy-out there
if usable then
  local p = io.popen("timeout 60 " .. MPIRUN .. "lua5.4 spec/helpers/dist_collectives.lua 10 probe 2>&1")
  local out = p:read("a")
  p:close()
  if not out:find("probe 8388608", 1, true) then
    MPIRUN = "mpirun --oversubscribe --allow-run-as-root --mca btl_vader_single_copy_mechanism none -np 2 "
  end
end

local function lines(path)
  local out = {}
  local f = io.open(path)
  if not f then return out end
  for l in f:lines() do out[#out + 1] = tonumber(l) end
  f:close()
  return out
end

local function max_rel(a, b)
  local worst = 0
  for i = 1, #a do worst = math.max(worst, math.abs(a[i] - b[i]) / math.max(1, math.abs(a[i]))) end
  return worst
end

-- weights of two checkpoints: the largest difference, the mean difference (parameters, not running statistics)
local function weight_diff(path_a, path_b)
  local a, b = cocola.load(path_a), cocola.load(path_b)
  local worst, total, count = 0, 0, 0
  for k, t in pairs(a) do
    if t:dtype() == "float32" and not k:match("running_") then
      local d = (t - b[k]):abs()
      worst = math.max(worst, d:max():item())
      total, count = total + d:sum():item(), count + t:numel()
    end
  end
  return worst, total / count
end

if not usable then
  describe("cocola.distributed", function()
    pending(not core._dist_available() and "this build has no MPI (install libopenmpi-dev and rebuild)"
      or "mpirun is not installed (Debian: openmpi-bin)")
  end)
  return
end

describe("cocola.distributed", function()
  it("runs the collectives, checks shapes and times out on a departed rank", function()
    local out = os.tmpname()
    local t0 = cocola.wall_time()
    files.sh("timeout 60 " .. MPIRUN .. "lua5.4 spec/helpers/dist_collectives.lua 3 >" .. out .. " 2>&1")
    local got = {}
    for l in io.lines(out) do
      local r, k, v = l:match("^(%d) (%S+) (.*)$")
      if r then got[r .. k] = v end
    end
    for _, r in ipairs({ "0", "1" }) do
      assert.are.equal("2", got[r .. "world"])
      assert.are.equal("3.0,6.0,9.0", got[r .. "sum"])
      assert.are.equal("3.0,6.0", got[r .. "mean"])
      assert.are.equal("1.0,0.0", got[r .. "max"])
      assert.are.equal("0.0,10.0,1.0,11.0", got[r .. "gather"])
      assert.are.equal("6.0,7.0", got[r .. "broadcast"])
      assert.are.equal("6", got[r .. "int64"])
      assert.are.equal("1.0,2.0,2.0,4.0", got[r .. "gathered"])
      assert.are.equal("3.0,4.0", got[r .. "reduced"])
      assert.are.equal("3.0,2.0", got[r .. "reduce_grad"])
      assert.are.equal("1.5,3.0,4.5", got[r .. "avg_p"])
      assert.are.equal("2.0,2.0,2.0,2.0", got[r .. "avg_q"])
      assert.are.equal("distributed: all_reduce: the tensors differ across ranks: rank 0 has (1, 3) float32, rank 1 has (2, 3) float32",
        got[r .. "mismatch"])
    end
    -- rank r's rows get the sum over ranks of the gradient of its rows (w's row r + 1, twice)
    assert.are.equal("2.0,4.0", got["0gather_grad"])
    assert.are.equal("6.0,8.0", got["1gather_grad"])
    assert.truthy(got["0timeout"]:find("distributed: barrier timed out on rank 0 after 3 s", 1, true), got["0timeout"])
    local waited = tonumber(got["0waited"])
    assert.is_true(waited >= 2.9 and waited < 6, "waited " .. tostring(waited))
    assert.truthy(got["0after"]:find("after an earlier failure", 1, true))
    assert.is_true(cocola.wall_time() - t0 < 40)
  end)
end)

describe("data-parallel COCOLA training (2 ranks)", function()
  local root = files.tmpdir()
  for _, split in ipairs({ "train", "validation" }) do
    for t = 1, 4 do stems.track(root, split, t, { "Piano", "Bass", "Drums" }, { seconds = 4, wobble = true }) end
  end
  -- the tiny run: K = 4 windows of 1 s, the paper's model (EfficientNet-B0, dropout 0.1,
  -- drop-connect, random HPSS mode), Adam lr 1e-4
  local ARGS = table.concat({ "layout=slakh", "root=" .. root, "valid_split=validation", "batch_size=4", "window=1.0",
    "valid_batches=1", "seed=3", "plots=false", "bn_recalibration_batches=0", "lr=1e-4", "checkpoint_every=2",
    "dist_timeout=20" }, " ")
  local STEPS = 4

  local function one(out, extra)
    local result = out .. ".losses"
    local ok, text = files.sh(string.format("timeout 300 lua5.4 spec/helpers/dist_train.lua %s threads=1 max_steps=%d out=%s result=%s %s",
      ARGS, STEPS, out, result, extra or ""))
    assert(ok, text)
    return lines(result)
  end
  local function two(out, extra, limit)
    local result = out .. ".losses"
    local ok, text = files.sh(string.format("timeout %d %slua5.4 spec/helpers/dist_train.lua %s threads=1 max_steps=%d out=%s result=%s distributed=true %s",
      limit or 300, MPIRUN, ARGS, STEPS, out, result, extra or ""))
    return lines(result), ok, text
  end

  local single_dir, sync_dir = files.tmpdir(), files.tmpdir()
  local single, sync

  it("with synchronised BatchNorm equals one process with the whole batch", function()
    single = one(single_dir)
    local text
    sync, _, text = two(sync_dir, "sync_batchnorm=true")
    assert.are.equal(STEPS, #single)
    assert.are.equal(STEPS, #sync, text)
    -- float32 reduction order (BatchNorm's sums in another order, amplified by the bilinear logits)
    assert.is_true(max_rel(single, sync) < 2e-3, "losses " .. table.concat(single, ",") .. " vs " .. table.concat(sync, ","))
    assert.is_true(math.abs(single[1] - sync[1]) / single[1] < 1e-4)
    -- Adam moves every weight by about lr a step whatever its gradient's size, so a weight whose
    -- gradient is near zero may move the other way: a few at most 2 lr STEPS apart, the rest equal
    local worst, mean = weight_diff(single_dir .. "/last/model.safetensors", sync_dir .. "/last/model.safetensors")
    assert.is_true(worst <= 2 * 1e-4 * STEPS + 1e-6, "largest weight difference " .. worst)
    assert.is_true(mean < 2e-6, "mean weight difference " .. mean)
  end)

  it("with per-rank BatchNorm computes what simulate_ranks=2 computes in one process", function()
    local per_dir, sim_dir = files.tmpdir(), files.tmpdir()
    local per, _, text = two(per_dir, "")
    local sim = one(sim_dir, "simulate_ranks=2")
    assert.are.equal(STEPS, #per, text)
    assert.is_true(max_rel(per, sim) < 2e-3, "losses " .. table.concat(per, ",") .. " vs " .. table.concat(sim, ","))
    local _, mean = weight_diff(per_dir .. "/last/model.safetensors", sim_dir .. "/last/model.safetensors")
    assert.is_true(mean < 2e-6, "mean weight difference " .. mean)
    -- and not the whole batch's statistics: the first losses differ (2 rows per BatchNorm batch of 4
    -- instead of 8; the difference is that of the normalisation, bounded by the run itself)
    assert.is_true(math.abs(per[1] - single[1]) > 1e-3 * single[1])
  end)

  it("stops when a rank dies or hangs, and resumes exactly", function()
    assert.is_truthy(sync, "the synchronised run above")
    -- rank 1 killed at step 3 (the checkpoint of step 2 written): mpirun ends the job at once
    local killed_dir = files.tmpdir()
    local t0 = cocola.wall_time()
    local _, ok, text = two(killed_dir, "sync_batchnorm=true fault=kill@3", 120)
    assert.is_falsy(ok)
    assert.is_true(cocola.wall_time() - t0 < 100)
    assert.truthy(text:find("signal 9", 1, true) or text:find("Killed", 1, true), text)
    -- rank 1 hangs at step 3: rank 0's all-reduce times out (dist_timeout=20) with the error naming it
    local hung_dir = files.tmpdir()
    t0 = cocola.wall_time()
    local _, ok2, text2 = two(hung_dir, "sync_batchnorm=true dist_timeout=5 fault=hang@3", 120)
    assert.is_falsy(ok2)
    assert.truthy(text2:find("timed out on rank 0 after 5 s", 1, true), text2)
    assert.is_true(cocola.wall_time() - t0 < 100)
    -- resume from the killed run's checkpoint: steps 3 and 4 as in the uninterrupted run
    local state = require("cjson").decode(files.read(killed_dir .. "/last/state.json"))
    assert.are.equal(2, state.step)
    local rest, ok3, text3 = two(killed_dir, "sync_batchnorm=true resume=" .. killed_dir .. "/last")
    assert.is_true(ok3, text3)
    assert.are.same({ sync[3], sync[4] }, rest)
    local worst = weight_diff(sync_dir .. "/last/model.safetensors", killed_dir .. "/last/model.safetensors")
    assert.are.equal(0, worst)
  end)

  it("trains a diffusion model (the generative trainers' loop) with averaged gradients", function()
    local out = files.tmpdir() .. "/msdm"
    local env = "LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='./build/?.so;;' "
    local ok, text = files.sh(env .. "timeout 120 " .. MPIRUN .. "lua5.4 recipes/train_msdm.lua layout=slakh root=" .. root
      .. " length=1024 channels=8 multipliers=1,2 factors=2 num_blocks=1 attentions=0 patch_factor=2 attention_heads=2"
      .. " attention_features=4 resnet_groups=4 batch_size=2 valid_batches=1 valid_every=2 log_every=1"
      .. " checkpoint_every=100 threads=1 max_steps=3 plots=false distributed=true out=" .. out)
    assert(ok, text)
    assert.truthy(text:find("distributed: 2 ranks", 1, true), text)
    local steps = 0
    for line in io.lines(out .. "/metrics.jsonl") do if line:find('"loss"', 1, true) then steps = steps + 1 end end
    assert.are.equal(3, steps)
    assert.is_true(files.sh("test -f " .. out .. "/last/unet.safetensors"))
  end)

  it("trains CompoNet's ControlNet on 2 ranks, the frozen U-Net untouched, and resumes exactly", function()
    -- a tiny phase-1 model made here (one VAE step, one U-Net step) for the ControlNet to train on
    local recipe = require "cocola.recipe"
    local train_ldm = require "cocola.recipes.train_ldm"
    local base = files.tmpdir()
    local tiny = { "layout=slakh", "root=" .. root, "seconds=2.55", "vae_seconds=0.95", "vae_channels=4,8,8",
      "vae_groups=4", "latent_channels=4", "unet_channels=8,16,16", "unet_groups=4", "heads=2", "text_dim=8",
      "tag_dim=8", "batch_size=2", "valid_batches=1", "valid_every=1", "checkpoint_every=100", "scale_batches=1",
      "threads=1", "griffin_lim_iters=4", "plots=false", "max_steps=1" }
    local function ldm(extra)
      local a = table.move(tiny, 1, #tiny, 1, {})
      for _, x in ipairs(extra) do a[#a + 1] = x end
      stems.silently(function() train_ldm.run(recipe.config(train_ldm.DEFAULTS, a), function() end) end)
    end
    ldm({ "stage=vae", "out=" .. base .. "/vae" })
    ldm({ "stage=unet", "vae=" .. base .. "/vae/model", "out=" .. base .. "/ldm" })
    local model = base .. "/ldm/model"
    local env = "LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='./build/?.so;;' "
    local function componet(out, extra)
      local ok, text = files.sh(env .. "timeout 180 " .. MPIRUN .. "lua5.4 recipes/train_componet.lua layout=slakh root="
        .. root .. " model=" .. model .. " seconds=2.55 batch_size=1 valid_batches=1 valid_every=2 log_every=1"
        .. " checkpoint_every=2 threads=1 plots=false distributed=true dist_timeout=60 out=" .. out .. " " .. extra)
      assert(ok, text)
      return text
    end
    local function losses(out)
      local got = {}
      for line in io.lines(out .. "/metrics.jsonl") do
        local r = require("cjson").decode(line)
        if r.loss then got[r.step] = r.loss end
      end
      return got
    end
    local text = componet(base .. "/whole", "max_steps=4")
    assert.truthy(text:find("distributed: 2 ranks", 1, true), text)
    componet(base .. "/parts", "max_steps=2")
    componet(base .. "/parts", "resume=" .. base .. "/parts/last max_steps=4")
    local whole, parts = losses(base .. "/whole"), losses(base .. "/parts")
    for step = 1, 4 do
      assert.is_not_nil(whole[step], "step " .. step)
      assert.are.equal(whole[step], parts[step], "step " .. step)
    end
    local cn = "/model/controlnet/diffusion_pytorch_model.safetensors"
    assert.are.equal(0, (weight_diff(base .. "/whole" .. cn, base .. "/parts" .. cn)))
    -- the ControlNet's zero convolutions moved; the U-Net written beside it is the frozen base model's
    local controlnet = cocola.load(base .. "/whole" .. cn)
    assert.is_true(controlnet["controlnet_mid_block.weight"]:abs():max():item() > 0)
    local unet = "/unet/diffusion_pytorch_model.safetensors"
    assert.are.equal(0, (weight_diff(model .. unet, base .. "/whole/model" .. unet)))
    files.sh("rm -rf '" .. base .. "'")
  end)
end)
