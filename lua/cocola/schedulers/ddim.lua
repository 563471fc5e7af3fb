-- cocola.schedulers.ddim — diffusers' DDIMScheduler (scheduling_ddim.py, diffusers 0.27.2) as a plain
-- table of precomputed values plus pure functions over tensors; no model inside.
--   local s = ddim.from_pretrained("scheduler")         -- scheduler_config.json (or ddim.from_config(t))
--   ddim.set_timesteps(s, 200)                           -- s.timesteps: Lua list of integers, descending
--   local out = ddim.step(s, eps, t, x, {eta = 0})       -- out.prev_sample, out.pred_original_sample
-- Every function is also a method (s:set_timesteps(n), s:step(...)).
-- Fields: s.config (checked settings), s.betas, s.alphas_cumprod (float32 tensors (N,)),
-- s.alphas_cumprod_list (the same values as Lua numbers, 1-based: index t + 1 for timestep t),
-- s.final_alpha_cumprod (number), s.init_noise_sigma = 1, s.num_inference_steps, s.timesteps.
-- Numerics as diffusers: betas = torch.linspace(...) in float32 (start + step*i for the first half,
-- end - step*(N-1-i) for the second; "scaled_linear" squares linspace(sqrt(beta_start), sqrt(beta_end))
-- in float32), alphas = 1 - betas (float32), alphas_cumprod = cumprod accumulated in double and stored
-- float32 (torch's CPU cumprod). Against diffusers 0.27.2 betas agree within 6e-9 and alphas_cumprod
-- within 6e-8 (torch's vectorised linspace rounds a few entries differently by one float32 ulp).
-- Timesteps (arXiv 2305.08891 Table 2): "leading" (arange(n) * (N // n))[::-1] + steps_offset,
-- "trailing" round(arange(N, 0, -N/n)) - 1, "linspace" round(linspace(0, N-1, n))[::-1] (numpy's
-- half-to-even rounding).
-- step: DDIM eq. (12) with sigma_t of eq. (16): prev = t - N // n; a_t = alphas_cumprod[t];
--   a_prev = alphas_cumprod[prev] (final_alpha_cumprod when prev < 0);
--   x0 = (x - sqrt(1-a_t) eps) / sqrt(a_t) | x0 = model_output ("sample") | sqrt(a_t) x - sqrt(1-a_t) v;
--   [clip_sample: clamp x0 to +-clip_sample_range]; var = (1-a_prev)/(1-a_t) (1 - a_t/a_prev);
--   sigma = eta sqrt(var); x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z.
-- Training (DDPM): ddim.sample_timesteps(s, B) uniform in [0, N); ddim.add_noise, ddim.get_velocity,
-- ddim.training_target(s, x0, noise, t) = noise | v | x0 by prediction_type.
-- Not supported (a clear error): thresholding = true, rescale_betas_zero_snr = true,
-- beta_schedule "squaredcos_cap_v2".
local cocola = require "cocola"
local jc = require "cocola.json_config"
local fs = require "cocola.data.fs"

local ddim = {}
ddim.__index = ddim

-- DDIMScheduler's arguments and defaults (diffusers 0.27.2)
ddim.DEFAULTS = {
  num_train_timesteps = 1000,
  beta_start = 0.0001,
  beta_end = 0.02,
  beta_schedule = "linear",
  clip_sample = true,
  set_alpha_to_one = true,
  steps_offset = 0,
  prediction_type = "epsilon",
  thresholding = false,
  dynamic_thresholding_ratio = 0.995,
  clip_sample_range = 1.0,
  sample_max_value = 1.0,
  timestep_spacing = "leading",
  rescale_betas_zero_snr = false,
}

local WHAT = "DDIMScheduler"

local f32 = cocola.to_f32

-- torch.linspace(a, b, n, dtype=float32) on the CPU (the scalar path of its kernel)
local function linspace_f32(a, b, n)
  local start, stop = f32(a), f32(b)
  local out = {}
  if n == 1 then return { start } end
  local step = f32(f32(stop - start) / (n - 1))
  local half = n // 2
  for i = 0, n - 1 do
    if i < half then out[i + 1] = f32(start + f32(step * i))
    else out[i + 1] = f32(stop - f32(step * (n - 1 - i))) end
  end
  return out
end

local function parse_config(cfg, source)
  if type(cfg) ~= "table" then error(WHAT .. ": expected a config table", 3) end
  local ctx = { what = WHAT, source = source }
  local c = jc.merge(cfg, ddim.DEFAULTS, { what = WHAT, source = source or "the config",
    optional = { trained_betas = true } })
  local out = {
    num_train_timesteps = jc.integer(ctx, c, "num_train_timesteps", 1),
    beta_start = jc.number(ctx, c, "beta_start"),
    beta_end = jc.number(ctx, c, "beta_end"),
    beta_schedule = jc.one_of(ctx, c, "beta_schedule", { "linear", "scaled_linear" }),
    clip_sample = jc.boolean(ctx, c, "clip_sample"),
    set_alpha_to_one = jc.boolean(ctx, c, "set_alpha_to_one"),
    steps_offset = jc.integer(ctx, c, "steps_offset", 0),
    prediction_type = jc.one_of(ctx, c, "prediction_type", { "epsilon", "v_prediction", "sample" }),
    thresholding = jc.boolean(ctx, c, "thresholding"),
    dynamic_thresholding_ratio = jc.number(ctx, c, "dynamic_thresholding_ratio"),
    clip_sample_range = jc.number(ctx, c, "clip_sample_range"),
    sample_max_value = jc.number(ctx, c, "sample_max_value"),
    timestep_spacing = jc.one_of(ctx, c, "timestep_spacing", { "leading", "trailing", "linspace" }),
    rescale_betas_zero_snr = jc.boolean(ctx, c, "rescale_betas_zero_snr"),
  }
  local where = source and (" in " .. source) or ""
  if out.thresholding then
    error(WHAT .. ": config key 'thresholding'" .. where .. " is true; dynamic thresholding is not supported", 3)
  end
  if out.rescale_betas_zero_snr then
    error(WHAT .. ": config key 'rescale_betas_zero_snr'" .. where .. " is true; zero-SNR rescaling is not supported", 3)
  end
  if c.trained_betas ~= nil then
    local tb = c.trained_betas
    if type(tb) ~= "table" or #tb ~= out.num_train_timesteps then
      error(string.format("%s: config key 'trained_betas'%s must be a list of num_train_timesteps (%d) numbers",
        WHAT, where, out.num_train_timesteps), 3)
    end
    out.trained_betas = {}
    for i, b in ipairs(tb) do
      if type(b) ~= "number" then
        error(string.format("%s: config key 'trained_betas'%s: entry %d is not a number", WHAT, where, i), 3)
      end
      out.trained_betas[i] = b
    end
  end
  return out
end

--- ddim.from_config(t): the scheduler for scheduler_config.json as parsed (missing keys: DEFAULTS).
function ddim.from_config(cfg, source)
  local c = parse_config(cfg, source)
  local N = c.num_train_timesteps
  local betas
  if c.trained_betas then
    betas = {}
    for i, b in ipairs(c.trained_betas) do betas[i] = f32(b) end
  elseif c.beta_schedule == "linear" then
    betas = linspace_f32(c.beta_start, c.beta_end, N)
  else -- scaled_linear: the latent-diffusion schedule
    betas = linspace_f32(c.beta_start ^ 0.5, c.beta_end ^ 0.5, N)
    for i, b in ipairs(betas) do betas[i] = f32(b * b) end
  end
  local ac, acc = {}, 1.0
  for i, b in ipairs(betas) do
    acc = acc * f32(1 - b) -- torch's CPU cumprod accumulates float32 in double
    ac[i] = f32(acc)
  end
  local s = setmetatable({
    config = c,
    betas = cocola.tensor(betas),
    alphas_cumprod = cocola.tensor(ac),
    alphas_cumprod_list = ac,
    final_alpha_cumprod = c.set_alpha_to_one and 1.0 or ac[1],
    init_noise_sigma = 1.0,
    num_inference_steps = nil,
  }, ddim)
  s.timesteps = {}
  for i = 1, N do s.timesteps[i] = N - i end
  return s
end

--- ddim.from_pretrained(path): path is a folder holding scheduler_config.json, or the JSON file itself.
function ddim.from_pretrained(path)
  if type(path) ~= "string" then error(WHAT .. ".from_pretrained: expected a folder or file path", 2) end
  local file = path
  if fs.is_dir(path) then
    file = fs.join(path, "scheduler_config.json")
    -- a pipeline folder: its scheduler/ component
    if not fs.is_file(file) and fs.is_file(fs.join(path, "scheduler", "scheduler_config.json")) then
      file = fs.join(path, "scheduler", "scheduler_config.json")
    end
  end
  if not fs.is_file(file) then error(WHAT .. ".from_pretrained: missing file '" .. file .. "'", 2) end
  local cfg = jc.read(file, WHAT)
  local ok, s = pcall(ddim.from_config, cfg, file)
  if not ok then error(s, 2) end
  return s
end

-- round half to even (numpy's round)
local function round_even(x)
  local f = math.floor(x)
  local d = x - f
  if d > 0.5 or (d == 0.5 and f % 2 == 1) then f = f + 1 end
  return math.tointeger(f)
end

--- ddim.timesteps(s, n) -> the list set_timesteps(n) would set (integers, descending), s unchanged.
function ddim.timesteps(s, n)
  local c = s.config
  local N = c.num_train_timesteps
  if math.type(n) ~= "integer" or n < 1 then
    error(WHAT .. ": the number of inference steps must be a positive integer, got " .. tostring(n), 3)
  end
  if n > N then
    error(string.format("%s: num_inference_steps (%d) cannot be larger than num_train_timesteps (%d)", WHAT, n, N), 3)
  end
  local ts = {}
  if c.timestep_spacing == "linspace" then
    local step = n > 1 and (N - 1) / (n - 1) or 0
    for i = n - 1, 0, -1 do
      local v = (i == n - 1 and n > 1) and (N - 1) or i * step
      ts[#ts + 1] = round_even(v)
    end
  elseif c.timestep_spacing == "leading" then
    local ratio = N // n
    for i = n - 1, 0, -1 do ts[#ts + 1] = i * ratio + c.steps_offset end
  else -- trailing
    local ratio = N / n
    local count = math.ceil(N / ratio) -- np.arange(N, 0, -ratio)
    for i = 0, count - 1 do ts[#ts + 1] = round_even(N - i * ratio) - 1 end
  end
  return ts
end

--- ddim.set_timesteps(s, n): sets s.num_inference_steps and s.timesteps; returns s.timesteps.
function ddim.set_timesteps(s, n)
  s.timesteps = ddim.timesteps(s, n)
  s.num_inference_steps = n
  return s.timesteps
end

local function alpha_at(s, t, what)
  if math.type(t) ~= "integer" then
    local i = type(t) == "number" and math.tointeger(t) or nil
    if i == nil then error(string.format("%s.%s: timestep must be an integer, got %s", WHAT, what, tostring(t)), 4) end
    t = i
  end
  local a = s.alphas_cumprod_list[t + 1]
  if a == nil then
    error(string.format("%s.%s: timestep %d is outside [0, %d)", WHAT, what, t, s.config.num_train_timesteps), 4)
  end
  return a, t
end

-- noise for eta > 0: from opts.generator = {seed = s, offset = 0} (advanced in place, the global
-- generator untouched), else from the global generator (cocola.manual_seed)
local function draw_noise(shape, gen)
  if gen == nil then return cocola.randn(shape) end
  if type(gen) ~= "table" or math.type(gen.seed) ~= "integer" then
    error(WHAT .. ".step: generator must be a table {seed = integer, offset = integer}", 4)
  end
  local seed0, off0 = cocola.get_rng_state()
  cocola.set_rng_state(gen.seed, gen.offset or 0)
  local z = cocola.randn(shape)
  local _, off = cocola.get_rng_state()
  gen.offset = off
  cocola.set_rng_state(seed0, off0)
  return z
end

--- ddim.step(s, model_output, t, sample, {eta = 0, use_clipped_model_output = false,
---   variance_noise = tensor | generator = {seed, offset}}) -> {prev_sample, pred_original_sample}
function ddim.step(s, model_output, timestep, sample, opts)
  opts = opts or {}
  if s.num_inference_steps == nil then
    error(WHAT .. ".step: the number of inference steps is not set; call set_timesteps first", 2)
  end
  if not cocola.is_tensor(model_output) or not cocola.is_tensor(sample) then
    error(WHAT .. ".step: model_output and sample must be tensors", 2)
  end
  local c = s.config
  local eta = opts.eta or 0.0
  if type(eta) ~= "number" or eta < 0 then error(WHAT .. ".step: eta must be a non-negative number", 2) end
  if opts.variance_noise ~= nil and opts.generator ~= nil then
    error(WHAT .. ".step: cannot pass both generator and variance_noise", 2)
  end
  local a_t, t = alpha_at(s, timestep, "step")
  local prev_t = t - c.num_train_timesteps // s.num_inference_steps
  local a_prev = prev_t >= 0 and s.alphas_cumprod_list[prev_t + 1] or s.final_alpha_cumprod
  local b_t = f32(1 - a_t)
  local sqrt_a, sqrt_b = f32(a_t ^ 0.5), f32(b_t ^ 0.5)
  local x0, eps
  if c.prediction_type == "epsilon" then
    x0 = (sample - model_output * sqrt_b) / sqrt_a
    eps = model_output
  elseif c.prediction_type == "sample" then
    x0 = model_output
    eps = (sample - x0 * sqrt_a) / sqrt_b
  else -- v_prediction
    x0 = sample * sqrt_a - model_output * sqrt_b
    eps = model_output * sqrt_a + sample * sqrt_b
  end
  if c.clip_sample then x0 = x0:clamp(-c.clip_sample_range, c.clip_sample_range) end
  local variance = f32(f32(f32(1 - a_prev) / b_t) * f32(1 - f32(a_t / a_prev)))
  local std = f32(eta * f32(variance ^ 0.5))
  if opts.use_clipped_model_output then eps = (sample - x0 * sqrt_a) / sqrt_b end
  local dir_coef = f32(f32(f32(1 - a_prev) - f32(std * std)) ^ 0.5)
  local prev = x0 * f32(a_prev ^ 0.5) + eps * dir_coef
  if eta > 0 then
    local z = opts.variance_noise
    if z == nil then z = draw_noise(model_output.shape, opts.generator):to(model_output:device())
    elseif not cocola.is_tensor(z) then error(WHAT .. ".step: variance_noise must be a tensor", 2) end
    prev = prev + z * std
  end
  return { prev_sample = prev, pred_original_sample = x0 }
end

-- timesteps (integer, list of integers, or a tensor of integer values) -> list of alphas_cumprod
local function alphas_for(s, timesteps, x, what)
  local list
  if cocola.is_tensor(timesteps) then
    list = timesteps:reshape({ timesteps:numel() }):double():totable()
  elseif type(timesteps) == "table" then
    list = timesteps
  else
    list = { timesteps }
  end
  local out = {}
  for i, t in ipairs(list) do out[i] = alpha_at(s, t, what) end
  local B = x:size(1)
  if #out ~= 1 and #out ~= B then
    error(string.format("%s.%s: %d timesteps for a batch of %d", WHAT, what, #out, B), 3)
  end
  return out
end

-- (n,) coefficients f(a) as a tensor broadcasting over x (n, 1, 1, ...)
local function coef(values, f, x)
  local v = {}
  for i, a in ipairs(values) do v[i] = f32(f(a)) end
  local shape = { #v }
  for _ = 2, x:dim() do shape[#shape + 1] = 1 end
  return cocola.tensor(v):to(x:dtype()):reshape(shape):to(x:device())
end

local function sqrt_a(a) return f32(a ^ 0.5) end
local function sqrt_1ma(a) return f32(f32(1 - a) ^ 0.5) end

--- ddim.add_noise(s, x0, noise, timesteps) = sqrt(a_t) x0 + sqrt(1 - a_t) noise; timesteps: one per
-- batch row (list or tensor) or a single integer.
function ddim.add_noise(s, x0, noise, timesteps)
  local a = alphas_for(s, timesteps, x0, "add_noise")
  return x0 * coef(a, sqrt_a, x0) + noise * coef(a, sqrt_1ma, x0)
end

--- ddim.get_velocity(s, x0, noise, timesteps) = sqrt(a_t) noise - sqrt(1 - a_t) x0 (the v target).
function ddim.get_velocity(s, x0, noise, timesteps)
  local a = alphas_for(s, timesteps, x0, "get_velocity")
  return noise * coef(a, sqrt_a, x0) - x0 * coef(a, sqrt_1ma, x0)
end

--- ddim.sample_timesteps(s, B) -> int64 (B,) uniform in [0, num_train_timesteps) (DDPM training).
function ddim.sample_timesteps(s, B)
  return cocola.randint(0, s.config.num_train_timesteps, { B })
end

--- ddim.training_target(s, x0, noise, timesteps): what the network learns to predict.
function ddim.training_target(s, x0, noise, timesteps)
  local p = s.config.prediction_type
  if p == "epsilon" then return noise end
  if p == "sample" then return x0 end
  return ddim.get_velocity(s, x0, noise, timesteps)
end

return ddim
