-- cocola.recipes.train_ldm — phase 1 of the paper's recipe (section 3.2) at a size this project trains: a
-- small latent diffusion model of the AudioLDM 2 architecture on sub-mixes of a stem dataset, in two stages.
--   stage=vae:  an AutoencoderKL (AudioLDM 2's, fewer channels) on the AudioLDM 2 log-mel images
--               (B, 1, frames, 64) of random sub-mixes (vae_seconds windows): loss = L1(decode(sample), mel)
--               + kl_weight * KL(posterior || N(0, I)) (summed over the latent, averaged over the batch). Its
--               model folder gets the scaling_factor 1 / std of the posterior samples of 10.23 s windows.
--   stage=unet: the AudioLDM 2 U-Net (fewer channels, two cross-attention streams) with a TagEncoder as its
--               text side (cocola.models.audioldm2.tag_encoder), on the frozen VAE's scaled posterior samples of
--               10.23 s sub-mixes, prompt "out: <tags>" ("" with probability uncond_prob, so that guidance has
--               an unconditional prediction), the DDPM epsilon loss over AudioLDM 2's scheduler (1000 steps,
--               scaled_linear 0.0015-0.0195); AdamW.
-- The run's model folder <out>/model is a pipeline folder (model_index.json, vae/, and for stage unet also
-- unet/, tag_encoder/, scheduler/, vocoder/ = Griffin-Lim) that Pipeline.from_pretrained and CompoNet's
-- trainer read; it is rewritten at the end of every start (also a stop at max_minutes).
-- Run as: lua5.4 recipes/train_ldm.lua stage=vae root=data/midi_stems out=runs/ldm_vae
--         lua5.4 recipes/train_ldm.lua stage=unet vae=runs/ldm_vae/model root=data/midi_stems out=runs/ldm
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local F = require "cocola.nn.functional"
local optim = require "cocola.optim"
local cjson = require "cjson"
local fs = require "cocola.data.fs"
local StemWindows = require "cocola.data.stem_windows"
local trainer = require "cocola.recipes.diffusion_trainer"
local mel = require "cocola.models.audioldm2.mel"
local P = require "cocola.models.audioldm2.pretrained"
local AutoencoderKL = require "cocola.models.audioldm2.autoencoder_kl"
local UNet = require "cocola.models.audioldm2.unet"
local TagEncoder = require "cocola.models.audioldm2.tag_encoder"
local ddim = require "cocola.schedulers.ddim"

local M = {}

M.DEFAULTS, M.DOCS = trainer.settings({
  stage = { "vae", "vae (the autoencoder) or unet (the diffusion U-Net and its tag encoder, on a trained VAE)" },
  vae = { "", "stage unet: the VAE's model folder (a stage-vae run's <out>/model)" },
  init = { "", "stage unet: a model folder whose unet/ and tag_encoder/ start the run (their configs replace the unet_*, tag_dim, text_dim and max_length settings; fresh optimiser)" },
  seconds = { 10.23, "window of the U-Net stage (10.23 s: 1024 mel frames)" },
  vae_seconds = { 2.55, "window of the VAE stage (2.55 s: 256 mel frames)" },
  vae_channels = { "32,64,64", "the VAE's block_out_channels (each level after the first halves the mel image)" },
  vae_layers = { 1, "the VAE's layers_per_block" },
  latent_channels = { 8, "latent channels (AudioLDM 2: 8)" },
  vae_groups = { 16, "the VAE's GroupNorm groups" },
  kl_weight = { 1e-6, "weight of the KL term of the VAE loss" },
  scale_batches = { 8, "batches of 10.23 s windows that estimate the latent scaling_factor" },
  unet_channels = { "32,64,96", "the U-Net's block_out_channels (the first level without attention)" },
  unet_layers = { 1, "the U-Net's layers_per_block" },
  heads = { 4, "attention heads of the U-Net's transformer blocks" },
  unet_groups = { 16, "the U-Net's GroupNorm groups" },
  text_dim = { 64, "width of both text streams the U-Net attends to" },
  tag_dim = { 64, "the tag encoder's embedding width" },
  max_length = { 24, "the tag encoder's prompt length in words" },
  uncond_prob = { 0.1, "probability of the empty prompt per example (unconditional training for guidance)" },
  lr = { 2e-4, "AdamW learning rate" },
  weight_decay = { 1e-2, "AdamW weight decay" },
  batch_size = { 4, "examples per step" },
  max_steps = { 4000, "steps to train" },
  valid_every = { 200, "validate every N steps" },
  seed = { 0, "seed of the windows, the initialisation and the noise" },
  griffin_lim_iters = { 32, "iterations of the Griffin-Lim vocoder written into the model folder" },
})

