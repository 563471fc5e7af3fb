-- cocola.recipes.train_msdm — MSDM's training (multi-source-diffusion-models exp/train_msdm.yaml on
-- audio-diffusion-pytorch 0.0.43): the UNet1d with one channel per stem type (bass, drums, guitar, piano) on
-- windows of any stem dataset (cocola.data.stem_windows, mode channels: 262144 samples at 22.05 kHz, the stems
-- of a type summed into its channel, other types dropped), the EDM loss of cocola.models.msdm.diffusion with
-- sigma ~ LogNormal(-3, 1) and N(0, 1) noise drawn from the engine's generator, Adam lr 1e-4 betas (0.9, 0.99).
-- The network is MSDM's (configs.msdm()) unless channels, multipliers, factors, num_blocks, attentions or
-- patch_factor say otherwise (lists as "1,2,4"; attentions as "0,0,1" or "false,false,true"), or init= names an
-- MSDM model folder (or a released checkpoint) whose network and weights start the run (fresh optimiser).
-- Batches: stems (B, 4, length). The loop (run folder, metrics, checkpoints, resume) is
-- cocola.recipes.diffusion_trainer's. <out>/model is an MSDM model folder (config.json + model.safetensors,
-- cocola.models.msdm.from_pretrained reads it; `cocola msdm-generate model=<out>/model` generates with it).
-- Run as: lua5.4 recipes/train_msdm.lua root=data/midi_stems out=runs/msdm device=cuda autocast=bf16
local cocola = require "cocola"
local optim = require "cocola.optim"
local StemWindows = require "cocola.data.stem_windows"
local trainer = require "cocola.recipes.diffusion_trainer"
local recipe = require "cocola.recipe"
local fs = require "cocola.data.fs"
local msdm = require "cocola.models.msdm"

local M = {}

local NET = msdm.configs.msdm()

M.DEFAULTS, M.DOCS = trainer.settings({
  sample_rate = { 22050, "sample rate of the windows (MSDM: 22050)" },
  length = { 262144, "window in samples (MSDM: 262144, 11.89 s at 22.05 kHz); a multiple of the network's downsampling" },
  channels = { NET.channels, "U-Net base channels (MSDM: 256)" },
  multipliers = { "1,2,4,4,4,4,4", "channel multiplier per level" },
  factors = { "4,4,4,2,2,2", "downsampling factor per level" },
  num_blocks = { "2,2,2,2,2,2", "resnet blocks per level" },
  attentions = { "0,0,0,1,1,1", "attention per level (0/1 or false/true)" },
  patch_factor = { NET.patch_factor, "patch factor of the input and output (MSDM: 16)" },
  attention_heads = { NET.attention_heads, "attention heads" },
  attention_features = { NET.attention_features, "features per attention head" },
  resnet_groups = { NET.resnet_groups, "group-norm groups of the resnet blocks" },
  sigma_mean = { -3.0, "mean of the log of the training sigmas (LogNormal)" },
  sigma_std = { 1.0, "standard deviation of the log of the training sigmas" },
  lr = { 1e-4, "Adam learning rate (betas 0.9, 0.99 as MSDM)" },
  beta1 = { 0.9, "Adam beta1" },
  beta2 = { 0.99, "Adam beta2" },
  batch_size = { 8, "windows per step (MSDM: 8)" },
  max_steps = { 100000, "steps to train" },
  valid_every = { 4000, "validate every N steps (MSDM: 4000)" },
  init = { "", "an MSDM model folder (or released checkpoint) whose weights start the run (its network config replaces channels, multipliers, ...; fresh optimiser)" },
  seed = { 12345, "seed of the windows, the network's initialisation, the sigmas and the noise" },
})

