-- cocola.scoring — the COCOLA score (CCS, Eq. 4 of the paper) of generated accompaniments against
-- their conditioning audio, for waves, pairs of files and folders of files, and window embeddings.
-- The `cocola` command (bin/cocola) is a thin layer over this module.
--
--   local scoring = require "cocola.scoring"
--   local model = require("cocola.models.cocola").from_checkpoint("cocola.safetensors")
--   local r = scoring.score_files(model, "cond.wav", "gen.wav")
--   print(r.mean, #r.windows, r.harmonic and r.harmonic.mean)   -- harmonic / percussive: HPSS models
--
-- Score order. The paper defines CCS(y, x~) = sim(h_y, h_x~) = h_y^T W h_x~ with y the
-- conditioning input and x~ the generated output; W is not symmetric, so the order matters. Each
-- window's score is model:score(model:features(cond_w), model:features(gen_w)) (model:score(y, x)
-- computes sim(embed(y), embed(x))). Any object with features(waves), embed(features, mode),
-- score(y, x, mode), parameters(), eval() / train() and the fields input, embedding_mode, training
-- can stand for the model: a non-learned baseline of cocola.baselines works unchanged.
--
-- Windows. Audio is mono 16 kHz, cut into windows of `window` = 5 s every `hop` (default: the
-- window, no overlap) over the part both waves share. Every window scored is real audio, never
-- padding: silence scores differently from music (a zero-padded window can score above every real
-- pair), so the part left after the last whole window, when it is at least `min_last` seconds
-- (default half a window: a 7.6 s clip gives two windows, a 7.4 s clip one), is scored as one more
-- window ending at the end of the audio (it overlaps the window before it). Audio shorter than one
-- window is an error naming its length, unless `min_duration` is set below the window: then audio of
-- at least min_duration seconds is zero-padded to one window, knowing that the padding biases the
-- score. The score of a pair is the plain mean of its windows' scores. The same rule holds for
-- scoring, embedding and the `cocola` command; the evaluation recipe draws only whole windows too.
--
-- Lengths. cond and gen may differ by up to `tolerance` seconds (default 0.5 s; generated audio is
-- often a few frames off); the overlap (the shorter length) is scored. A larger difference is an
-- error unless `allow_mismatch` is set.
--
-- Options shared by the functions below (all optional):
--   window = 5.0, hop = window, min_last = window / 2, min_duration = window, sample_rate = 16000,
--   mode = "both" | "harmonic" | "percussive" (the main score's embedding mode; HPSS models only
--   for the last two), variants = true (HPSS models: also the harmonic and percussive scores),
--   batch = windows per forward pass (default: model.scoring_batch, else 16; the EfficientNet models
--   say 4, which keeps a pair's scoring under about 500 MB whatever its length), tolerance = 0.5,
--   allow_mismatch = false.
-- Memory does not grow with the length of the audio: files are decoded a batch of windows at a time.
-- Models run in eval mode under no_grad (a model in training mode is switched back afterwards).
local cocola = require "cocola"
local audio = require "cocola.audio"

local scoring = {}

scoring.SAMPLE_RATE = 16000
scoring.WINDOW = 5.0
scoring.AUDIO_EXTENSIONS = { "wav", "flac", "ogg", "aiff", "aif", "mp3" }

-- ---- small helpers ----------------------------------------------------------------------------

-- A list that the JSON encoder writes as an array even when empty.
local ARRAY = { __name = "cocola.scoring.array" }
local function list(t) return setmetatable(t or {}, ARRAY) end
scoring.list = list

local function opt(o, k, d)
  if o == nil or o[k] == nil then return d end
  return o[k]
end

-- an error message without the "file:line: " prefixes Lua adds
local clean = require("cocola.recipe").strip_locations
scoring.clean_error = clean

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

local function mean_of(values)
  if #values == 0 then return nil end
  local s = 0
  for _, v in ipairs(values) do s = s + v end
  return s / #values
end

local function seconds(n, sr) return n / sr end

-- ---- windows ----------------------------------------------------------------------------------

local function window_params(opts)
  local sr = opt(opts, "sample_rate", scoring.SAMPLE_RATE)
  local window = opt(opts, "window", scoring.WINDOW)
  local hop = opt(opts, "hop", window)
  local min_last = opt(opts, "min_last", window / 2)
  local min_duration = opt(opts, "min_duration", window)
  for k, v in pairs { sample_rate = sr, window = window, hop = hop } do
    if type(v) ~= "number" or v <= 0 then fail("%s must be a positive number, got %s", k, tostring(v)) end
  end
  if type(min_last) ~= "number" or min_last < 0 then fail("min_last must be a number >= 0, got %s", tostring(min_last)) end
  if type(min_duration) ~= "number" or min_duration <= 0 then
    fail("min_duration must be a positive number, got %s", tostring(min_duration))
  end
  local win = math.floor(window * sr + 0.5)
  local hop_n = math.floor(hop * sr + 0.5)
  if win < 513 then fail("window must be at least 513 samples (%.4f s), got %g s", 513 / sr, window) end
  if hop_n < 1 then fail("hop must be at least one sample, got %g s", hop) end
  local min_n = math.min(win, math.max(513, math.floor(min_duration * sr + 0.5)))
  return {
    sr = sr, win = win, hop = hop_n, min_last = math.floor(min_last * sr + 0.5), min_n = min_n,
    window = window, hop_s = hop,
  }
end

--- scoring.windows(n_samples, opts) -> list of 0-based start offsets (samples) of the windows over
-- n_samples: whole windows every hop, then one ending at the end of the audio when what is left is at
-- least min_last; audio shorter than a window is an error, or one zero-padded window when
-- min_duration allows it. See the policy at the top of this file.
function scoring.windows(n, opts)
  if math.type(n) ~= "integer" or n < 0 then fail("windows: expected a sample count, got %s", tostring(n)) end
  local p = window_params(opts)
  if n < p.min_n then
    if p.min_n == p.win then
      fail("audio too short: %.3f s (%d samples); COCOLA scores whole %g s windows of real audio (padding with silence would bias the score)",
        n / p.sr, n, p.window)
    end
    fail("audio too short: %.3f s (%d samples); the minimum is %.3f s", n / p.sr, n, p.min_n / p.sr)
  end
  local starts = {}
  if n <= p.win then
    starts[1] = 0
    return starts
  end
  local s = 0
  while s + p.win <= n do
    starts[#starts + 1] = s
    s = s + p.hop
  end
  local covered = starts[#starts] + p.win
  local tail = n - covered
  if tail > 0 and tail >= math.max(p.min_last, 1) then starts[#starts + 1] = n - p.win end
  return starts
end

-- ---- waves and models -------------------------------------------------------------------------

-- (n) | (1, n) | (C, n) -> a float32 CPU (1, n) mono wave
local function as_mono(x, what)
  if not cocola.is_tensor(x) then fail("%s: expected a wave tensor, got %s", what, type(x)) end
  if x:device() ~= "cpu" then x = x:to("cpu") end
  if x:dtype() ~= "float32" then x = x:float() end
  if x:dim() == 1 then return x:reshape({ 1, x:size(1) }) end
  if x:dim() ~= 2 then fail("%s: expected a wave (samples) or (channels, samples), got %s", what, x:shape_string()) end
  if x:size(1) ~= 1 then x = audio.to_mono(x:contiguous()) end
  return x
end

local function model_device(model)
  local params = model:parameters()
  if params[1] then return params[1]:device() end
  return "cpu"
end

local HPSS_MODES = { both = true, harmonic = true, percussive = true }

local function main_mode(model, opts)
  local mode = opt(opts, "mode", nil)
  if mode == nil then
    mode = model.embedding_mode
    if not HPSS_MODES[mode] then mode = "both" end
  end
  if not HPSS_MODES[mode] then fail("mode must be both, harmonic or percussive; got '%s'", tostring(mode)) end
  if mode ~= "both" and model.input ~= "hpss" then
    fail("mode '%s' needs an HPSS model; this model takes %s features (only 'both')", mode, tostring(model.input))
  end
  return mode
end

--- scoring.mode(model, opts) -> the embedding mode of the main score: opts.mode, else the model's
-- embedding mode unless "random", else "both"; a harmonic / percussive mode needs an HPSS model.
scoring.mode = main_mode

-- the modes to compute: the main one first, then the variants
local function modes_for(model, opts)
  local mode = main_mode(model, opts)
  local modes = { mode }
  if model.input == "hpss" and opt(opts, "variants", true) ~= false then
    for _, m in ipairs { "both", "harmonic", "percussive" } do
      if m ~= mode then modes[#modes + 1] = m end
    end
  end
  return mode, modes
end

-- runs fn() with the model in eval mode and gradients off, restoring the training flag after
local function evaluating(model, fn)
  local was_training = model.training
  if was_training then model:eval() end
  local ok, a, b = pcall(cocola.no_grad, fn)
  if was_training then model:train() end
  if not ok then error(a, 0) end
  return a, b
end
--- scoring.evaluating(model, fn) -> fn's results, run with the model in eval mode and gradients off
-- (a model in training mode is switched back afterwards); scoring.model_device(model) -> its device
scoring.evaluating = evaluating
scoring.model_device = model_device

-- (B, window) batch of the windows starting at starts[i .. j] of a source (of n samples)
local function window_batch(source, starts, i, j, win, n)
  local first = starts[i]
  local last = math.min(n, starts[j] + win)
  local span = source.read(first, last - first) -- (1, last - first)
  local rows = {}
  for k = i, j do
    local s = starts[k]
    local len = math.min(win, n - s)
    local piece = span:narrow(2, s - first + 1, len)
    if len < win then piece = cocola.pad(piece, { 0, win - len }) end
    rows[#rows + 1] = piece
  end
  return cocola.cat(rows, 1):contiguous()
end

-- A source of 16 kHz mono samples: {n = samples, read(start, len) -> (1, len)} (0-based start).
local function wave_source(wave)
  return { n = wave:size(2), read = function(start, len) return wave:narrow(2, start + 1, len) end }
end

local function gcd(a, b)
  while b ~= 0 do a, b = b, a % b end
  return a
end

-- A file read a span at a time: only the span (and a margin for the resampler) is decoded, so memory
-- does not grow with the file's length. At the file's own rate the span is read exactly; otherwise
-- a span is read from a time that falls on a whole sample at both rates, with `margin` seconds more
-- on each side (the resampler's filter then sees what it sees in the whole file, to float rounding).
local RESAMPLE_MARGIN = 0.5
local function file_source(path, sr)
  local ok, info = pcall(audio.info, path)
  if not ok then
    local reason = clean(info):gsub("^audio%.info: ", ""):gsub("^cannot open '.-': ", "")
    fail("cannot read audio file '%s': %s", path, reason)
  end
  local rate = info.rate
  local n = rate == sr and info.frames or math.ceil(info.frames * sr / rate)
  local step = sr // gcd(sr, rate) -- samples at sr between times that are whole samples at both rates
  local margin = math.ceil(RESAMPLE_MARGIN * sr / step) * step
  local function load(offset, len)
    local got, wave = pcall(audio.load, path, { sr = sr, mono = true, offset = offset / sr, duration = len / sr })
    if not got then
      local reason = clean(wave):gsub("^audio%.load: ", ""):gsub("^cannot open '.-': ", "")
      fail("cannot read audio file '%s': %s", path, reason)
    end
    return wave
  end
  return {
    n = n, rate = rate,
    read = function(start, len)
      if rate == sr then return load(start, len) end
      local from = math.max(0, (start - margin) // step * step)
      local to = math.min(n, -((-(start + len + margin)) // step) * step)
      return load(from, to - from):narrow(2, start - from + 1, len)
    end,
  }
end

-- the model's input features of a (B, window) batch (model:features), on the model's device
-- features of a (B, window) batch, computed FEATURE_CHUNK windows at a time (the HPSS front end's
-- temporaries are many times its output: computing them for a whole batch at once would cost
-- memory that grows with the batch), then moved to the model's device
local FEATURE_CHUNK = 2
local function features(model, batch, device)
  local f
  if batch:size(1) <= FEATURE_CHUNK then
    f = model:features(batch)
  else
    local parts = {}
    for first = 1, batch:size(1), FEATURE_CHUNK do
      parts[#parts + 1] = model:features(batch:narrow(1, first, math.min(FEATURE_CHUNK, batch:size(1) - first + 1)):contiguous())
      collectgarbage("step", 0)
    end
    f = cocola.cat(parts, 1)
  end
  if device ~= "cpu" then f = f:to(device) end
  return f
end

-- windows per forward pass unless opts.batch says: the model's own choice, else 16
local function default_batch(model)
  local b = rawget(model, "scoring_batch") or model.scoring_batch
  return math.type(b) == "integer" and b > 0 and b or 16
end

local function check_model(model, what)
  if type(model) ~= "table" or type(model.score) ~= "function" or type(model.embed) ~= "function"
    or type(model.features) ~= "function" then
    fail("%s: expected a COCOLA model (cocola.models.cocola) or a baseline (cocola.baselines)", what)
  end
end

--- scoring.score_waves(model, cond, gen, opts) -> result. cond and gen: 16 kHz mono waves (n) or
-- (1, n) (several channels are averaged). result = {
--   mean = CCS in opts.mode (mean over windows), mode = , windows = {{start = s, duration = s of
--   real audio, score = }, ...}, duration = overlap (s), cond_duration = , gen_duration = ,
--   window = , hop = , sample_rate = ,
--   both / harmonic / percussive = {mean = , windows = {...}} (HPSS models, unless variants = false;
--   otherwise only the main mode's entry) }
function scoring.score_waves(model, cond, gen, opts)
  check_model(model, "score_waves")
  return scoring._score_sources(model, wave_source(as_mono(cond, "cond")), wave_source(as_mono(gen, "gen")), opts or {})
end

function scoring._score_sources(model, cond, gen, opts)
  local p = window_params(opts)
  local nc, ng = cond.n, gen.n
  local tolerance = opt(opts, "tolerance", 0.5)
  if math.abs(nc - ng) > tolerance * p.sr and not opt(opts, "allow_mismatch", false) then
    local cn, gn = opts._cond_name, opts._gen_name
    fail("length mismatch: cond%s is %.2f s, gen%s is %.2f s (more than the %g s tolerance; allow a mismatch to score the overlap)",
      cn and (" '" .. cn .. "'") or "", nc / p.sr, gn and (" '" .. gn .. "'") or "", ng / p.sr, tolerance)
  end
  local n = math.min(nc, ng)
  local ok, starts = pcall(scoring.windows, n, opts)
  if not ok then
    local cn, gn = opts._cond_name, opts._gen_name
    if cn and gn then fail("'%s' and '%s': %s", cn, gn, clean(starts)) end
    error(starts, 0)
  end
  local mode, modes = modes_for(model, opts)
  local batch = opt(opts, "batch", default_batch(model))
  if math.type(batch) ~= "integer" or batch < 1 then fail("batch must be a positive integer, got %s", tostring(batch)) end
  local device = model_device(model)
  local window_progress = opts.window_progress

  local per_mode = {}
  for _, m in ipairs(modes) do per_mode[m] = {} end
  evaluating(model, function()
    for i = 1, #starts, batch do
      local j = math.min(i + batch - 1, #starts)
      if window_progress then window_progress(i - 1, #starts) end
      local fc = features(model, window_batch(cond, starts, i, j, p.win, n), device)
      local fg = features(model, window_batch(gen, starts, i, j, p.win, n), device)
      for _, m in ipairs(modes) do
        local s = model:score { cond = fc, gen = fg, mode = m }:to("cpu"):totable()
        local out = per_mode[m]
        for _, v in ipairs(s) do out[#out + 1] = v end
      end
      collectgarbage("step", 0)
    end
    if window_progress then window_progress(#starts, #starts) end
  end)

  local result = {
    mode = mode, duration = seconds(n, p.sr), cond_duration = seconds(nc, p.sr), gen_duration = seconds(ng, p.sr),
    window = p.window, hop = p.hop_s, sample_rate = p.sr,
  }
  for _, m in ipairs(modes) do
    local wins = list()
    for k, s in ipairs(starts) do
      wins[k] = { start = seconds(s, p.sr), duration = seconds(math.min(p.win, n - s), p.sr), score = per_mode[m][k] }
    end
    result[m] = { mean = mean_of(per_mode[m]), windows = wins }
  end
  result.mean, result.windows = result[mode].mean, result[mode].windows
  return result
end

--- scoring.load(path, opts) -> (1, n) 16 kHz mono wave; an unreadable file is an error naming it.
function scoring.load(path, opts)
  if type(path) ~= "string" then fail("expected an audio file path, got %s", type(path)) end
  local sr = opt(opts, "sample_rate", scoring.SAMPLE_RATE)
  local ok, wave = pcall(audio.load, path, { sr = sr, mono = true })
  if not ok then
    local reason = clean(wave):gsub("^audio%.load: ", ""):gsub("^cannot open '.-': ", "")
    fail("cannot read audio file '%s': %s", path, reason)
  end
  return wave
end

--- scoring.score_files(model, cond_path, gen_path, opts) -> score_waves' result plus cond and gen
-- (the paths). Files are decoded, down-mixed to mono and resampled to 16 kHz a batch of windows at a
-- time, so memory does not grow with their length; opts.window_progress(done, total) is called
-- between batches.
function scoring.score_files(model, cond_path, gen_path, opts)
  check_model(model, "score_files")
  if type(cond_path) ~= "string" then fail("expected an audio file path, got %s", type(cond_path)) end
  if type(gen_path) ~= "string" then fail("expected an audio file path, got %s", type(gen_path)) end
  local sr = opt(opts, "sample_rate", scoring.SAMPLE_RATE)
  local cond = file_source(cond_path, sr)
  local gen = file_source(gen_path, sr)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o._cond_name, o._gen_name = cond_path, gen_path
  local r = scoring._score_sources(model, cond, gen, o)
  r.cond, r.gen = cond_path, gen_path
  return r
end

-- ---- folders ----------------------------------------------------------------------------------

local function is_dir(path)
  local lfs = require "lfs"
  return lfs.attributes(path, "mode") == "directory"
end

--- scoring.audio_files(dir) -> {stem = file name} for the audio files of a folder (extensions in
-- scoring.AUDIO_EXTENSIONS, case-insensitive; not recursive) and the sorted list of stems. Two
-- files with the same stem (a.wav, a.flac) are an error.
function scoring.audio_files(dir)
  local fs = require "cocola.data.fs"
  if not is_dir(dir) then fail("not a folder: '%s'", tostring(dir)) end
  local by_stem, stems = {}, {}
  for _, name in ipairs(fs.files(dir, scoring.AUDIO_EXTENSIONS)) do
    local stem = name:match("^(.*)%.[^.]+$")
    if by_stem[stem] then
      fail("two audio files named '%s' in '%s': '%s' and '%s'", stem, dir, by_stem[stem], name)
    end
    by_stem[stem] = name
    stems[#stems + 1] = stem
  end
  table.sort(stems)
  return by_stem, stems
end

--- scoring.score_folders(model, cond_dir, gen_dir, opts) -> {
--   rows = {{name = stem, cond = path, gen = path, score = , harmonic = , percussive = ,
--            windows = {per-window list of score_waves}, duration = }, ...} (sorted by name),
--   mean = , harmonic = , percussive = (means over the rows), n = #rows,
--   unmatched = {cond = {names...}, gen = {names...}}, failed = {{name = , error = }, ...} }
-- Files are matched by name without extension. No match at all is an error. A pair that fails
-- (unreadable, length mismatch) is an error naming it, unless opts.keep_going, which records it in
-- `failed` and goes on. opts.progress(i, n, name) is called before each pair.
function scoring.score_folders(model, cond_dir, gen_dir, opts)
  opts = opts or {}
  check_model(model, "score_folders")
  local cond_files, cond_stems = scoring.audio_files(cond_dir)
  local gen_files, gen_stems = scoring.audio_files(gen_dir)
  local names, unmatched = {}, { cond = list(), gen = list() }
  for _, s in ipairs(cond_stems) do
    if gen_files[s] then names[#names + 1] = s else unmatched.cond[#unmatched.cond + 1] = cond_files[s] end
  end
  for _, s in ipairs(gen_stems) do
    if not cond_files[s] then unmatched.gen[#unmatched.gen + 1] = gen_files[s] end
  end
  if #names == 0 then
    fail("no audio file names in '%s' (%d files) match those in '%s' (%d files)", cond_dir, #cond_stems, gen_dir, #gen_stems)
  end
  local fs = require "cocola.data.fs"
  local rows, failed = list(), list()
  for i, name in ipairs(names) do
    if opts.progress then opts.progress(i, #names, name) end
    local cp, gp = fs.join(cond_dir, cond_files[name]), fs.join(gen_dir, gen_files[name])
    local ok, r = pcall(scoring.score_files, model, cp, gp, opts)
    if ok then
      rows[#rows + 1] = {
        name = name, cond = cp, gen = gp, score = r.mean, mode = r.mode,
        harmonic = r.harmonic and r.harmonic.mean or nil, percussive = r.percussive and r.percussive.mean or nil,
        windows = r.windows, duration = r.duration,
      }
    elseif opts.keep_going then
      failed[#failed + 1] = { name = name, error = clean(r) }
    else
      fail("%s: %s", name, clean(r))
    end
  end
  local function column(key)
    local vals = {}
    for _, row in ipairs(rows) do
      if row[key] ~= nil then vals[#vals + 1] = row[key] end
    end
    return mean_of(vals)
  end
  return {
    rows = rows, n = #rows, mean = column("score"), harmonic = column("harmonic"), percussive = column("percussive"),
    unmatched = unmatched, failed = failed, cond_dir = cond_dir, gen_dir = gen_dir,
  }
end

-- ---- embeddings -------------------------------------------------------------------------------

--- scoring.embed_waves(model, wave, opts) -> (W, D) embeddings of the wave's windows (in opts.mode,
-- default "both") and the list of window starts (samples).
function scoring.embed_waves(model, wave, opts)
  check_model(model, "embed_waves")
  return scoring._embed_source(model, wave_source(as_mono(wave, "wave")), opts)
end

function scoring._embed_source(model, source, opts)
  local p = window_params(opts)
  local n = source.n
  local starts = scoring.windows(n, opts)
  local mode = main_mode(model, opts)
  local batch = opt(opts, "batch", default_batch(model))
  if math.type(batch) ~= "integer" or batch < 1 then fail("batch must be a positive integer, got %s", tostring(batch)) end
  local device = model_device(model)
  local parts = {}
  evaluating(model, function()
    for i = 1, #starts, batch do
      local j = math.min(i + batch - 1, #starts)
      parts[#parts + 1] = model:embed(features(model, window_batch(source, starts, i, j, p.win, n), device), mode):to("cpu")
      collectgarbage("step", 0)
    end
  end)
  return (#parts == 1 and parts[1] or cocola.cat(parts, 1)), starts
end

--- scoring.embed_files(model, paths, opts) -> {
--   files = paths, per_file = {(W_i, D) tensor, ...},
--   windows = (sum W_i, D) all window embeddings, window_file = (sum W_i) int64 (0-based file index),
--   window_start = (sum W_i) float32 (s),
--   mean = (N, D) per-file mean over its windows (unless opts.mean == false) }
-- Embeddings are model:embed's: tanh(LayerNorm(f(x))) for a COCOLA model, the vectors its bilinear
-- similarity compares (a baseline's own embeddings otherwise).
function scoring.embed_files(model, paths, opts)
  opts = opts or {}
  check_model(model, "embed_files")
  if type(paths) ~= "table" or #paths == 0 then fail("embed_files: expected a non-empty list of audio files") end
  local p = window_params(opts)
  local per_file, means, file_idx, start_s = {}, {}, {}, {}
  for i, path in ipairs(paths) do
    if opts.progress then opts.progress(i, #paths, path) end
    if type(path) ~= "string" then fail("embed_files: expected audio file paths, got %s", type(path)) end
    local ok, e, starts = pcall(scoring._embed_source, model, file_source(path, p.sr), opts)
    if not ok then
      local msg = clean(e)
      if msg:find(path, 1, true) then fail("%s", msg) end
      fail("'%s': %s", path, msg)
    end
    per_file[i] = e
    if opt(opts, "mean", true) then means[i] = e:mean(1) end
    for _, s in ipairs(starts) do
      file_idx[#file_idx + 1] = i - 1
      start_s[#start_s + 1] = s / p.sr
    end
  end
  local out = {
    files = list({ table.unpack(paths) }), per_file = per_file,
    windows = #per_file == 1 and per_file[1] or cocola.cat(per_file, 1),
    window_file = cocola.tensor(file_idx, { dtype = "int64" }),
    window_start = cocola.tensor(start_s, { dtype = "float32" }),
  }
  if opt(opts, "mean", true) then out.mean = cocola.stack(means, 1) end
  return out
end

-- ---- output formats ---------------------------------------------------------------------------

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
    return named[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function json_number(x)
  if x ~= x or x == math.huge or x == -math.huge then return "null" end
  if math.type(x) == "integer" then return string.format("%d", x) end
  if x == math.floor(x) and math.abs(x) < 1e15 then return string.format("%.1f", x) end
  return string.format("%.10g", x)
end

local function is_array(t)
  if getmetatable(t) == ARRAY then return true end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

local function encode(v, indent, depth, out)
  local kind = type(v)
  if v == nil then out[#out + 1] = "null"
  elseif kind == "boolean" then out[#out + 1] = tostring(v)
  elseif kind == "number" then out[#out + 1] = json_number(v)
  elseif kind == "string" then out[#out + 1] = json_string(v)
  elseif kind == "table" then
    local pad = indent and ("\n" .. string.rep(indent, depth + 1)) or ""
    local close = indent and ("\n" .. string.rep(indent, depth)) or ""
    local sep = indent and ": " or ":"
    if is_array(v) then
      if #v == 0 then out[#out + 1] = "[]" return end
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = pad
        encode(v[i], indent, depth + 1, out)
      end
      out[#out + 1] = close .. "]"
    else
      local keys = {}
      for k, val in pairs(v) do
        if type(val) ~= "function" and not cocola.is_tensor(val) then keys[#keys + 1] = tostring(k) end
      end
      table.sort(keys)
      if #keys == 0 then out[#out + 1] = "{}" return end
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = pad .. json_string(k) .. sep
        local val = v[k]
        if val == nil then val = v[tonumber(k)] end
        encode(val, indent, depth + 1, out)
      end
      out[#out + 1] = close .. "}"
    end
  else
    fail("json: cannot encode a %s", kind)
  end
end

--- scoring.json(value, {indent = "  "}) -> JSON text with sorted keys; lists made with
-- scoring.list are arrays even when empty; numbers keep 10 significant digits.
function scoring.json(value, o)
  local out = {}
  encode(value, opt(o, "indent", "  ") or nil, 0, out)
  return table.concat(out)
end

--- scoring.csv_field(v) -> a CSV field: empty for nil, numbers as the JSON writer writes them,
-- text quoted when it holds a comma, a quote or a line break
local function csv_field(v)
  if v == nil then return "" end
  if type(v) == "number" then return json_number(v) end
  v = tostring(v)
  if v:find('[,"\n\r]') then return '"' .. v:gsub('"', '""') .. '"' end
  return v
end
scoring.csv_field = csv_field

--- scoring.csv(folder_result) -> CSV text: a header name,cond,gen,score,harmonic,percussive,windows,
-- duration then one line per matched pair (harmonic and percussive empty for mel models).
function scoring.csv(result)
  local lines = { "name,cond,gen,score,harmonic,percussive,windows,duration" }
  for _, r in ipairs(result.rows) do
    lines[#lines + 1] = table.concat({
      csv_field(r.name), csv_field(r.cond), csv_field(r.gen), csv_field(r.score), csv_field(r.harmonic),
      csv_field(r.percussive), csv_field(#r.windows), csv_field(r.duration),
    }, ",")
  end
  return table.concat(lines, "\n") .. "\n"
end

return scoring