local function open_split(cfg, split)
  if not fs.is_dir(cfg.root) then error(string.format("the data folder '%s' does not exist (root=)", cfg.root), 0) end
  return cocola.data.open(cfg.layout, cfg.root, split)
end

--- the AudioLDM 2 DDIM/DDPM scheduler settings
M.SCHEDULER = { _class_name = "DDIMScheduler", beta_end = 0.0195, beta_schedule = "scaled_linear", beta_start = 0.0015,
  clip_sample = false, num_train_timesteps = 1000, prediction_type = "epsilon", set_alpha_to_one = false,
  steps_offset = 1, timestep_spacing = "leading" }

--- the VAE config of the settings
function M.vae_config(cfg)
  local ch = trainer.integer_list(cfg, "vae_channels")
  local down, up = {}, {}
  for i = 1, #ch do down[i], up[i] = "DownEncoderBlock2D", "UpDecoderBlock2D" end
  return { _class_name = "AutoencoderKL", act_fn = "silu", block_out_channels = ch, down_block_types = down,
    up_block_types = up, in_channels = 1, out_channels = 1, latent_channels = cfg.latent_channels,
    layers_per_block = cfg.vae_layers, norm_num_groups = cfg.vae_groups, sample_size = 1024, scaling_factor = 1.0 }
end

--- the U-Net config of the settings (in_channels from the VAE)
function M.unet_config(cfg, latent_channels)
  local ch = trainer.integer_list(cfg, "unet_channels")
  local n = #ch
  local down, up, cad = {}, {}, {}
  for i = 1, n do
    down[i] = i == 1 and "DownBlock2D" or "CrossAttnDownBlock2D"
    up[i] = i == n and "UpBlock2D" or "CrossAttnUpBlock2D"
    cad[i] = { cjson.null, cfg.text_dim, cfg.text_dim }
  end
  return { _class_name = "AudioLDM2UNet2DConditionModel", act_fn = "silu", attention_head_dim = cfg.heads,
    block_out_channels = ch, cross_attention_dim = cad, down_block_types = down, up_block_types = up,
    downsample_padding = 1, flip_sin_to_cos = true, freq_shift = 0, in_channels = latent_channels,
    out_channels = latent_channels, layers_per_block = cfg.unet_layers, mid_block_scale_factor = 1,
    mid_block_type = "UNetMidBlock2DCrossAttn", norm_eps = 1e-5, norm_num_groups = cfg.unet_groups, sample_size = 256,
    transformer_layers_per_block = 1, use_linear_projection = false }
end

