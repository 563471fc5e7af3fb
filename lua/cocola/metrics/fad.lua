-- cocola.metrics.fad — the Fréchet audio distance between two sets of embeddings, as
-- gudgud96/frechet_audio_distance and microsoft/fadtk compute it. Each file gives a (frames, D)
-- embedding matrix; a set pools the frames of all its files; its Gaussian is the mean over frames and
-- the covariance with N - 1 (np.cov(rowvar=False)). The distance is
--   |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrtm(S1 S2)),
-- computed in float64 in C (csrc/ops/frechet.c, symmetric eigendecompositions); when the square root
-- term is not finite it is computed again with eps on both diagonals, as the references do.
--
--   local st = fad.stats()            -- an accumulator: st:add(x) per file, st:merge(other)
--   st:count(), st:dim(), st:mean(), st:cov(), st:save(path); fad.load_stats(path)
--   fad.frechet_distance(mu1, cov1, mu2, cov2, {eps = 1e-6}) -> distance, used_eps
--   fad.score(a, b) -> distance, used_eps      (a, b: stats, (frames, D) tensors or lists of them)
--   fad.score_inf(base, embeddings, {seed = 0, steps = 25, min_n = 500}) -> FAD-inf result table
local cocola = require "cocola"
local core = require "cocola.core"

local fad = {}

local STATS_FORMAT = "cocola.fad.stats"

local Stats = {}
Stats.__index = Stats
Stats.__name = "cocola.fad.Stats"

local function is_stats(x) return getmetatable(x) == Stats end

local function check_embeddings(x, what, level)
  level = (level or 2) + 1
  if not cocola.is_tensor(x) then
    error(string.format("%s: expected an embedding tensor (frames, D), got a %s", what, type(x)), level)
  end
  if x:dim() ~= 2 then
    error(string.format("%s: expected embeddings of shape (frames, D), got a %d-d tensor %s", what, x:dim(),
      x:shape_string()), level)
  end
  local dt = x:dtype()
  if dt ~= "float32" and dt ~= "float64" then
    error(string.format("%s: expected a float32 or float64 embedding tensor, got %s", what, dt), level)
  end
end

--- A new accumulator of Gaussian statistics (float64): frames are folded in one block at a time.
-- dim (optional) fixes D before the first block.
function fad.stats(dim)
  if dim ~= nil and (math.type(dim) ~= "integer" or dim < 1) then
    error("fad.stats: the dimension must be a positive integer, got " .. tostring(dim), 2)
  end
  local self = setmetatable({ n = 0, d = dim }, Stats)
  if dim then
    self.mu = cocola.zeros({ dim }, { dtype = "float64" })
    self.m2 = cocola.zeros({ dim, dim }, { dtype = "float64" })
  end
  return self
end

--- Folds in the frames of x (frames, D), float32 or float64; returns self.
function Stats:add(x)
  check_embeddings(x, "fad.stats:add")
  local d = x:size(2)
  if not self.d then
    if d < 1 then error("fad.stats:add: the embeddings have D = 0", 2) end
    self.d = d
    self.mu = cocola.zeros({ d }, { dtype = "float64" })
    self.m2 = cocola.zeros({ d, d }, { dtype = "float64" })
  elseif d ~= self.d then
    error(string.format("fad.stats:add: the embeddings have D = %d, the statistics D = %d", d, self.d), 2)
  end
  if x:device() ~= "cpu" then x = x:to("cpu") end
  self.n = core._gauss_stats_add(self.mu, self.m2, self.n, x:detach())
  return self
end

