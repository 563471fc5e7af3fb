-- cocola.models.msdm.sampling — MSDM's diffusion sampling (audio-diffusion-pytorch 0.0.43 and MSDM's generation
-- notebook) over the EDM denoiser D(x, sigma) of diffusion.lua:
--   karras_schedule(n, sigma_min, sigma_max, rho) -> {sigma_1 .. sigma_n, 0}   (KarrasSchedule)
--   adpm2_step(D, x, sigma, sigma_next, {rho = 1, noise})                       (ADPM2Sampler.step)
--   adpm2_sample(net | D, noise (B, C, L), {steps = 100, ...}) -> (B, C, L)      (DiffusionSampler with ADPM2Sampler)
--   churn_step(D, x, sigma, sigma_next, gamma, eps)                             (the notebook's first-order step)
--   generate_track(D, sigmas, noise (B, C, L), {source, mask, num_resamples, s_churn, ...})  (the notebook's loop)
--   impute(net, source (B, 4, L), mask, {steps = 256, ...}) -> (B, 4, L)        (accompaniment: given stems kept)
-- D is a function(x (B, C, L), sigma number) -> (B, C, L); a network (a table, e.g. a UNet1d) is wrapped as
-- diffusion.denoise(net, x, sigma). Noise: opts.noise = function(shape, step, k) -> tensor replays recorded draws
-- (step 0 is the initial noise, step i >= 1 the i-th sampler step, k the draw's index within it, in the
-- reference's order); otherwise cocola.randn after cocola.manual_seed(opts.seed) when a seed is given.
-- opts.progress = function(step, steps) is called after every step. Sampling runs without gradients.
local cocola = require "cocola"
local diffusion = require "cocola.models.msdm.diffusion"

local M = {}

local function fail(level, fmt, ...) error(string.format("msdm.sampling." .. fmt, ...), level + 1) end

local function shape_of(t) return cocola.is_tensor(t) and t:shape_string() or type(t) end

local function f32(v) return (string.unpack("f", string.pack("f", v))) end

--- karras_schedule(num_steps, sigma_min, sigma_max, rho = 7) -> Lua array of num_steps + 1 numbers:
--- (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho for i = 0 .. n-1, then 0.
--- Computed in float32 arithmetic as the reference's float32 tensor does it (the values are float32 numbers).
function M.karras_schedule(num_steps, sigma_min, sigma_max, rho)
  rho = rho or 7.0
  if math.type(num_steps) ~= "integer" or num_steps < 2 then
    fail(2, "karras_schedule: num_steps must be an integer >= 2, got %s", tostring(num_steps))
  end
  if type(sigma_min) ~= "number" or type(sigma_max) ~= "number" or not (sigma_min > 0 and sigma_max > sigma_min) then
    fail(2, "karras_schedule: need 0 < sigma_min < sigma_max, got sigma_min %s, sigma_max %s", tostring(sigma_min),
      tostring(sigma_max))
  end
  if type(rho) ~= "number" or not (rho > 0) then fail(2, "karras_schedule: rho must be > 0, got %s", tostring(rho)) end
  local inv = 1.0 / rho
  local a, b = sigma_max ^ inv, sigma_min ^ inv
  local a32, span32, rho32 = f32(a), f32(b - a), f32(rho)
  local s = {}
  for i = 0, num_steps - 1 do
    local t = f32(i / (num_steps - 1))
    s[i + 1] = f32(f32(a32 + f32(t * span32)) ^ rho32)
  end
  s[num_steps + 1] = 0.0
  return s
end

--- denoiser(net | D, {sigma_data = 0.2}) -> D(x, sigma)
function M.denoiser(net, opts)
  if type(net) == "function" then return net end
  if type(net) ~= "table" and type(net) ~= "userdata" then
    fail(3, "denoiser: expected a network or a function D(x, sigma), got %s", type(net))
  end
  local dopts = { sigma_data = opts and opts.sigma_data }
  return function(x, sigma) return diffusion.denoise(net, x, sigma, dopts) end
end

-- the noise source of one sampling run: draw(shape, step, k) -> tensor on the device and in the dtype of like
local function noise_source(opts, fname)
  local provider = opts.noise
  if provider ~= nil and type(provider) ~= "function" then
    fail(3, "%s: noise must be a function(shape, step, k) returning a tensor, got %s", fname, type(provider))
  end
  if provider == nil and opts.seed ~= nil then cocola.manual_seed(opts.seed) end
  return function(like, step, k)
    local shape = like.shape
    local z
    if provider then
      z = provider(shape, step, k)
      if not cocola.is_tensor(z) then
        fail(3, "%s: the noise function returned %s for step %d, draw %d; expected a tensor", fname, type(z), step, k)
      end
      local ok = z:dim() == #shape
      for d = 1, #shape do ok = ok and z:size(d) == shape[d] end
      if not ok then
        fail(3, "%s: the noise function returned a tensor of shape %s for step %d, draw %d; expected %s", fname,
          z:shape_string(), step, k, like:shape_string())
      end
    else
      z = cocola.randn(shape)
    end
    return z:to(like:device())
  end
end

--- adpm2_sigmas(sigma, sigma_next, rho = 1) -> sigma_up, sigma_down, sigma_mid (ADPM2Sampler.get_sigmas)
function M.adpm2_sigmas(sigma, sigma_next, rho)
  rho = rho or 1.0
  local sigma_up = math.sqrt(sigma_next ^ 2 * (sigma ^ 2 - sigma_next ^ 2) / sigma ^ 2)
  local sigma_down = math.sqrt(sigma_next ^ 2 - sigma_up ^ 2)
  local sigma_mid = ((sigma ^ (1 / rho) + sigma_down ^ (1 / rho)) / 2) ^ rho
  return sigma_up, sigma_down, sigma_mid
end

--- adpm2_step(D, x (B, C, L), sigma, sigma_next, {rho = 1, noise = tensor like x}) -> x at sigma_next:
--- d = (x - D(x, sigma)) / sigma; x_mid = x + d (sigma_mid - sigma); d_mid = (x_mid - D(x_mid, sigma_mid)) / sigma_mid;
--- x + d_mid (sigma_down - sigma) + noise sigma_up (noise drawn with cocola.randn when not given)
function M.adpm2_step(D, x, sigma, sigma_next, opts)
  opts = opts or {}
  local sigma_up, sigma_down, sigma_mid = M.adpm2_sigmas(sigma, sigma_next, opts.rho)
  local d = (x - D(x, sigma)) * (1.0 / sigma)
  local x_mid = x + d * (sigma_mid - sigma)
  local d_mid = (x_mid - D(x_mid, sigma_mid)) * (1.0 / sigma_mid)
  x = x + d_mid * (sigma_down - sigma)
  local z = opts.noise or cocola.randn(x.shape):to(x:device())
  return x + z * sigma_up
end

local function check_x(x, fname, what)
  if not cocola.is_tensor(x) or x:dim() ~= 3 then
    fail(3, "%s: %s must be a tensor of shape (B, C, L), got %s", fname, what, shape_of(x))
  end
end

--- adpm2_sample(net | D, noise (B, C, L), {steps = 100, sigma_min = 1e-4, sigma_max = 3, rho = 9, sampler_rho = 1,
--- clamp = true, sigma_data, noise, seed, progress}) -> (B, C, L). As the reference's DiffusionSampler with
--- ADPM2Sampler(rho = sampler_rho) and KarrasSchedule(sigma_min, sigma_max, rho) (MSDM's training-time sampler):
--- x = sigma_1 noise, then steps - 1 ADPM2 steps from sigma_i to sigma_{i+1} (the last ends at sigma_min, not 0),
--- then clamp(-1, 1). Step i's draw is noise(shape, i, 1).
function M.adpm2_sample(net, noise, opts)
  opts = opts or {}
  check_x(noise, "adpm2_sample", "noise")
  local steps = opts.steps or 100
  local sigmas = M.karras_schedule(steps, opts.sigma_min or 1e-4, opts.sigma_max or 3.0, opts.rho or 9.0)
  local D = M.denoiser(net, opts)
  local draw = noise_source(opts, "adpm2_sample")
  return cocola.no_grad(function()
    local x = noise * sigmas[1]
    for i = 1, steps - 1 do
      x = M.adpm2_step(D, x, sigmas[i], sigmas[i + 1], { rho = opts.sampler_rho or 1.0, noise = draw(x, i, 1) })
      if opts.progress then opts.progress(i, steps - 1) end
    end
    if opts.clamp ~= false then x = x:clamp(-1.0, 1.0) end
    return x
  end)
end

--- churn_step(D, x, sigma, sigma_next, gamma, eps (like x)) -> x at sigma_next (first order, with churn):
--- sigma_hat = sigma (gamma + 1); x_hat = x + eps sqrt(sigma_hat^2 - sigma^2); d = (x_hat - D(x_hat, sigma_hat)) / sigma_hat;
--- x_hat + d (sigma_next - sigma_hat)
function M.churn_step(D, x, sigma, sigma_next, gamma, eps)
  local sigma_hat = sigma * (gamma + 1)
  local x_hat = x + eps * math.sqrt(sigma_hat ^ 2 - sigma ^ 2)
  local d = (x_hat - D(x_hat, sigma_hat)) * (1.0 / sigma_hat)
  return x_hat + d * (sigma_next - sigma_hat)
end

--- generate_track(D, sigmas (Lua array, e.g. karras_schedule's), noise (B, C, L), {source (B, C, L), mask (B, C, L)
--- or broadcastable to it, 1 = given, 0 = generate; num_resamples = 1, s_churn = 0, noise, seed, progress})
--- -> (B, C, L). MSDM's generation notebook's loop: x = sigma_1 noise; gamma = min(s_churn / (#sigmas - 1), sqrt 2 - 1);
--- for each step: noisy_source = source + sigma_i randn (draw 1); per resample r: x = mask noisy_source + (1 - mask) x,
--- churn_step (churn draw), and but for the last resample x += randn sqrt(sigma_i^2 - sigma_{i+1}^2); at the end
--- mask source + (1 - mask) x. Without a source and mask: unconditional generation.
function M.generate_track(D, sigmas, noise, opts)
  opts = opts or {}
  check_x(noise, "generate_track", "noise")
  D = M.denoiser(D, opts)
  local R = opts.num_resamples or 1
  if math.type(R) ~= "integer" or R < 1 then
    fail(2, "generate_track: num_resamples must be an integer >= 1, got %s", tostring(R))
  end
  local s_churn = opts.s_churn or 0.0
  local draw = noise_source(opts, "generate_track")
  return cocola.no_grad(function()
    local x = noise * sigmas[1]
    local source = opts.source or x:mul(0)
    local mask = opts.mask or x:mul(0)
    local keep = mask:mul(-1):add(1)
    local n = #sigmas - 1
    local gamma = math.min(s_churn / n, 2 ^ 0.5 - 1)
    for i = 1, n do
      local sigma, sigma_next = sigmas[i], sigmas[i + 1]
      local k = 1
      local noisy_source = source + draw(source, i, k) * sigma
      for r = 1, R do
        x = mask * noisy_source + keep * x
        k = k + 1
        x = M.churn_step(D, x, sigma, sigma_next, gamma, draw(x, i, k))
        if r < R then
          k = k + 1
          x = x + draw(x, i, k) * math.sqrt(sigma ^ 2 - sigma_next ^ 2)
        end
      end
      if opts.progress then opts.progress(i, n) end
    end
    return mask * source + keep * x
  end)
end

-- the mask argument of impute as a (B, C, 1) 0/1 float tensor
local function mask_tensor(mask, B, C, stems, like)
  local rows
  if cocola.is_tensor(mask) then
    local m = mask:to("cpu")
    if m:dim() == 1 and m:size(1) == C then
      local v = m:totable()
      rows = {}
      for b = 1, B do rows[b] = v end
    elseif m:dim() == 2 and m:size(1) == B and m:size(2) == C then
      rows = m:totable()
    else
      fail(3, "impute: a mask tensor must have shape (%d) or (%d, %d), got %s", C, B, C, m:shape_string())
    end
  elseif type(mask) == "table" then
    local row = {}
    if #mask == C and type(mask[1]) == "boolean" then
      for c = 1, C do
        if type(mask[c]) ~= "boolean" then
          fail(3, "impute: a boolean mask needs %d booleans (one per stem), entry %d is %s", C, c, type(mask[c]))
        end
        row[c] = mask[c] and 1 or 0
      end
    else
      -- given stems by name: {"drums"} or {drums = true}
      for c = 1, C do row[c] = 0 end
      local index = {}
      for c, s in ipairs(stems) do index[s] = c end
      local function give(name)
        local c = index[name]
        if not c then
          fail(4, "impute: unknown stem %q in the mask (stems: %s)", tostring(name), table.concat(stems, ", "))
        end
        row[c] = 1
      end
      for k, v in pairs(mask) do
        if math.type(k) == "integer" then give(v)
        elseif v then give(k) end
      end
    end
    rows = {}
    for b = 1, B do rows[b] = row end
  else
    fail(3, "impute: mask must be %d booleans, a list of stem names, or a (%d) / (%d, %d) tensor of 0 and 1, got %s",
      C, C, B, C, type(mask))
  end
  for b = 1, B do
    local given = 0
    for c = 1, C do
      local v = rows[b][c]
      if v ~= 0 and v ~= 1 then
        fail(3, "impute: mask values must be 0 (generate) or 1 (given), got %s for item %d, stem %d", tostring(v), b, c)
      end
      given = given + v
    end
    if given == C then
      fail(3, "impute: the mask gives all %d stems of item %d; nothing is left to generate", C, b)
    end
  end
  return cocola.tensor(rows):reshape({ B, C, 1 }):to(like:dtype()):to(like:device())
end

--- impute(net, source (B, 4, L) at 22.05 kHz, mask, {steps = 256, sigma_min = 1e-4, sigma_max = 20, rho = 7,
--- s_churn = 10, num_resamples = 1, sigma_data = 0.2, seed, noise, progress}) -> (B, 4, L)
--- Accompaniment by imputation (MSDM's partial generation): the stems the mask gives are kept (and reproduced
--- exactly in the output), the others generated to fit them. mask: 4 booleans (true = given), a list / set of stem
--- names ({"drums"} or {drums = true}; stems bass, drums, guitar, piano), or a 0/1 tensor of shape (4) or (B, 4).
--- A mask giving nothing is unconditional generation (the source is then ignored); a mask giving every stem is an
--- error. The initial noise is noise(shape, 0, 1); step i draws the source noise (k = 1), then per resample the
--- churn noise and, but for the last resample, the re-noise.
function M.impute(net, source, mask, opts)
  opts = opts or {}
  if type(net) ~= "table" or not net.in_channels then
    fail(2, "impute: net must be an MSDM network (a UNet1d), got %s", type(net))
  end
  local stems = { "bass", "drums", "guitar", "piano" }
  if not cocola.is_tensor(source) or source:dim() ~= 3 then
    fail(2, "impute: source must be a tensor of shape (B, 4, L) (stems %s), got %s", table.concat(stems, ", "),
      shape_of(source))
  end
  local B, C, L = source:size(1), source:size(2), source:size(3)
  if C ~= #stems or C ~= net.in_channels then
    fail(2, "impute: source has %d stems; MSDM takes %d (%s) and the network %d input channels", C, #stems,
      table.concat(stems, ", "), net.in_channels)
  end
  local down = net.total_downsampling or 1
  if L < 1 or L % down ~= 0 then
    fail(2, "impute: the source length %d is not a multiple of the network's total downsampling %d", L, down)
  end
  if source:isfinite():min():item() == 0 then
    fail(2, "impute: the source holds non-finite values (NaN or infinity)")
  end
  local steps = opts.steps or 256
  local sigmas = M.karras_schedule(steps, opts.sigma_min or 1e-4, opts.sigma_max or 20.0, opts.rho or 7.0)
  local m = mask_tensor(mask, B, C, stems, source)
  local draw = noise_source(opts, "impute")
  local noise = draw(source, 0, 1)
  local provider = opts.noise or function(shape) return cocola.randn(shape) end
  return M.generate_track(M.denoiser(net, opts), sigmas, noise, {
    source = source, mask = m, num_resamples = opts.num_resamples or 1,
    s_churn = opts.s_churn == nil and 10.0 or opts.s_churn, noise = provider, progress = opts.progress })
end

return M