local function bool_list(cfg, key)
  local out = {}
  for part in tostring(cfg[key]):gmatch("[^,%s]+") do
    if part == "1" or part == "true" then out[#out + 1] = true
    elseif part == "0" or part == "false" then out[#out + 1] = false
    else error(string.format("%s=%s: expected 0/1 or false/true separated by commas", key, cfg[key]), 0) end
  end
  return out
end

--- net_config(cfg) -> the UNet1d arguments: MSDM's, with the settings' sizes
function M.net_config(cfg)
  local net = msdm.configs.msdm()
  net.channels, net.patch_factor = cfg.channels, cfg.patch_factor
  net.attention_heads, net.attention_features, net.resnet_groups = cfg.attention_heads, cfg.attention_features,
    cfg.resnet_groups
  net.multipliers, net.factors, net.num_blocks = trainer.integer_list(cfg, "multipliers"), trainer.integer_list(cfg, "factors"),
    trainer.integer_list(cfg, "num_blocks")
  net.attentions = bool_list(cfg, "attentions")
  local n = #net.multipliers - 1
  for _, k in ipairs({ "factors", "num_blocks", "attentions" }) do
    if #net[k] ~= n then
      error(string.format("%s has %d entries; %d multipliers need %d (one per level)", k, #net[k], #net.multipliers, n), 0)
    end
  end
  return net
end

--- data_config(cfg) -> {sample_rate, length, stems}: what the model folder records of the windows
function M.data_config(cfg)
  return { sample_rate = cfg.sample_rate, length = cfg.length, stems = StemWindows.CHANNELS }
end

--- run(cfg[, log]) -> the trainer's result
function M.run(cfg, log)
  log = log or print
  trainer.prepare(cfg, M.DEFAULTS, log)
  if not fs.is_dir(cfg.root) then error(string.format("the data folder '%s' does not exist (root=)", cfg.root), 0) end
  local net
  if cfg.init ~= "" then
    -- continuing another run's weights (a resume replaces them again with <out>/last's)
    local info
    net, info = msdm.load(cfg.init)
    if info.data.sample_rate ~= cfg.sample_rate then
      error(string.format("init=%s: its model is for %d Hz, sample_rate=%d", cfg.init, info.data.sample_rate,
        cfg.sample_rate), 0)
    end
    if net.in_channels ~= #StemWindows.CHANNELS then
      error(string.format("init=%s: its network takes %d stems, the windows have %d (%s)", cfg.init, net.in_channels,
        #StemWindows.CHANNELS, table.concat(StemWindows.CHANNELS, ", ")), 0)
    end
    net:train()
    log("the network starts from the weights of " .. cfg.init .. " (its config, not the channels/multipliers/... settings)")
  else
    net = msdm.UNet1d.from_config(M.net_config(cfg))
  end
  if cfg.length % net.total_downsampling ~= 0 then
    error(string.format("length=%d is not a multiple of the network's total downsampling %d", cfg.length,
      net.total_downsampling), 0)
  end
  if not (cfg.sigma_std >= 0) then error("sigma_std must be non-negative", 0) end
  net = net:to(cfg.device)
  log(string.format("MSDM UNet1d: %d parameters, %d stems in (%s), window %d samples (%.2f s at %d Hz)",
    net:num_parameters(), net.in_channels, table.concat(StemWindows.CHANNELS, ", "), cfg.length,
    cfg.length / cfg.sample_rate, cfg.sample_rate))
  local params = net:parameters()
  local opt = optim.Adam(params, { lr = cfg.lr, betas = { cfg.beta1, cfg.beta2 } })
  local function windows(split, seed)
    return StemWindows.new(cocola.data.open(cfg.layout, cfg.root, split), { mode = "channels", length = cfg.length,
      sample_rate = cfg.sample_rate, seed = seed, silence_rms = cfg.silence_rms, batch_size = cfg.batch_size })
  end
  local job = { name = "msdm", modules = { unet = net }, optimizer = opt, windows = windows(cfg.train_split, cfg.seed) }
  log(string.format("%s: %d tracks, %d windows per epoch; %s", cfg.train_split, #job.windows.tracks,
    job.windows:windows_per_epoch(), job.windows:dropped_summary()))
  local ok, valid = pcall(windows, cfg.valid_split, 4242)
  if ok then job.valid_windows = valid else log("no validation windows: " .. tostring(valid)) end
  local sigma_data = msdm.configs.diffusion().sigma_data
  -- the loss of a batch: sigmas ~ LogNormal(sigma_mean, sigma_std) and the noise from the engine's generator
  local function loss_of(batch)
    local x = batch.stems:to(cfg.device)
    local B = x:size(1)
    local sigmas = (cocola.randn({ B }) * cfg.sigma_std + cfg.sigma_mean):exp():to(cfg.device)
    local noise = cocola.randn(x.shape):to(cfg.device)
    return msdm.diffusion.loss(net, x, sigmas, noise, { sigma_data = sigma_data })
  end
  function job.step(batch)
    opt:zero_grad()
    local loss
    trainer.autocast(cfg, function()
      loss = loss_of(batch)
      loss:backward()
    end)
    local norm = optim.clip_grad_norm(params, math.huge)
    opt:step()
    return loss:item(), { grad_norm = norm }
  end
  function job.valid(batch)
    net:eval()
    local loss
    trainer.autocast(cfg, function() loss = loss_of(batch):item() end)
    net:train()
    return loss
  end
  function job.export()
    local dir = cfg.out .. "/model"
    msdm.save_pretrained(net, dir, { data = M.data_config(cfg), diffusion = msdm.configs.diffusion() })
    log("model folder " .. dir .. " written (config.json, " .. msdm.pretrained.WEIGHTS .. ")")
  end
  return trainer.run(cfg, job, log)
end

function M.main(args, name)
  return recipe.main(name or "train_msdm", M.DEFAULTS, function(cfg) M.run(cfg) end, args, M.DOCS)
end

return M
