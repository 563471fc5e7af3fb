-- cocola.recipes.eval — the paper's Table 2 and Table 3 (Ground Truth / Random rows) for one or more
-- COCOLA models on one or more test splits. Run as lua5.4 recipes/eval_cocola.lua or `cocola eval`.
--
-- For every window of the split (5 s on the training grid, windows overlapping at most max_overlap,
-- visited in a seeded order) the sampler draws the anchor / positive sub-mixes exactly as in
-- training (noise off by default). Every anchor and positive is embedded once; then:
--  * protocol "paper": consecutive groups of K windows form a K x K similarity matrix (rows anchors,
--    columns positives; negatives are the other windows of the group, mostly other songs); accuracy
--    is the fraction of rows whose maximum is the diagonal (Eq. 8), over the whole split.
--  * protocol "same_track" (harder): each anchor is set against its own positive and K - 1
--    negatives made of the same stems of the same track at least `min_distance` seconds away (same
--    key, tempo and instruments; silent candidates are passed over); accuracy as above.
--  * scores: COCOLA score of ground-truth pairs (anchor, own positive) and of random pairs (anchor,
--    the positive of a window of another track), mean and standard deviation.
-- Output: Markdown tables on stdout, <out>/results.csv (one row per model, dataset, protocol, K) and
-- <out>/results.json.
-- Settings: models = comma list of checkpoints (files or training folders; "default" = the bundled
-- model); datasets = comma list of layout:root (e.g. slakh:data/midi_stems); split; ks = comma list.
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local Sampler = require "cocola.data.sampler"
local Rng = require "cocola.data.rng"
local cjson = require "cjson"
local lfs = require "lfs"

local DEFAULTS = {
  models = "default", datasets = "slakh:data/midi_stems", split = "test", ks = "2",
  protocols = "paper,same_track", out = "runs/eval", window = 5.0, max_overlap = 0.5, noise = 0.0,
  silence_rms = 1e-4, min_distance = 10.0, mode = "both", max_windows = 0, batch = 32, seed = 0,
  threads = 2,
}

local M = { DEFAULTS = DEFAULTS }

local RATE = 16000
local PROTOCOLS = { paper = true, same_track = true }