--- the tag vocabulary of the tracks of every split named (stem tags with their largest count per track)
function M.vocabulary(cfg, max_length)
  local tags, seen, genres, gseen, max_count = {}, {}, {}, {}, 4
  for _, split in ipairs({ cfg.train_split, cfg.valid_split }) do
    local ok, tracks = pcall(open_split, cfg, split)
    if ok then
      for _, t in ipairs(tracks) do
        local count = {}
        for _, s in ipairs(t.stems) do
          local tag = tostring(s.tag):lower():gsub("[%s%-]+", "_")
          count[tag] = (count[tag] or 0) + 1
          max_count = math.max(max_count, count[tag])
          if not seen[tag] then tags[#tags + 1], seen[tag] = tag, true end
        end
        if t.genre and not gseen[t.genre] then genres[#genres + 1], gseen[t.genre] = t.genre, true end
      end
    end
  end
  table.sort(tags)
  table.sort(genres)
  return { _class_name = "TagEncoder", words = TagEncoder.vocabulary(tags, { genres = genres, max_count = max_count }),
    max_length = max_length, embedding_dim = cfg.tag_dim, output_dims = { cfg.text_dim, cfg.text_dim } }
end

local function vae_job(cfg, log)
  local config = M.vae_config(cfg)
  local vae = AutoencoderKL(config):to(cfg.device)
  vae:train()
  log(string.format("VAE: %d parameters, block_out_channels %s, latent %d channels, downsampling %d", vae:num_parameters(),
    cfg.vae_channels, cfg.latent_channels, vae.downsample))
  local opt = optim.AdamW(vae:parameters(), { lr = cfg.lr, weight_decay = cfg.weight_decay })
  local frames = 1 + math.floor(cfg.vae_seconds * 16000) // mel.HOP_LENGTH
  if frames % vae.downsample ~= 0 then
    error(string.format("vae_seconds=%g gives %d mel frames, not divisible by the VAE's downsampling %d", cfg.vae_seconds,
      frames, vae.downsample), 0)
  end
  local function windows(split, seed, seconds)
    return StemWindows.new(open_split(cfg, split), { seconds = seconds, seed = seed, silence_rms = cfg.silence_rms, loaders = cfg.loaders,
      batch_size = cfg.batch_size, mode = "mixture" })
  end
  local function loss_of(batch)
    local m = mel.vae_input(batch.x:clamp(-1, 1)):to(cfg.device)
    local post = vae:encode(m)
    local recon = vae:decode(post.sample())
    local l1 = (recon - m):abs():mean()
    local kl = ((post.mean * post.mean + post.var - post.logvar - 1) * 0.5):sum() * (1 / m:size(1))
    return l1 + kl * cfg.kl_weight, l1, kl
  end
  local job = { name = "vae", modules = { vae = vae }, optimizer = opt,
    windows = windows(cfg.train_split, cfg.seed, cfg.vae_seconds) }
  local ok, valid = pcall(windows, cfg.valid_split, 4242, cfg.vae_seconds)
  if ok then job.valid_windows = valid else log("no validation windows: " .. tostring(valid)) end
  function job.step(batch)
    opt:zero_grad()
    local loss, l1, kl
    trainer.autocast(cfg, function()
      loss, l1, kl = loss_of(batch)
      loss:backward()
    end)
    opt:step()
    return loss:item(), { l1 = l1:item(), kl = kl:item() }
  end
  function job.valid(batch)
    vae:eval()
    local _, l1 = loss_of(batch)
    vae:train()
    return l1:item()
  end
  function job.export()
    -- scaling_factor: 1 / std of the posterior samples of full windows
    local scale_windows = windows(cfg.train_split, cfg.seed + 7, cfg.seconds)
    local seed, offset = cocola.get_rng_state()
    cocola.manual_seed(cfg.seed + 11)
    vae:eval()
    local sum, sq, n = 0, 0, 0
    cocola.no_grad(function()
      for _ = 1, cfg.scale_batches do
        local b = scale_windows:next_batch()
        local z = vae:encode(mel.vae_input(b.x:clamp(-1, 1)):to(cfg.device)).sample():double()
        sum, sq, n = sum + z:sum():item(), sq + (z * z):sum():item(), n + z:numel()
      end
    end)
    vae:train()
    cocola.set_rng_state(seed, offset)
    local mean = sum / n
    local std = math.sqrt(math.max(sq / n - mean * mean, 1e-12))
    local out = {}
    for k, v in pairs(config) do out[k] = v end
    out.scaling_factor = 1 / std
    P.save_pretrained(vae, cfg.out .. "/model/vae", out)
    recipe.write_atomic(cfg.out .. "/model/model_index.json", cjson.encode({ _class_name = "AudioLDM2Pipeline",
      vae = { "diffusers", "AutoencoderKL" } }))
    log(string.format("VAE model folder %s/model: latent std %.4f over %d windows, scaling_factor %.4f", cfg.out, std,
      cfg.scale_batches * cfg.batch_size, out.scaling_factor))
  end
  return job
end

local function unet_job(cfg, log)
  if cfg.vae == "" then error("stage=unet needs vae= (the model folder of a stage=vae run)", 0) end
  local vae = AutoencoderKL.from_pretrained(cfg.vae):to(cfg.device)
  vae:freeze()
  vae:eval()
  local unet_config, unet, tag_config, tags
  if cfg.init ~= "" then
    -- continuing another run's weights (a resume replaces them again with <out>/last's)
    unet, tags = UNet.from_pretrained(cfg.init), TagEncoder.from_pretrained(cfg.init)
    unet_config, tag_config = unet.config, tags.config
    if unet_config.in_channels ~= vae.latent_channels then
      error(string.format("init=%s: its U-Net takes %d latent channels, the VAE of vae=%s makes %d", cfg.init,
        unet_config.in_channels, cfg.vae, vae.latent_channels), 0)
    end
    unet, tags = unet:to(cfg.device), tags:to(cfg.device)
    log("U-Net and tag encoder start from the weights of " .. cfg.init .. " (their configs, not the unet_*/tag settings)")
  else
    unet_config = M.unet_config(cfg, vae.latent_channels)
    unet = UNet(unet_config):to(cfg.device)
    tag_config = M.vocabulary(cfg, cfg.max_length)
    tags = TagEncoder(tag_config):to(cfg.device)
  end
  unet:train()
  tags:train()
  log(string.format("U-Net: %d parameters (block_out_channels %s); tag encoder: %d parameters, %d words", unet:num_parameters(),
    table.concat(unet_config.block_out_channels, ","), tags:num_parameters(), #tag_config.words))
  log("text embeddings are not cached (the tag encoder trains); VAE latents are not cached: each epoch draws new window "
    .. "shifts and sub-mixes, so a window's latent is rarely needed twice")
  local params = unet:parameters()
  for _, p in ipairs(tags:parameters()) do params[#params + 1] = p end
  local opt = optim.AdamW(params, { lr = cfg.lr, weight_decay = cfg.weight_decay })
  local sched = ddim.from_config(M.SCHEDULER)
  local function windows(split, seed)
    return StemWindows.new(open_split(cfg, split), { seconds = cfg.seconds, seed = seed, silence_rms = cfg.silence_rms, loaders = cfg.loaders,
      batch_size = cfg.batch_size, mode = "mixture" })
  end
  local levels = #unet.settings.block_out_channels
  local function loss_of(batch, drop)
    local x = cocola.no_grad(function()
      local m = mel.vae_input(batch.x:clamp(-1, 1)):to(cfg.device)
      if (m:size(3) // vae.downsample) % (1 << (levels - 1)) ~= 0 then
        error(string.format("seconds=%g gives %d mel frames; the latent frames must be divisible by %d", cfg.seconds,
          m:size(3), 1 << (levels - 1)), 0)
      end
      return vae:encode(m).sample() * vae.scaling_factor
    end)
    local prompts = {}
    for i, p in ipairs(batch.z) do prompts[i] = drop and drop(i) and "" or p end
    local text = tags(prompts)
    local B = x:size(1)
    local t = sched:sample_timesteps(B):double():totable()
    for i, v in ipairs(t) do t[i] = math.tointeger(v) end
    local noise = cocola.randn(x.shape):to(x:device())
    local x_t = cocola.no_grad(function() return sched:add_noise(x, noise, t) end)
    local tt = cocola.tensor(t):to("float32"):to(x:device())
    local eps = unet(x_t, tt, text)
    return F.mse_loss(eps, noise)
  end
  local job = { name = "unet", modules = { unet = unet, tag_encoder = tags }, optimizer = opt,
    windows = windows(cfg.train_split, cfg.seed) }
  local ok, valid = pcall(windows, cfg.valid_split, 4242)
  if ok then job.valid_windows = valid else log("no validation windows: " .. tostring(valid)) end
  local Rng = require "cocola.data.rng"
  function job.step(batch)
    opt:zero_grad()
    local rng = Rng.new(cfg.seed, job.windows.epoch, job.windows.position, 5)
    local loss
    trainer.autocast(cfg, function()
      loss = loss_of(batch, function() return rng:float() < cfg.uncond_prob end)
      loss:backward()
    end)
    local norm = optim.clip_grad_norm(params, 1.0)
    opt:step()
    return loss:item(), { grad_norm = norm }
  end
  function job.valid(batch)
    unet:eval()
    tags:eval()
    local loss = loss_of(batch):item()
    unet:train()
    tags:train()
    return loss
  end
  function job.export()
    local dir = cfg.out .. "/model"
    P.save_pretrained(unet, dir .. "/unet", unet_config)
    P.save_pretrained(tags, dir .. "/tag_encoder", tag_config)
    P.save_pretrained(vae, dir .. "/vae", vae.config)
    os.execute(string.format("mkdir -p '%s/scheduler' '%s/vocoder'", dir, dir))
    recipe.write_atomic(dir .. "/scheduler/scheduler_config.json", cjson.encode(M.SCHEDULER))
    recipe.write_atomic(dir .. "/vocoder/config.json", cjson.encode({ _class_name = "GriffinLim",
      n_iter = cfg.griffin_lim_iters, momentum = 0.99, sampling_rate = 16000, model_in_dim = 64 }))
    recipe.write_atomic(dir .. "/model_index.json", cjson.encode({ _class_name = "AudioLDM2Pipeline",
      unet = { "diffusers", "AudioLDM2UNet2DConditionModel" }, vae = { "diffusers", "AutoencoderKL" },
      tag_encoder = { "cocola", "TagEncoder" }, scheduler = { "diffusers", "DDIMScheduler" },
      vocoder = { "cocola", "GriffinLim" } }))
    log("model folder " .. dir .. " written (vocoder: Griffin-Lim)")
  end
  return job
end

--- run(cfg[, log]) -> the trainer's result
function M.run(cfg, log)
  log = log or print
  trainer.prepare(cfg, M.DEFAULTS, log)
  if cfg.stage ~= "vae" and cfg.stage ~= "unet" then error("stage must be vae or unet, got '" .. tostring(cfg.stage) .. "'", 0) end
  if cfg.init ~= "" and cfg.stage ~= "unet" then error("init= is a setting of stage=unet", 0) end
  local job = cfg.stage == "vae" and vae_job(cfg, log) or unet_job(cfg, log)
  return trainer.run(cfg, job, log)
end

function M.main(args, name)
  return recipe.main(name or "train_ldm", M.DEFAULTS, function(cfg) M.run(cfg) end, args, M.DOCS)
end

return M
