-- cocola.models.audioldm2.autoencoder_kl — diffusers' AutoencoderKL as AudioLDM 2 uses it on mel images
-- (B, 1, T, 64): encode -> the diagonal Gaussian posterior (mean, logvar clamped to [-30, 20], std) of the
-- latent (B, latent, T/4, 16); decode(z) -> the mel image. scaling_factor comes from the config (the
-- pipeline multiplies sampled latents by it and divides before decoding). Parameter names are diffusers'.
local cocola = require "cocola"
local nn = require "cocola.nn"
local P = require "cocola.models.audioldm2.pretrained"
local Encoder = require "cocola.models.audioldm2.vae_encoder"
local Decoder = require "cocola.models.audioldm2.vae_decoder"

local AutoencoderKL = nn.Module:extend("AutoencoderKL")

local function default_true(v) return P.is_null(v) or v == true end

AutoencoderKL.KNOWN = {
  act_fn = P.one_of({ "silu" }), block_out_channels = true, in_channels = true, out_channels = true,
  latent_channels = true, layers_per_block = true, norm_num_groups = true, sample_size = true,
  scaling_factor = true, force_upcast = true, shift_factor = P.must_be_null,
  latents_mean = P.must_be_null, latents_std = P.must_be_null,
  down_block_types = function(v)
    for _, t in ipairs(v) do if t ~= "DownEncoderBlock2D" then return "only DownEncoderBlock2D blocks" end end
  end,
  up_block_types = function(v)
    for _, t in ipairs(v) do if t ~= "UpDecoderBlock2D" then return "only UpDecoderBlock2D blocks" end end
  end,
  use_quant_conv = P.one_of({ true }, true), use_post_quant_conv = P.one_of({ true }, true),
  mid_block_add_attention = true,
}

--- AutoencoderKL(config): a config table as in vae/config.json (random weights)
function AutoencoderKL:init(cfg)
  P.check_keys(cfg, AutoencoderKL.KNOWN, "AutoencoderKL")
  self.config = cfg
  local ch = cfg.block_out_channels or { 64 }
  local latent = cfg.latent_channels or 4
  local groups = cfg.norm_num_groups or 32
  self.latent_channels = latent
  self.in_channels = cfg.in_channels or 3
  self.scaling_factor = cfg.scaling_factor or 0.18215
  self.downsample = 1 << (#ch - 1)
  local attention = default_true(cfg.mid_block_add_attention)
  self.encoder = Encoder({ in_channels = self.in_channels, out_channels = 2 * latent, block_out_channels = ch,
    layers_per_block = cfg.layers_per_block or 1, groups = groups, mid_attention = attention })
  self.decoder = Decoder({ in_channels = latent, out_channels = cfg.out_channels or 3, block_out_channels = ch,
    layers_per_block = cfg.layers_per_block or 1, groups = groups, mid_attention = attention })
  self.quant_conv = nn.Conv2d(2 * latent, 2 * latent, 1)
  self.post_quant_conv = nn.Conv2d(latent, latent, 1)
end

--- encode(x (B, in, H, W)) -> posterior {mean, logvar, std, var, sample = function(noise | nil), mode = mean}
function AutoencoderKL:encode(x)
  if not cocola.is_tensor(x) or x:dim() ~= 4 or x:size(2) ~= self.in_channels then
    error(string.format("AutoencoderKL: expected an input (B, %d, H, W), got %s", self.in_channels,
      cocola.is_tensor(x) and x:shape_string() or type(x)), 2)
  end
  local moments = self.quant_conv(self.encoder(x))
  local L = self.latent_channels
  local mean = moments:narrow(2, 1, L)
  local logvar = moments:narrow(2, L + 1, L):clamp(-30, 20)
  local std = (logvar * 0.5):exp()
  local posterior = { mean = mean, logvar = logvar, std = std, var = logvar:exp() }
  --- sample([noise]): mean + std * noise (noise drawn from the engine's generator when not given)
  function posterior.sample(noise)
    noise = noise or cocola.randn(mean.shape, { dtype = mean:dtype() }):to(mean:device())
    return mean + std * noise
  end
  function posterior.mode() return mean end
  return posterior
end

--- decode(z (B, latent, h, w)) -> (B, out, h * 2^(n-1), w * 2^(n-1))
function AutoencoderKL:decode(z)
  if not cocola.is_tensor(z) or z:dim() ~= 4 or z:size(2) ~= self.latent_channels then
    error(string.format("AutoencoderKL: expected a latent (B, %d, h, w), got %s", self.latent_channels,
      cocola.is_tensor(z) and z:shape_string() or type(z)), 2)
  end
  return self.decoder(self.post_quant_conv(z))
end

--- forward(x, {sample_posterior = false, noise}) -> decode of the posterior's mode (or of a sample)
function AutoencoderKL:forward(x, opts)
  opts = opts or {}
  local posterior = self:encode(x)
  local z = opts.sample_posterior and posterior.sample(opts.noise) or posterior.mode()
  return self:decode(z)
end

--- AutoencoderKL.from_pretrained(dir): the vae/ folder or a pipeline folder holding vae/
function AutoencoderKL.from_pretrained(dir) return P.from_pretrained(AutoencoderKL, dir, "vae") end

return AutoencoderKL
