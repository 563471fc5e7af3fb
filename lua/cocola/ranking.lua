-- cocola.ranking — rank a library of stems by COCOLA score against one input: candidate
-- accompaniments against a condition, or conditions against one accompaniment; and the library
-- cache (an index file of window embeddings) that makes a search over 10,000 stems take seconds.
-- The `cocola rank` and `cocola index` commands (bin/cocola) are a thin layer over this module.
--
--   local ranking = require "cocola.ranking"
--   local model = require("cocola.models.cocola").default()
--   local index = ranking.index(model, { "stems/" }, { out = "stems.cocola" })  -- embed once
--   local r = ranking.rank(model, "cond.wav", ranking.load_index("stems.cocola", { model = model }))
--   for _, row in ipairs(r.rows) do print(row.rank, row.score, row.path) end
--   ranking.rank(model, "gen.wav", { "conds/" }, { role = "gen" })   -- the reverse, no cache
--
-- The score of a pair is the COCOLA score of scoring.score_files: CCS = sim(h_y, h_x), y the
-- condition, x the accompaniment, the mean over the windows of the part both files share (whole
-- windows on the hop grid from the start, then, as scoring.windows cuts the shared length, one more
-- ending at the shared length: the "tail"). A pair whose lengths differ by more than scoring's
-- tolerance is scored like `cocola score --allow-mismatch`: over the overlap. With
-- tails = "exact" (the default) rank's score of a pair equals score_files' for that pair (to float32
-- rounding): when the shared windows end in a tail and the files differ in length, the longer
-- file's window ending at the shared length is embedded for that pair (the query's from its audio in
-- memory, a library file's from its audio file). With tails = "cached" the longer file's cached
-- window at that position is used instead: no audio is read, and that one window's score differs
-- from score_files'.
--
-- Exact factorisation. Every supported similarity is a bilinear form sim(y, x) = q(y) . k(x) of a
-- query vector and a library ("key") vector, so the library's keys are stored once and a query is
-- scored against all of them by matrix products (see ranking.factorisation):
--   * COCOLA (BilinearSimilarity): sim = y^T W x; key k(x) = x (D), query q(y) = y W (as condition)
--     or q(x) = x W^T (as accompaniment, against a library of conditions).
--   * chroma-onset COCOLA (FrameBilinearSimilarity over T frames of d): sim = (1/T) sum_t y_t^T W x_t
--     + mean(y)^T V mean(x) = y_flat^T ((1/T) I_T (x) W + (1/T^2) J_T (x) V) x_flat; key = [x_1 .. x_T,
--     mean(x)] (T d + d), query = [(1/T) y_t^T W for each t, mean(y)^T V] (with W^T, V^T for the
--     reverse). The framewise term needs every frame: no smaller exact key exists for a full-rank W.
--   * chroma-onset baseline (dot product of its embeddings): key = query = the embedding.
--
-- The index. Files are ordered by window count (most first, then by path) and the keys are stored
-- position-major: block p holds the p-th window of every file that has more than p windows, in
-- that order, so file i is row i of each of its blocks. Ranking a query with Kq windows is one
-- product per query window, (1, F) x (F, N_p), over blocks 0 .. Kq - 1 only, then a per-file sum
-- over the shared windows and a division by their count (in Lua doubles). The file (safetensors)
-- holds the tensor `keys` (windows, F) float32 and, in its metadata, format = "cocola-rank-index-1",
-- `model` (kind, fingerprint of the weights, embedding mode, key size; a cache made with another
-- model is refused), `settings` (window, hop, min_last, sample_rate; the query is windowed the same
-- way) and `files` (path (absolute), size, mtime, samples at 16 kHz, duration, windows; a file
-- whose size or mtime changed is re-embedded, a missing one is left out and reported), `blocks`.
--
-- API:
--   ranking.index(model, sources, opts) -> index       build or update (opts.previous, opts.out)
--   ranking.load_index(path, {model =, settings =}) -> index   (checks model and settings if given)
--   ranking.save_index(index, path)
--   ranking.check_index(index, model, opts)             error unless made with this model / settings
--   ranking.stale(index) -> {changed = {paths}, missing = {paths}}
--   ranking.rank(model, query, library, opts) -> result  (query: a path or a wave; library: an index,
--                                                        an index path, or a list of files / folders)
--   ranking.rank_embeddings(model, embeddings, query_samples, index, opts) -> {rows =, n =}
--   ranking.search(index, queries, query_samples, opts) -> {score per file, windows per file}
--   ranking.query_vectors(model, embeddings, role), ranking.library_vectors(model, embeddings)
--   ranking.csv(result), ranking.json(result)
-- Options: role = "cond" (the query is the condition; default) | "gen"; tails = "exact" | "cached";
-- top = N; window, hop, min_last, mode, batch (as cocola.scoring; an index's settings win, and a
-- different explicit value is an error); keep_going (skip unreadable files, listed in `failed`);
-- progress(label, i, n).
local cocola = require "cocola"
local scoring = require "cocola.scoring"

local ranking = {}

ranking.FORMAT = "cocola-rank-index-1"
ranking.ROLES = { cond = true, gen = true }

local list = scoring.list
local clean = scoring.clean_error

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

local function opt(o, k, d)
  if o == nil or o[k] == nil then return d end
  return o[k]
end

local function lfs() return require "lfs" end

-- ---- paths ------------------------------------------------------------------------------------

