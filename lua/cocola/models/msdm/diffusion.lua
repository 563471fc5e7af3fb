-- cocola.models.msdm.diffusion — the EDM preconditioning and loss of audio-diffusion-pytorch 0.0.43
-- (diffusion.py Diffusion, Karras et al. 2022), as pure functions of a network net(x, time):
--   c_skip = sd^2 / (s^2 + sd^2), c_out = s sd / sqrt(s^2 + sd^2), c_in = 1 / sqrt(s^2 + sd^2), c_noise = ln(s) / 4
--   denoise(net, x_noisy, sigmas) = clamp(c_skip x_noisy + c_out net(c_in x_noisy, c_noise), -1, 1)
--     (the clamp is dynamic_threshold 0, the only setting supported here)
--   loss(net, x, sigmas, noise) = mean_b( mean(( denoise(x + s noise) - x )^2) (s^2 + sd^2) / (s sd)^2 )
-- x (B, C, L); sigmas (B) or a number; sd = opts.sigma_data (default 0.2, MSDM's).
local cocola = require "cocola"

local M = {}

M.SIGMA_DATA = 0.2

local function sigma_tensor(sigmas, batch, like, fname)
  if type(sigmas) == "number" then
    return cocola.full({ batch }, sigmas, { dtype = like:dtype() }):to(like:device())
  end
  if not cocola.is_tensor(sigmas) or sigmas:dim() ~= 1 or sigmas:size(1) ~= batch then
    error(string.format("msdm.diffusion.%s: sigmas must be a number or a tensor of shape (%d), got %s", fname, batch,
      cocola.is_tensor(sigmas) and sigmas:shape_string() or type(sigmas)), 3)
  end
  if sigmas:device() ~= like:device() then
    error(string.format("msdm.diffusion.%s: sigmas are on the %s, the input on the %s", fname, sigmas:device(),
      like:device()), 3)
  end
  return sigmas
end

local function check_x(x, fname, what)
  if not cocola.is_tensor(x) or x:dim() ~= 3 then
    error(string.format("msdm.diffusion.%s: %s must be a tensor of shape (B, C, L), got %s", fname, what,
      cocola.is_tensor(x) and x:shape_string() or type(x)), 3)
  end
end

--- scale_weights(sigmas (B), sigma_data) -> c_skip, c_out, c_in (each (B, 1, 1)), c_noise (B)
function M.scale_weights(sigmas, sigma_data)
  sigma_data = sigma_data or M.SIGMA_DATA
  local s = sigmas:reshape({ sigmas:size(1), 1, 1 })
  local total = s * s + sigma_data * sigma_data
  local c_skip = total:pow(-1) * (sigma_data * sigma_data)
  local c_out = s * sigma_data * total:pow(-0.5)
  local c_in = total:pow(-0.5)
  local c_noise = sigmas:log() * 0.25
  return c_skip, c_out, c_in, c_noise
end

--- denoise(net, x_noisy (B, C, L), sigmas (B) | number, {sigma_data = 0.2}) -> the denoised estimate (B, C, L)
function M.denoise(net, x_noisy, sigmas, opts)
  opts = opts or {}
  check_x(x_noisy, "denoise", "x_noisy")
  sigmas = sigma_tensor(sigmas, x_noisy:size(1), x_noisy, "denoise")
  local c_skip, c_out, c_in, c_noise = M.scale_weights(sigmas, opts.sigma_data)
  local x_pred = net(x_noisy * c_in, c_noise)
  return (x_noisy * c_skip + x_pred * c_out):clamp(-1.0, 1.0)
end

--- loss_weight(sigmas (B), sigma_data) -> (s^2 + sd^2) / (s sd)^2, (B)
function M.loss_weight(sigmas, sigma_data)
  sigma_data = sigma_data or M.SIGMA_DATA
  local sd2 = sigma_data * sigma_data
  return (sigmas * sigmas + sd2) * (sigmas * sigmas * sd2):pow(-1)
end

--- loss(net, x (B, C, L), sigmas (B) | number, noise (B, C, L), {sigma_data = 0.2}) -> the scalar training loss
--- (the sigmas and the noise come from the caller: LogNormal(-3, 1) sigmas and N(0, 1) noise in training)
function M.loss(net, x, sigmas, noise, opts)
  opts = opts or {}
  check_x(x, "loss", "x")
  check_x(noise, "loss", "noise")
  local B = x:size(1)
  sigmas = sigma_tensor(sigmas, B, x, "loss")
  local x_noisy = x + noise * sigmas:reshape({ B, 1, 1 })
  local denoised = M.denoise(net, x_noisy, sigmas, opts)
  local diff = denoised - x
  local per_item = (diff * diff):reshape({ B, -1 }):mean(2)
  return (per_item * M.loss_weight(sigmas, opts.sigma_data)):mean()
end

return M
