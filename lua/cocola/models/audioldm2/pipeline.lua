-- cocola.models.audioldm2.pipeline — AudioLDM 2 from prompt to audio, as diffusers' AudioLDM2Pipeline:
-- prompts -> RoBERTa tokens -> CLAP text embedding (B, 1, P) and T5 tokens -> T5 states (B, L, X2) ->
-- projection model ([sos, CLAP, eos, sos_1, T5, eos_1]) -> GPT-2 generates 8 embeddings (B, 8, X1) ->
-- DDIM over the U-Net (classifier-free guidance with the negative prompts when guidance_scale > 1; an
-- optional ControlNet with its control latent) -> VAE decode of latents / scaling_factor -> mel (B, 1, T, F)
-- -> vocoder -> waveforms cropped to the requested length.
-- Pipeline.from_pretrained(dir) reads a diffusers AudioLDM 2 folder (model_index.json and its components); a
-- vocoder/config.json with "_class_name": "GriffinLim" gives the Griffin-Lim vocoder (griffin_lim.lua) instead
-- of the HiFi-GAN.
-- Devices: pipe:cuda() (or :to("cuda")) moves every network; each one's inputs follow its weights, so the
-- text stack may also stay where it is (pipe.unet:cuda(), pipe.vae:cuda(), ... one by one; a ControlNet goes
-- with the U-Net). generate's
-- autocast = "bf16" runs the denoising loop, the VAE decoder and the vocoder under cocola.cuda's bf16
-- autocast (GEMMs and convolutions in bfloat16 with float32 accumulation); it needs the U-Net on the GPU.
local cocola = require "cocola"
local nn = require "cocola.nn"
local ddim = require "cocola.schedulers.ddim"
local Tokenizer = require "cocola.models.text.tokenizer"
local T5 = require "cocola.models.text.t5"
local GPT2 = require "cocola.models.text.gpt2"
local UNet = require "cocola.models.audioldm2.unet"
local AutoencoderKL = require "cocola.models.audioldm2.autoencoder_kl"
local HifiGan = require "cocola.models.audioldm2.hifigan"
local ProjectionModel = require "cocola.models.audioldm2.projection_model"
local json_config = require "cocola.json_config"
local fs = require "cocola.data.fs"

local Pipeline = nn.Module:extend("AudioLDM2Pipeline")

-- the device of a network's weights
local function device_of(module)
  local p = module:parameters()[1]
  return p and p:device() or "cpu"
end

local function prompt_list(p, what)
  if type(p) == "string" then return { p } end
  if type(p) ~= "table" or #p == 0 then error(string.format("AudioLDM2Pipeline: %s must be a string or a list of strings", what), 4) end
  for i, s in ipairs(p) do
    if type(s) ~= "string" then error(string.format("AudioLDM2Pipeline: %s %d is not a string", what, i), 4) end
  end
  return p
end

--- Pipeline.vocoder_from_pretrained(dir): the vocoder of a pipeline folder: GriffinLim when
--- vocoder/config.json names it ("_class_name": "GriffinLim", a vocoder without weights), else the HiFi-GAN
function Pipeline.vocoder_from_pretrained(dir)
  local path = dir .. "/vocoder/config.json"
  if fs.is_file(path) and json_config.read(path, "AudioLDM2Pipeline")._class_name == "GriffinLim" then
    return require("cocola.models.audioldm2.griffin_lim").from_pretrained(dir)
  end
  return HifiGan.from_pretrained(dir)
end