--- Folds in another accumulator's statistics (its frames count as if added here); returns self.
function Stats:merge(other)
  if not is_stats(other) then error("fad.stats:merge: expected statistics from fad.stats() or fad.load_stats()", 2) end
  if other == self then error("fad.stats:merge: cannot merge statistics into themselves", 2) end
  if other.n == 0 then return self end
  if not self.d then
    self.d = other.d
    self.mu = cocola.zeros({ other.d }, { dtype = "float64" })
    self.m2 = cocola.zeros({ other.d, other.d }, { dtype = "float64" })
  elseif other.d ~= self.d then
    error(string.format("fad.stats:merge: the statistics have D = %d and D = %d", self.d, other.d), 2)
  end
  self.n = core._gauss_stats_merge(self.mu, self.m2, self.n, other.mu, other.m2, other.n)
  return self
end

function Stats:count() return self.n end
function Stats:dim() return self.d end

local function need_frames(self, what, level)
  if self.n < 2 then
    error(string.format("%s: needs at least 2 embedding frames, got %d", what, self.n), level + 1)
  end
end

--- The mean over frames, a float64 tensor (D) (a copy).
function Stats:mean()
  if self.n < 1 then error("fad.stats:mean: needs at least 1 embedding frame, got 0", 2) end
  return self.mu:clone()
end

--- The covariance (D, D), float64, with N - 1 as np.cov(x, rowvar=False).
function Stats:cov()
  need_frames(self, "fad.stats:cov", 2)
  return self.m2 / (self.n - 1)
end

function Stats:__tostring()
  return string.format("fad.stats(n = %d, D = %s)", self.n, self.d and tostring(self.d) or "?")
end

--- Writes the statistics (count, mean, M2) to a safetensors file, to be read by fad.load_stats.
function Stats:save(path)
  if type(path) ~= "string" then error("fad.stats:save: expected a file path", 2) end
  if self.n < 1 then error("fad.stats:save: no embedding frames to save", 2) end
  cocola.save(path, {
    count = cocola.tensor({ self.n }, { dtype = "int64" }),
    mean = self.mu,
    m2 = self.m2,
  }, { metadata = { format = STATS_FORMAT } })
end

--- Reads statistics written by Stats:save.
function fad.load_stats(path)
  if type(path) ~= "string" then error("fad.load_stats: expected a file path", 2) end
  local ok, t, metadata = pcall(cocola.load, path)
  if not ok then error("fad.load_stats: " .. tostring(t), 2) end
  local function bad(msg) error(string.format("fad.load_stats: '%s' %s", path, msg), 3) end
  if (metadata or {}).format ~= STATS_FORMAT then bad("is not a file of FAD statistics (format " .. STATS_FORMAT .. ")") end
  local count, mean, m2 = t.count, t.mean, t.m2
  if not (count and mean and m2) then bad("lacks one of the tensors count, mean, m2") end
  if count:dtype() ~= "int64" or count:numel() ~= 1 then bad("has a malformed count") end
  if mean:dtype() ~= "float64" or mean:dim() ~= 1 or mean:size(1) < 1 then bad("has a malformed mean") end
  local d = mean:size(1)
  if m2:dtype() ~= "float64" or m2:dim() ~= 2 or m2:size(1) ~= d or m2:size(2) ~= d then bad("has a malformed m2") end
  local n = math.tointeger(count:totable()[1])
  if not n or n < 1 then bad("has a frame count below 1") end
  local self = setmetatable({ n = n, d = d, mu = mean:contiguous(), m2 = m2:contiguous() }, Stats)
  return self
end

-- statistics of x: stats (as they are), a (frames, D) tensor or a list of them (pooled)
local function as_stats(x, what, level)
  level = level + 1
  if is_stats(x) then return x end
  local st = fad.stats()
  if cocola.is_tensor(x) then
    check_embeddings(x, what, level)
    return st:add(x)
  end
  if type(x) == "table" and #x > 0 then
    for i, e in ipairs(x) do
      check_embeddings(e, string.format("%s (item %d)", what, i), level)
      if st.d and e:size(2) ~= st.d then
        error(string.format("%s (item %d): the embeddings have D = %d, the first ones D = %d", what, i, e:size(2), st.d), level)
      end
      st:add(e)
    end
    return st
  end
  error(what .. ": expected statistics (fad.stats), an embedding tensor (frames, D) or a list of them", level)
