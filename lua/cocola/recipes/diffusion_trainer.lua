-- cocola.recipes.diffusion_trainer — the loop the generative trainers share (the latent diffusion model's
-- phase 1 and CompoNet's phase 2): a run folder with config.jsonl (every start's settings and seed),
-- metrics.jsonl (one line per logged step and per validation), a progress bar, validation every
-- valid_every steps on fixed windows with a fixed noise seed (the engine's generator is restored after),
-- atomic checkpoints into <out>/last (the trained modules, the optimiser, the windows' position, the
-- engine's generator and the step) every checkpoint_every steps and at the end, exact resume from
-- resume=<out>/last (the run's settings restored unless given again), max_steps and max_minutes limits,
-- and at the end of every start the run's curves in <out>/plots/ (cocola.plot.metrics; plots=false: none;
-- without gnuplot a line in the log says they were skipped).
-- A job is {name, modules = {name = Module} (what is checkpointed), optimizer, windows (StemWindows),
-- valid_windows (or nil), step = function(batch) -> loss, extra fields for the metrics,
-- valid = function(batch) -> loss, export = function(final) (writes the run's model folder)}.
-- distributed=true (under `mpirun -np N`): data-parallel with plain gradient averaging. Every rank reads
-- the same stream of windows and takes every N-th batch (rank r the r-th of each N: a global batch of
-- N x batch_size), draws its diffusion noise from a rank-dependent stream (the generator agrees again
-- after the step), and averages its gradients (cocola.distributed.average_gradients, bucketed) just
-- before the optimiser's step, after the job's own clipping (a per-rank clip at max_norm keeps the
-- average within max_norm too). The modules start from rank 0's weights; rank 0 writes the run folder,
-- metrics, checkpoints and the model folder; every rank resumes from <out>/last.
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local cjson = require "cjson"
local lfs = require "lfs"
local fs = require "cocola.data.fs"

local M = {}

-- the settings every generative trainer has, with their meaning
M.COMMON = {
  layout = { "slakh", "dataset layout: slakh, musdb, moisesdb, cocochorales, stems_folder" },
  root = { "data/midi_stems", "dataset folder" },
  train_split = { "train", "split trained on" },
  valid_split = { "validation", "split validated on" },
  out = { "", "run folder: config.jsonl, metrics.jsonl, last/, model/" },
  resume = { "", "continue a run from its checkpoint folder (<run>/last)" },
  silence_rms = { 1e-4, "stems quieter than this RMS in a window are inactive" },
  max_minutes = { 0, "stop (checkpoint saved, model folder written) after this many minutes of this start (0: no limit)" },
  valid_batches = { 4, "batches per validation (fixed windows and noise)" },
  checkpoint_every = { 50, "steps between checkpoints into <out>/last" },
  log_every = { 10, "steps per metrics line" },
  threads = { 2, "CPU threads" },
  loaders = { 2, "threads decoding the next batch's stems while a step runs (0: none)" },
  device = { "cpu", "cpu or cuda" },
  autocast = { "off", "off or bf16 (device=cuda)" },
  plots = { true, "draw the run's curves into <out>/plots/ at the end of every start (needs gnuplot; false: none)" },
  distributed = { false, "data-parallel over the ranks of mpirun (gradients averaged; global batch N x batch_size)" },
  dist_timeout = { 300, "distributed: seconds a collective waits for the other ranks before the run stops with an error" },
}

-- the data-parallel group of a run (cocola.distributed initialised), or nil without distributed=true
local function group_of(cfg)
  if cfg.distributed ~= true and cfg.distributed ~= "true" then return nil end
  local dist = require "cocola.distributed"
  if not dist.initialized then dist.init { timeout = cfg.dist_timeout } end
  return dist
end

--- settings(own) -> defaults, docs: the common settings plus a trainer's own {key = {default, meaning}}
function M.settings(own)
  local defaults, docs = {}, {}
  for _, t in ipairs({ M.COMMON, own }) do
    for k, v in pairs(t) do defaults[k], docs[k] = v[1], v[2] end
  end
  return defaults, docs
end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- restore_settings(cfg, defaults, log[, expected]): resume=<run>/last takes the run's last settings (its
--- config.jsonl) for every setting the arguments did not give; settings given again are named in the log; a
--- config table recipe.config did not build is taken as it is. `expected` describes a checkpoint folder.
function M.restore_settings(cfg, defaults, log, expected)
  if not fs.is_file(cfg.resume .. "/state.json") then
    error(string.format("resume: '%s' is not a checkpoint folder (%s)", cfg.resume,
      expected or "expected <run>/last with state.json"), 0)
  end
  local given = recipe.explicit(cfg)
  if not given then return end -- a table built otherwise is taken as it is
  local run_dir = cfg.resume:gsub("/+$", ""):match("^(.*)/[^/]+$") or "."
  local text = recipe.read(run_dir .. "/config.jsonl")
  if not text then return end
  local saved = cjson.decode(text:match("([^\n]+)\n?$"))
  local kept = {}
  for key, default in pairs(defaults) do
    local v = saved[key]
    if v ~= nil and v ~= cjson.null and key ~= "resume" then
      if math.type(default) == "integer" and math.tointeger(v) then v = math.tointeger(v) end
      if given[key] then
        if v ~= cfg[key] then kept[#kept + 1] = string.format("%s=%s (was %s)", key, tostring(cfg[key]), tostring(v)) end
      elseif type(v) == type(default) then
        cfg[key] = v
      end
    end
  end
  table.sort(kept)
  log(string.format("resume: settings of %s/config.jsonl restored%s", run_dir,
    #kept > 0 and ("; given again: " .. table.concat(kept, ", ")) or ""))
end

--- integer_list(cfg, key) -> the setting's comma-separated positive integers (layer widths, factors, ...)
function M.integer_list(cfg, key)
  local out = {}
  for part in tostring(cfg[key]):gmatch("[^,%s]+") do
    local v = math.tointeger(tonumber(part))
    if not v or v < 1 then error(string.format("%s=%s: expected positive integers separated by commas", key, cfg[key]), 0) end
    out[#out + 1] = v
  end
  if #out == 0 then error(key .. " must not be empty", 0) end
  return out
end

--- save(dir, job, state): the checkpoint folder, written beside and swapped into place
function M.save(dir, job, state)
  recipe.write_dir_atomic(dir, function(tmp)
    for name, module in pairs(job.modules) do cocola.save(tmp .. "/" .. name .. ".safetensors", module:state_dict()) end
    job.optimizer:save(tmp .. "/optimizer.safetensors")
    local seed, offset = cocola.get_rng_state()
    state.windows = job.windows:state()
    state.rng = { seed = seed, offset = offset }
    recipe.write_atomic(tmp .. "/state.json", cjson.encode(state))
  end)
end

--- load(dir, job) -> state (the modules, the optimiser, the windows and the generator restored)
function M.load(dir, job)
  local state = cjson.decode(assert(recipe.read(dir .. "/state.json")))
  for name, module in pairs(job.modules) do
    local path = dir .. "/" .. name .. ".safetensors"
    if not fs.is_file(path) then error(string.format("resume: %s is missing", path), 0) end
    module:load_state_dict(cocola.load(path), { strict = true })
  end
  job.optimizer:load(dir .. "/optimizer.safetensors")
  job.windows:set_state({ epoch = math.tointeger(state.windows.epoch), position = math.tointeger(state.windows.position) })
  cocola.set_rng_state(math.tointeger(state.rng.seed), math.tointeger(state.rng.offset))
  return state
end

-- the mean validation loss over cfg.valid_batches batches of the fixed windows, with a fixed noise seed
local function validate(cfg, job)
  if not job.valid_windows or cfg.valid_batches <= 0 then return nil end
  local seed, offset = cocola.get_rng_state()
  cocola.manual_seed(cfg.seed + 1000003)
  job.valid_windows:set_state({ epoch = 0, position = 0 })
  local sum, n = 0, 0
  for _ = 1, cfg.valid_batches do
    local batch = job.valid_windows:next_batch()
    sum = sum + cocola.no_grad(function() return job.valid(batch) end)
    n = n + 1
  end
  cocola.set_rng_state(seed, offset)
  return sum / n
end

--- plot_curves(cfg, log): the curves of the run in cfg.out (its metrics.jsonl) drawn into <out>/plots/
-- (cocola.plot.metrics), unless cfg.plots is false; a missing gnuplot only logs a line. The COCOLA
-- trainer calls it too.
function M.plot_curves(cfg, log)
  recipe.plots(cfg.plots, log, function(plot)
    local written = plot.metrics(cfg.out .. "/metrics.jsonl", { out = cfg.out .. "/plots" })
    log(string.format("plots: %d curves in %s/plots", #written, cfg.out))
  end)
end

--- run(cfg, job, log) -> {losses = {step losses of this start}, step = last step, valid = last validation}.
--- cfg needs out, resume, seed, max_steps, max_minutes, valid_every, valid_batches, checkpoint_every, log_every.
function M.run(cfg, job, log)
  local started = cocola.wall_time()
  local state = { step = 0 }
  local dist = group_of(cfg)
  local world = dist and dist.world_size or 1
  local main = not dist or dist.rank == 0
  if not main then log = function() end end
  if world > 1 then
    -- in the order of the modules' names (pairs' order differs between processes)
    local names = {}
    for name in pairs(job.modules) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do dist.broadcast_module(job.modules[name], 0) end
    -- gradients averaged right before every optimiser step (after the job's own clipping)
    local params = {}
    for _, name in ipairs(names) do
      for _, np in ipairs(job.modules[name]:named_parameters()) do if np[2]:requires_grad() then params[#params + 1] = np[2] end end
    end
    local opt, step = job.optimizer, job.optimizer.step
    opt.step = function(self, ...)
      dist.average_gradients(params)
      return step(self, ...)
    end
    log(string.format("distributed: %d ranks, %d parameter tensors averaged, global batch %d x batch_size",
      world, #params, world))
  end
  if cfg.resume ~= "" then
    state = M.load(cfg.resume, job)
    log(string.format("resumed %s at step %d (epoch %d, window %d)", cfg.resume, state.step, job.windows.epoch,
      job.windows.position))
  end
  local metrics = cfg.out .. "/metrics.jsonl"
  if main then
    -- a run killed after its last checkpoint (or before its first) logged steps that are now run again
    local dropped = recipe.drop_records_after(metrics, state.step)
    if dropped > 0 then log(string.format("%d metric lines after step %d dropped (they are run again)", dropped, state.step)) end
  end
  local losses, last_valid = {}, state.valid
  local window_sum, window_n = 0, 0
  local total = cfg.max_steps
  local stop_reason = "max_steps"
  while state.step < total do
    local batch
    for r = 0, world - 1 do
      local b = job.windows:next_batch()
      if r == (dist and dist.rank or 0) then batch = b end
    end
    local t0 = cocola.wall_time()
    local seed, offset = cocola.get_rng_state()
    if world > 1 and dist.rank > 0 then cocola.set_rng_state(seed, offset + dist.rank * (1 << 40)) end
    local loss, extra = job.step(batch)
    if world > 1 then
      local _, after = cocola.get_rng_state()
      cocola.set_rng_state(seed, after - dist.rank * (1 << 40))
      -- the logged loss is the mean over ranks
      loss = dist.all_reduce(cocola.tensor({ loss }, { dtype = "float64" }), "mean"):item()
    end
    if loss ~= loss or loss == math.huge or loss == -math.huge then
      error(string.format("%s: the loss is %s at step %d (last checkpoint: %s/last)", job.name, tostring(loss),
        state.step + 1, cfg.out), 0)
    end
    state.step = state.step + 1
    losses[#losses + 1] = loss
    window_sum, window_n = window_sum + loss, window_n + 1
    if main and (state.step % cfg.log_every == 0 or state.step == total) then
      local record = { step = state.step, loss = window_sum / window_n, seconds = cocola.wall_time() - t0,
        epoch = job.windows.epoch }
      for k, v in pairs(extra or {}) do record[k] = v end
      recipe.append_jsonl(metrics, record)
      window_sum, window_n = 0, 0
    end
    if cfg.valid_every > 0 and state.step % cfg.valid_every == 0 then
      last_valid = validate(cfg, job)
      if last_valid and main then
        recipe.append_jsonl(metrics, { step = state.step, valid_loss = last_valid })
        state.valid = last_valid
      end
    end
    if main then recipe.progress(job.name, state.step, total, string.format("loss %.4f%s", loss,
      last_valid and string.format(" valid %.4f", last_valid) or "")) end
    local out_of_time = cfg.max_minutes > 0 and cocola.wall_time() - started > cfg.max_minutes * 60
    if world > 1 and cfg.max_minutes > 0 then
      out_of_time = dist.all_reduce(cocola.tensor({ out_of_time and 1.0 or 0.0 }), "max"):item() > 0
    end
    if main and (state.step % cfg.checkpoint_every == 0 or out_of_time) then M.save(cfg.out .. "/last", job, state) end
    if out_of_time then
      stop_reason = "max_minutes"
      break
    end
  end
  if main then recipe.end_progress() end
  local final = state.step >= total
  if main then
    M.save(cfg.out .. "/last", job, state)
    job.export(final)
  end
  log(string.format("%s: stopped at step %d of %d (%s); checkpoint %s/last%s", job.name, state.step, total,
    final and "done" or stop_reason, cfg.out, final and "" or "; resume=" .. cfg.out .. "/last continues"))
  if main then M.plot_curves(cfg, log) end
  return { losses = losses, step = state.step, valid = last_valid }
end

--- prepare(cfg, defaults, log): the run folder, resume's settings, the device check; returns whether this
--- start made the folder
function M.prepare(cfg, defaults, log)
  if cfg.resume ~= "" then M.restore_settings(cfg, defaults, log) end
  if cfg.out == "" then error("out= (the run folder) is required", 0) end
  if cfg.device ~= "cpu" and cfg.device ~= "cuda" then
    error(string.format("device must be cpu or cuda, got '%s'", tostring(cfg.device)), 0)
  end
  if cfg.device == "cuda" and not cocola.cuda.is_available() then
    error("device=cuda, but CUDA is not available (" .. tostring(cocola.cuda.unavailable_reason()) .. ")", 0)
  end
  if cfg.autocast ~= "off" and cfg.autocast ~= "bf16" then error("autocast must be off or bf16", 0) end
  if cfg.autocast == "bf16" and cfg.device ~= "cuda" then error("autocast=bf16 needs device=cuda", 0) end
  for _, k in ipairs({ "max_steps", "batch_size", "checkpoint_every", "log_every" }) do
    if math.type(cfg[k]) ~= "integer" or cfg[k] < 1 then error(k .. " must be a positive integer", 0) end
  end
  if cfg.resume == "" and fs.is_dir(cfg.out .. "/last") then
    error(string.format("%s already holds a run (%s/last); resume=%s/last continues it, or choose another out=",
      cfg.out, cfg.out, cfg.out), 0)
  end
  local dist = group_of(cfg)
  cocola.set_num_threads(cfg.threads)
  if not dist or dist.rank == 0 then
    if not os.execute("mkdir -p " .. shell_quote(cfg.out)) then error("cannot create the folder " .. cfg.out, 0) end
    recipe.log_config(cfg)
    recipe.append_jsonl(cfg.out .. "/config.jsonl", cfg)
  end
  cocola.manual_seed(cfg.seed)
end

--- autocast wrapper for a step: bf16 autocast on the GPU when cfg.autocast = "bf16"
function M.autocast(cfg, fn)
  if cfg.autocast == "bf16" then return cocola.cuda.autocast("bf16", fn) end
  return fn()
end

return M
