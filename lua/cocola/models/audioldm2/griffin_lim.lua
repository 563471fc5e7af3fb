-- cocola.models.audioldm2.griffin_lim — a vocoder without weights for the AudioLDM 2 log-mel
-- (cocola.models.audioldm2.mel), the fallback for the HiFi-GAN vocoder (hifigan.lua) when no trained one
-- exists; it stands where the pipeline's vocoder stands:
--   vocoder(log_mel (T, 64) | (B, T, 64)) -> wave (T * 160,) | (B, T * 160), 16 kHz
-- Steps, as librosa 0.10 (feature.inverse.mel_to_stft with power 1, then griffinlim):
--   1. mel = exp(log_mel), (B, 64, T).
--   2. magnitude (B, 513, T) >= 0 minimising |A X - mel| (A = mel.mel_basis(), (64, 513)): librosa's
--      L-BFGS-B starts at clip(pinv(A) mel, 0); on spectrograms its stopping test (projected gradient of the
--      objective divided by the element count, below 1e-5) holds at once and it returns that start, whose
--      mel misses the input by ~6 % (and by ~1 nat in log). Here the same start is followed by `nnls_iter`
--      accelerated projected-gradient steps (FISTA, step 1 / |A|^2), which reach the NNLS optimum:
--      nnls_iter = 0 gives librosa's result.
--   3. fast Griffin-Lim (Perraudin et al. 2013): `n_iter` rounds of istft -> stft (the front end's STFT:
--      periodic Hann 1024, hop 160, centred, reflect padding), the new angles being
--      rebuilt - momentum / (1 + momentum) * previous rebuilt, normalised and scaled by the magnitude.
--      init "random": phases uniform in [0, 2 pi) drawn from `seed` (the same (513, T) draw for every row,
--      so a row's wave does not depend on its batch), leaving the global generator as it was; init "zeros":
--      every phase 0 (librosa's init=None).
--   4. the last istft, cut or extended to T * 160 samples (the length the pipeline asks of a vocoder for T
--      frames; HiFi-GAN gives 160 T + 32 and is cropped the same way). forward(mel, {length = n}) takes
--      another length; the Griffin-Lim rounds themselves run at (T - 1) * 160, as librosa's.
-- Runs on the CPU in float32 (a mel on another device comes back there); no parameters.
-- Config (config.json of a vocoder/ folder): {"_class_name": "GriffinLim", "n_iter", "momentum", "init",
-- "seed", "nnls_iter", "sampling_rate": 16000, "model_in_dim": 64}; GriffinLim.from_pretrained(dir) reads
-- dir/config.json or dir/vocoder/config.json, save_pretrained(dir) writes dir/vocoder/config.json.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local audio = require "cocola.audio"
local mel_front_end = require "cocola.models.audioldm2.mel"
local pretrained = require "cocola.models.audioldm2.pretrained"
local jc = require "cocola.json_config"
local fs = require "cocola.data.fs"

local GriffinLim = Module:extend("GriffinLim")

local HOP = mel_front_end.HOP_LENGTH
local N_FFT = mel_front_end.N_FFT
local N_MELS = mel_front_end.N_MELS
local STFT_OPTIONS = { n_fft = N_FFT, hop_length = HOP, win_length = N_FFT, center = true, pad_mode = "reflect" }
-- reflect padding of n_fft / 2 needs (T - 1) * hop > n_fft / 2 samples
local MIN_FRAMES = N_FFT // 2 // HOP + 2
-- numpy's finfo(float32).tiny, librosa's guard against dividing by a zero magnitude
local TINY = 1.1754943508222875e-38

GriffinLim.DEFAULTS = {
  n_iter = 32,
  momentum = 0.99,
  init = "random",
  seed = 0,
  nnls_iter = 100,
  sampling_rate = mel_front_end.SAMPLING_RATE,
  model_in_dim = N_MELS,
}

-- the options or config as given -> the checked settings (errors name `source`)
local function parse_config(cfg, source, level)
  local ctx = { what = "GriffinLim", source = source }
  local c = jc.merge(cfg, GriffinLim.DEFAULTS, { what = ctx.what, source = source })
  local parsed = {
    n_iter = jc.integer(ctx, c, "n_iter", 0),
    momentum = jc.number(ctx, c, "momentum"),
    init = jc.one_of(ctx, c, "init", { "random", "zeros" }),
    seed = jc.integer(ctx, c, "seed", 0),
    nnls_iter = jc.integer(ctx, c, "nnls_iter", 0),
    sampling_rate = jc.integer(ctx, c, "sampling_rate", 1),
    model_in_dim = jc.integer(ctx, c, "model_in_dim", 1),
  }
  local where = source and (" in " .. source) or ""
  if parsed.momentum < 0 then
    error(string.format("GriffinLim: config key 'momentum'%s must be >= 0, got %s", where, parsed.momentum), level + 1)
  end
  if parsed.sampling_rate ~= mel_front_end.SAMPLING_RATE or parsed.model_in_dim ~= N_MELS then
    error(string.format("GriffinLim: config keys 'sampling_rate' and 'model_in_dim'%s must be %d and %d (the AudioLDM 2 "
      .. "mel front end), got %d and %d", where, mel_front_end.SAMPLING_RATE, N_MELS, parsed.sampling_rate,
      parsed.model_in_dim), level + 1)
  end
  parsed.upsample_rates = { HOP } -- what Pipeline:latent_shape reads: one frame is HOP samples
  return parsed
end

--- GriffinLim{n_iter = 32, momentum = 0.99, init = "random" | "zeros", seed = 0, nnls_iter = 100}
function GriffinLim:init(options)
  if options ~= nil and type(options) ~= "table" then
    error(string.format("GriffinLim: expected an options table, got a %s", type(options)), 4)
  end
  self.config = parse_config(options or {}, rawget(options or {}, "_path"), 4)
end

-- (A^T, pinv(A), 1 / |A|_2^2) of the mel filterbank, made once: pinv(A) = A^T (A A^T)^-1 (A has full row
-- rank; the 64 x 64 inverse by Gauss-Jordan in float64), |A|_2^2 the largest eigenvalue of A A^T (power
-- iteration, 1 % margin).
local basis
local function mel_basis_inverses()
  if basis then return basis end
  local A = mel_front_end.mel_basis():double()
  local gram = cocola.matmul(A, A:t()):totable()
  local n = #gram
  local inv = {}
  for i = 1, n do
    inv[i] = {}
    for j = 1, n do inv[i][j] = i == j and 1.0 or 0.0 end
  end
  local g = {}
  for i = 1, n do g[i] = { table.unpack(gram[i]) } end
  for col = 1, n do
    local pivot = col
    for r = col + 1, n do
      if math.abs(g[r][col]) > math.abs(g[pivot][col]) then pivot = r end
    end
    if g[pivot][col] == 0 then error("GriffinLim: the mel filterbank has dependent rows", 3) end
    g[col], g[pivot], inv[col], inv[pivot] = g[pivot], g[col], inv[pivot], inv[col]
    local d = g[col][col]
    for j = 1, n do g[col][j], inv[col][j] = g[col][j] / d, inv[col][j] / d end
    for r = 1, n do
      local f = g[r][col]
      if r ~= col and f ~= 0 then
        for j = 1, n do g[r][j], inv[r][j] = g[r][j] - f * g[col][j], inv[r][j] - f * inv[col][j] end
      end
    end
  end
  local v = {}
  for i = 1, n do v[i] = 1.0 end
  local eigen = 0
  for _ = 1, 200 do
    local w, norm = {}, 0
    for i = 1, n do
      local s = 0
      for j = 1, n do s = s + gram[i][j] * v[j] end
      w[i], norm = s, norm + s * s
    end
    norm = math.sqrt(norm)
    eigen = norm
    for i = 1, n do v[i] = w[i] / norm end
  end
  basis = {
    A = A:float(),
    At = A:t():contiguous():float(),
    pinv = cocola.matmul(A:t(), cocola.tensor(inv, { dtype = "float64" })):float(),
    step = 1 / (eigen * 1.01),
  }
  return basis
end

--- GriffinLim.mel_to_magnitude(mel (B, 64, T) linear, nnls_iter) -> (B, 513, T): the NNLS inversion of the
-- filterbank (step 2 above), float32.
function GriffinLim.mel_to_magnitude(mel, nnls_iter)
  local b = mel_basis_inverses()
  return cocola.no_grad(function()
    local x = cocola.matmul(b.pinv, mel):relu()
    local y, t = x, 1.0
    for _ = 1, nnls_iter or GriffinLim.DEFAULTS.nnls_iter do
      local gradient = cocola.matmul(b.At, cocola.matmul(b.A, y) - mel)
      local x_next = (y - gradient * b.step):relu()
      local t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
      y = x_next + (x_next - x) * ((t - 1) / t_next)
      x, t = x_next, t_next
    end
    return x
  end)
end

-- the initial unit phasors (B, 513, T, 2): "zeros", "random" (from seed) or given phases (513, T) | (B, 513, T)
local function initial_angles(shape, init, seed)
  local B, bins, T = shape[1], shape[2], shape[3]
  if init == "zeros" then
    return cocola.cat({ cocola.ones({ B, bins, T, 1 }), cocola.zeros({ B, bins, T, 1 }) }, 4)
  end
  local phase
  if cocola.is_tensor(init) then
    phase = init:float()
    if phase:dim() == 2 then phase = phase:unsqueeze(1) end
    if phase:dim() ~= 3 or phase:size(2) ~= bins or phase:size(3) ~= T or (phase:size(1) ~= 1 and phase:size(1) ~= B) then
      error(string.format("GriffinLim.griffin_lim: initial phases must be (%d, %d) or (%d, %d, %d), got (%s)", bins, T,
        B, bins, T, table.concat(init.shape, ", ")), 4)
    end
  elseif init == "random" then
    local saved_seed, saved_offset = cocola.get_rng_state()
    cocola.set_rng_state(seed, 0)
    phase = cocola.rand({ 1, bins, T }) * (2 * math.pi)
    cocola.set_rng_state(saved_seed, saved_offset)
  else
    error(string.format("GriffinLim.griffin_lim: init must be \"random\", \"zeros\" or a tensor of phases, got %s",
      tostring(init)), 4)
  end
  phase = phase:unsqueeze(4)
  return cocola.cat({ phase:cos(), phase:sin() }, 4):expand({ B, bins, T, 2 })
end

--- GriffinLim.griffin_lim(magnitude (B, 513, T), {n_iter = 32, momentum = 0.99, init = "random" | "zeros" |
-- phases (513, T) | (B, 513, T), seed = 0, length = (T - 1) * 160}) -> (B, length): librosa.griffinlim with the
-- front end's STFT (step 3).
function GriffinLim.griffin_lim(magnitude, o)
  o = o or {}
  local n_iter = o.n_iter or GriffinLim.DEFAULTS.n_iter
  local momentum = o.momentum or GriffinLim.DEFAULTS.momentum
  return cocola.no_grad(function()
    local S = magnitude:float():contiguous():unsqueeze(4)
    local angles = (initial_angles(magnitude.shape, o.init or GriffinLim.DEFAULTS.init,
      o.seed or GriffinLim.DEFAULTS.seed) * S):contiguous()
    local previous
    for _ = 1, n_iter do
      local rebuilt = audio.stft(audio.istft(angles, STFT_OPTIONS), STFT_OPTIONS)
      angles = rebuilt
      if previous then angles = angles - previous * (momentum / (1 + momentum)) end
      angles = (angles / (audio.magnitude(angles):unsqueeze(4) + TINY) * S):contiguous()
      previous = rebuilt
    end
    local final = {}
    for k, v in pairs(STFT_OPTIONS) do final[k] = v end
    final.length = o.length
    return audio.istft(angles, final)
  end)
end

local function shape_string(x) return "(" .. table.concat(x.shape, ", ") .. ")" end

--- forward(log_mel (T, 64) | (B, T, 64)[, {length = T * 160}]) -> (length,) | (B, length)
function GriffinLim:forward(log_mel, o)
  if not cocola.is_tensor(log_mel) then
    error(string.format("GriffinLim: expected a log-mel tensor (T, %d) or (B, T, %d), got a %s", N_MELS, N_MELS,
      type(log_mel)), 2)
  end
  local nd = log_mel:dim()
  if nd ~= 2 and nd ~= 3 then
    error(string.format("GriffinLim: expected a log-mel (T, %d) or (B, T, %d), got rank %d %s", N_MELS, N_MELS, nd,
      shape_string(log_mel)), 2)
  end
  if log_mel:size(nd) ~= N_MELS then
    error(string.format("GriffinLim: expected %d mel bands in the last dim, got %d %s", N_MELS, log_mel:size(nd),
      shape_string(log_mel)), 2)
  end
  local T = log_mel:size(nd - 1)
  if T < MIN_FRAMES then
    error(string.format("GriffinLim: expected at least %d frames (the STFT's reflect padding of %d samples), got %d",
      MIN_FRAMES, N_FFT // 2, T), 2)
  end
  local device = log_mel:device()
  local x = log_mel:detach():to("cpu"):float()
  local finite = x:isfinite():all():item() ~= 0
  if not finite then
    error(string.format("GriffinLim: the log-mel %s holds NaN or infinite values", shape_string(log_mel)), 2)
  end
  local peak = x:max():item()
  if peak > 80 then
    error(string.format("GriffinLim: log-mel values must be natural logs of magnitudes (exp overflows); the largest "
      .. "is %g", peak), 2)
  end
  o = o or {}
  local length = o.length or T * HOP
  if math.type(length) ~= "integer" or length < 1 then
    error(string.format("GriffinLim: length must be a positive integer number of samples, got %s", tostring(length)), 2)
  end
  if nd == 2 then x = x:unsqueeze(1) end
  local c = self.config
  local magnitude = GriffinLim.mel_to_magnitude(x:transpose(2, 3):exp():contiguous(), c.nnls_iter)
  local wave = GriffinLim.griffin_lim(magnitude, { n_iter = c.n_iter, momentum = c.momentum, init = c.init,
    seed = c.seed, length = length })
  if nd == 2 then wave = wave:select(1, 1) end
  return wave:to(device)
end

--- parameters(): none (the pipeline and CompoNet freeze, move and list a vocoder's parameters)
function GriffinLim:parameters() return {} end

-- JSON for a config value: integers as such, other numbers with the fewest digits that read back exactly
local function json_value(v)
  if math.type(v) == "integer" then return string.format("%d", v) end
  if type(v) == "number" then
    for digits = 15, 17 do
      local s = string.format("%." .. digits .. "g", v)
      if tonumber(s) == v then return s end
    end
  end
  return require("cjson").encode(v)
end

local CONFIG_KEYS = { "n_iter", "momentum", "init", "seed", "nnls_iter", "sampling_rate", "model_in_dim" }

--- save_pretrained(dir): writes dir/vocoder/config.json (creating the folders); returns its path
function GriffinLim:save_pretrained(dir)
  if type(dir) ~= "string" then error("GriffinLim.save_pretrained: expected a folder path", 2) end
  local folder = fs.join(dir, "vocoder")
  local ok, why = pcall(fs.mkdir_p, folder)
  if not ok or not fs.is_dir(folder) then
    error(string.format("GriffinLim.save_pretrained: cannot make the folder '%s'%s", folder,
      ok and "" or (" (" .. tostring(why) .. ")")), 2)
  end
  local lines = { '  "_class_name": "GriffinLim"' }
  for _, k in ipairs(CONFIG_KEYS) do lines[#lines + 1] = string.format('  "%s": %s', k, json_value(self.config[k])) end
  local path = fs.join(folder, "config.json")
  local f, err = io.open(path, "wb")
  if not f then error(string.format("GriffinLim.save_pretrained: cannot write '%s' (%s)", path, err), 2) end
  f:write("{\n", table.concat(lines, ",\n"), "\n}\n")
  f:close()
  return path
end

--- GriffinLim.from_pretrained(dir): the vocoder named by dir/config.json or dir/vocoder/config.json
--- ("_class_name": "GriffinLim"), in eval mode
function GriffinLim.from_pretrained(dir)
  if type(dir) ~= "string" then error("GriffinLim.from_pretrained: expected a folder path", 2) end
  local ok, folder = pcall(pretrained.component_dir, dir, "vocoder")
  if not ok then error("GriffinLim.from_pretrained: " .. tostring(folder), 2) end
  local path = fs.join(folder, "config.json")
  local cfg = jc.read(path, "GriffinLim")
  if cfg._class_name ~= "GriffinLim" then
    error(string.format("GriffinLim.from_pretrained: %s names the class %s, not GriffinLim", path,
      cfg._class_name and ("'" .. tostring(cfg._class_name) .. "'") or "(no _class_name)"), 2)
  end
  cfg._path = path
  local made, model = pcall(GriffinLim, cfg)
  if not made then error(model, 2) end
  return model:eval()
end

return GriffinLim