end

local function check_moment(t, name, rank, level)
  if not cocola.is_tensor(t) then
    error(string.format("fad.frechet_distance: %s must be a tensor, got a %s", name, type(t)), level + 1)
  end
  if t:dim() ~= rank then
    error(string.format("fad.frechet_distance: %s must be %s, got a %d-d tensor %s", name,
      rank == 1 and "a vector (D)" or "a matrix (D, D)", t:dim(), t:shape_string()), level + 1)
  end
  local dt = t:dtype()
  if dt ~= "float32" and dt ~= "float64" then
    error(string.format("fad.frechet_distance: %s must be a float32 or float64 tensor, got %s", name, dt), level + 1)
  end
end

local function frechet(mu1, cov1, mu2, cov2, opts, level)
  level = level + 1
  opts = opts or {}
  if type(opts) ~= "table" then error("fad.frechet_distance: options must be a table", level) end
  local eps = opts.eps == nil and 1e-6 or opts.eps
  if type(eps) ~= "number" or eps < 0 or eps ~= eps or eps == math.huge then
    error("fad.frechet_distance: eps must be a finite number >= 0, got " .. tostring(opts.eps), level)
  end
  check_moment(mu1, "mu1", 1, level)
  check_moment(cov1, "cov1", 2, level)
  check_moment(mu2, "mu2", 1, level)
  check_moment(cov2, "cov2", 2, level)
  local d = mu1:size(1)
  if cov1:size(1) ~= d or cov1:size(2) ~= d or mu2:size(1) ~= d or cov2:size(1) ~= d or cov2:size(2) ~= d then
    error(string.format("fad.frechet_distance: mismatched dimensions: mu1 %s, cov1 %s, mu2 %s, cov2 %s",
      mu1:shape_string(), cov1:shape_string(), mu2:shape_string(), cov2:shape_string()), level)
  end
  local function host(t) return t:device() ~= "cpu" and t:to("cpu") or t end
  local ok, dist, used = pcall(core._frechet_distance, host(mu1), host(cov1), host(mu2), host(cov2), eps)
  if not ok then error(tostring(dist), level) end
  return dist, used
end

--- The Fréchet distance between N(mu1, cov1) and N(mu2, cov2): a number, and true when the square
-- root term needed eps (default 1e-6) added to both covariances' diagonals.
function fad.frechet_distance(mu1, cov1, mu2, cov2, opts)
  return frechet(mu1, cov1, mu2, cov2, opts, 2)
end

--- FAD between two sets: each statistics (fad.stats, fad.load_stats), a (frames, D) tensor or a list
-- of such tensors (one per file, pooled). Returns the distance and whether the eps fallback ran.
function fad.score(a, b, opts)
  local sa, sb = as_stats(a, "fad.score: the first set", 2), as_stats(b, "fad.score: the second set", 2)
  need_frames(sa, "fad.score: the first set", 2)
  need_frames(sb, "fad.score: the second set", 2)
  if sa.d ~= sb.d then
    error(string.format("fad.score: the sets have D = %d and D = %d", sa.d, sb.d), 2)
  end
  return frechet(sa:mean(), sa:cov(), sb:mean(), sb:cov(), opts, 2)
end

local function pooled(x, what)
  if cocola.is_tensor(x) then
    check_embeddings(x, what, 3)
    return x
  end
  if type(x) == "table" and #x > 0 then
    for i, e in ipairs(x) do check_embeddings(e, string.format("%s (item %d)", what, i), 3) end
    local parts = {}
    for i, e in ipairs(x) do parts[i] = e:double() end
    local ok, cat = pcall(cocola.cat, parts, 1)
    if not ok then error(what .. ": the embeddings do not share D (" .. tostring(cat) .. ")", 3) end
    return cat
  end
  error(what .. ": expected an embedding tensor (frames, D) or a list of them", 3)
