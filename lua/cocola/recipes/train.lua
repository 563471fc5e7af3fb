-- cocola.recipes.train — trains a COCOLA encoder on a stem dataset (the reference's
-- train_all_submixtures_hpss setup: Adam lr 1e-3, K = 32 windows of 5 s, dropout 0.1, noise 1e-3 on
-- positives, embedding mode random for HPSS). Logs every setting and the seed, shows a progress bar,
-- writes metrics to <out>/metrics.jsonl (loss, accuracy and the encoder's learning rate per step),
-- validates each epoch (contrastive loss and accuracy on a fixed-seed validation sampler),
-- checkpoints atomically every `checkpoint_every` steps and at each epoch end into <out>/last/ (model,
-- optimizer, sampler position and RNG state), keeps the best validation model in
-- <out>/best.safetensors, and resumes exactly with resume=<out>/last. At the end of every start it
-- draws the run's curves into <out>/plots/ (cocola.plot.metrics: metrics-loss.png with the validation
-- loss, metrics-accuracy.png likewise, metrics-lr.png; plots=false: none; without gnuplot a line in
-- the log says they were skipped).
-- lr_similarity (0: same as lr) sets the bilinear W's own learning rate, and warmup_steps ramps both
-- learning rates linearly from 0: W sums 512 x 512 products, so Adam's per-element step moves the
-- logits far more than the encoder's do (the reference uses one lr and no warm-up: the defaults).
-- valid_every=N also validates every N steps (for epochs of thousands of batches); valid_root
-- (default: root) validates on other roots than those trained on (e.g. those with a validation split).
-- max_minutes=M (0: no limit) bounds the wall time: once a step (or an epoch's validation) ends
-- more than M minutes after this start, the checkpoint is saved and training stops, as at max_steps
-- (for machines lent for a fixed time; a resume counts from its own start).
-- device=cuda trains on the GPU (features are computed on the CPU threads and moved over; checkpoints
-- are the same files as on the CPU, so a run may resume on either device); autocast=bf16 adds
-- cocola.cuda's bf16 autocast there.
-- init=<weights> starts from a model's weights (a .safetensors state dict, e.g. <run>/last/model.safetensors,
-- or a .ckpt), with a fresh optimizer, sampler and schedule: fine-tuning, or a new run on other data.
-- Coherence training, all off by default (the paper's recipe is the default):
--  * hard_negatives = "shifted,same_song,transposed" (any of them): extra columns of hard negatives
--    per anchor in the similarity matrix (the positive's stems moved by shift_min..shift_max seconds,
--    or by shift_beats fractions of the MIDI beat where the track has MIDI (e.g. shift_beats=0.25,0.5,0.75,1.5),
--    the positive's stems >= min_distance s away in the same song, the positive pitch-shifted by up
--    to transpose_max semitones); the loss is the cross-entropy over K + M K columns.
--  * renderings = "root=other[;other2],root2=..." : the same songs rendered with other sounds
--    (make_midi_stems with another soundfont, same inputs and seed); anchor and positive come from
--    different renderings of the same notes.
--  * gain_db: random per-stem gains within +-gain_db before the sub-mixes are summed.
--  * eq_db: a random spectral tilt and bump (each within +-eq_db dB over the 64 mel bands) added to
--    the log-mel features of every anchor, positive and negative independently (then max-normalised
--    and floored at -80 dB again, as the features are).
-- input = "chroma_onset" trains cocola.models.chroma_onset_cocola (chroma and onset frames, a temporal
-- convolution encoder of frame_blocks blocks of frame_width channels, frame_dim per frame; frame_prior = 1
-- adds the parameter-free prior channels that start its similarity at the chroma-onset baseline's,
-- 0 leaves them out) instead of the paper's EfficientNet on mel images ("hpss", "mel").
-- distributed=true trains data-parallel over the processes of mpirun (`mpirun -np N lua5.4
-- recipes/train_cocola.lua ... distributed=true`; see cocola.distributed): every rank draws the same
-- global batch of K windows (the single-process sampler, same seed), computes the features and
-- embeddings of its rows only (rank r: rows r K/N + 1 .. (r + 1) K/N), and all-gathers the embeddings
-- (dist.gather_with_grad) so that the K x K similarity and the loss of Eq. 3 are those of one process
-- with the whole batch; gradients are averaged with bucketed all-reduces (bucket_mb). BatchNorm
-- normalises each rank's rows by default (sync_batchnorm=true: over all ranks' rows, the same as one
-- process); the per-rank running statistics are averaged over ranks before each validation and
-- checkpoint. Rank 0 writes logs, metrics, checkpoints and plots; every rank resumes from them.
-- Dropout and drop-connect masks are drawn for the whole batch (each rank keeps its rows), so a run
-- matches one process with the whole batch; eq_db is not supported distributed. A rank that dies makes the others stop with an
-- error after dist_timeout seconds. simulate_ranks=N computes in one process what N ranks with
-- per-rank BatchNorm compute (the encoder on each rank's rows separately).
-- Run as: lua5.4 recipes/train_cocola.lua (or `cocola train`) root=data/midi_stems layout=slakh out=runs/x [key=value ...]
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local Sampler = require "cocola.data.sampler"
local Rng = require "cocola.data.rng"
local cjson = require "cjson"
local lfs = require "lfs"
local fs = require "cocola.data.fs"
local Dropout = require "cocola.nn.Dropout"

local DEFAULTS = {
  layout = "slakh", root = "data/midi_stems", train_split = "train", valid_split = "validation",
  out = "runs/cocola", resume = "", init = "", input = "hpss", embedding_mode = "random", embedding_dim = 512,
  dropout = 0.1, lr = 1e-3, lr_similarity = 0, warmup_steps = 0, batch_size = 32, window = 5.0, max_overlap = 0.5, noise = 1e-3,
  silence_rms = 1e-4, bn_recalibration_batches = -1, epochs = 500, max_steps = 0, max_minutes = 0, valid_batches = 20, valid_every = 0, checkpoint_every = 200,
  seed = 0, threads = 2, device = "cpu", autocast = "off",
  hard_negatives = "", shift_min = 0.1, shift_max = 0.6, shift_beats = "", min_distance = 10.0, transpose_max = 6,
  renderings = "", gain_db = 0, eq_db = 0, valid_root = "",
  frame_dim = 32, frame_width = 64, frame_blocks = 4, frame_prior = 1, plots = true,
  distributed = false, sync_batchnorm = false, bucket_mb = 25, dist_timeout = 300, dist_backend = "mpi", simulate_ranks = 0,
}

-- one line of meaning per setting (`--help`)
local DOCS = {
  layout = "dataset layout: slakh, musdb, moisesdb, cocochorales, stems_folder",
  root = "dataset folder(s), comma-separated for a mixture of several",
  train_split = "split trained on",
  valid_split = "split validated on",
  out = "run folder (created with its parents): config.jsonl, metrics.jsonl, last/, best.safetensors",
  resume = "continue a run from its checkpoint folder (<run>/last): its settings, unless given again",
  init = "start from a model's weights (.safetensors or .ckpt) with a fresh optimizer and schedule",
  input = "features: hpss (the paper's), mel, or chroma_onset (chroma and onset frames)",
  embedding_mode = "HPSS models: random (the paper's), both, harmonic or percussive",
  embedding_dim = "embedding size of the EfficientNet models",
  dropout = "dropout before the projection (EfficientNet models)",
  lr = "Adam learning rate",
  lr_similarity = "learning rate of the similarity's W (0: lr)",
  warmup_steps = "steps of linear learning-rate warm-up from 0",
  batch_size = "K: windows per contrastive batch (a K x K similarity matrix)",
  window = "window length in seconds",
  max_overlap = "largest overlap of two windows of a track (fraction of a window)",
  noise = "std of the Gaussian noise added to positives",
  silence_rms = "stems quieter than this RMS in a window count as silent",
  bn_recalibration_batches = "training batches that re-estimate BatchNorm before each validation (-1: 4 where there is BatchNorm)",
  epochs = "epochs to train",
  max_steps = "stop after this many steps (0: no limit)",
  max_minutes = "stop (checkpoint saved) after this many minutes of this start (0: no limit)",
  valid_batches = "batches per validation",
  valid_every = "also validate every N steps (0: at epoch ends only)",
  checkpoint_every = "steps between checkpoints into <out>/last",
  seed = "seed of the sampler, the augmentations and the model's initialisation",
  threads = "CPU threads",
  device = "cpu or cuda",
  autocast = "off or bf16 (device=cuda)",
  hard_negatives = "extra negative columns: any of shifted,same_song,transposed",
  shift_min = "shifted negatives: smallest shift in seconds",
  shift_max = "shifted negatives: largest shift in seconds",
  shift_beats = "shifted negatives: shifts as fractions of the MIDI beat, e.g. 0.25,0.5,0.75 (overrides seconds)",
  min_distance = "same_song negatives: at least this many seconds from the positive",
  transpose_max = "transposed negatives: up to this many semitones either way",
  renderings = "other renderings of the same songs: root=other[;other2],... (anchor and positive in different sounds)",
  gain_db = "random per-stem gain within +-gain_db before mixing (0: off)",
  eq_db = "random spectral tilt and bump within +-eq_db on log-mel features (0: off)",
  valid_root = "dataset folder(s) validated on (default: root)",
  frame_dim = "chroma_onset: learned values per frame",
  frame_width = "chroma_onset: channels of the temporal convolutions",
  frame_blocks = "chroma_onset: residual dilated blocks",
  frame_prior = "chroma_onset: 1 adds the parameter-free prior channels (the baseline's similarity at the start), 0 not",
  plots = "draw the run's curves into <out>/plots/ at the end of every start (needs gnuplot; false: none)",
  distributed = "data-parallel over the ranks of mpirun (each rank encodes its share of the K windows; the loss sees all K)",
  sync_batchnorm = "distributed: BatchNorm statistics over every rank's rows (false: per rank, as DDP's default)",
  bucket_mb = "distributed: size of the gradient all-reduce buckets in MB",
  dist_backend = "distributed: mpi (CPU tensors; CUDA tensors staged through the host) or nccl (CUDA tensors between GPUs)",
  simulate_ranks = "one process computes what N ranks with per-rank BatchNorm compute (0: off)",
  dist_timeout = "distributed: seconds a collective waits for the other ranks before the run stops with an error",
}

local M = {}

local function save_checkpoint(dir, model, opt, sampler, state)
  recipe.write_dir_atomic(dir, function(tmp)
    cocola.save(tmp .. "/model.safetensors", model:state_dict())
    opt:save(tmp .. "/optimizer.safetensors")
    local seed, offset = cocola.get_rng_state()
    state.sampler = sampler:state()
    state.rng = { seed = seed, offset = offset }
    recipe.write_atomic(tmp .. "/state.json", cjson.encode(state))
  end)
end

--- random equalisation of log-mel features (B, C, bands, frames), in dB: per example a tilt and a
-- Gaussian bump over the bands, each of amplitude within +-eq_db, the same on every channel; then
-- every (example, channel) is shifted back to a maximum of 0 dB and floored at -80 dB, as
-- cocola_features leaves HPSS features; with `absolute` (mel features, in absolute dB) the curve is
-- only added. Deterministic for an Rng.
function M.equalize(features, eq_db, rng, absolute)
  local b, c, bands, frames = features:size(1), features:size(2), features:size(3), features:size(4)
  local curves = {}
  for i = 1, b do
    local tilt, bump = (2 * rng:float() - 1) * eq_db, (2 * rng:float() - 1) * eq_db
    local centre, width = rng:float() * (bands - 1), 4 + rng:float() * 12
    local row = {}
    for m = 0, bands - 1 do
      row[m + 1] = { tilt * (2 * m / (bands - 1) - 1) + bump * math.exp(-0.5 * ((m - centre) / width) ^ 2) }
    end
    curves[i] = { row }
  end
  local shaped = features + cocola.tensor(curves) -- (B, 1, bands, 1) broadcast
  if absolute then return shaped end
  local peak = shaped:reshape({ b, c, bands * frames }):max(3, true):reshape({ b, c, 1, 1 })
  return (shaped - peak):clamp(-80, math.huge)
end

-- the anchor, positive (and negative, when the batch has them) features of a sampler batch
-- (model:features), on `device` (default the CPU); eq = {db =, rng =} equalises each of them at
-- random (log-mel features only)
local function batch_features(batch, model, device, eq)
  local out = { model:features(batch.anchor), model:features(batch.positive) }
  if batch.negative then out[3] = model:features(batch.negative) end
  for i = 1, #out do
    if eq and eq.db > 0 then out[i] = M.equalize(out[i], eq.db, eq.rng, model.input ~= "hpss") end
    if device and device ~= "cpu" then out[i] = out[i]:to(device) end
  end
  return out[1], out[2], out[3]
end

--- Re-estimates every BatchNorm's running statistics from `batches` batches of the sampler (its
-- state is restored afterwards): cumulative averages over the batches (anchors and positives as one
-- batch, as training sees them) with the rest of the model in eval mode (model:recalibrate_batchnorm).
-- The model is left in eval mode.
function M.recalibrate_batchnorm(model, sampler, batches, device)
  local saved = sampler:state()
  local left = batches
  model:recalibrate_batchnorm(function()
    if left <= 0 then return nil end
    left = left - 1
    local batch = sampler:next_batch()
    if not batch then return nil end
    local a, p = batch_features(batch, model, device)
    return cocola.cat({ a, p }, 1)
  end)
  sampler:set_state(saved)