--- Pipeline.from_pretrained(dir[, {controlnet = folder | checkpoint file | ControlNet}]): a checkpoint file is
--- CompoNet's released .ckpt (or a .safetensors with its keys), read by componet_checkpoint.load: its unet.*
--- weights, when present, replace the folder's; pipe.componet_checkpoint is then load's info table.
function Pipeline.from_pretrained(dir, opts)
  opts = opts or {}
  if type(opts.controlnet) == "string" then
    local lfs = require "lfs"
    if lfs.attributes(opts.controlnet, "mode") == "file" then
      local rest = {}
      for k, v in pairs(opts) do rest[k] = v end
      rest.controlnet = nil
      local pipe = Pipeline.from_pretrained(dir, rest)
      local ok, cn, info = pcall(require("cocola.models.audioldm2.componet_checkpoint").load, opts.controlnet, pipe)
      if not ok then error(cn, 2) end
      pipe.controlnet, pipe.componet_checkpoint = cn, info
      return pipe
    end
  end
  if type(dir) ~= "string" then error("AudioLDM2Pipeline.from_pretrained: expected a folder path", 2) end
  local f = io.open(dir .. "/model_index.json", "rb")
  if not f then error(string.format("%s/model_index.json: no such file (expected a diffusers AudioLDM 2 folder)", dir), 2) end
  f:close()
  local index = require("cocola.json_config").decode_file(dir .. "/model_index.json", "model_index.json", 2)
  local controlnet = type(opts.controlnet) == "string"
    and require("cocola.models.audioldm2.controlnet").from_pretrained(opts.controlnet) or opts.controlnet
  if controlnet == nil and index.controlnet ~= nil then
    controlnet = require("cocola.models.audioldm2.controlnet").from_pretrained(dir .. "/controlnet")
  end
  local vocoder = Pipeline.vocoder_from_pretrained(dir)
  if index.tag_encoder ~= nil then
    return Pipeline({
      tag_encoder = require("cocola.models.audioldm2.tag_encoder").from_pretrained(dir),
      unet = UNet.from_pretrained(dir), vae = AutoencoderKL.from_pretrained(dir), vocoder = vocoder,
      scheduler = ddim.from_pretrained(dir), controlnet = controlnet,
    })
  end
  local ClapText = require "cocola.models.text.clap_text"
  return Pipeline({
    tokenizer = Tokenizer.from_pretrained(dir, { subfolder = "tokenizer" }),
    tokenizer_2 = Tokenizer.from_pretrained(dir, { subfolder = "tokenizer_2" }),
    text_encoder = ClapText.from_pretrained(dir .. "/text_encoder"),
    text_encoder_2 = T5.from_pretrained(dir .. "/text_encoder_2"),
    projection_model = ProjectionModel.from_pretrained(dir .. "/projection_model"),
    language_model = GPT2.from_pretrained(dir .. "/language_model"),
    unet = UNet.from_pretrained(dir),
    vae = AutoencoderKL.from_pretrained(dir),
    vocoder = vocoder,
    scheduler = ddim.from_pretrained(dir),
    controlnet = controlnet,
  })
end