local function list(text, what)
  local out = {}
  for item in tostring(text):gmatch("[^,]+") do out[#out + 1] = item:match("^%s*(.-)%s*$") end
  if #out == 0 then error(what .. ": empty list", 0) end
  return out
end

local function basename(path) return (path:gsub("/+$", ""):match("([^/]+)$") or path) end

local function load_model(spec)
  local Cocola = cocola.models.cocola
  local model
  if spec == "default" then
    model = Cocola.default()
  else
    model = Cocola.from_checkpoint(spec)
  end
  model:eval()
  return model
end

-- embeddings (N, D) of a list of (samples) waves, in chunks of `batch`
local function embed_all(model, waves, cfg, mode)
  local parts = {}
  for first = 1, #waves, cfg.batch do
    local chunk = table.move(waves, first, math.min(#waves, first + cfg.batch - 1), 1, {})
    parts[#parts + 1] = cocola.no_grad(function()
      local f = cocola.audio.cocola_features(cocola.stack(chunk, 1), { mode = model.input })
      return model:embed(f, mode)
    end)
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

local function sum_stems(track, picks, offset, window)
  local s
  for _, i in ipairs(picks) do
    local w = cocola.audio.load(track.stems[i].path, { sr = RATE, mono = true, offset = offset, duration = window }):view(-1)
    s = s and s + w or w
  end
  return s
end

--- the windows of a split with their sub-mixes: {anchor, positive, track_index, offset, info}
local function draw_pairs(tracks, cfg, log)
  local sampler = Sampler.new(tracks, {
    batch_size = 2, window = cfg.window, max_overlap = cfg.max_overlap, seed = cfg.seed,
    silence_rms = cfg.silence_rms, noise = 0, shuffle = true,
  })
  local pairs_ = {}
  local total = #sampler.order
  if cfg.max_windows > 0 then total = math.min(total, cfg.max_windows) end
  local gen_seed, gen_offset = cocola.get_rng_state()
  for pos = 1, total do
    local idx = sampler.order[pos]
    local a, p, info = sampler:pair(idx)
    if a then
      if cfg.noise > 0 then
        cocola.set_rng_state(Rng.new(cfg.seed, idx, 11):next(), 0)
        p = p + cocola.randn(p.shape) * cfg.noise
      end
      pairs_[#pairs_ + 1] = { anchor = a, positive = p, track = sampler.windows[idx][1], offset = sampler.windows[idx][2], info = info }
    end
    recipe.progress("  windows", pos, total)
  end
  cocola.set_rng_state(gen_seed, gen_offset)
  log(string.format("  %d windows with at least two active stems (of %d)", #pairs_, total))
  return pairs_
end

-- for each pair, up to `count` offsets of the same track at least min_distance away whose positive
-- stems are not silent there: {{pair_index, wave}, ...}; pairs without enough candidates are dropped
local function same_track_negatives(tracks, pairs_, count, cfg)
  local out = {}
  for pi, pr in ipairs(pairs_) do
    local track = tracks[pr.track]
    local hop = cfg.window * (1 - cfg.max_overlap)
    local offsets = {}
    local t = 0
    while t < track.duration - 1e-9 do
      if math.abs(t - pr.offset) >= cfg.min_distance - 1e-9 then offsets[#offsets + 1] = t end
      t = t + hop
    end
    local rng = Rng.new(cfg.seed, pi, 13)
    local found = {}
    for _, off in ipairs(rng:shuffled(offsets)) do
      if #found == count then break end
      local w = sum_stems(track, pr.info.positive, off, cfg.window)
      local rms = math.sqrt((w * w):mean():item())
      if rms > cfg.silence_rms then found[#found + 1] = w end
    end
    if #found == count then out[#out + 1] = { pair = pi, waves = found } end
    recipe.progress("  negatives", pi, #pairs_)
  end
  return out
end

-- K x K groups of consecutive windows: fraction of rows whose diagonal is the maximum
local function paper_accuracy(sim, n, k)
  local hits, rows = 0, 0
  for g = 0, n // k - 1 do
    for r = 1, k do
      local i = g * k + r
      local best, arg = -math.huge, nil
      for c = 1, k do
        local v = sim[i][g * k + c]
        if v > best then best, arg = v, c end
      end
      if arg == r then hits = hits + 1 end
      rows = rows + 1
    end
  end
  return rows > 0 and hits / rows or 0 / 0, rows
end

local function evaluate(model, name, dataset, tracks, pairs_, cfg, ks, protocols, log)
  local anchors, positives = {}, {}
  for i, pr in ipairs(pairs_) do anchors[i], positives[i] = pr.anchor, pr.positive end
  local ea = embed_all(model, anchors, cfg, cfg.mode)
  local ep = embed_all(model, positives, cfg, cfg.mode)
  local sim = cocola.no_grad(function() return model.similarity(ea, ep) end):totable()
  local n = #pairs_
  local rows = {}
  -- Table 3: ground-truth pairs against random pairs (a positive of another track)
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
  local scores = { model = name, dataset = dataset, windows = n, ground_truth_mean = gt_mean, ground_truth_std = gt_std,
                   random_mean = rnd_mean, random_std = rnd_std }
  if protocols.paper then
    for _, k in ipairs(ks) do
      local acc, count = paper_accuracy(sim, n, k)
      rows[#rows + 1] = { model = name, dataset = dataset, protocol = "paper", k = k, accuracy = acc, anchors = count }
    end
  end
  if protocols.same_track then
    local kmax = 0
    for _, k in ipairs(ks) do kmax = math.max(kmax, k) end
    local negs = same_track_negatives(tracks, pairs_, kmax - 1, cfg)
    local waves = {}
    for _, ng in ipairs(negs) do table.move(ng.waves, 1, #ng.waves, #waves + 1, waves) end
    local en = #waves > 0 and embed_all(model, waves, cfg, cfg.mode) or nil
    local neg_sim = en and cocola.no_grad(function() return model.similarity(ea, en) end):totable() or {}
    for _, k in ipairs(ks) do
      local hits = 0
      for gi, ng in ipairs(negs) do
        local i = ng.pair
        local ok = true
        for c = 1, k - 1 do
          if neg_sim[i][(gi - 1) * (kmax - 1) + c] >= sim[i][i] then ok = false break end
        end
        if ok then hits = hits + 1 end
      end
      rows[#rows + 1] = { model = name, dataset = dataset, protocol = "same_track", k = k,
                          accuracy = #negs > 0 and hits / #negs or 0 / 0, anchors = #negs }
    end
    if #negs < n then
      log(string.format("  same_track: %d of %d windows have %d candidates >= %g s away", #negs, n, kmax - 1, cfg.min_distance))
    end
  end
  return rows, scores
end

local function fmt(x, digits)
  if x ~= x then return "n/a" end
  return string.format("%." .. (digits or 3) .. "f", x)
end

--- Markdown tables: one accuracy matrix (models x datasets) per protocol and K, and the scores
function M.markdown(rows, scores, model_names, dataset_names)
  local lines = {}
  local seen, keys = {}, {}
  for _, r in ipairs(rows) do
    local key = r.protocol .. "|" .. r.k
    if not seen[key] then seen[key] = true; keys[#keys + 1] = { r.protocol, r.k } end
  end
  local function cell(model, dataset, protocol, k)
    for _, r in ipairs(rows) do
      if r.model == model and r.dataset == dataset and r.protocol == protocol and r.k == k then return fmt(r.accuracy) end
    end
    return "-"
  end
  for _, key in ipairs(keys) do
    lines[#lines + 1] = string.format("Accuracy, protocol %s, K = %d", key[1], key[2])
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
  lines[#lines + 1] = "COCOLA score (mean ± std)"
  lines[#lines + 1] = ""
  lines[#lines + 1] = "| model | dataset | windows | ground truth | random |"
  lines[#lines + 1] = "|---|---|---|---|---|"
  for _, s in ipairs(scores) do
    lines[#lines + 1] = string.format("| %s | %s | %d | %s ± %s | %s ± %s |", s.model, s.dataset, s.windows,
      fmt(s.ground_truth_mean, 2), fmt(s.ground_truth_std, 2), fmt(s.random_mean, 2), fmt(s.random_std, 2))
  end
  return table.concat(lines, "\n") .. "\n"
end

--- runs the evaluation; returns the accuracy rows and the score rows
function M.run(cfg, log)
  log = log or print
  recipe.log_config(cfg)
  cocola.set_num_threads(cfg.threads)
  local ks = {}
  for _, k in ipairs(list(cfg.ks, "ks")) do
    local v = math.tointeger(tonumber(k))
    if not v or v < 2 then error("ks: K must be an integer >= 2, got '" .. k .. "'", 0) end
    ks[#ks + 1] = v
  end
  local protocols = {}
  for _, p in ipairs(list(cfg.protocols, "protocols")) do
    if not PROTOCOLS[p] then error("protocols: unknown protocol '" .. p .. "' (known: paper, same_track)", 0) end
    protocols[p] = true
  end
  local models, model_names = {}, {}
  for _, spec in ipairs(list(cfg.models, "models")) do
    models[#models + 1] = load_model(spec)
    local name = spec == "default" and "default" or basename(spec):gsub("%.safetensors$", ""):gsub("%.ckpt$", "")
    model_names[#model_names + 1] = name
    log(string.format("model %s: %s", name, tostring(models[#models]:extra_repr())))
  end
  local rows, scores, dataset_names = {}, {}, {}
  for _, ds in ipairs(list(cfg.datasets, "datasets")) do
    local layout, root = ds:match("^([%w_]+):(.+)$")
    if not layout then error("datasets: expected layout:root, got '" .. ds .. "'", 0) end
    local name = basename(root)
    dataset_names[#dataset_names + 1] = name
    local tracks = cocola.data.open(layout, root, cfg.split)
    log(string.format("dataset %s (%s, %s split): %d tracks", name, layout, cfg.split, #tracks))
    local pairs_ = draw_pairs(tracks, cfg, log)
    if #pairs_ < 2 then error(string.format("dataset %s: fewer than two usable windows in the %s split", name, cfg.split), 0) end
    for mi, model in ipairs(models) do
      local r, s = evaluate(model, model_names[mi], name, tracks, pairs_, cfg, ks, protocols, log)
      table.move(r, 1, #r, #rows + 1, rows)
      scores[#scores + 1] = s
    end
  end
  local md = M.markdown(rows, scores, model_names, dataset_names)
  io.write("\n", md)
  lfs.mkdir(cfg.out)
  local csv = { "model,dataset,protocol,k,accuracy,anchors" }
  for _, r in ipairs(rows) do
    local acc = r.accuracy == r.accuracy and string.format("%.6f", r.accuracy) or ""
    csv[#csv + 1] = string.format("%s,%s,%s,%d,%s,%d", r.model, r.dataset, r.protocol, r.k, acc, r.anchors)
  end
  -- JSON has no NaN: an accuracy over no anchors is null
  local function json_rows(list_)
    local out = {}
    for i, r in ipairs(list_) do
      out[i] = {}
      for k, v in pairs(r) do out[i][k] = (v ~= v) and cjson.null or v end
    end
    return out
  end
  recipe.write_atomic(cfg.out .. "/results.csv", table.concat(csv, "\n") .. "\n")
  recipe.write_atomic(cfg.out .. "/results.json", cjson.encode({ accuracy = json_rows(rows), scores = json_rows(scores), settings = cfg }))
  recipe.write_atomic(cfg.out .. "/results.md", md)
  return rows, scores
end

--- command-line entry: key=value arguments -> run; errors go to stderr with a non-zero status
function M.main(args)
  return recipe.main("eval_cocola", DEFAULTS, M.run, args)
end

return M