end

-- A validation whose similarities are all equal (within float32 rounding of their size) measures
-- nothing: a collapsed encoder, or BatchNorm statistics that make every eval-mode embedding alike.
local function constant_similarities(sim)
  local hi, lo = sim:max():item(), sim:min():item()
  return hi - lo <= 1e-5 * math.max(1, math.abs(hi), math.abs(lo))
end
M.constant_similarities = constant_similarities

local function validate(cfg, model, sampler)
  model:eval()
  sampler:set_state({ epoch = 0, position = 0 })
  local loss_sum, acc_sum, n, constant = 0, 0, 0, 0
  for _ = 1, cfg.valid_batches do
    local batch = sampler:next_batch()
    if not batch then break end
    local sim = cocola.no_grad(function()
      local a, p = batch_features(batch, model, cfg.device)
      return model(a, p)
    end)
    loss_sum = loss_sum + cocola.metrics.contrastive_loss(sim):item()
    acc_sum = acc_sum + cocola.metrics.accuracy(sim)
    if constant_similarities(sim) then constant = constant + 1 end
    n = n + 1
  end
  model:train()
  if n == 0 then return nil end
  return loss_sum / n, acc_sum / n, constant == n
end

-- renderings = "root=other[;other2],..." -> {root = {other, other2}}
local function parse_renderings(text)
  local out = {}
  for item in tostring(text):gmatch("[^,]+") do
    local root, others = item:match("^%s*(.-)%s*=%s*(.-)%s*$")
    if not root or root == "" or others == "" then
      error("train: renderings: expected root=other[;other2] items, got '" .. item .. "'", 0)
    end
    out[root] = {}
    for o in others:gmatch("[^;]+") do out[root][#out[root] + 1] = o end
  end
  return out
end

--- the tracks of a split of one dataset root, or of several (root = "a,b": their mixture); with
-- renderings (see parse_renderings) each root's tracks get the same songs of its other renderings
-- (Sampler.attach_renderings) and the second result counts the tracks that found one
function M.open_split(layout, root, split, renderings)
  local all, matched = {}, 0
  local alternates = renderings and parse_renderings(renderings) or {}
  for r in root:gmatch("[^,]+") do
    if not fs.is_dir(r) then
      error(string.format("train: the data folder '%s' does not exist (root=%s%s)", r, root,
        r == DEFAULTS.root and "; `make midi-stems` renders the project's MIDI songs there" or ""), 0)
    end
    local tracks = cocola.data.open(layout, r, split)
    if alternates[r] then
      local others = {}
      for i, o in ipairs(alternates[r]) do others[i] = cocola.data.open(layout, o, split) end
      matched = matched + Sampler.attach_renderings(tracks, others)
    end
    table.move(tracks, 1, #tracks, #all + 1, all)
  end
  return all, matched
end

-- resume=<run>/last: the settings of the run's last start (<run>/config.jsonl) replace the defaults
-- of every setting the arguments did not give (cocola.recipes.diffusion_trainer.restore_settings)
local function restore_settings(cfg, log)
  require("cocola.recipes.diffusion_trainer").restore_settings(cfg, DEFAULTS, log,
    "expected <run>/last with model.safetensors, optimizer.safetensors and state.json")
end

-- rows of a (K, ...) waveform batch that rank `first, count` encodes; negatives are M blocks of K
local function shard_batch(batch, first, count)
  local k = batch.anchor:size(1)
  local out = { anchor = batch.anchor:narrow(1, first, count), positive = batch.positive:narrow(1, first, count) }
  if batch.negative then
    local parts = {}
    for m = 1, batch.negative:size(1) // k do parts[m] = batch.negative:narrow(1, (m - 1) * k + first, count) end
    out.negative = cocola.cat(parts, 1)
  end
  return out
end

-- every rank's rows of e (count rows here, ranks' counts in `counts`) in rank order, differentiable
local function gather_rows(dist, e, counts)
  local most = 0
  for _, c in ipairs(counts) do most = math.max(most, c) end
  local padded = e
  if e:size(1) < most then
    local shape = table.move(e.shape, 1, e:dim(), 1, {})
    shape[1] = most - e:size(1)
    local pad = cocola.zeros(shape, { dtype = e:dtype() })
    if e:device() ~= "cpu" then pad = pad:to(e:device()) end
    padded = cocola.cat({ e, pad }, 1)
  end
  local all = dist.gather_with_grad(padded)
  local parts = {}
  for r, c in ipairs(counts) do parts[r] = all:narrow(1, (r - 1) * most + 1, c) end
  return #parts == 1 and parts[1] or cocola.cat(parts, 1)
end

-- the encoder batch of rank r of `world` (anchors, positives, negatives: count rows each) through the
-- model: its embeddings (blocks of count rows) and count. choices: the embedding-mode choices of the
-- whole batch (nil: none). Random layers (dropout, drop-connect) draw for the whole batch of one
-- process and keep this rank's rows of it: block b of the encoder batch holds global rows
-- b K + first .. b K + first + count - 1.
local function rank_embeddings(model, batch, r, world, choices, device)
  local k = batch.anchor:size(1)
  local first = (r * k) // world + 1
  local count = ((r + 1) * k) // world - (r * k) // world
  local mine = shard_batch(batch, first, count)
  local a, p, n = batch_features(mine, model, device)
  local columns = n and cocola.cat({ p, n }, 1) or p
  if choices then
    local own = table.move(choices, first, first + count - 1, 1, {})
    a = model:apply_mode(a, nil, own)
    local own_c = {}
    for j = 1, columns:size(1) do own_c[j] = own[(j - 1) % count + 1] end
    columns = model:apply_mode(columns, nil, own_c)
  end
  local blocks_n = 1 + columns:size(1) // count
  local index = {}
  for b = 0, blocks_n - 1 do
    for j = 0, count - 1 do index[#index + 1] = b * k + first - 1 + j end
  end
  local subset = { index = cocola.tensor(index, { dtype = "int64" }), total = blocks_n * k }
  local random_layers = {}
  for _, mod in ipairs(model:modules()) do
    if mod.drop_connect ~= nil or getmetatable(mod) == Dropout then
      random_layers[#random_layers + 1] = mod
      mod.row_subset = subset
    end
  end
  local x = cocola.cat({ a, columns }, 1)
  local ok, e = pcall(function() return model._embed and model:_embed(x) or model.encoder(x) end)
  for _, mod in ipairs(random_layers) do mod.row_subset = nil end
  if not ok then error(e, 0) end
  return e, count, blocks_n
end

-- rows counts of each rank for a batch of k
local function rank_counts(k, world)
  local counts = {}
  for r = 0, world - 1 do counts[r + 1] = ((r + 1) * k) // world - (r * k) // world end
  return counts
end

--- The similarity matrix of a global batch on this rank of a data-parallel group (dist): this rank
-- encodes its rows (anchors, positives and negatives in one encoder batch, with the embedding-mode
-- choices drawn for the whole batch as one process draws them), the embeddings of every rank are
-- gathered with a gradient path, and the K x (K + M K) matrix is the one of one process.
-- Returns the matrix, or nil when the batch has fewer windows than ranks.
function M.distributed_similarity(model, batch, dist, device)
  local k = batch.anchor:size(1)
  if k < dist.world_size then return nil end
  local counts = rank_counts(k, dist.world_size)
  local choices = model.mode_choices and model:mode_choices(k) or nil
  local e, count, blocks_n = rank_embeddings(model, batch, dist.rank, dist.world_size, choices, device)
  local blocks = {}
  for b = 1, blocks_n do blocks[b] = gather_rows(dist, e:narrow(1, (b - 1) * count + 1, count), counts) end
  return model.similarity(blocks[1], blocks_n == 2 and blocks[2] or cocola.cat(table.move(blocks, 2, blocks_n, 1, {}), 1))
end

--- The same matrix computed in one process as `world` ranks with per-rank BatchNorm compute it
-- (simulate_ranks=N): the encoder runs on each rank's rows separately (its BatchNorm statistics are
-- those rows'), every rank starting from the same generator state; the embeddings are concatenated.
function M.simulated_similarity(model, batch, world, device)
  local k = batch.anchor:size(1)
  if k < world then return nil end
  local counts = rank_counts(k, world)
  local choices = model.mode_choices and model:mode_choices(k) or nil
  local seed, offset = cocola.get_rng_state()
  local per_rank, blocks_n = {}, 0
  for r = 0, world - 1 do
    cocola.set_rng_state(seed, offset)
    per_rank[r + 1], _, blocks_n = rank_embeddings(model, batch, r, world, choices, device)
  end
  local blocks = {}
  for b = 1, blocks_n do
    local parts = {}
    for r = 1, world do parts[r] = per_rank[r]:narrow(1, (b - 1) * counts[r] + 1, counts[r]) end
    blocks[b] = cocola.cat(parts, 1)
  end
  return model.similarity(blocks[1], blocks_n == 2 and blocks[2] or cocola.cat(table.move(blocks, 2, blocks_n, 1, {}), 1))
end

-- every BatchNorm of model synchronised over dist (or not: nil)
local function set_batchnorm_sync(model, dist)
  for _, mod in ipairs(model:modules()) do
    if mod.running_mean ~= nil and mod.num_features then mod.sync_group = dist end
  end
end

-- per-rank BatchNorm running statistics averaged over the ranks (before validation and checkpoints)
local function average_batchnorm_buffers(model, dist)
  if dist.world_size == 1 then return end
  cocola.no_grad(function()
    for _, nb in ipairs(model:named_buffers()) do
      if nb[1]:match("running_mean$") or nb[1]:match("running_var$") then dist.all_reduce(nb[2], "mean") end
    end
  end)
end

--- runs training with a config table (the command line builds it); returns the list of step
-- losses and the final state. log (default print) receives the text lines. A run that fails before
-- its first checkpoint removes the output folder it created.
-- a run killed while saving: a checkpoint swap interrupted between its renames (<dir> moved to
-- <dir>.old, <dir>.tmp not yet in place) gets <dir>.old back; the unfinished <dir>.tmp, a leftover
-- <dir>.old and the temporaries of atomic writes (<file>.tmp) are removed
local function recover_checkpoint(dir)
  if not lfs.attributes(dir, "mode") and lfs.attributes(dir .. ".old", "mode") then
    assert(os.rename(dir .. ".old", dir))
  end
  local quoted = dir:gsub("'", "'\\''")
  os.execute(string.format("rm -rf '%s.old' '%s.tmp'", quoted, quoted))
end

local function remove_stale(out)
  if not fs.is_dir(out) then return end
  for name in lfs.dir(out) do
    if name:match("%.tmp$") and lfs.attributes(out .. "/" .. name, "mode") == "file" then os.remove(out .. "/" .. name) end
  end
end
M._recover_checkpoint = recover_checkpoint

function M.run(cfg, log)
  log = log or print
  local fresh = cfg.resume == "" and lfs.attributes(cfg.out) == nil
  local results = table.pack(xpcall(M._run, function(msg)
    if os.getenv("COCOLA_DEBUG") then return debug.traceback(tostring(msg), 2) end
    return msg
  end, cfg, log))
  if not results[1] then
    -- (rank 0's folder: another rank of a distributed run leaves it alone)
    if fresh and (require("cocola.distributed").rank or 0) == 0 and fs.is_dir(cfg.out) and not fs.is_dir(cfg.out .. "/last") then
      for _, name in ipairs({ "config.jsonl", "metrics.jsonl", "best.safetensors", "last.tmp" }) do
        os.execute(string.format("rm -rf '%s/%s'", cfg.out:gsub("'", "'\\''"), name))
      end
      lfs.rmdir(cfg.out) -- only if nothing else is in it
    end
    error(results[2], 0)
  end
  return table.unpack(results, 2, results.n)
end

function M._run(cfg, log)
  local started = cocola.wall_time()
  local dist = require "cocola.distributed"
  if cfg.distributed == true or cfg.distributed == "true" then
    cfg.distributed = true
    if cfg.dist_backend ~= "mpi" and cfg.dist_backend ~= "nccl" then
      error("train: dist_backend must be mpi or nccl, got '" .. tostring(cfg.dist_backend) .. "'", 0)
    end
    if cfg.dist_backend == "nccl" and cfg.device ~= "cuda" then error("train: dist_backend=nccl needs device=cuda", 0) end
    if not dist.initialized then
      dist.init { timeout = cfg.dist_timeout, backend = dist.launched_by_mpi() and cfg.dist_backend or nil }
    end
  else
    cfg.distributed = false
  end
  local main = not cfg.distributed or dist.rank == 0
  if not main then log = function() end end
  if main then
    if cfg.resume ~= "" then recover_checkpoint(cfg.resume) end
    recover_checkpoint(cfg.out .. "/last")
    remove_stale(cfg.out)
  end
  if cfg.resume ~= "" then restore_settings(cfg, log) end
  if main then recipe.log_config(cfg) end
  local world = cfg.distributed and dist.world_size or 1
  if cfg.distributed then
    log(string.format("distributed: rank %d of %d (local rank %d), %s BatchNorm, %d-MB buckets, %g-s timeout",
      dist.rank, dist.world_size, dist.local_rank, cfg.sync_batchnorm and "synchronised" or "per-rank",
      cfg.bucket_mb, cfg.dist_timeout))
    if cfg.simulate_ranks > 1 then error("train: simulate_ranks is for one process (distributed=false)", 0) end
    if world > 1 and cfg.eq_db > 0 then error("train: eq_db is not supported with distributed=true", 0) end
    if world > 1 and cfg.batch_size < world then
      error(string.format("train: batch_size=%d is smaller than the %d ranks", cfg.batch_size, world), 0)
    end
  end
  if cfg.device ~= "cpu" and cfg.device ~= "cuda" then
    error(string.format("train: device must be cpu or cuda, got '%s'", tostring(cfg.device)), 0)
  end
  if cfg.device == "cuda" and not cocola.cuda.is_available() then
    error("train: device=cuda, but CUDA is not available (" .. tostring(cocola.cuda.unavailable_reason()) .. ")", 0)
  end
  if cfg.input ~= "hpss" and cfg.input ~= "mel" and cfg.input ~= "chroma_onset" then
    error(string.format("train: input must be hpss, mel or chroma_onset, got '%s'", tostring(cfg.input)), 0)
  end
  if cfg.input == "chroma_onset" then
    if cfg.eq_db > 0 then error("train: eq_db shapes log-mel features; input=chroma_onset has none (use gain_db)", 0) end
    if cfg.bn_recalibration_batches > 0 then
      error("train: bn_recalibration_batches needs BatchNorm; the chroma_onset model has none", 0)
    end
    if cfg.bn_recalibration_batches < 0 then cfg.bn_recalibration_batches = 0 end -- automatic: none to re-estimate
    for _, key in ipairs({ "frame_dim", "frame_width", "frame_blocks" }) do
      local v = math.tointeger(cfg[key])
      if not v or v < (key == "frame_blocks" and 0 or 1) then error("train: " .. key .. " must be a positive integer", 0) end
      cfg[key] = v
    end
    if cfg.frame_prior ~= 0 and cfg.frame_prior ~= 1 then error("train: frame_prior must be 0 or 1", 0) end
  end
  if math.type(cfg.bn_recalibration_batches) ~= "integer" then
    error("train: bn_recalibration_batches must be an integer (-1: automatic)", 0)
  end
  if cfg.bn_recalibration_batches < 0 then
    -- automatic: models with BatchNorm re-estimate its statistics before each validation, so that a
    -- young encoder's eval-mode embeddings are not all alike (the initial statistics make them so)
    cfg.bn_recalibration_batches = 4
    log("bn_recalibration_batches = -1 (automatic): 4 training batches re-estimate BatchNorm before each validation")
  end
  if math.type(cfg.simulate_ranks) ~= "integer" or cfg.simulate_ranks < 0 then
    error("train: simulate_ranks must be a non-negative integer", 0)
  end
  if cfg.simulate_ranks > 1 and cfg.eq_db > 0 then error("train: eq_db is not supported with simulate_ranks", 0) end
  if cfg.autocast ~= "off" and cfg.device ~= "cuda" then
    error("train: autocast=" .. tostring(cfg.autocast) .. " needs device=cuda", 0)
  end
  cocola.set_num_threads(cfg.threads)
  cocola.manual_seed(cfg.seed)
  -- the data first: a missing folder is named before anything is written
  local train_tracks, rendered = M.open_split(cfg.layout, cfg.root, cfg.train_split, cfg.renderings)
  local valid_tracks = M.open_split(cfg.layout, cfg.valid_root ~= "" and cfg.valid_root or cfg.root, cfg.valid_split)
  local previous
  if main then
    local made, err = pcall(fs.mkdir_p, cfg.out)
    if not made then error(string.format("train: cannot create the output folder '%s' (%s)", cfg.out, recipe.clean_error(err)), 0) end
    -- the settings of every start or resume, for the record
    previous = recipe.read(cfg.out .. "/config.jsonl")
    recipe.append_jsonl(cfg.out .. "/config.jsonl", cfg)
  end
  local function shown(v) return (math.type(v) == "float" and v == math.floor(v)) and string.format("%d", v) or tostring(v) end
  if cfg.resume ~= "" and previous then
    -- a resume on other data or batches continues the run, but not exactly: say so
    local last = cjson.decode(previous:match("([^\n]+)\n?$"))
    for _, key in ipairs({ "layout", "root", "train_split", "batch_size", "window", "max_overlap", "seed", "input",
                          "hard_negatives", "shift_beats", "shift_min", "shift_max", "min_distance",
                          "transpose_max", "renderings", "gain_db", "eq_db", "valid_root" }) do
      local before, now = last[key], cfg[key]
      local same = before == nil or before == now or (tonumber(before) and tonumber(before) == tonumber(now))
      if not same then
        log(string.format("note: %s changed since the last start (%s -> %s): the resumed run is not an exact continuation",
          key, shown(before), shown(now)))
      end
    end
  end
  log(string.format("%d training tracks, %d validation tracks", #train_tracks, #valid_tracks))
  if cfg.renderings ~= "" then
    log(string.format("%d training tracks have other renderings (anchor and positive from different sounds)", rendered))
  end
  local sampler_opts = {
    batch_size = cfg.batch_size, window = cfg.window, max_overlap = cfg.max_overlap, seed = cfg.seed,
    silence_rms = cfg.silence_rms, noise = cfg.noise,
  }
  -- sampler_opts with some settings added or replaced
  local function with(extra)
    local o = {}
    for k, v in pairs(sampler_opts) do o[k] = v end
    for k, v in pairs(extra) do o[k] = v end
    return o
  end
  local sampler = Sampler.new(train_tracks, with({
    gain_db = cfg.gain_db, hard_negatives = cfg.hard_negatives, shift_min = cfg.shift_min, shift_max = cfg.shift_max,
    shift_beats = tostring(cfg.shift_beats), min_distance = cfg.min_distance,
    transpose_max = math.tointeger(cfg.transpose_max) or error("train: transpose_max must be an integer", 0),
  }))
  -- validation and BatchNorm recalibration use the paper's plain batches (comparable across runs)
  local valid_sampler = Sampler.new(valid_tracks, with({ seed = cfg.seed + 1, shuffle = true }))
  -- fixed training batches for BatchNorm recalibration, apart from the training stream
  local calibration_opts = with({ seed = cfg.seed + 2 })
  local calibration_sampler = Sampler.new(train_tracks, calibration_opts)

  local model
  if cfg.input == "chroma_onset" then
    model = cocola.models.chroma_onset_cocola { dim = cfg.frame_dim, width = cfg.frame_width, blocks = cfg.frame_blocks,
                                                prior = cfg.frame_prior == 1 }
  else
    model = cocola.models.cocola {
      input = cfg.input, embedding_dim = cfg.embedding_dim, dropout = cfg.dropout,
      embedding_mode = cfg.input == "hpss" and cfg.embedding_mode or "both",
    }
  end
  if cfg.init ~= "" and cfg.resume == "" then
    local weights = cocola.load(cfg.init)
    if type(weights.state_dict) == "table" then weights = weights.state_dict end
    model:load_state_dict(weights)
    log("initial weights from " .. cfg.init)
  end
  if cfg.device ~= "cpu" then
    model:to(cfg.device)
    cocola.cuda.set_autocast(cfg.autocast)
  end
  model:train()
  if world > 1 then
    dist.broadcast_module(model, 0) -- the same start on every rank, whatever each drew
    if cfg.sync_batchnorm then set_batchnorm_sync(model, dist) end
  end
  local encoder_params, similarity_params = {}, {}
  for _, np in ipairs(model:named_parameters()) do
    local list = np[1]:match("^similarity%.") and similarity_params or encoder_params
    list[#list + 1] = np
  end
  local lr_similarity = cfg.lr_similarity > 0 and cfg.lr_similarity or cfg.lr
  local opt = cocola.optim.Adam({
    { params = encoder_params, lr = cfg.lr }, { params = similarity_params, lr = lr_similarity },
  })
  -- learning rates of step n (1-based): linear warm-up, then constant
  local function set_learning_rates(n)
    local scale = cfg.warmup_steps > 0 and math.min(1, n / cfg.warmup_steps) or 1
    opt.param_groups[1].lr, opt.param_groups[2].lr = cfg.lr * scale, lr_similarity * scale
  end
  local state = { step = 0, epoch = 0 } -- best_valid_loss appears with the first validation
  if cfg.resume ~= "" then
    model:load_state_dict(cocola.load(cfg.resume .. "/model.safetensors"))
    opt:load(cfg.resume .. "/optimizer.safetensors")
    state = cjson.decode((assert(recipe.read(cfg.resume .. "/state.json"), "resume: no state.json in " .. cfg.resume)))
    sampler:set_state(state.sampler)
    cocola.set_rng_state(state.rng.seed, state.rng.offset)
    log(string.format("resumed from %s at step %d (epoch %d)", cfg.resume, state.step, state.epoch))
  end
  local metrics = cfg.out .. "/metrics.jsonl"
  if main and (cfg.resume ~= "" or not fs.is_dir(cfg.out .. "/last")) then
    -- a run killed after its last checkpoint (or before its first) logged steps that are now run
    -- again: drop them, and a line cut short by the kill
    local dropped = recipe.drop_records_after(metrics, state.step)
    if dropped > 0 then log(string.format("%d metric lines after step %d dropped (they are run again)", dropped, state.step)) end
  end
  local losses = {}
  local per_epoch = sampler:batches_per_epoch()
  -- recalibrates BatchNorm if asked, validates, logs, and keeps the best model in <out>/best.safetensors
  local function validate_and_keep_best()
    -- every rank validates the same batches (the same model: per-rank running statistics averaged)
    average_batchnorm_buffers(model, dist)
    if cfg.bn_recalibration_batches > 0 then
      set_batchnorm_sync(model, nil) -- every rank re-estimates from the same whole batches
      M.recalibrate_batchnorm(model, calibration_sampler, cfg.bn_recalibration_batches, cfg.device)
      if world > 1 and cfg.sync_batchnorm then set_batchnorm_sync(model, dist) end
    end
    local vloss, vacc, degenerate = validate(cfg, model, valid_sampler)
    if not vloss then return end
    if not main then
      if not degenerate and (not state.best_valid_loss or vloss < state.best_valid_loss) then state.best_valid_loss = vloss end
      return
    end
    recipe.append_jsonl(metrics, { epoch = state.epoch, step = state.step, valid_loss = vloss, valid_accuracy = vacc,
                                   valid_degenerate = degenerate or nil })
    log(string.format("\nepoch %d, step %d: valid loss %.4f, valid accuracy %.3f", state.epoch, state.step, vloss, vacc))
    if degenerate then
      log("  every validation similarity is the same (a collapsed encoder, or BatchNorm statistics that make all"
        .. " eval-mode embeddings alike): this model is not kept as the best")
      return
    end
    if not state.best_valid_loss or vloss < state.best_valid_loss then
      state.best_valid_loss = vloss
      cocola.save(cfg.out .. "/best.safetensors", model:state_dict(), {
        metadata = { input = cfg.input, embedding_dim = tostring(model.embedding_dim),
                     epoch = string.format("%d", state.epoch), step = string.format("%d", state.step),
                     valid_loss = tostring(vloss), valid_accuracy = tostring(vacc) },
      })
    end
  end
  -- rank 0 writes the checkpoint (the running statistics of per-rank BatchNorm averaged first)
  local function checkpoint()
    average_batchnorm_buffers(model, dist)
    if main then save_checkpoint(cfg.out .. "/last", model, opt, sampler, state) end
  end
  local comm_seconds = 0
  local t0 = cocola.wall_time()
  while state.epoch < cfg.epochs and (cfg.max_steps == 0 or state.step < cfg.max_steps) do
    local batch = sampler:next_batch()
    if not batch then
      -- end of an epoch: validate, keep the best, checkpoint
      state.epoch = state.epoch + 1
      validate_and_keep_best()
      checkpoint()
    else
      local eq = cfg.eq_db > 0 and { db = cfg.eq_db, rng = Rng.new(cfg.seed, state.step + 1, 21) } or nil
      opt:zero_grad()
      set_learning_rates(state.step + 1)
      local sim
      if world > 1 then
        sim = M.distributed_similarity(model, batch, dist, cfg.device)
      elseif cfg.simulate_ranks > 1 then
        sim = M.simulated_similarity(model, batch, cfg.simulate_ranks, cfg.device)
      else
        local a, p, n = batch_features(batch, model, cfg.device, eq)
        sim = model(a, p, n)
      end
      if not sim then
        log(string.format("\nstep %d: a batch of %d windows for %d ranks is skipped", state.step + 1, batch.anchor:size(1),
          math.max(world, cfg.simulate_ranks)))
        goto next_batch
      end
      local loss = cocola.metrics.contrastive_loss(sim)
      loss:backward()
      if world > 1 then comm_seconds = comm_seconds + dist.average_gradients(model:named_parameters(), { bucket_mb = cfg.bucket_mb }) end
      opt:step()
      state.step = state.step + 1
      local l, acc = loss:item(), cocola.metrics.accuracy(sim)
      losses[#losses + 1] = l
      if main then
        recipe.append_jsonl(metrics, { epoch = state.epoch, step = state.step, loss = l, accuracy = acc,
          lr = opt.param_groups[1].lr })
      end
      local elapsed = cocola.wall_time() - t0
      if main then recipe.progress(string.format("epoch %d", state.epoch + 1), math.min(sampler.position // cfg.batch_size, per_epoch), per_epoch,
        string.format("loss %.4f acc %.2f %.2f s/step", l, acc, elapsed / #losses)) end
      local validating = cfg.valid_every > 0 and state.step % cfg.valid_every == 0
      if validating then validate_and_keep_best() end
      if validating or state.step % cfg.checkpoint_every == 0 then checkpoint() end
    end
    ::next_batch::
    local over = cfg.max_minutes > 0 and cocola.wall_time() - started > cfg.max_minutes * 60
    if over ~= nil and world > 1 and cfg.max_minutes > 0 then
      -- every rank stops at the same step: the first that is over the limit decides
      over = dist.all_reduce(cocola.tensor({ over and 1.0 or 0.0 }), "max"):item() > 0
    end
    if over then
      log(string.format("\nmax_minutes=%g reached after %.1f min: stopping at step %d", cfg.max_minutes,
        (cocola.wall_time() - started) / 60, state.step))
      break
    end
  end
  checkpoint()
  if world > 1 then
    state.comm_seconds = comm_seconds
    log(string.format("\ndistributed: %.2f s of gradient all-reduce over %d steps", comm_seconds, #losses))
  end
  if main then require("cocola.recipes.diffusion_trainer").plot_curves(cfg, log) end
  return losses, state
end

M.DEFAULTS = DEFAULTS
M.DOCS = DOCS

-- the checkpoint writer (save_checkpoint(dir, model, opt, sampler, state)), for tests/faults
M.save_checkpoint = save_checkpoint

--- command-line entry: key=value arguments -> run; errors go to stderr with a non-zero status
function M.main(args, name)
  return recipe.main(name or "train_cocola", DEFAULTS, M.run, args, DOCS)
end

return M