--- Pipeline{tokenizer, tokenizer_2, text_encoder, text_encoder_2, projection_model, language_model, unet, vae,
--- vocoder, scheduler[, controlnet]}, or with tag_encoder (cocola.models.audioldm2.tag_encoder) in place of the
--- text stack (the small models trained on this project's prompts)
function Pipeline:init(c)
  local needed = c.tag_encoder and { "tag_encoder", "unet", "vae", "vocoder" }
    or { "text_encoder", "text_encoder_2", "projection_model", "language_model", "unet", "vae", "vocoder" }
  for _, k in ipairs(needed) do
    if not c[k] then error("AudioLDM2Pipeline: missing component " .. k, 3) end
    self[k] = c[k]
  end
  if c.controlnet then self.controlnet = c.controlnet end
  self.tokenizer, self.tokenizer_2, self.scheduler = c.tokenizer, c.tokenizer_2, c.scheduler
  self:eval()
end

-- CLAP and T5 states of a list of prompts, and GPT-2's max_new_tokens embeddings; t5_length pads T5 to that
-- length (negative prompts)
function Pipeline:encode_streams(prompts, max_new_tokens, t5_length)
  local B = #prompts
  local clap_in = self.tokenizer(prompts, { padding = "max_length", max_length = self.tokenizer.model_max_length,
    truncation = true })
  local dev = device_of(self.text_encoder)
  local clap = self.text_encoder(clap_in.input_ids:to(dev), { attention_mask = clap_in.attention_mask:to(dev) }).text_embeds
  clap = clap:reshape({ B, 1, clap:size(2) })
  local t5_in = self.tokenizer_2(prompts, t5_length and { padding = "max_length", max_length = t5_length, truncation = true }
    or { padding = "longest", max_length = self.tokenizer_2.model_max_length, truncation = true })
  dev = device_of(self.text_encoder_2)
  local t5_mask = t5_in.attention_mask:to(dev)
  local t5 = self.text_encoder_2(t5_in.input_ids:to(dev), { attention_mask = t5_mask })
  dev = device_of(self.projection_model)
  local proj, mask = self.projection_model(clap:to(dev), t5:to(dev), cocola.ones({ B, 1 }):long():to(dev), t5_mask:to(dev))
  dev = device_of(self.language_model)
  local generated = self.language_model:generate_embeddings(proj:to(dev), { attention_mask = mask:to(dev),
    max_new_tokens = max_new_tokens })
  return t5, t5_mask, generated
end

--- encode_prompt(prompts, {negative_prompt, guidance_scale = 1, num_waveforms_per_prompt = 1, max_new_tokens = 8})
--- -> prompt_embeds (T5 states), attention_mask, generated_prompt_embeds; with guidance the negative
--- prompts' come first, as diffusers concatenates them
function Pipeline:encode_prompt(prompts, opts)
  opts = opts or {}
  prompts = prompt_list(prompts, "prompt")
  local n = opts.num_waveforms_per_prompt or 1
  local max_new_tokens = opts.max_new_tokens or (self.language_model and self.language_model.max_new_tokens) or 8
  return cocola.no_grad(function()
    local embeds, mask, generated
    if self.tag_encoder then
      local all = prompts
      if (opts.guidance_scale or 1) > 1 then
        local negative = opts.negative_prompt or ""
        all = {}
        for i = 1, #prompts do all[i] = type(negative) == "table" and (negative[i] or negative[1]) or negative end
        for i = 1, #prompts do all[#prompts + i] = prompts[i] end
      end
      local rows = {}
      for i, p in ipairs(all) do
        for _ = 1, n do rows[#rows + 1] = p end
      end
      local text = self.tag_encoder(rows)
      return text.encoder_hidden_states_1, text.encoder_attention_mask_1, text.encoder_hidden_states
    end
    embeds, mask, generated = self:encode_streams(prompts, max_new_tokens)
    local function repeat_rows(t)
      if n == 1 then return t end
      local shape = t.shape
      local big = { shape[1], n }
      for d = 2, #shape do big[#big + 1] = shape[d] end
      local flat = { shape[1] * n }
      for d = 2, #shape do flat[#flat + 1] = shape[d] end
      return t:unsqueeze(2):expand(big):reshape(flat)
    end
    embeds, mask, generated = repeat_rows(embeds), repeat_rows(mask), repeat_rows(generated)
    if (opts.guidance_scale or 1) > 1 then
      local negative = opts.negative_prompt
      if negative == nil then
        negative = {}
        for i = 1, #prompts do negative[i] = "" end
      else
        negative = prompt_list(negative, "negative_prompt")
        if #negative == 1 and #prompts > 1 then
          local one = negative[1]
          negative = {}
          for i = 1, #prompts do negative[i] = one end
        end
        if #negative ~= #prompts then
          error(string.format("AudioLDM2Pipeline: %d negative prompts for %d prompts", #negative, #prompts), 3)
        end
      end
      local ne, nm, ng = self:encode_streams(negative, max_new_tokens, embeds:size(2))
      ne, nm, ng = repeat_rows(ne), repeat_rows(nm), repeat_rows(ng)
      embeds = cocola.cat({ ne, embeds }, 1)
      mask = cocola.cat({ nm, mask }, 1)
      generated = cocola.cat({ ng, generated }, 1)
    end
    return embeds, mask, generated
  end)
end

--- latent_shape(batch, seconds) -> the shape of the initial latents for `seconds` of audio (default: the
--- U-Net's sample size, 10.24 s for AudioLDM 2), and the number of samples the waveforms are cut to
function Pipeline:latent_shape(batch, seconds)
  local voc = self.vocoder.config
  local factor = 1
  for _, r in ipairs(voc.upsample_rates) do factor = factor * r end
  factor = factor / voc.sampling_rate
  local vae_scale = self.vae.downsample
  seconds = seconds or self.unet.config.sample_size * vae_scale * factor
  local height = math.floor(seconds / factor + 1e-9)
  local samples = math.floor(seconds * voc.sampling_rate + 1e-9)
  if height % vae_scale ~= 0 then height = math.ceil(height / vae_scale) * vae_scale end
  return { batch, self.unet.config.in_channels, height // vae_scale, voc.model_in_dim // vae_scale }, samples
end

--- generate(prompts, {negative_prompt, seconds, steps = 200, guidance_scale = 3.5, seed, latents,
--- num_waveforms_per_prompt = 1, eta = 0, max_new_tokens = 8, control_latent, conditioning_scale = 1,
--- autocast = "bf16" | false, progress = function(step, steps)}) -> waveforms (B * n, samples) and the final
--- latents, on the vocoder's and the U-Net's device. Seeded latents are drawn on the CPU, so a seed gives the
--- same start on every device.
function Pipeline:generate(prompts, opts)
  opts = opts or {}
  prompts = prompt_list(prompts, "prompt")
  local guidance = opts.guidance_scale or 3.5
  local n = opts.num_waveforms_per_prompt or 1
  local dev = device_of(self.unet)
  if opts.autocast ~= nil and opts.autocast ~= false and opts.autocast ~= "off" then
    if opts.autocast ~= "bf16" then
      error(string.format("AudioLDM2Pipeline: autocast must be \"bf16\" or false, got %s", tostring(opts.autocast)), 2)
    end
    if dev ~= "cuda" then error("AudioLDM2Pipeline: bf16 autocast needs the U-Net on the GPU (pipe:cuda())", 2) end
  end
  local embeds, mask, generated = self:encode_prompt(prompts, { negative_prompt = opts.negative_prompt,
    guidance_scale = guidance, num_waveforms_per_prompt = n, max_new_tokens = opts.max_new_tokens })
  local shape, samples = self:latent_shape(#prompts * n, opts.seconds)
  local z = opts.latents
  if z == nil then
    if opts.seed then cocola.manual_seed(opts.seed) end
    z = cocola.randn(shape):to(dev)
  elseif not cocola.is_tensor(z) or z:dim() ~= 4 or z:size(1) ~= shape[1] or z:size(2) ~= shape[2] then
    -- the latent's frames and bands may differ from the default (a condition's latent gives them; the audio is
    -- cut to `seconds`)
    error(string.format("AudioLDM2Pipeline: latents must have shape (%d, %d, frames, bands)", shape[1], shape[2]), 2)
  else
    z = z:to(dev)
  end
  z = z * self.scheduler.init_noise_sigma
  self.scheduler:set_timesteps(opts.steps or 200)
  local text = { encoder_hidden_states = generated:to(dev), encoder_hidden_states_1 = embeds:to(dev),
    encoder_attention_mask_1 = mask:to(dev) }
  local w = opts.control_latent
  if w and not self.controlnet then error("AudioLDM2Pipeline: a control latent needs a ControlNet", 2) end
  if w then
    if device_of(self.controlnet) ~= dev then
      error(string.format("AudioLDM2Pipeline: the ControlNet is on %s and the U-Net on %s; move both", device_of(self.controlnet), dev), 2)
    end
    w = w:to(dev)
  end
  local function autocast(fn)
    if opts.autocast == "bf16" then return cocola.cuda.autocast("bf16", fn) end
    return fn()
  end
  autocast(function() cocola.no_grad(function()
    for k, t in ipairs(self.scheduler.timesteps) do
      local input = guidance > 1 and cocola.cat({ z, z }, 1) or z
      local o = { encoder_hidden_states = text.encoder_hidden_states, encoder_hidden_states_1 = text.encoder_hidden_states_1,
        encoder_attention_mask_1 = text.encoder_attention_mask_1 }
      if w then
        local control = guidance > 1 and cocola.cat({ w, w }, 1) or w
        o.conditioning_scale = opts.conditioning_scale or 1.0
        o.down_block_additional_residuals, o.mid_block_additional_residual = self.controlnet(input, t, control, o)
      end
      local eps = self.unet(input, t, o)
      if guidance > 1 then
        local B = z:size(1)
        local uncond, cond = eps:narrow(1, 1, B), eps:narrow(1, B + 1, B)
        eps = uncond + (cond - uncond) * guidance
      end
      z = self.scheduler:step(eps, t, z, { eta = opts.eta }).prev_sample
      if opts.progress then opts.progress(k, #self.scheduler.timesteps) end
    end
  end) end)
  local audio = autocast(function() return cocola.no_grad(function()
    local mel = self.vae:decode((z * (1 / self.vae.scaling_factor)):to(device_of(self.vae)))
    return self.vocoder(mel:squeeze(2):to(device_of(self.vocoder)))
  end) end)
  return audio:narrow(2, 1, math.min(samples, audio:size(2))), z
end

return Pipeline
