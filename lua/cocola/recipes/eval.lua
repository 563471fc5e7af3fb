-- cocola.recipes.eval — coherence accuracy (the paper's Table 2, and harder protocols that only
-- coherence can pass) and the ground-truth / random COCOLA scores (Table 3), for COCOLA models and a
-- non-learned baseline side by side, on one or more test splits. Run as lua5.4 recipes/eval_cocola.lua
-- or `cocola eval`.
--
-- For every window of the split (`window` seconds on the training grid, windows overlapping at most
-- max_overlap, visited in a seeded order; only whole windows, none running past the end of a track,
-- so that no window is partly padding, the rule of cocola.scoring) the sampler draws the anchor / positive sub-mixes exactly as
-- in training (noise off by default). Every model embeds each anchor and positive once, in chunks of
-- `batch`, through model:features(waves) and model:embed(features, mode); then, for each K of `ks`:
--  * protocol "paper": consecutive groups of K windows form a K x K similarity matrix (rows anchors,
--    columns positives; negatives are the other windows of the group, mostly other songs); a row is a
--    hit when its maximum is the diagonal (Eq. 8; ties go to the first column). This partly measures
--    song identity: a positive from another song differs in key, tempo and sound.
--  * protocol "same_track": each anchor against its own positive and K - 1 negatives made of the same
--    stems of the same track at least `min_distance` seconds away (same key, tempo and instruments;
--    silent candidates are passed over).
--  * protocol "shifted": each anchor against its own positive and K - 1 negatives that are the same
--    positive stems read from their files at offset + f * beat, f drawn per anchor (a seeded order)
--    from `shift_beats` (fractions of a beat: same content, same sound, out of time). The beat is a
--    quarter note at the MIDI tempo in force at the window's start when the track has MIDI (Slakh
--    layout: <track>/all_src.mid, else <track>/MIDI/S00.mid; a file without tempo events is 120 bpm),
--    else `shift_seconds`. A shift that would run past the end of the track is read backwards
--    (offset - f * beat) when that fits; silent reads are passed over.
--  * protocol "transposed": each anchor against its own positive and K - 1 negatives that are the
--    positive pitch-shifted (cocola.audio.pitch_shift, librosa's phase vocoder) by semitones drawn per
--    anchor (a seeded order) from `transpose_semitones` (non-zero, at most 6 either way): same rhythm,
--    wrong key.
--    In the three protocols above an anchor is a hit when its positive scores strictly above every
--    negative; an anchor without K - 1 usable negatives is left out (the `anchors` column says how many
--    were counted). K = 2 uses the first negative of the anchor's draw, K = 8 the first seven.
--  * every accuracy p over n anchors has two standard errors: the naive one sqrt(p (1 - p) / n), and
--    the cluster standard error by track, sqrt(G / (G - 1) * sum_g (h_g - p n_g)^2) / n over the G
--    tracks (h_g hits of n_g anchors in track g), which accounts for windows of one song being
--    correlated. Tables show "accuracy ± cluster standard error"; the CSV and JSON have both.
--  * every model against the reference (the first baseline of the list): the accuracy difference on the
--    same anchors and its paired cluster standard error (M.paired_difference), and whether the model is
--    above by more than two of them (CSV/JSON: vs_reference, vs_reference_se).
--  * scores: COCOLA score of ground-truth pairs (anchor, own positive) and of random pairs (anchor, the
--    positive of a window of another track), mean and standard deviation, and their separation
--    (mean_gt - mean_random) / pooled standard deviation.
-- Output: Markdown tables on stdout and in <out>/results.md, <out>/results.csv (one row per model,
-- dataset, protocol, K) and <out>/results.json; and pictures in <out>/plots/ (plots=false: none; without
-- gnuplot a line in the log says they were skipped): scores-<model>-<dataset>.png, the distributions of
-- the COCOLA score of ground-truth and of random pairs overlaid, and accuracy-<protocol>-k<K>.png, the
-- accuracy matrix of the tables (models x datasets) as a heat map.
-- Settings: models = comma list: "default" (the bundled model), a baseline name of cocola.baselines,
-- or a checkpoint (file or training folder); baseline = comma list of baselines added beside the
-- models ("" for none); datasets = comma list of layout:root (e.g. slakh:data/midi_stems); split;
-- ks; protocols; shift_beats, shift_seconds, transpose_semitones as above.
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local Sampler = require "cocola.data.sampler"
local Rng = require "cocola.data.rng"
local tempo = require "cocola.data.tempo"
local cjson = require "cjson"
local fs = require "cocola.data.fs"

local DEFAULTS = {
  models = "default", baseline = "chroma-onset", datasets = "slakh:data/midi_stems", split = "test", ks = "2,8",
  protocols = "paper,same_track,shifted,transposed", out = "runs/eval", window = 5.0, max_overlap = 0.5,
  noise = 0.0, silence_rms = 1e-4, min_distance = 10.0, shift_beats = "0.25,0.5,0.75,1.25,1.5,1.75,2.5",
  shift_seconds = 0.5, transpose_semitones = "1,2,3,4,5,6,-1,-2,-3,-4,-5,-6", mode = "both", max_windows = 0,
  batch = 32, seed = 0, threads = 2, plots = true,
}

-- one line of meaning per setting (`--help`)
local DOCS = {
  models = "models, comma-separated: default (the bundled one), a checkpoint file, a training run's folder, or a baseline name",
  baseline = "non-learned baselines shown beside the models (comma-separated; \"\" for none)",
  datasets = "layout:root pairs, comma-separated (e.g. slakh:data/midi_stems,stems_folder:data/x)",
  split = "split evaluated",
  ks = "K values: batch sizes of the paper protocol and 1 + negatives of the others",
  protocols = "any of paper,same_track,shifted,transposed",
  out = "output folder (created with its parents): results.md, results.csv, results.json",
  window = "window length in seconds",
  max_overlap = "largest overlap of two windows of a track (fraction of a window)",
  noise = "std of Gaussian noise on positives (the paper evaluates without)",
  silence_rms = "stems quieter than this RMS in a window count as silent",
  min_distance = "same_track negatives: at least this many seconds from the positive",
  shift_beats = "shifted negatives: shifts as fractions of the MIDI beat",
  shift_seconds = "shifted negatives: the beat in seconds where a track has no MIDI",
  transpose_semitones = "transposed negatives: semitone shifts drawn from this list",
  plots = "draw score histograms and accuracy heat maps into <out>/plots/ (needs gnuplot; false: none)",
  mode = "embedding mode of HPSS models: both, harmonic or percussive",
  max_windows = "evaluate at most this many windows per dataset (0: all)",
  batch = "windows per forward pass",
  seed = "seed of the window order and the negatives",
  threads = "CPU threads",
}

local M = { DEFAULTS = DEFAULTS, DOCS = DOCS }

local RATE = 16000
local PROTOCOL_ORDER = { "paper", "same_track", "shifted", "transposed" }
local PROTOCOLS = { paper = true, same_track = true, shifted = true, transposed = true }
local MAX_SEMITONES = 6

local function list(text, what)
  local out = {}
  for item in tostring(text):gmatch("[^,]+") do
    local v = item:match("^%s*(.-)%s*$")
    if v ~= "" then out[#out + 1] = v end
  end
  if #out == 0 then error(what .. ": empty list", 0) end
  return out
end

local function numbers(text, what)
  local out = {}
  for _, item in ipairs(list(text, what)) do
    local v = tonumber(item)
    if not v or v ~= v or math.abs(v) == math.huge then error(what .. ": '" .. item .. "' is not a number", 0) end
    out[#out + 1] = v
  end
  return out
end

local function basename(path) return (path:gsub("/+$", ""):match("([^/]+)$") or path) end

-- cocola.baselines when it is installed (errors inside it are raised, not hidden)
local function baselines_module()
  if package.loaded["cocola.baselines"] or package.searchpath("cocola.baselines", package.path) then
    return require "cocola.baselines"
  end
  return nil
end

-- the embedding mode to evaluate a model in: cfg.mode for HPSS models, "both" for the others
-- (mel models and the baselines have only one)
function M.mode_for(model, cfg)
  return model.input == "hpss" and cfg.mode or "both"
end

--- load_model(spec) -> model, name: "default", a baseline name, or a checkpoint; in eval mode
--- load_model(spec) -> model (eval mode), its row name, and a note on which file a folder gave (or nil).
-- spec: "default", a baseline name, a checkpoint file, a checkpoint folder or a training run's folder
-- (its best model if there is one, else its last checkpoint: CoCola.resolve_checkpoint).
function M.load_model(spec)
  local baselines = baselines_module()
  local model, name, note
  if spec == "default" then
    model, name = cocola.models.cocola.default(), "default"
  elseif baselines and baselines.is_baseline(spec) then
    model, name = baselines.load(spec), spec
  else
    local CoCola = require "cocola.models.cocola"
    local file
    file, note = CoCola.resolve_checkpoint(spec)
    model = CoCola.from_checkpoint(file)
    name = M.row_name(file)
  end
  model:eval()
  return model, name, note
end

--- the row name of a checkpoint file: its name without extension, and for a training run's generic
-- names its run's folder too (runs/x/best.safetensors -> x/best, runs/x/last/model.safetensors -> x/last)
function M.row_name(file)
  local parts = {}
  for p in file:gsub("%.safetensors$", ""):gsub("%.ckpt$", ""):gmatch("[^/]+") do parts[#parts + 1] = p end
  local n = #parts
  if parts[n] == "model" and n > 1 then
    table.remove(parts)
    n = n - 1
  end
  if (parts[n] == "best" or parts[n] == "last") and n > 1 then return parts[n - 1] .. "/" .. parts[n] end
  return parts[n]
end

--- names made distinct: rows whose names collide get more of their path (runs/a/best and runs/b/best
-- are a/best and b/best already; x/y/best and z/y/best become x/y/best and z/y/best), else a number
function M.distinct_names(specs, names)
  local function parts_of(spec)
    local path = tostring(spec):gsub("%.safetensors$", ""):gsub("%.ckpt$", ""):gsub("/+$", "")
    local parts = {}
    for p in path:gmatch("[^/]+") do parts[#parts + 1] = p end
    return parts
  end
  local function tail(parts, len) return table.concat(parts, "/", math.max(1, #parts - len + 1), #parts) end
  local groups, out = {}, {}
  for i, n in ipairs(names) do
    out[i] = n
    groups[n] = groups[n] or {}
    table.insert(groups[n], i)
  end
  for name, members in pairs(groups) do
    if #members > 1 then
      local parts = {}
      for _, j in ipairs(members) do parts[j] = parts_of(specs[j]) end
      for _, j in ipairs(members) do
        -- the shortest tail of its path that no other member's tail of that length equals
        local chosen
        for len = 1, #parts[j] do
          local mine, unique = tail(parts[j], len), true
          for _, k in ipairs(members) do
            if k ~= j and tail(parts[k], len) == mine then unique = false end
          end
          if unique then
            chosen = mine
            break
          end
        end
        out[j] = chosen or (name .. "#" .. j)
      end
    end
  end
  return out
end

--- embeddings (N, D) of a list of (samples) waves, in chunks of `batch`, through model:features
function M.embed_all(model, waves, batch, mode)
  local parts = {}
  for first = 1, #waves, batch do
    local chunk = table.move(waves, first, math.min(#waves, first + batch - 1), 1, {})
    parts[#parts + 1] = cocola.no_grad(function() return model:embed(model:features(cocola.stack(chunk, 1)), mode) end)
  end
  return cocola.cat(parts, 1)
end

local function mean_std(xs)
  local s, n = 0, #xs
  if n == 0 then return 0 / 0, 0 / 0 end
  for _, x in ipairs(xs) do s = s + x end
  local m = s / n
  local v = 0
  for _, x in ipairs(xs) do v = v + (x - m) ^ 2 end
  return m, math.sqrt(v / math.max(1, n - 1))
end

--- standard_errors(hits, clusters) -> accuracy, naive SE, cluster SE, number of clusters.
-- hits: list of booleans (one per anchor); clusters: the anchor's cluster (its track), same length.
-- naive = sqrt(p (1 - p) / n); cluster = sqrt(G / (G - 1) * sum_g (h_g - p n_g)^2) / n (NaN when G < 2).
function M.standard_errors(hits, clusters)
  local n = #hits
  if n == 0 then return 0 / 0, 0 / 0, 0 / 0, 0 end
  local total, by = 0, {}
  local order = {}
  for i, h in ipairs(hits) do
    local g = clusters[i]
    if not by[g] then by[g] = { hits = 0, n = 0 }; order[#order + 1] = g end
    by[g].n = by[g].n + 1
    if h then
      by[g].hits = by[g].hits + 1
      total = total + 1
    end
  end
  local p = total / n
  local naive = math.sqrt(p * (1 - p) / n)
  local G = #order
  if G < 2 then return p, naive, 0 / 0, G end
  local ss = 0
  for _, g in ipairs(order) do ss = ss + (by[g].hits - p * by[g].n) ^ 2 end
  return p, naive, math.sqrt(G / (G - 1) * ss) / n, G
end

--- paired_difference(hits_a, hits_b, clusters) -> d, se, G: the accuracy difference of two models on
-- the same anchors, d = mean(a_i - b_i), with its cluster standard error
-- sqrt(G / (G - 1) * sum_g (D_g - d n_g)^2) / n (D_g = sum of a_i - b_i over cluster g; NaN when G < 2).
-- Paired: what both get right or wrong on a window cancels, so this is the SE to judge "above by two SE".
function M.paired_difference(hits_a, hits_b, clusters)
  local n = #hits_a
  if n ~= #hits_b or n ~= #clusters then error("paired_difference: the lists differ in length", 2) end
  if n == 0 then return 0 / 0, 0 / 0, 0 end
  local total, by, order = 0, {}, {}
  for i = 1, n do
    local g = clusters[i]
    if not by[g] then by[g] = { sum = 0, n = 0 }; order[#order + 1] = g end
    local diff = (hits_a[i] and 1 or 0) - (hits_b[i] and 1 or 0)
    by[g].sum, by[g].n = by[g].sum + diff, by[g].n + 1
    total = total + diff
  end
  local d, G = total / n, #order
  if G < 2 then return d, 0 / 0, G end
  local ss = 0
  for _, g in ipairs(order) do ss = ss + (by[g].sum - d * by[g].n) ^ 2 end
  return d, math.sqrt(G / (G - 1) * ss) / n, G
end

--- separation(gt, random) -> (mean_gt - mean_random) / pooled standard deviation
function M.separation(gt, random)
  local m1, s1 = mean_std(gt)
  local m2, s2 = mean_std(random)
  local n1, n2 = #gt, #random
  if n1 + n2 < 3 or n1 == 0 or n2 == 0 then return 0 / 0 end
  local pooled = math.sqrt(((n1 - 1) * s1 ^ 2 + (n2 - 1) * s2 ^ 2) / (n1 + n2 - 2))
  if pooled == 0 then return 0 / 0 end
  return (m1 - m2) / pooled
end

local function sum_stems(track, picks, offset, window)
  local s
  for _, i in ipairs(picks) do
    local w = cocola.audio.load(track.stems[i].path, { sr = RATE, mono = true, offset = offset, duration = window }):view(-1)
    s = s and s + w or w
  end
  return s
end

local function rms(w) return math.sqrt((w * w):mean():item()) end

-- Gaussian noise of std cfg.noise from its own seeded stream (the engine's generator is left as it was)
local function with_noise(w, cfg, ...)
  if cfg.noise <= 0 then return w end
  local gen_seed, gen_offset = cocola.get_rng_state()
  cocola.set_rng_state(Rng.new(cfg.seed, ...):next(), 0)
  local out = w + cocola.randn(w.shape) * cfg.noise
  cocola.set_rng_state(gen_seed, gen_offset)
  return out
end

--- the windows of a split with their sub-mixes: {anchor, positive, track (index), offset, info}
function M.draw_pairs(tracks, cfg, log)
  local sampler = Sampler.new(tracks, {
    batch_size = 2, window = cfg.window, max_overlap = cfg.max_overlap, seed = cfg.seed,
    silence_rms = cfg.silence_rms, noise = 0, shuffle = true, whole_windows = true,
  })
  local pairs_ = {}
  local total = #sampler.order
  if cfg.max_windows > 0 then total = math.min(total, cfg.max_windows) end
  for pos = 1, total do
    local idx = sampler.order[pos]
    local a, p, info = sampler:pair(idx)
    if a then
      p = with_noise(p, cfg, idx, 11)
      pairs_[#pairs_ + 1] = { anchor = a, positive = p, track = sampler.windows[idx][1], offset = sampler.windows[idx][2], info = info }
    end
    recipe.progress("  windows", pos, total)
  end
  log(string.format("  %d windows with at least two active stems (of %d)", #pairs_, total))
  return pairs_
end

--- beat_seconds(track, offset, cfg, cache?) -> the length of a beat (a quarter note) at `offset`
-- seconds and where it came from ("midi" or "shift_seconds"); cocola.data.tempo reads the MIDI
function M.beat_seconds(track, offset, cfg, cache)
  local beat = tempo.beat_seconds(track, offset, cache)
  if not beat then return cfg.shift_seconds, "shift_seconds" end
  return beat, "midi"
end

-- negatives of each protocol: fn(tracks, pairs_, pair_index, count, cfg, ctx) -> waves, what (one
-- value per wave: an offset in seconds or a number of semitones), or nil when fewer than count exist
local NEGATIVES = {}

-- the first `count` audible reads of the pair's positive stems at the candidate offsets, in order
-- (noise from stream `stream`): waves and their offsets, or nil when fewer are audible
local function audible_reads(track, pr, pi, offsets, count, cfg, stream)
  local found, where = {}, {}
  for _, off in ipairs(offsets) do
    if #found == count then break end
    local w = sum_stems(track, pr.info.positive, off, cfg.window)
    if rms(w) > cfg.silence_rms then
      found[#found + 1] = with_noise(w, cfg, pi, stream, #found + 1)
      where[#where + 1] = off
    end
  end
  if #found < count then return nil end
  return found, where
end

-- the same stems of the same track at least min_distance away, not silent
function NEGATIVES.same_track(tracks, pairs_, pi, count, cfg)
  local pr = pairs_[pi]
  local track = tracks[pr.track]
  local hop = cfg.window * (1 - cfg.max_overlap)
  local offsets = {}
  local t = 0
  while t + cfg.window <= track.duration + 1e-9 do
    if math.abs(t - pr.offset) >= cfg.min_distance - 1e-9 then offsets[#offsets + 1] = t end
    t = t + hop
  end
  return audible_reads(track, pr, pi, Rng.new(cfg.seed, pi, 13):shuffled(offsets), count, cfg, 13)
end

-- the positive's stems read at offset + f * beat (f from shift_beats, in a seeded order per anchor)
function NEGATIVES.shifted(tracks, pairs_, pi, count, cfg, ctx)
  local pr = pairs_[pi]
  local track = tracks[pr.track]
  local beat = M.beat_seconds(track, pr.offset, cfg, ctx.tempo_cache)
  local offsets = {}
  for _, f in ipairs(Rng.new(cfg.seed, pi, 19):shuffled(ctx.shift_beats)) do
    local shift = f * beat
    local off = pr.offset + shift
    if off + cfg.window > track.duration + 1e-9 and pr.offset - shift >= 0 then off = pr.offset - shift end
    offsets[#offsets + 1] = off
  end
  return audible_reads(track, pr, pi, offsets, count, cfg, 19)
end

-- the positive pitch-shifted by semitones from transpose_semitones (in a seeded order per anchor)
function NEGATIVES.transposed(_, pairs_, pi, count, cfg, ctx)
  local steps = Rng.new(cfg.seed, pi, 23):shuffled(ctx.transpose_semitones)
  if #steps < count then return nil end
  local found, what = {}, {}
  for c = 1, count do
    found[c] = cocola.audio.pitch_shift(pairs_[pi].positive, RATE, steps[c])
    what[c] = steps[c]
  end
  return found, what
end

M.NEGATIVES = NEGATIVES

-- embeds every anchor's negatives with every model, in chunks of about cfg.batch waves; returns
-- {anchors = {pair indices with enough negatives}, what = {per pair: offsets / semitones},
--  scores = {per model: {per pair: {sim(anchor, negative_c)}}}}
local function score_negatives(protocol, models, embeddings, tracks, pairs_, count, cfg, ctx)
  local out = { anchors = {}, what = {}, scores = {} }
  for mi = 1, #models do out.scores[mi] = {} end
  local pending, owners = {}, {}
  local function flush()
    if #pending == 0 then return end
    local rows, row_of = {}, {}
    for _, pi in ipairs(owners) do
      if not row_of[pi] then rows[#rows + 1] = pi; row_of[pi] = #rows end
    end
    for mi, model in ipairs(models) do
      local en = M.embed_all(model, pending, cfg.batch, M.mode_for(model, cfg))
      local ea_rows = {}
      for r, pi in ipairs(rows) do ea_rows[r] = embeddings[mi].anchors:select(1, pi) end
      local sim = cocola.no_grad(function() return model.similarity(cocola.stack(ea_rows, 1), en) end):totable()
      for j, pi in ipairs(owners) do
        local list_ = out.scores[mi][pi] or {}
        list_[#list_ + 1] = sim[row_of[pi]][j]
        out.scores[mi][pi] = list_
      end
    end
    pending, owners = {}, {}
  end
  for pi = 1, #pairs_ do
    local waves, what = NEGATIVES[protocol](tracks, pairs_, pi, count, cfg, ctx)
    if waves then
      out.anchors[#out.anchors + 1] = pi
      out.what[pi] = what
      for _, w in ipairs(waves) do
        pending[#pending + 1] = w
        owners[#owners + 1] = pi
      end
      if #pending >= cfg.batch then flush() end
    end
    recipe.progress("  " .. protocol, pi, #pairs_)
  end
  flush()
  return out
end

-- K x K groups of consecutive windows: per row, whether its diagonal is the maximum (first on ties)
local function paper_hits(sim, n, k)
  local hits, anchors = {}, {}
  for g = 0, n // k - 1 do
    for r = 1, k do
      local i = g * k + r
      local best, arg = -math.huge, nil
      for c = 1, k do
        local v = sim[i][g * k + c]
        if v > best then best, arg = v, c end
      end
      hits[#hits + 1] = arg == r
      anchors[#anchors + 1] = i
    end
  end
  return hits, anchors
end

local function accuracy_row(model, dataset, protocol, k, hits, anchors, pairs_)
  local clusters = {}
  for i, pi in ipairs(anchors) do clusters[i] = pairs_[pi].track end
  local acc, naive, cluster, groups = M.standard_errors(hits, clusters)
  return { model = model, dataset = dataset, protocol = protocol, k = k, accuracy = acc, se_naive = naive,
           se_cluster = cluster, tracks = groups, anchors = #hits }
end

-- every model and protocol on one dataset: accuracy rows, score rows, and the per-anchor outcomes
local function evaluate(models, names, dataset, tracks, pairs_, cfg, ks, protocols, ctx, log)
  local n = #pairs_
  local anchors, positives = {}, {}
  for i, pr in ipairs(pairs_) do anchors[i], positives[i] = pr.anchor, pr.positive end
  local embeddings, sims = {}, {}
  for mi, model in ipairs(models) do
    local ea = M.embed_all(model, anchors, cfg.batch, M.mode_for(model, cfg))
    local ep = M.embed_all(model, positives, cfg.batch, M.mode_for(model, cfg))
    embeddings[mi] = { anchors = ea, positives = ep }
    sims[mi] = cocola.no_grad(function() return model.similarity(ea, ep) end):totable()
    recipe.progress("  embeddings", mi, #models)
  end
  local rows, scores, details = {}, {}, { negatives = {}, score_lists = {} }
  -- Table 3: ground-truth pairs against random pairs (a positive of another track)
  for mi, name in ipairs(names) do
    local sim = sims[mi]
    local gt, random = {}, {}
    local rng = Rng.new(cfg.seed, 17)
    for i = 1, n do
      gt[i] = sim[i][i]
      for _ = 1, 20 do
        local j = rng:int(1, n)
        if pairs_[j].track ~= pairs_[i].track then
          random[#random + 1] = sim[i][j]
          break
        end
      end
    end
    local gt_mean, gt_std = mean_std(gt)
    local rnd_mean, rnd_std = mean_std(random)
    scores[#scores + 1] = { model = name, dataset = dataset, windows = n, ground_truth_mean = gt_mean,
                            ground_truth_std = gt_std, random_mean = rnd_mean, random_std = rnd_std,
                            separation = M.separation(gt, random) }
    details.score_lists[name] = { ground_truth = gt, random = random }
  end
  local outcomes = {}
  local function add(row, hits, anchor_list)
    rows[#rows + 1] = row
    outcomes[#outcomes + 1] = { hits = hits, anchors = anchor_list }
  end
  local kmax = 0
  for _, k in ipairs(ks) do kmax = math.max(kmax, k) end
  for _, protocol in ipairs(PROTOCOL_ORDER) do
    if protocols[protocol] and protocol == "paper" then
      for _, k in ipairs(ks) do
        for mi, name in ipairs(names) do
          local hits, anchor_list = paper_hits(sims[mi], n, k)
          add(accuracy_row(name, dataset, "paper", k, hits, anchor_list, pairs_), hits, anchor_list)
        end
      end
    elseif protocols[protocol] then
      local neg = score_negatives(protocol, models, embeddings, tracks, pairs_, kmax - 1, cfg, ctx)
      details.negatives[protocol] = { anchors = neg.anchors, what = neg.what }
      for _, k in ipairs(ks) do
        for mi, name in ipairs(names) do
          local hits = {}
          for a, pi in ipairs(neg.anchors) do
            local positive, ok = sims[mi][pi][pi], true
            for c = 1, k - 1 do
              if neg.scores[mi][pi][c] >= positive then ok = false break end
            end
            hits[a] = ok
          end
          add(accuracy_row(name, dataset, protocol, k, hits, neg.anchors, pairs_), hits, neg.anchors)
        end
      end
      if #neg.anchors < n then
        log(string.format("  %s: %d of %d windows have %d usable negatives", protocol, #neg.anchors, n, kmax - 1))
      end
    end
  end
  details.outcomes = outcomes
  -- each model against the reference (the first baseline), paired on the same anchors
  local reference = {}
  for i, r in ipairs(rows) do
    if r.model == ctx.reference then reference[r.protocol .. "|" .. r.k] = outcomes[i] end
  end
  for i, r in ipairs(rows) do
    local ref = reference[r.protocol .. "|" .. r.k]
    if ref and r.model ~= ctx.reference then
      local clusters = {}
      for a, pi in ipairs(outcomes[i].anchors) do clusters[a] = pairs_[pi].track end
      r.vs_reference, r.vs_reference_se = M.paired_difference(outcomes[i].hits, ref.hits, clusters)
      r.reference = ctx.reference
    end
  end
  return rows, scores, details
end

local function fmt(x, digits)
  if x ~= x then return "n/a" end
  return string.format("%." .. (digits or 3) .. "f", x)
end

-- a name as part of a file name
local function file_part(name) return (tostring(name):gsub("[^%w_.-]+", "_")) end

--- M.plots(plot, rows, details, model_names, dataset_names, dir, log) -> list of written files (plot:
-- cocola.plot): per model and
-- dataset the histograms of the ground-truth and random pairs' scores, overlaid; per protocol and K the
-- accuracy matrix (models x datasets) as a heat map, 0 to 1, with the names on its axes and the
-- accuracies on its cells (a matrix with a cell over no anchors is left out, with a line in the log)
function M.plots(plot, rows, details, model_names, dataset_names, dir, log)
  fs.mkdir_p(dir)
  local written = {}
  for _, d in ipairs(dataset_names) do
    for _, m in ipairs(model_names) do
      local l = details[d].score_lists[m]
      local sets = {}
      for _, t in ipairs({ { l.ground_truth, "ground-truth pairs" }, { l.random, "random pairs (another track)" } }) do
        if #t[1] > 0 then sets[#sets + 1] = { values = t[1], label = string.format("%s (%d)", t[2], #t[1]) } end
      end
      local out = string.format("%s/scores-%s-%s.png", dir, file_part(m), file_part(d))
      plot.histogram(sets, { output = out, bins = 30, title = string.format("COCOLA score of window pairs: %s on %s", m, d),
        xlabel = "COCOLA score (similarity of the pair's embeddings)", ylabel = "window pairs", key = "below" })
      written[#written + 1] = out
    end
  end
  local seen, keys = {}, {}
  for _, r in ipairs(rows) do
    local key = r.protocol .. "|" .. r.k
    if not seen[key] then seen[key] = {}; keys[#keys + 1] = { r.protocol, r.k } end
    seen[key][r.model .. "|" .. r.dataset] = r.accuracy
  end
  for _, key in ipairs(keys) do
    local cells, missing = seen[key[1] .. "|" .. key[2]], false
    local matrix = {}
    for i, m in ipairs(model_names) do
      matrix[i] = {}
      for j, d in ipairs(dataset_names) do
        local a = cells[m .. "|" .. d]
        if a == nil or a ~= a then missing = true end
        matrix[i][j] = a or 0
      end
    end
    if missing then
      log(string.format("plots: accuracy-%s-k%d left out (a model and dataset without anchors)", key[1], key[2]))
    else
      local out = string.format("%s/accuracy-%s-k%d.png", dir, file_part(key[1]), key[2])
      local longest = 0
      for _, m in ipairs(model_names) do longest = math.max(longest, #m) end
      plot.image(cocola.tensor(matrix, { dtype = "float64" }), {
        output = out, origin = "upper", cbrange = { 0, 1 }, xtics = dataset_names, ytics = model_names, labels = "%.3f",
        title = string.format("Accuracy, protocol %s, K = %d", key[1], key[2]), xlabel = "dataset", ylabel = "model",
        cblabel = "accuracy (fraction of anchors)",
        width = math.min(20000, 360 + 7 * longest + 110 * #dataset_names), height = math.min(20000, 220 + 45 * #model_names) })
      written[#written + 1] = out
    end
  end
  return written
end

--- Markdown tables: one accuracy matrix (models x datasets) per protocol and K, cells "accuracy ±
-- cluster standard error (by track)", and the scores
function M.markdown(rows, scores, model_names, dataset_names)
  local lines = {}
  local seen, keys = {}, {}
  for _, r in ipairs(rows) do
    local key = r.protocol .. "|" .. r.k
    if not seen[key] then seen[key] = true; keys[#keys + 1] = { r.protocol, r.k } end
  end
  local function cell(model, dataset, protocol, k)
    for _, r in ipairs(rows) do
      if r.model == model and r.dataset == dataset and r.protocol == protocol and r.k == k then
        return fmt(r.accuracy) .. " ± " .. fmt(r.se_cluster)
      end
    end
    return "-"
  end
  for _, key in ipairs(keys) do
    lines[#lines + 1] = string.format("Accuracy ± cluster (by track) standard error, protocol %s, K = %d", key[1], key[2])
    lines[#lines + 1] = ""
    lines[#lines + 1] = "| model | " .. table.concat(dataset_names, " | ") .. " |"
    lines[#lines + 1] = "|---|" .. string.rep("---|", #dataset_names)
    for _, m in ipairs(model_names) do
      local cells = {}
      for _, d in ipairs(dataset_names) do cells[#cells + 1] = cell(m, d, key[1], key[2]) end
      lines[#lines + 1] = "| " .. m .. " | " .. table.concat(cells, " | ") .. " |"
    end
    lines[#lines + 1] = ""
  end
  local differences = {}
  for _, r in ipairs(rows) do
    if r.vs_reference then differences[#differences + 1] = r end
  end
  if #differences > 0 then
    lines[#lines + 1] = string.format("Accuracy minus %s's on the same windows ± paired cluster standard error (above by more than two: yes)",
      differences[1].reference)
    lines[#lines + 1] = ""
    lines[#lines + 1] = "| model | dataset | protocol | K | difference | above by > 2 SE |"
    lines[#lines + 1] = "|---|---|---|---|---|---|"
    for _, r in ipairs(differences) do
      local above = r.vs_reference_se == r.vs_reference_se and r.vs_reference > 2 * r.vs_reference_se
      lines[#lines + 1] = string.format("| %s | %s | %s | %d | %+.3f ± %s | %s |", r.model, r.dataset, r.protocol, r.k,
        r.vs_reference, fmt(r.vs_reference_se), above and "yes" or "no")
    end
    lines[#lines + 1] = ""
  end
  lines[#lines + 1] = "COCOLA score (mean ± std); separation = (mean ground truth - mean random) / pooled std"
  lines[#lines + 1] = ""
  lines[#lines + 1] = "| model | dataset | windows | ground truth | random | separation |"
  lines[#lines + 1] = "|---|---|---|---|---|---|"
  for _, s in ipairs(scores) do
    lines[#lines + 1] = string.format("| %s | %s | %d | %s ± %s | %s ± %s | %s |", s.model, s.dataset, s.windows,
      fmt(s.ground_truth_mean, 2), fmt(s.ground_truth_std, 2), fmt(s.random_mean, 2), fmt(s.random_std, 2),
      fmt(s.separation, 2))
  end
  return table.concat(lines, "\n") .. "\n"
end

-- the settings checked before anything is loaded: ks, protocols and the protocols' lists
local function check_settings(cfg)
  local ks, kmax = {}, 0
  for _, k in ipairs(list(cfg.ks, "ks")) do
    local v = math.tointeger(tonumber(k))
    if not v or v < 2 then error("ks: K must be an integer >= 2, got '" .. k .. "'", 0) end
    ks[#ks + 1] = v
    kmax = math.max(kmax, v)
  end
  local protocols = {}
  for _, p in ipairs(list(cfg.protocols, "protocols")) do
    if not PROTOCOLS[p] then
      error("protocols: unknown protocol '" .. p .. "' (known: " .. table.concat(PROTOCOL_ORDER, ", ") .. ")", 0)
    end
    protocols[p] = true
  end
  for _, key in ipairs({ "window", "batch", "shift_seconds" }) do
    if type(cfg[key]) ~= "number" or not (cfg[key] > 0) then error(key .. ": must be a positive number", 0) end
  end
  local ctx = { tempo_cache = {} }
  if protocols.shifted then
    ctx.shift_beats = numbers(cfg.shift_beats, "shift_beats")
    for _, f in ipairs(ctx.shift_beats) do
      if f <= 0 then error("shift_beats: shifts must be positive fractions of a beat, got " .. f, 0) end
    end
    if #ctx.shift_beats < kmax - 1 then
      error(string.format("shift_beats: K = %d needs at least %d shifts, got %d", kmax, kmax - 1, #ctx.shift_beats), 0)
    end
  end
  if protocols.transposed then
    ctx.transpose_semitones = numbers(cfg.transpose_semitones, "transpose_semitones")
    for _, s in ipairs(ctx.transpose_semitones) do
      if s == 0 or math.abs(s) > MAX_SEMITONES then
        error(string.format("transpose_semitones: each must be non-zero and at most %d semitones either way, got %g",
          MAX_SEMITONES, s), 0)
      end
    end
    if #ctx.transpose_semitones < kmax - 1 then
      error(string.format("transpose_semitones: K = %d needs at least %d transpositions, got %d", kmax, kmax - 1,
        #ctx.transpose_semitones), 0)
    end
  end
  return ks, protocols, ctx
end

--- runs the evaluation; returns the accuracy rows, the score rows, and details {per dataset name:
-- {outcomes = {per accuracy row of that dataset: {hits, anchors (pair indices)}}, negatives =
-- {per protocol: {anchors, what (per pair: offsets or semitones)}}, pairs = the drawn pairs}}
function M.run(cfg, log)
  log = log or print
  recipe.log_config(cfg)
  cocola.set_num_threads(cfg.threads)
  local ks, protocols, ctx = check_settings(cfg)
  local specs = list(cfg.models, "models")
  if cfg.baseline ~= "" then
    local baselines = baselines_module()
    for _, b in ipairs(list(cfg.baseline, "baseline")) do
      if not baselines then
        error("baseline '" .. b .. "': cocola.baselines is not installed (baseline= leaves it out)", 0)
      end
      if not baselines.is_baseline(b) then error("baseline: unknown baseline '" .. b .. "'", 0) end
      local already = false
      for _, s in ipairs(specs) do
        already = already or (baselines.is_baseline(s) and baselines.canonical(s) == baselines.canonical(b))
      end
      if not already then specs[#specs + 1] = b end
    end
  end
  -- the output folder first: a run of many minutes must not fail at its last step
  local made, err = pcall(fs.mkdir_p, cfg.out)
  if not made then error(string.format("out: cannot create the folder '%s' (%s)", cfg.out, recipe.clean_error(err)), 0) end
  local probe = cfg.out .. "/.write_test"
  local f, ferr = io.open(probe, "wb")
  if not f then error(string.format("out: cannot write in '%s' (%s)", cfg.out, recipe.clean_error(ferr)), 0) end
  f:close()
  os.remove(probe)
  local models, model_names = {}, {}
  local baselines = baselines_module()
  for _, spec in ipairs(specs) do
    local model, name, note = M.load_model(spec)
    models[#models + 1], model_names[#model_names + 1] = model, name
    if note then log(string.format("model %s: %s", spec, note)) end
  end
  model_names = M.distinct_names(specs, model_names)
  for i, name in ipairs(model_names) do
    local model = models[i]
    if not ctx.reference and baselines and baselines.is_baseline(specs[i]) then ctx.reference = name end
    log(string.format("model %s: %s", name, model.extra_repr and tostring(model:extra_repr()) or name))
  end
  local rows, scores, dataset_names, details = {}, {}, {}, {}
  for _, ds in ipairs(list(cfg.datasets, "datasets")) do
    local layout, root = ds:match("^([%w_]+):(.+)$")
    if not layout then error("datasets: expected layout:root, got '" .. ds .. "'", 0) end
    local name = basename(root)
    dataset_names[#dataset_names + 1] = name
    local tracks = cocola.data.open(layout, root, cfg.split)
    log(string.format("dataset %s (%s, %s split): %d tracks", name, layout, cfg.split, #tracks))
    local pairs_ = M.draw_pairs(tracks, cfg, log)
    if #pairs_ < 2 then error(string.format("dataset %s: fewer than two usable windows in the %s split", name, cfg.split), 0) end
    if protocols.shifted then
      local from_midi = 0
      for _, t in ipairs(tracks) do
        if select(2, M.beat_seconds(t, 0, cfg, ctx.tempo_cache)) == "midi" then from_midi = from_midi + 1 end
      end
      log(string.format("  shifted: beats from MIDI tempo in %d of %d tracks, else %g s", from_midi, #tracks, cfg.shift_seconds))
    end
    local r, s, d = evaluate(models, model_names, name, tracks, pairs_, cfg, ks, protocols, ctx, log)
    table.move(r, 1, #r, #rows + 1, rows)
    table.move(s, 1, #s, #scores + 1, scores)
    d.pairs = pairs_
    details[name] = d
  end
  local md = M.markdown(rows, scores, model_names, dataset_names)
  io.write("\n", md)
  local csv = { "model,dataset,protocol,k,accuracy,se_naive,se_cluster,tracks,anchors,vs_reference,vs_reference_se" }
  local function num(x) return (x ~= nil and x == x) and string.format("%.6f", x) or "" end
  for _, r in ipairs(rows) do
    csv[#csv + 1] = string.format("%s,%s,%s,%d,%s,%s,%s,%d,%d,%s,%s", r.model, r.dataset, r.protocol, r.k, num(r.accuracy),
      num(r.se_naive), num(r.se_cluster), r.tracks, r.anchors, num(r.vs_reference), num(r.vs_reference_se))
  end
  -- JSON has no NaN: an accuracy over no anchors (or an undefined standard error) is null
  local function json_rows(list_)
    local out = {}
    for i, r in ipairs(list_) do
      out[i] = {}
      for k, v in pairs(r) do out[i][k] = (v ~= v) and cjson.null or v end
    end
    return out
  end
  recipe.write_atomic(cfg.out .. "/results.csv", table.concat(csv, "\n") .. "\n")
  recipe.write_atomic(cfg.out .. "/results.json", cjson.encode({
    accuracy = json_rows(rows), scores = json_rows(scores), settings = cfg,
    standard_errors = "se_naive = sqrt(p (1 - p) / n); se_cluster = sqrt(G / (G - 1) * sum_g (h_g - p n_g)^2) / n over tracks;"
      .. " vs_reference = accuracy minus the reference baseline's on the same anchors, vs_reference_se its paired cluster SE",
  }))
  recipe.write_atomic(cfg.out .. "/results.md", md)
  recipe.plots(cfg.plots, log, function(plot)
    local written = M.plots(plot, rows, details, model_names, dataset_names, cfg.out .. "/plots", log)
    log(string.format("plots: %d pictures in %s/plots", #written, cfg.out))
  end)
  return rows, scores, details
end

--- command-line entry: key=value arguments -> run; errors go to stderr with a non-zero status
function M.main(args, name)
  return recipe.main(name or "eval_cocola", DEFAULTS, M.run, args, DOCS)
end

return M