end

--- FAD-inf (fadtk): FAD of `base` (statistics, tensor or list, used whole) against random subsets of the
-- pooled frames of `embeddings`, drawn with replacement at sizes n = floor(linspace(min_n, N, steps)),
-- then a least-squares line of FAD against 1/n; its intercept is FAD-inf. opts: seed (0), steps (25),
-- min_n (500). The draws use the given seed and leave the global random state as it was.
-- Returns {score = intercept, slope =, r2 =, points = {{n, fad}, ...}}.
function fad.score_inf(base, embeddings, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("fad.score_inf: options must be a table", 2) end
  local seed, steps, min_n = opts.seed or 0, opts.steps or 25, opts.min_n or 500
  if math.type(seed) ~= "integer" or seed < 0 then error("fad.score_inf: seed must be an integer >= 0", 2) end
  if math.type(steps) ~= "integer" or steps < 2 then error("fad.score_inf: steps must be an integer >= 2", 2) end
  if math.type(min_n) ~= "integer" or min_n < 2 then error("fad.score_inf: min_n must be an integer >= 2", 2) end
  local sb = as_stats(base, "fad.score_inf: the base set", 2)
  need_frames(sb, "fad.score_inf: the base set", 2)
  local x = pooled(embeddings, "fad.score_inf: the evaluated set")
  local total = x:size(1)
  if total < min_n then
    error(string.format("fad.score_inf: the evaluated set has %d embedding frames, fewer than min_n = %d", total, min_n), 2)
  end
  if x:size(2) ~= sb.d then
    error(string.format("fad.score_inf: the sets have D = %d and D = %d", sb.d, x:size(2)), 2)
  end
  if x:device() ~= "cpu" then x = x:to("cpu") end
  x = x:detach()
  local mu_b, cov_b = sb:mean(), sb:cov()
  local saved_seed, saved_offset = cocola.get_rng_state()
  cocola.manual_seed(seed)
  local points, xs, ys = {}, {}, {}
  local ok, err = pcall(function()
    for i = 0, steps - 1 do
      -- numpy's linspace(min_n, total, steps), truncated as int() does
      local n = math.floor(i * ((total - min_n) / (steps - 1)) + min_n)
      if i == steps - 1 then n = total end
      local idx = cocola.randint(0, total, { n })
      local st = fad.stats():add(x:index_select(1, idx))
      local f = frechet(mu_b, cov_b, st:mean(), st:cov(), opts.eps and { eps = opts.eps } or nil, 1)
      points[#points + 1] = { n, f }
      xs[#xs + 1], ys[#ys + 1] = 1 / n, f
    end
  end)
  cocola.set_rng_state(saved_seed, saved_offset)
  if not ok then error(err, 2) end
  -- least squares y = slope x + intercept (np.polyfit degree 1) and its R^2
  local m = #xs
  local mx, my = 0, 0
  for i = 1, m do mx, my = mx + xs[i], my + ys[i] end
  mx, my = mx / m, my / m
  local sxy, sxx = 0, 0
  for i = 1, m do
    sxy = sxy + (xs[i] - mx) * (ys[i] - my)
    sxx = sxx + (xs[i] - mx) ^ 2
  end
  if sxx == 0 then error("fad.score_inf: all subset sizes are equal; raise the frame count or lower min_n", 2) end
  local slope = sxy / sxx
  local intercept = my - slope * mx
  local ss_res, ss_tot = 0, 0
  for i = 1, m do
    ss_res = ss_res + (ys[i] - (slope * xs[i] + intercept)) ^ 2
    ss_tot = ss_tot + (ys[i] - my) ^ 2
  end
  return { score = intercept, slope = slope, r2 = ss_tot > 0 and 1 - ss_res / ss_tot or 1, points = points }
end

fad.Stats = Stats
return fad
