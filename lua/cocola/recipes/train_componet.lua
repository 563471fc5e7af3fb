-- cocola.recipes.train_componet — CompoNet's fine-tuning (paper section 3.3, the released Model.step): a
-- ControlNet on a frozen AudioLDM 2 (a diffusers folder, or a model folder of cocola.recipes.train_ldm),
-- trained on the released code's examples of a stem dataset (cocola.data.stem_windows: 10.23 s windows,
-- input and output stem subsets, the prompt "in: <tags>; out: <tags>"), the DDPM loss of
-- cocola.models.audioldm2.componet, AdamW lr 1e-4 betas (0.95, 0.999) eps 1e-6 weight decay 1e-3, gradient
-- clipping 1.0, the released seed 12345. variant=attentions also trains the U-Net's transformer blocks
-- (the released conditional_attentions, used for the Slakh checkpoint).
-- The run's model folder <out>/model holds controlnet/ (and unet/ for variant attentions) beside links to the
-- base folder's other components: Pipeline.from_pretrained(<out>/model) and `cocola accompany` read it.
-- Text states are cached per distinct prompt (cache_text=true): the text stack is frozen, so this changes
-- nothing but the time. VAE latents are not cached (each epoch draws new window shifts and subsets).
-- Run as: lua5.4 recipes/train_componet.lua model=runs/ldm/model root=data/midi_stems out=runs/componet
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local cjson = require "cjson"
local fs = require "cocola.data.fs"
local StemWindows = require "cocola.data.stem_windows"
local trainer = require "cocola.recipes.diffusion_trainer"
local P = require "cocola.models.audioldm2.pretrained"
local Pipeline = require "cocola.models.audioldm2.pipeline"
local ControlNet = require "cocola.models.audioldm2.controlnet"
local CompoNet = require "cocola.models.audioldm2.componet"

local M = {}

M.DEFAULTS, M.DOCS = trainer.settings({
  model = { "", "the frozen AudioLDM 2: a diffusers folder or a train_ldm model folder" },
  init = { "", "a CompoNet model folder whose controlnet/ starts the run instead of a copy of the U-Net's encoder (fresh optimiser)" },
  variant = { "controlnet", "controlnet (the adapter only) or attentions (also the U-Net's transformer blocks)" },
  subsets = { "released", "released (input and output subsets drawn independently, as the released code) or disjoint" },
  seconds = { 10.23, "window in seconds (10.23 s: 1024 mel frames)" },
  lr = { 1e-4, "AdamW learning rate (betas 0.95, 0.999, eps 1e-6, weight decay 1e-3 as released)" },
  max_norm = { 1.0, "gradient clipping: largest total L2 norm" },
  batch_size = { 2, "examples per step" },
  max_steps = { 10000, "steps to train" },
  valid_every = { 500, "validate every N steps" },
  seed = { 12345, "seed of the windows, the ControlNet's conditioning conv and the noise" },
  cache_text = { true, "keep each distinct prompt's text states (same result, less time)" },
  gradient_checkpointing = { false, "recompute the ControlNet's activations in backward (less memory)" },
})

