-- cocola.models.audioldm2.componet — CompoNet's training step (the released code's Model.step): ControlNet
-- fine-tuning of a frozen AudioLDM 2. A batch is {x = target waves (B, S), y = condition waves (B, S'),
-- z = prompts (B strings)} at 16 kHz.
--   latents: wave clipped to [-1, 1] -> AudioLDM 2 mel (B, 1, frames, 64), frames = 1 + S // 160 ->
--            vae:encode(mel) posterior sample mean + std * n (a stochastic sample, not the mean; n ~ N(0, I)
--            unless given) -> times vae.scaling_factor -> (B, latent_channels, frames / f, 64 / f), f the VAE's
--            downsampling; frames / f must be divisible by the U-Net's downsampling 2^(levels - 1).
--   text:    pipeline:encode_prompt(z) (guidance 1, no negative prompts): T5 states (B, L, X2) and GPT-2's
--            generated embeddings (B, 8, X1); the T5 attention mask given to the networks is all ones
--            (training overrides the tokenizer's mask).
--   noise ~ N(0, I) shaped like x_lat; t ~ U{0 .. num_train_timesteps - 1} per sample;
--   x_t = scheduler:add_noise(x_lat, noise, t) (DDPM: sqrt(a_t) x_lat + sqrt(1 - a_t) noise);
--   down, mid = controlnet(x_t, t, y_lat, {encoder_hidden_states = GPT-2 embeds, encoder_hidden_states_1 = T5,
--               encoder_attention_mask_1 = ones});
--   eps_hat = unet(x_t, t, same text, down_block_additional_residuals = down, mid_block_additional_residual = mid);
--   loss = mse(eps_hat, noise) (mean).
-- Only the ControlNet trains: CompoNet.new freezes the U-Net, the VAE, the vocoder and the text stack.
-- training_step: zero grads, loss, backward, clip the ControlNet's gradients to total L2 norm 1.0
-- (torch.nn.utils.clip_grad_norm_), optimiser step. CompoNet.optimiser(controlnet) is the released
-- configuration: AdamW(lr 1e-4, betas (0.95, 0.999), eps 1e-6, weight_decay 1e-3).
--   CompoNet.new{pipeline = Pipeline, controlnet = ControlNet}
--   componet:latents(waves (B, S)[, noise]) -> (B, C, h, w)
--   componet:text(prompts) -> {encoder_hidden_states, encoder_hidden_states_1, encoder_attention_mask_1}
--   componet:loss(batch[, {noise, t, latent_noise_x, latent_noise_y}]) -> 0-d loss tensor
--   componet:training_step(batch, optimiser[, opts as loss plus max_norm = 1.0]) -> loss, total grad norm
local cocola = require "cocola"
local F = require "cocola.nn.functional"
local optim = require "cocola.optim"
local mel = require "cocola.models.audioldm2.mel"

local CompoNet = {}
CompoNet.__index = CompoNet

local WHAT = "CompoNet"
local FROZEN = { "unet", "vae", "vocoder", "text_encoder", "text_encoder_2", "projection_model", "language_model" }

local function fail(fmt, ...) error(string.format(WHAT .. ": " .. fmt, ...), 3) end

local function device_of(module)
  local p = module:parameters()[1]
  return p and p:device() or "cpu"
end

-- the U-Net's transformer blocks (the "attentions" variant trains them): the attentions of every
-- cross-attention down, middle and up block
local ATTENTIONS = { "^down_blocks%.%d+%.attentions%.", "^mid_block%.attentions%.", "^up_blocks%.%d+%.attentions%." }

--- CompoNet.new{pipeline = Pipeline, controlnet = ControlNet, variant = "controlnet" | "attentions",
--- cache_text = false}: freezes every network of the pipeline (variant "attentions": all but the U-Net's
--- transformer blocks, the released conditional_attentions) and puts the trained parts in training mode.
--- cache_text keeps each distinct prompt's text states (the text stack is frozen, so they never change), one
--- entry per prompt and T5 length it was padded to: GPT-2 numbers the padded positions too (diffusers passes it
--- no position ids), so a row's generated embeddings depend on the batch's longest prompt; an entry is that
--- prompt encoded padded to the batch's longest, which is what encoding the batch gives.
function CompoNet.new(o)
  if type(o) ~= "table" or type(o.pipeline) ~= "table" then fail("new expects {pipeline = Pipeline, controlnet = ControlNet}") end
  local cn = o.controlnet or o.pipeline.controlnet
  if type(cn) ~= "table" or type(cn.parameters) ~= "function" then fail("new needs a ControlNet (controlnet = ...)") end
  local variant = o.variant or "controlnet"
  if variant ~= "controlnet" and variant ~= "attentions" then
    fail("variant must be controlnet or attentions, got %s", tostring(variant))
  end
  local self = setmetatable({ pipeline = o.pipeline, controlnet = cn, variant = variant,
    text_cache = o.cache_text and {} or nil }, CompoNet)
  for _, k in ipairs(FROZEN) do
    local m = o.pipeline[k]
    if m then
      m:freeze()
      m:eval()
    end
  end
  if o.pipeline.tag_encoder then
    o.pipeline.tag_encoder:freeze()
    o.pipeline.tag_encoder:eval()
  end
  cn:unfreeze()
  cn:train()
  self.trained = cn:parameters()
  if variant == "attentions" then
    local unet = o.pipeline.unet
    if unet:unfreeze(ATTENTIONS) == 0 then fail("variant attentions: the U-Net has no transformer blocks") end
    for _, np in ipairs(unet:named_parameters()) do
      for _, pattern in ipairs(ATTENTIONS) do
        if np[1]:find(pattern) then self.trained[#self.trained + 1] = np[2] break end
      end
    end
    unet:train()
  end
  local levels = #o.pipeline.unet.settings.block_out_channels
  self.unet_factor = 1 << (levels - 1)
  return self
end

--- componet:parameters() -> the trained parameters (the ControlNet's, and the U-Net's attentions in that variant)
function CompoNet:parameters() return self.trained end

--- CompoNet.optimiser(componet | controlnet[, overrides]) -> AdamW with CompoNet's settings over what trains
function CompoNet.optimiser(model, overrides)
  local o = { lr = 1e-4, betas = { 0.95, 0.999 }, eps = 1e-6, weight_decay = 1e-3 }
  for k, v in pairs(overrides or {}) do o[k] = v end
  return optim.AdamW(model:parameters(), o)
end

local function check_waves(w, what)
  if not cocola.is_tensor(w) or w:dim() ~= 2 then
    fail("%s must be waves (B, samples), got %s", what, cocola.is_tensor(w) and w:shape_string() or type(w))
  end
end

--- latents(waves (B, S)[, noise (B, C, h, w)]) -> the scaled VAE posterior samples (no graph)
function CompoNet:latents(waves, noise)
  check_waves(waves, "waves")
  if waves:size(2) < mel.N_FFT // 2 + 1 then
    fail("a wave of %d samples is too short (at least %d)", waves:size(2), mel.N_FFT // 2 + 1)
  end
  local vae = self.pipeline.vae
  return cocola.no_grad(function()
    local m = mel.vae_input(waves:float():clamp(-1, 1)):to(device_of(vae))
    local frames = m:size(3)
    if frames % vae.downsample ~= 0 or (frames // vae.downsample) % self.unet_factor ~= 0 then
      fail("%d samples give %d mel frames; the frames must be divisible by %d (VAE x U-Net downsampling)",
        waves:size(2), frames, vae.downsample * self.unet_factor)
    end
    local post = vae:encode(m)
    if noise ~= nil then
      if not cocola.is_tensor(noise) or noise:dim() ~= 4 then fail("the latent sample noise must be a 4-d tensor") end
      for d = 1, 4 do
        if noise:size(d) ~= post.mean:size(d) then
          fail("the latent sample noise has shape %s, the latent %s", noise:shape_string(), post.mean:shape_string())
        end
      end
      noise = noise:to(post.mean:dtype()):to(post.mean:device())
    end
    return post.sample(noise) * vae.scaling_factor
  end)
end

--- text(prompts) -> the U-Net's text inputs, the T5 mask replaced by ones (no graph)
function CompoNet:text(prompts)
  if type(prompts) == "string" then prompts = { prompts } end
  if type(prompts) ~= "table" or #prompts == 0 then fail("the prompts must be a non-empty list of strings") end
  for i, p in ipairs(prompts) do
    if type(p) ~= "string" then fail("prompt %d is not a string", i) end
  end
  local embeds, mask, generated
  if self.text_cache then
    embeds, mask, generated = self:cached_text(prompts)
  else
    embeds, mask, generated = self.pipeline:encode_prompt(prompts, { guidance_scale = 1 })
  end
  local dev = device_of(self.pipeline.unet)
  return { encoder_hidden_states = generated:to(dev), encoder_hidden_states_1 = embeds:to(dev),
    encoder_attention_mask_1 = cocola.ones(mask.shape):to(mask:dtype()):to(dev) }
end

-- the text states of prompts from the cache (computing the prompts not seen yet at this batch's T5 length)
function CompoNet:cached_text(prompts)
  local cache, pipe = self.text_cache, self.pipeline
  cache.length = cache.length or {}
  local longest = 0
  if not pipe.tag_encoder then
    local full = pipe.tokenizer_2.model_max_length or 512
    for _, p in ipairs(prompts) do
      local n = cache.length[p]
      if not n then
        n = pipe.tokenizer_2({ p }, { padding = "longest", max_length = full, truncation = true }).input_ids:size(2)
        cache.length[p] = n
      end
      longest = math.max(longest, n)
    end
  end
  local e, m, g = {}, {}, {}
  for i, p in ipairs(prompts) do
    local key = longest .. "\0" .. p
    local c = cache[key]
    if not c then
      c = {}
      cocola.no_grad(function()
        if pipe.tag_encoder then
          c.embeds, c.mask, c.generated = pipe:encode_prompt({ p }, { guidance_scale = 1 })
        else
          c.embeds, c.mask, c.generated = pipe:encode_streams({ p }, pipe.language_model.max_new_tokens or 8, longest)
        end
      end)
      cache[key] = c
      self.cached_prompts = (self.cached_prompts or 0) + 1
    end
    e[i], m[i], g[i] = c.embeds, c.mask, c.generated
  end
  return cocola.cat(e, 1), cocola.cat(m, 1), cocola.cat(g, 1)
end

-- timesteps -> list of integers (one per row)
local function timestep_list(t, B, N)
  local list
  if cocola.is_tensor(t) then
    list = t:reshape({ t:numel() }):double():totable()
  elseif type(t) == "table" then
    list = t
  elseif type(t) == "number" then
    list = {}
    for i = 1, B do list[i] = t end
  else
    fail("t must be a tensor, a list or a number")
  end
  if #list ~= B then fail("%d timesteps for a batch of %d", #list, B) end
  for i, v in ipairs(list) do
    if type(v) ~= "number" or v ~= math.floor(v) or v < 0 or v >= N then
      fail("timestep %d must be an integer in [0, %d), got %s", i, N, tostring(v))
    end
    list[i] = math.tointeger(v)
  end
  return list
end

--- loss(batch{x, y, z}[, {noise, t, latent_noise_x, latent_noise_y}]) -> mse(eps_hat, noise), with a graph
--- through the ControlNet only
function CompoNet:loss(batch, opts)
  opts = opts or {}
  if type(batch) ~= "table" then fail("a batch is {x = waves, y = condition waves, z = prompts}") end
  local x, y, z = batch.x or batch[1], batch.y or batch[2], batch.z or batch[3]
  check_waves(x, "the target waves x")
  check_waves(y, "the condition waves y")
  if type(z) == "string" then z = { z } end
  if type(z) ~= "table" or #z == 0 then fail("the prompts z must be a non-empty list of strings") end
  local B = x:size(1)
  if y:size(1) ~= B then fail("%d target waves but %d condition waves", B, y:size(1)) end
  if #z ~= B then fail("%d target waves but %d prompts", B, #z) end
  if y:size(2) < x:size(2) then
    fail("the condition waves (%d samples) are shorter than the target window (%d samples)", y:size(2), x:size(2))
  end
  if y:size(2) > x:size(2) then y = y:narrow(2, 1, x:size(2)) end
  local x_lat = self:latents(x, opts.latent_noise_x)
  local y_lat = self:latents(y, opts.latent_noise_y)
  local text = self:text(z)
  local sched = self.pipeline.scheduler
  local N = sched.config.num_train_timesteps
  local t = timestep_list(opts.t ~= nil and opts.t or sched:sample_timesteps(B), B, N)
  local noise = opts.noise
  if noise == nil then
    noise = cocola.randn(x_lat.shape):to(x_lat:device())
  else
    if not cocola.is_tensor(noise) or noise:dim() ~= 4 then fail("the noise must be a tensor shaped like the latent") end
    for d = 1, 4 do
      if noise:size(d) ~= x_lat:size(d) then
        fail("the noise has shape %s, the latent %s", noise:shape_string(), x_lat:shape_string())
      end
    end
    noise = noise:to(x_lat:dtype()):to(x_lat:device())
  end
  local x_t = cocola.no_grad(function() return sched:add_noise(x_lat, noise, t) end)
  local tt = cocola.tensor(t):to("float32"):to(x_t:device())
  local o = { encoder_hidden_states = text.encoder_hidden_states, encoder_hidden_states_1 = text.encoder_hidden_states_1,
    encoder_attention_mask_1 = text.encoder_attention_mask_1 }
  o.down_block_additional_residuals, o.mid_block_additional_residual = self.controlnet(x_t, tt, y_lat, o)
  local eps = self.pipeline.unet(x_t, tt, o)
  return F.mse_loss(eps, noise)
end

--- training_step(batch, optimiser[, opts: as loss, max_norm = 1.0]) -> loss (number), total grad norm
function CompoNet:training_step(batch, optimiser, opts)
  opts = opts or {}
  if type(optimiser) ~= "table" or type(optimiser.step) ~= "function" then fail("training_step needs an optimiser") end
  optimiser:zero_grad()
  for _, p in ipairs(self.trained) do p.grad = nil end
  local loss = self:loss(batch, opts)
  loss:backward()
  local norm = optim.clip_grad_norm(self.trained, opts.max_norm or 1.0)
  optimiser:step()
  return loss:item(), norm
end

--- generate(condition waves (B, S) at 16 kHz, prompts (B), {steps = 150, guidance_scale = 1, seed, eta = 0,
--- conditioning_scale = 1, negative_prompt, autocast, progress}) -> accompaniment waves (B, S), the final latents.
--- The control latent is the condition's scaled VAE posterior sample (as in training; seeded with the
--- latents); S must give mel frames divisible by the VAE's and the U-Net's downsampling (163680 samples, the
--- released 10.23 s, do).
function CompoNet:generate(cond, prompts, opts)
  opts = opts or {}
  check_waves(cond, "the condition waves")
  if type(prompts) == "string" then prompts = { prompts } end
  if type(prompts) ~= "table" or #prompts ~= cond:size(1) then
    fail("%d condition waves need %d prompts", cond:size(1), cond:size(1))
  end
  if opts.seed then cocola.manual_seed(opts.seed) end
  local w = self:latents(cond)
  local S = cond:size(2)
  local o = { steps = opts.steps or 150, guidance_scale = opts.guidance_scale or 1.0, eta = opts.eta,
    conditioning_scale = opts.conditioning_scale, negative_prompt = opts.negative_prompt, autocast = opts.autocast,
    progress = opts.progress, control_latent = w }
  o.seconds = S / mel.SAMPLING_RATE
  o.latents = cocola.randn(w.shape):to(w:device())
  local pipe_cn = self.pipeline.controlnet
  self.pipeline.controlnet = self.controlnet
  local was_training = self.controlnet.training
  self.controlnet:eval()
  local ok, audio, z = pcall(self.pipeline.generate, self.pipeline, prompts, o)
  self.pipeline.controlnet = pipe_cn
  if was_training then self.controlnet:train() end
  if not ok then error(audio, 0) end
  if audio:size(2) < S then
    audio = cocola.cat({ audio, cocola.zeros({ audio:size(1), S - audio:size(2) }):to(audio:device()) }, 2)
  end
  return audio, z
end

return CompoNet