--- ranking.absolute(path) -> the absolute form of path ("." and ".." resolved, symlinks kept)
function ranking.absolute(path)
  if path:sub(1, 1) ~= "/" then path = lfs().currentdir() .. "/" .. path end
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." then
      if #parts > 0 then parts[#parts] = nil end
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  return "/" .. table.concat(parts, "/")
end

local function basename(path) return path:match("([^/]*)$") end

--- ranking.audio_sources(sources) -> the audio files of a list of files and folders (a folder gives
-- its audio files, not recursive, sorted; a file is taken as it is), without duplicates, and the
-- list as given (for display). Errors: a missing path, an empty list, a folder without audio files.
function ranking.audio_sources(sources)
  if type(sources) == "string" then sources = { sources } end
  if type(sources) ~= "table" or #sources == 0 then fail("expected a list of audio files or folders") end
  local fs = require "cocola.data.fs"
  local out, seen = {}, {}
  for _, src in ipairs(sources) do
    if type(src) ~= "string" then fail("expected audio file or folder paths, got a %s", type(src)) end
    local mode = lfs().attributes(src, "mode")
    if not mode then fail("no such file or folder: '%s'", src) end
    local found
    if mode == "directory" then
      found = {}
      for _, name in ipairs(fs.files(src, scoring.AUDIO_EXTENSIONS)) do found[#found + 1] = fs.join(src, name) end
      if #found == 0 then
        fail("no audio files (%s) in '%s'", table.concat(scoring.AUDIO_EXTENSIONS, ", "), src)
      end
    else
      found = { src }
    end
    for _, path in ipairs(found) do
      local abs = ranking.absolute(path)
      if not seen[abs] then
        seen[abs] = true
        out[#out + 1] = path
      end
    end
  end
  return out
end

-- ---- model: identity and factorisation --------------------------------------------------------

local function is_module(x) return type(x) == "table" and type(x.is_instance_of) == "function" end

local function check_model(model, what)
  if type(model) ~= "table" or type(model.embed) ~= "function" or type(model.features) ~= "function" then
    fail("%s: expected a COCOLA model (cocola.models) or a baseline (cocola.baselines)", what)
  end
end

local function cpu_float(t) return t:detach():to("cpu"):to("float32"):contiguous() end

--- ranking.factorisation(model) -> {kind = "bilinear" | "frame-bilinear" | "dot", key_size(D) -> F,
-- keys(E) -> (W, F), queries(E, role) -> (W, F)}: the exact split of the model's similarity into a
-- query side and a library side (see the top of this file). E: (W, D) window embeddings (model:embed).
-- The one place that reads the model's similarity parameters.
function ranking.factorisation(model)
  local sim = model.similarity
  if is_module(sim) then
    local FrameBilinear = require "cocola.models.cocola.FrameBilinearSimilarity"
    local Bilinear = require "cocola.models.cocola.BilinearSimilarity"
    if sim:is_instance_of(FrameBilinear) then
      local d = sim.dim
      local w, v = cpu_float(sim.w), cpu_float(sim.v)
      local function frames(e)
        if e:dim() ~= 2 or e:size(2) % d ~= 0 then
          fail("expected frame embeddings (windows, frames x %d), got %s", d, e:shape_string())
        end
        return e:size(2) // d
      end
      return {
        kind = "frame-bilinear",
        key_size = function(size) return size + d end,
        keys = function(e)
          e = cpu_float(e)
          local n, t = e:size(1), frames(e)
          return cocola.cat({ e, e:reshape({ n, t, d }):mean(2) }, 2):contiguous()
        end,
        queries = function(e, role)
          e = cpu_float(e)
          local n, t = e:size(1), frames(e)
          local wq, vq = w, v
          if role == "gen" then wq, vq = w:t(), v:t() end
          local framewise = e:reshape({ n * t, d }):matmul(wq):reshape({ n, t * d }) * (1 / t)
          local pooled = e:reshape({ n, t, d }):mean(2):matmul(vq)
          return cocola.cat({ framewise, pooled }, 2):contiguous()
        end,
      }
    elseif sim:is_instance_of(Bilinear) then
      local w = cpu_float(sim.w)
      return {
        kind = "bilinear",
        key_size = function(size) return size end,
        keys = function(e) return cpu_float(e) end,
        queries = function(e, role) return cpu_float(e):matmul(role == "gen" and w:t() or w):contiguous() end,
      }
    end
  end
  local Baseline = require("cocola.baselines.chroma_onset").Baseline
  if getmetatable(model) == Baseline then
    return {
      kind = "dot",
      key_size = function(size) return size end,
      keys = function(e) return cpu_float(e) end,
      queries = function(e) return cpu_float(e) end,
    }
  end
  fail("ranking needs a similarity that factorises into query and library vectors (COCOLA bilinear, chroma-onset frame bilinear, or the chroma-onset baseline); this model's is %s",
    tostring(sim))
end

--- ranking.library_vectors(model, embeddings (W, D)) -> (W, F) float32 keys of library windows
function ranking.library_vectors(model, e) return ranking.factorisation(model).keys(e) end

--- ranking.query_vectors(model, embeddings (W, D), role = "cond") -> (W, F) float32 query vectors:
-- query_vectors(y, "cond") . library_vectors(x) = sim(y, x) = query_vectors(x, "gen") . library_vectors(y)
function ranking.query_vectors(model, e, role)
  return ranking.factorisation(model).queries(e, role or "cond")
end

local fnv1a = require("cocola.recipe").fnv1a

-- a few sums of a tensor's values (plain, squares, and weighted by frac(i x golden ratio)), rounded to
-- 9 significant digits; computed on one thread so the summation order does not depend on settings
local function value_sums(t)
  local x = t:detach():to("cpu"):to("float64"):contiguous()
  local n = x:numel()
  if n == 0 then return "empty" end
  x = x:reshape({ n })
  local r = cocola.arange(1, n + 1, { dtype = "float64" }) * 0.6180339887498949
  r = r - r:to("int64"):to("float64")
  return string.format("%.9g,%.9g,%.9g", x:sum():item(), (x * x):sum():item(), (x * r):sum():item())
end

--- ranking.model_identity(model, opts) -> {kind =, fingerprint =, mode =, input =, embedding_dim =}:
-- fingerprint is a hash of the model's class, its state (names, shapes, dtypes and value sums) or, for
-- a baseline, its description; equal for the same weights loaded from any copy of a checkpoint.
function ranking.model_identity(model, opts)
  check_model(model, "model_identity")
  local kind = is_module(model) and model:type_name() or tostring(model.name or model.input or "model")
  local parts = { kind }
  if is_module(model) then
    local sd = model:state_dict()
    local names = {}
    for name in pairs(sd) do names[#names + 1] = name end
    table.sort(names)
    local threads = cocola.get_num_threads()
    cocola.set_num_threads(1)
    local ok, err = pcall(function()
      for _, name in ipairs(names) do
        local t = sd[name]
        parts[#parts + 1] = string.format("%s:%s:%s:%s", name, t:shape_string(), t:dtype(), value_sums(t))
      end
    end)
    cocola.set_num_threads(threads)
    if not ok then error(err, 0) end
  else
    parts[#parts + 1] = type(model.extra_repr) == "function" and model:extra_repr() or tostring(model)
  end
  return {
    kind = kind, fingerprint = fnv1a(table.concat(parts, ";")), mode = scoring.mode(model, opts),
    input = tostring(model.input), embedding_dim = model.embedding_dim,
  }
end

-- ---- settings ---------------------------------------------------------------------------------

local SETTING_KEYS = { "window", "hop", "min_last", "sample_rate" }

-- the windowing settings of opts, resolved as scoring resolves them
local function resolve_settings(opts)
  local window = opt(opts, "window", scoring.WINDOW)
  local s = {
    window = window, hop = opt(opts, "hop", window), min_last = opt(opts, "min_last", window / 2),
    sample_rate = opt(opts, "sample_rate", scoring.SAMPLE_RATE),
  }
  scoring.windows(math.floor(s.window * s.sample_rate + 0.5), s) -- validates them
  return s
end

-- an index's settings must equal any the caller set explicitly
local function check_settings(index, opts, where)
  for _, k in ipairs(SETTING_KEYS) do
    local v = opts and opts[k]
    if v ~= nil and math.abs(v - index.settings[k]) > 1e-9 then
      fail("%s was made with %s = %g, not %g; leave the option out to use the index's, or make a new index", where, k,
        index.settings[k], v)
    end
  end
end

-- ---- windows of a pair ------------------------------------------------------------------------

-- the windows of the part of two files both share: count, start of the last (samples) and whether
-- that window is a tail: one ending at the shared length off the hop grid (scoring.windows' last
-- window), or one zero-padded after it (audio shorter than a window, where min_duration allows it).
-- The longer file's cached windows do not hold a tail; memoised per length
local function shared_windows(settings, memo, n)
  local got = memo[n]
  if got then return got end
  local starts = scoring.windows(n, settings)
  local last = starts[#starts]
  local win = math.floor(settings.window * settings.sample_rate + 0.5)
  local hop = math.floor((settings.hop or settings.window) * settings.sample_rate + 0.5)
  got = { count = #starts, last = last, partial = last + win > n or last ~= (#starts - 1) * hop }
  memo[n] = got
  return got
end

-- ---- embedding --------------------------------------------------------------------------------

local model_device, evaluating = scoring.model_device, scoring.evaluating

-- (B, D) embeddings of windows {wave = (1, n), start = samples, length = samples}, each zero-padded
-- to the full window as scoring pads them, in batches of `batch`
local function embed_windows(model, items, settings, mode, batch)
  local win = math.floor(settings.window * settings.sample_rate + 0.5)
  local device = model_device(model)
  local parts = {}
  evaluating(model, function()
    for i = 1, #items, batch do
      local rows = {}
      for k = i, math.min(i + batch - 1, #items) do
        local it = items[k]
        local piece = it.wave:narrow(2, it.start + 1, it.length)
        if it.length < win then piece = cocola.pad(piece, { 0, win - it.length }) end
        rows[#rows + 1] = piece
      end
      local f = model:features(cocola.cat(rows, 1):contiguous())
      if device ~= "cpu" then f = f:to(device) end
      parts[#parts + 1] = model:embed(f, mode):to("cpu")
    end
  end)
  return #parts == 1 and parts[1] or cocola.cat(parts, 1)
end

local function wave_options(settings, mode, batch)
  return {
    window = settings.window, hop = settings.hop, min_last = settings.min_last, sample_rate = settings.sample_rate,
    mode = mode, batch = batch,
  }
end

-- ---- index: building --------------------------------------------------------------------------

local function file_stat(path)
  local a = lfs().attributes(path)
  if not a then return nil end
  return { size = a.size, mtime = a.modification, mode = a.mode }
end

-- the index's file order: most windows first, then by path
local function index_order(a, b)
  if a.windows ~= b.windows then return a.windows > b.windows end
  return a.path < b.path
end

-- builds the position-major keys tensor of `files` (in index order); each file has `source` (a
-- tensor) and `source_row(p)` (1-based row of its window p, 0-based p, in source); consecutive rows
-- of one source are copied as one piece
local function assemble_keys(files, key_size)
  local blocks, pieces = {}, {}
  local max_windows = files[1] and files[1].windows or 0
  local offset = 0
  for p = 0, max_windows - 1 do
    local rows = 0
    local run_src, run_start, run_len = nil, 0, 0
    local function flush()
      if run_src then pieces[#pieces + 1] = run_src:narrow(1, run_start, run_len) end
      run_src = nil
    end
    for _, f in ipairs(files) do
      if f.windows <= p then break end
      rows = rows + 1
      local src, r = f.source, f.source_row(p)
      if run_src == src and run_start + run_len == r then
        run_len = run_len + 1
      else
        flush()
        run_src, run_start, run_len = src, r, 1
      end
    end
    flush()
    blocks[p + 1] = { offset = offset, rows = rows }
    offset = offset + rows
  end
  local keys
  if #pieces == 0 then keys = cocola.zeros({ 0, key_size })
  elseif #pieces == 1 then keys = pieces[1]:contiguous()
  else keys = cocola.cat(pieces, 1):contiguous() end
  return keys, blocks
end

-- drops the build-time fields of the files
local function finish_files(files)
  for _, f in ipairs(files) do f.source, f.source_row = nil, nil end
  return files
end

local function new_index(identity, settings, files, key_size)
  table.sort(files, index_order)
  local keys, blocks = assemble_keys(files, key_size)
  return {
    format = ranking.FORMAT, identity = identity, settings = settings, key_size = key_size,
    files = finish_files(files), keys = keys, blocks = blocks,
  }
end

--- ranking.index(model, sources, opts) -> index: the window keys of the audio files of sources (files
-- and folders). opts.previous (an index or the path of an index file; a missing file is fine): its
-- entries for unchanged files (same size and mtime) are reused instead of re-embedded; it must have
-- been made with this model and these settings. opts.keep_previous: also keep its other entries (a
-- cache that grows) instead of dropping them. opts.out: write the index there. opts.keep_going:
-- files that cannot be read are listed in index.report.failed instead of stopping. Also window,
-- hop, min_last, mode, batch, progress. index.report = {embedded = {paths}, reused = n, removed =
-- {paths}, failed = {{path =, error =}}}.
function ranking.index(model, sources, opts)
  opts = opts or {}
  check_model(model, "index")
  local paths = ranking.audio_sources(sources)
  local previous = opts.previous
  if type(previous) == "string" then
    if lfs().attributes(previous, "mode") then
      previous = ranking.load_index(previous, { model = model, settings = opts })
    else
      previous = nil
    end
  end
  local fact = ranking.factorisation(model)
  local identity = ranking.model_identity(model, opts)
  local settings = previous and previous.settings or resolve_settings(opts)
  if previous then ranking.check_index(previous, model, opts, identity) end
  local mode, batch = identity.mode, opt(opts, "batch", 16)
  if math.type(batch) ~= "integer" or batch < 1 then fail("batch must be a positive integer, got %s", tostring(batch)) end

  local old = {}
  if previous then
    for i, f in ipairs(previous.files) do old[f.path] = { entry = f, row = i } end
  end
  local function reuse_row(prev_row)
    return function(p) return previous.blocks[p + 1].offset + prev_row end
  end

  local files, report = {}, { embedded = list(), reused = 0, removed = list(), failed = list() }
  local wanted = {}
  local key_size = previous and previous.key_size
  for i, path in ipairs(paths) do
    if opts.progress then opts.progress("indexing", i, #paths, path) end
    local abs = ranking.absolute(path)
    wanted[abs] = true
    local st = file_stat(path)
    local prev = old[abs]
    if prev and st and prev.entry.size == st.size and prev.entry.mtime == st.mtime then
      local e = prev.entry
      files[#files + 1] = {
        path = abs, size = e.size, mtime = e.mtime, samples = e.samples, duration = e.duration, windows = e.windows,
        source = previous.keys, source_row = reuse_row(prev.row),
      }
      report.reused = report.reused + 1
    else
      local ok, err = pcall(function()
        if not st then fail("no such file: '%s'", path) end
        if st.mode == "directory" then fail("'%s' is a folder", path) end
        local wave = scoring.load(path, { sample_rate = settings.sample_rate })
        local e = scoring.embed_waves(model, wave, wave_options(settings, mode, batch))
        local k = fact.keys(e)
        key_size = key_size or k:size(2)
        if k:size(2) ~= key_size then
          fail("'%s' gives keys of %d values, the index holds %d (windows of another length?)", path, k:size(2), key_size)
        end
        local n = wave:size(2)
        files[#files + 1] = {
          path = abs, size = st.size, mtime = st.mtime, samples = n, duration = n / settings.sample_rate,
          windows = k:size(1), source = k, source_row = function(p) return p + 1 end,
        }
      end)
      if ok then
        report.embedded[#report.embedded + 1] = path
      else
        local msg = clean(err)
        if not msg:find(path, 1, true) then msg = string.format("'%s': %s", path, msg) end
        if opts.keep_going then
          report.failed[#report.failed + 1] = { path = path, error = msg }
        else
          error(msg, 0)
        end
      end
    end
  end
  if previous then
    for i, f in ipairs(previous.files) do
      if not wanted[f.path] then
        if opts.keep_previous then
          files[#files + 1] = {
            path = f.path, size = f.size, mtime = f.mtime, samples = f.samples, duration = f.duration,
            windows = f.windows, source = previous.keys, source_row = reuse_row(i),
          }
        else
          report.removed[#report.removed + 1] = f.path
        end
      end
    end
  end
  if #files == 0 then fail("no audio file could be indexed (%d failed)", #report.failed) end
  local index = new_index(identity, settings, files, key_size)
  index.report = report
  if opts.out then ranking.save_index(index, opts.out) end
  return index
end

-- ---- index: files -----------------------------------------------------------------------------

--- ranking.save_index(index, path): writes the index (safetensors, atomically)
function ranking.save_index(index, path)
  local cjson = require "cjson"
  local files = {}
  for i, f in ipairs(index.files) do
    files[i] = { path = f.path, size = f.size, mtime = f.mtime, samples = f.samples, duration = f.duration, windows = f.windows }
  end
  local ok, err = pcall(cocola.save, path, { keys = index.keys }, {
    metadata = {
      format = ranking.FORMAT,
      model = cjson.encode(index.identity),
      settings = cjson.encode(index.settings),
      key_size = tostring(index.key_size),
      files = cjson.encode(files),
      blocks = cjson.encode(index.blocks),
    },
  })
  if not ok then fail("cannot write index '%s': %s", path, clean(err)) end
  index.path = path
end

-- the metadata of an index file, read from its header alone
local function read_header(path)
  local cjson = require "cjson"
  local core = require "cocola.core"
  if lfs().attributes(path, "mode") ~= "file" then fail("no such index file: '%s'", path) end
  local ok, header = pcall(core._st_header, path)
  if not ok then fail("'%s' is not a cocola rank index (%s)", path, clean(header)) end
  local okj, decoded = pcall(cjson.decode, header)
  local meta = okj and type(decoded) == "table" and decoded.__metadata__
  if type(meta) ~= "table" or meta.format ~= ranking.FORMAT then
    fail("'%s' is not a cocola rank index (no %s metadata; make one with 'cocola index')", path, ranking.FORMAT)
  end
  local out = { key_size = math.tointeger(tonumber(meta.key_size)) }
  for _, k in ipairs({ "model", "settings", "files", "blocks" }) do
    local okk, v = pcall(cjson.decode, meta[k] or "")
    if not okk or type(v) ~= "table" then fail("index '%s': its %s entry is damaged", path, k) end
    out[k] = v
  end
  -- JSON numbers come back as floats: counts and sizes are integers again
  local function integers(t, keys, what)
    for _, key in ipairs(keys) do
      local v = math.tointeger(t[key])
      if v == nil then fail("index '%s': %s has no integer %s", path, what, key) end
      t[key] = v
    end
  end
  for i, f in ipairs(out.files) do
    if type(f) ~= "table" or type(f.path) ~= "string" then fail("index '%s': file entry %d is damaged", path, i) end
    integers(f, { "size", "mtime", "samples", "windows" }, "file entry " .. i)
  end
  for i, b in ipairs(out.blocks) do integers(b, { "offset", "rows" }, "block " .. i) end
  if not out.key_size then fail("index '%s': no key_size", path) end
  return out
end

--- ranking.is_index_file(path) -> whether path is a file that starts like a safetensors file (an
-- 8-byte header length, then '{'); load_index says whether it is a rank index
function ranking.is_index_file(path)
  if lfs().attributes(path, "mode") ~= "file" then return false end
  local f = io.open(path, "rb")
  if not f then return false end
  local head = f:read(9)
  f:close()
  return head ~= nil and #head == 9 and head:sub(9, 9) == "{"
end

--- ranking.check_index(index, model, opts): an error unless the index was made with this model (same
-- kind, weights fingerprint, embedding mode) and with the window settings opts sets explicitly
function ranking.check_index(index, model, opts, identity)
  identity = identity or ranking.model_identity(model, opts)
  local where = "index" .. (index.path and (" '" .. index.path .. "'") or "")
  local made = index.identity
  if made.kind ~= identity.kind or made.fingerprint ~= identity.fingerprint then
    fail("%s was made with another model (%s, fingerprint %s), not this one (%s, fingerprint %s); rebuild it with 'cocola index' for this model",
      where, tostring(made.kind), tostring(made.fingerprint), identity.kind, identity.fingerprint)
  end
  if made.mode ~= identity.mode then
    fail("%s was made with embedding mode '%s', not '%s'", where, tostring(made.mode), identity.mode)
  end
  check_settings(index, opts, where)
end

--- ranking.load_index(path, {model =, settings = opts}) -> index. With a model, an index made with
-- another model or other settings is an error (checked before the keys are read).
function ranking.load_index(path, o)
  if type(path) ~= "string" then fail("load_index: expected the path of an index file") end
  local h = read_header(path)
  local index = {
    format = ranking.FORMAT, identity = h.model, settings = h.settings, key_size = h.key_size,
    files = h.files, blocks = h.blocks, path = path,
  }
  if o and o.model then ranking.check_index(index, o.model, o.settings) end
  local ok, tensors = pcall(cocola.load, path)
  if not ok then fail("cannot read index '%s': %s", path, clean(tensors)) end
  index.keys = tensors.keys
  local rows = 0
  for _, b in ipairs(index.blocks) do rows = rows + b.rows end
  if not cocola.is_tensor(index.keys) or index.keys:dim() ~= 2 or index.keys:size(1) ~= rows
    or index.keys:size(2) ~= index.key_size then
    fail("index '%s' is damaged: its keys do not match its %d windows of %s values", path, rows, tostring(index.key_size))
  end
  return index
end

--- ranking.stale(index[, paths]) -> {changed = {paths}, missing = {paths}}: indexed files whose size
-- or mtime differ from the index's, and those no longer on disk; among `paths` only, when given
function ranking.stale(index, paths)
  local only
  if paths then
    only = {}
    for _, p in ipairs(paths) do only[ranking.absolute(p)] = true end
  end
  local changed, missing = list(), list()
  for _, f in ipairs(index.files) do
    if not only or only[f.path] then
      local st = file_stat(f.path)
      if not st then missing[#missing + 1] = f.path
      elseif st.size ~= f.size or st.mtime ~= f.mtime then changed[#changed + 1] = f.path end
    end
  end
  return { changed = changed, missing = missing }
end

-- ---- search -----------------------------------------------------------------------------------

--- ranking.search(index, queries (Kq, F), query_samples, opts) -> {scores = {per file, index order},
-- windows = {shared windows per file}, block_scores = {p -> {per row}}}. queries are the query's
-- window vectors (ranking.query_vectors); the score of file i is the mean over its shared windows p
-- of queries[p] . keys[block p, row i]. opts.files: a set {[i] = true} of the files to score (all
-- by default). Tails are not fixed here (see rank).
function ranking.search(index, queries, query_samples, opts)
  opts = opts or {}
  if not cocola.is_tensor(queries) or queries:dim() ~= 2 or queries:size(2) ~= index.key_size then
    fail("search: expected query vectors (windows, %d), got %s", index.key_size,
      cocola.is_tensor(queries) and queries:shape_string() or type(queries))
  end
  queries = queries:to("float32"):contiguous()
  local kq = queries:size(1)
  local block_scores = {}
  for p = 1, math.min(kq, #index.blocks) do
    local b = index.blocks[p]
    if b.rows > 0 then
      local rows = index.keys:narrow(1, b.offset + 1, b.rows)
      block_scores[p] = queries:narrow(1, p, 1):matmul(rows:t()):reshape({ b.rows }):totable()
    end
  end
  local memo, scores, windows = {}, {}, {}
  local only = opts.files
  for i, f in ipairs(index.files) do
    if not only or only[i] then
      local shared = shared_windows(index.settings, memo, math.min(query_samples, f.samples))
      local k = shared.count
      if k > kq or k > f.windows then
        fail("search: %d shared windows but the query has %d and '%s' %d", k, kq, f.path, f.windows)
      end
      local sum = 0
      for p = 1, k do sum = sum + block_scores[p][i] end
      scores[i], windows[i] = sum / k, k
    end
  end
  return { scores = scores, windows = windows, block_scores = block_scores }
end

-- ---- rank -------------------------------------------------------------------------------------

local function as_wave(query, settings)
  if type(query) == "string" then
    return scoring.load(query, { sample_rate = settings.sample_rate }), query
  end
  if not cocola.is_tensor(query) then fail("rank: the query must be an audio file path or a wave tensor") end
  local w = query:to("cpu"):to("float32")
  if w:dim() == 1 then w = w:reshape({ 1, w:size(1) }) end
  if w:dim() ~= 2 then fail("rank: expected a wave (samples) or (channels, samples), got %s", w:shape_string()) end
  if w:size(1) ~= 1 then w = require("cocola.audio").to_mono(w:contiguous()) end
  return w, "(wave)"
end

-- replaces, for each file whose shared part ends in a tail window and whose length differs from the
-- query's, that window's cached score by the score of the longer side's window ending at the shared
-- length.
-- Returns the number of windows embedded.
local function fix_tails(model, fact, index, selected, found, wave, nq, queries, role, mode, batch, progress)
  local settings = index.settings
  local memo = {}
  local query_cuts, query_cut_rows = {}, {}     -- query longer: its window cut at the file's length
  local file_cuts = {}                          -- file longer: the file's window cut at the query's length
  for i in pairs(selected) do
    local f = index.files[i]
    local shared = shared_windows(settings, memo, math.min(nq, f.samples))
    if shared.partial and f.samples ~= nq then
      local fix = { i = i, p = shared.count, start = shared.last }
      if nq > f.samples then
        if not query_cut_rows[f.samples] then
          query_cuts[#query_cuts + 1] = { wave = wave, start = shared.last, length = f.samples - shared.last }
          query_cut_rows[f.samples] = #query_cuts
        end
        fix.query_row = query_cut_rows[f.samples]
      else
        fix.length = nq - shared.last
      end
      file_cuts[#file_cuts + 1] = fix
    end
  end
  if #file_cuts == 0 then return 0 end
  if not wave then
    fail("exact tails need the query's audio for %d pairs that end in a tail window: pass opts.wave, or tails = 'cached'", #file_cuts)
  end
  table.sort(file_cuts, function(a, b) return a.i < b.i end)
  local embedded = 0
  local query_cut_vectors
  if #query_cuts > 0 then
    query_cut_vectors = fact.queries(embed_windows(model, query_cuts, settings, mode, batch), role)
    embedded = embedded + #query_cuts
  end
  local pending = {}
  local function flush_files()
    if #pending == 0 then return end
    local items = {}
    for k, fix in ipairs(pending) do items[k] = { wave = fix.wave, start = fix.start, length = fix.length } end
    local keys = fact.keys(embed_windows(model, items, settings, mode, batch))
    for k, fix in ipairs(pending) do
      local q = queries:narrow(1, fix.p, 1)
      fix.score = (q * keys:narrow(1, k, 1)):sum():item()
    end
    embedded = embedded + #pending
    pending = {}
  end
  for n, fix in ipairs(file_cuts) do
    if progress then progress("tail windows", n, #file_cuts, index.files[fix.i].path) end
    if fix.query_row then
      local key = index.keys:narrow(1, index.blocks[fix.p].offset + fix.i, 1)
      fix.score = (query_cut_vectors:narrow(1, fix.query_row, 1) * key):sum():item()
    else
      local f = index.files[fix.i]
      local w = scoring.load(f.path, { sample_rate = settings.sample_rate })
      if w:size(2) ~= f.samples then
        fail("'%s' has %d samples, the index says %d: it changed since it was indexed", f.path, w:size(2), f.samples)
      end
      fix.wave = w
      pending[#pending + 1] = fix
      if #pending >= batch then flush_files() end
    end
  end
  flush_files()
  for _, fix in ipairs(file_cuts) do
    local k = found.windows[fix.i]
    local cached = found.block_scores[fix.p][fix.i]
    found.scores[fix.i] = found.scores[fix.i] + (fix.score - cached) / k
  end
  return embedded
end

-- the library as an index: an index object, the path of an index file, or files and folders
local function library_index(model, library, opts)
  if type(library) == "table" and library.format == ranking.FORMAT then
    ranking.check_index(library, model, opts)
    return library, nil
  end
  if type(library) == "string" and ranking.is_index_file(library) then
    return ranking.load_index(library, { model = model, settings = opts }), nil
  end
  local paths = ranking.audio_sources(library)
  local index = ranking.index(model, paths, {
    window = opts.window, hop = opts.hop, min_last = opts.min_last, mode = opts.mode, batch = opts.batch,
    keep_going = opts.keep_going, progress = opts.progress,
  })
  -- the files as the caller named them, less those that failed
  local failed, shown = {}, {}
  for _, f in ipairs(index.report.failed) do failed[f.path] = true end
  for _, p in ipairs(paths) do
    if not failed[p] then shown[#shown + 1] = p end
  end
  return index, index.report.failed, shown
end

-- the files of the index to rank, {[i] = path shown}: those of `paths` (an error for a path the index
-- does not hold) or all, less those in the set `gone`
local function select_files(index, paths, gone)
  local selected = {}
  if paths then
    local want = {}
    for _, p in ipairs(paths) do want[ranking.absolute(p)] = p end
    for i, f in ipairs(index.files) do
      if want[f.path] then
        if not gone[f.path] then selected[i] = want[f.path] end
        want[f.path] = nil
      end
    end
    local abs, shown = next(want)
    if abs then fail("'%s' is not in the index%s", shown, index.path and (" '" .. index.path .. "'") or "") end
  else
    for i, f in ipairs(index.files) do
      if not gone[f.path] then selected[i] = f.path end
    end
  end
  if next(selected) == nil then fail("nothing to rank: the library has no audio files left") end
  return selected
end

local function check_rank_options(opts)
  local role = opts.role or "cond"
  if not ranking.ROLES[role] then fail("role must be 'cond' or 'gen', got '%s'", tostring(role)) end
  local tails = opts.tails or "exact"
  if tails ~= "exact" and tails ~= "cached" then fail("tails must be 'exact' or 'cached', got '%s'", tostring(tails)) end
  local top = opts.top
  if top ~= nil and (math.type(top) ~= "integer" or top < 1) then fail("top must be a positive integer, got %s", tostring(top)) end
  local batch = opt(opts, "batch", 16)
  if math.type(batch) ~= "integer" or batch < 1 then fail("batch must be a positive integer, got %s", tostring(batch)) end
  return role, tails, top, batch
end

-- the files of `selected` ({[i] = shown path}) best first (score descending, NaN last, then by
-- path), the first `top` of them (all when nil), and how many there are: a full sort, or one pass
-- keeping the best `top` when that is a small part of the files
local function best_first(selected, scores, top)
  local function before(i, j)
    local si, sj = scores[i], scores[j]
    if si ~= si then si = -math.huge end
    if sj ~= sj then sj = -math.huge end
    if si ~= sj then return si > sj end
    return selected[i] < selected[j]
  end
  local all, n = {}, 0
  for i in pairs(selected) do
    n = n + 1
    all[n] = i
  end
  if not top or top * 8 >= n then
    table.sort(all, before)
    if top then for r = n, top + 1, -1 do all[r] = nil end end
    return all, n
  end
  local best = {}
  for _, i in ipairs(all) do
    if #best < top or before(i, best[#best]) then
      local pos = #best < top and #best + 1 or top
      while pos > 1 and before(i, best[pos - 1]) do
        best[pos] = best[pos - 1]
        pos = pos - 1
      end
      best[pos] = i
    end
  end
  return best, n
end

--- ranking.rank_embeddings(model, embeddings (Kq, D), query_samples, index, opts) -> {rows =, n =,
-- tail_windows =}: the search half of rank for a query already embedded with the index's settings
-- (scoring.embed_waves): its query vectors, one product per query window, the per-file means over
-- the shared windows, the exact tails and the sorted rows. opts: role, tails, top, files (paths),
-- wave (the query's (1, n) wave: needed for exact tails when a pair ends in a tail window), model
-- batch, progress, and missing (a set of paths to leave out).
function ranking.rank_embeddings(model, e, query_samples, index, opts)
  opts = opts or {}
  local role, tails, top, batch = check_rank_options(opts)
  if math.type(query_samples) ~= "integer" or query_samples < 1 then
    fail("rank_embeddings: expected the query's length in samples, got %s", tostring(query_samples))
  end
  local fact = ranking.factorisation(model)
  local queries = fact.queries(e, role)
  if queries:size(2) ~= index.key_size then
    fail("the query gives vectors of %d values, the index holds %d", queries:size(2), index.key_size)
  end
  local selected = select_files(index, opts.files, opts.missing or {})
  local found = ranking.search(index, queries, query_samples, { files = selected })
  local tail_windows = 0
  if tails == "exact" then
    tail_windows = fix_tails(model, fact, index, selected, found, opts.wave, query_samples, queries, role,
      index.identity.mode, batch, opts.progress)
  end
  local order, n = best_first(selected, found.scores, top)
  local sr = index.settings.sample_rate
  local shown_rows = list()
  for r, i in ipairs(order) do
    local f, shown = index.files[i], selected[i]
    shown_rows[r] = {
      rank = r, path = shown, name = basename(shown), score = found.scores[i], windows = found.windows[i],
      overlap = math.min(query_samples, f.samples) / sr, duration = f.samples / sr,
    }
  end
  return { rows = shown_rows, n = n, tail_windows = tail_windows }
end

--- ranking.rank(model, query, library, opts) -> result = {
--   rows = {{rank =, path =, name =, score =, windows = shared windows scored, overlap = s scored,
--            duration = s of the library file}, ...} (best first; opts.top of them),
--   n = files ranked, query =, role =, mode =, window =, hop =, sample_rate =, query_duration =,
--   query_windows =, tails = "exact" | "cached", tail_windows = windows embedded for exact tails,
--   missing = {indexed files no longer on disk}, reembedded = {changed files embedded again},
--   failed = {{path =, error =}} (keep_going), model = {kind =, fingerprint =}, index = path or nil }
-- query: an audio file path or a 16 kHz wave. library: an index (ranking.index / load_index), the
-- path of an index file, or a list of audio files and folders (embedded now, not cached).
-- opts.role = "cond": the query is the condition and the library holds accompaniments, score =
-- CCS(query, file); "gen": the query is the accompaniment, score = CCS(file, query).
-- opts.files: rank only these paths of the index. opts.refresh (default true): files to rank that
-- changed on disk since they were indexed are embedded again (and the index file rewritten unless
-- opts.save == false); those no longer on disk are left out and listed in `missing`.
function ranking.rank(model, query, library, opts)
  opts = opts or {}
  check_model(model, "rank")
  local role, tails, _, batch = check_rank_options(opts)
  ranking.factorisation(model)
  if library == nil then fail("rank: no library (an index, an index file, or audio files and folders)") end

  local index, failed, shown_files = library_index(model, library, opts)
  failed = failed or list()
  local only_files = opts.files or shown_files
  local reembedded, missing, gone = list(), list(), {}
  if index.path and opts.refresh ~= false then
    -- the files to rank that changed on disk since they were indexed (other entries stay as they are)
    local st = ranking.stale(index, only_files)
    for _, p in ipairs(st.missing) do
      missing[#missing + 1] = p
      gone[p] = true
    end
    if #st.changed > 0 then
      -- embed the changed files again; entries of missing files stay (their keys are still valid)
      local updated = ranking.index(model, st.changed, {
        previous = index, keep_previous = true, batch = batch, keep_going = opts.keep_going, progress = opts.progress,
      })
      for _, p in ipairs(updated.report.embedded) do reembedded[#reembedded + 1] = p end
      for _, fl in ipairs(updated.report.failed) do
        failed[#failed + 1] = fl
        gone[fl.path] = true -- its cached keys are out of date: left out
      end
      if opts.save ~= false then ranking.save_index(updated, index.path) else updated.path = index.path end
      index = updated
    end
  end

  local settings = index.settings
  local wave, query_name = as_wave(query, settings)
  local e, starts = scoring.embed_waves(model, wave, wave_options(settings, index.identity.mode, batch))
  local ranked = ranking.rank_embeddings(model, e, wave:size(2), index, {
    role = role, tails = tails, top = opts.top, files = only_files, wave = wave, batch = batch,
    progress = opts.progress, missing = gone,
  })
  local sr = settings.sample_rate
  return {
    rows = ranked.rows, n = ranked.n, query = query_name, role = role, mode = index.identity.mode,
    window = settings.window, hop = settings.hop, sample_rate = sr,
    query_duration = wave:size(2) / sr, query_windows = #starts, tails = tails, tail_windows = ranked.tail_windows,
    missing = missing, reembedded = reembedded, failed = failed,
    model = { kind = index.identity.kind, fingerprint = index.identity.fingerprint }, index = index.path,
  }
end

-- ---- output -----------------------------------------------------------------------------------

--- ranking.json(result) -> JSON text of a rank result
function ranking.json(result) return scoring.json(result) end

local csv_field = scoring.csv_field

--- ranking.csv(result) -> CSV text: rank,name,path,score,windows,overlap,duration, one line per row
function ranking.csv(result)
  local lines = { "rank,name,path,score,windows,overlap,duration" }
  for _, r in ipairs(result.rows) do
    lines[#lines + 1] = table.concat({
      csv_field(r.rank), csv_field(r.name), csv_field(r.path), csv_field(r.score), csv_field(r.windows),
      csv_field(r.overlap), csv_field(r.duration),
    }, ",")
  end
  return table.concat(lines, "\n") .. "\n"
end

return ranking