-- the components of a pipeline folder (what model_index.json names)
local function components(dir)
  local index = require("cocola.json_config").decode_file(dir .. "/model_index.json", "model_index.json", 2)
  local out = {}
  for k in pairs(index) do
    if not k:match("^_") and fs.is_dir(dir .. "/" .. k) then out[#out + 1] = k end
  end
  table.sort(out)
  return out, index
end

--- export(base, out_dir, componet): out_dir/controlnet (and unet for variant attentions) written, the base
--- folder's other components linked, model_index.json naming the ControlNet
function M.export(base, out_dir, componet)
  local names, index = components(base)
  os.execute(string.format("mkdir -p '%s'", out_dir))
  local absolute = base:match("^/") and base or fs.join(require("lfs").currentdir(), base)
  for _, k in ipairs(names) do
    if k ~= "controlnet" and not (k == "unet" and componet.variant == "attentions") then
      local link = out_dir .. "/" .. k
      os.execute(string.format("rm -rf '%s' && ln -s '%s/%s' '%s'", link, absolute, k, link))
    end
  end
  P.save_pretrained(componet.controlnet, out_dir .. "/controlnet", componet.controlnet.config)
  if componet.variant == "attentions" then P.save_pretrained(componet.pipeline.unet, out_dir .. "/unet", componet.pipeline.unet.config) end
  index.controlnet = { "cocola", "ControlNetAudioLDM2Model" }
  recipe.write_atomic(out_dir .. "/model_index.json", cjson.encode(index))
end

--- run(cfg[, log]) -> the trainer's result
function M.run(cfg, log)
  log = log or print
  trainer.prepare(cfg, M.DEFAULTS, log)
  if cfg.model == "" then error("model= (an AudioLDM 2 folder or a train_ldm model folder) is required", 0) end
  if not fs.is_file(cfg.model .. "/model_index.json") then
    error(string.format("model=%s is not a pipeline folder (no model_index.json)", cfg.model), 0)
  end
  if not fs.is_dir(cfg.root) then error(string.format("the data folder '%s' does not exist (root=)", cfg.root), 0) end
  local pipe = Pipeline.from_pretrained(cfg.model)
  pipe.controlnet = nil
  if cfg.device == "cuda" then pipe:cuda() end
  local controlnet = ControlNet.from_unet(pipe.unet)
  if cfg.init ~= "" then
    local path = cfg.init .. "/controlnet/diffusion_pytorch_model.safetensors"
    if not fs.is_file(path) then error(string.format("init=%s has no controlnet/ (no %s)", cfg.init, path), 0) end
    P.load_safetensors(controlnet, path)
    log("ControlNet starts from the weights of " .. cfg.init)
  end
  controlnet = controlnet:to(cfg.device)
  if cfg.gradient_checkpointing then controlnet:enable_gradient_checkpointing(true) end
  local componet = CompoNet.new({ pipeline = pipe, controlnet = controlnet, variant = cfg.variant, cache_text = cfg.cache_text })
  local n_trained = 0
  for _, p in ipairs(componet:parameters()) do n_trained = n_trained + p:numel() end
  log(string.format("CompoNet on %s: variant %s, %d trained parameters (ControlNet %d), U-Net %d (frozen%s)", cfg.model,
    cfg.variant, n_trained, controlnet:num_parameters(), pipe.unet:num_parameters(),
    cfg.variant == "attentions" and " but its transformer blocks" or ""))
  log(cfg.cache_text and "text states cached per distinct prompt (the text stack is frozen: same result, less time)"
    or "text states computed for every batch")
  log("VAE latents are not cached: each epoch draws new window shifts and stem subsets, so a latent is rarely needed twice")
  local opt = CompoNet.optimiser(componet, { lr = cfg.lr })
  local function windows(split, seed)
    return StemWindows.new(cocola.data.open(cfg.layout, cfg.root, split), { seconds = cfg.seconds, seed = seed,
      silence_rms = cfg.silence_rms, loaders = cfg.loaders, batch_size = cfg.batch_size, mode = "componet", subsets = cfg.subsets })
  end
  local modules = { controlnet = controlnet }
  if cfg.variant == "attentions" then modules.unet = pipe.unet end
  local job = { name = "componet", modules = modules, optimizer = opt, windows = windows(cfg.train_split, cfg.seed) }
  local ok, valid = pcall(windows, cfg.valid_split, 4242)
  if ok then job.valid_windows = valid else log("no validation windows: " .. tostring(valid)) end
  function job.step(batch)
    local loss, norm
    trainer.autocast(cfg, function() loss, norm = componet:training_step(batch, opt, { max_norm = cfg.max_norm }) end)
    return loss, { grad_norm = norm, prompts_cached = componet.cached_prompts }
  end
  function job.valid(batch)
    controlnet:eval()
    local loss = componet:loss(batch):item()
    controlnet:train()
    return loss
  end
  function job.export()
    M.export(cfg.model, cfg.out .. "/model", componet)
    log("model folder " .. cfg.out .. "/model written (controlnet/" .. (cfg.variant == "attentions" and ", unet/" or "")
      .. " and links to " .. cfg.model .. ")")
  end
  return trainer.run(cfg, job, log)
end

function M.main(args, name)
  return recipe.main(name or "train_componet", M.DEFAULTS, function(cfg) M.run(cfg) end, args, M.DOCS)
end

return M
