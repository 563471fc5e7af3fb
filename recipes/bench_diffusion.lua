-- recipes/bench_diffusion.lua — the AudioLDM 2 U-Net at the real latent size (B x 8 x 256 x 16, 10.24 s of
-- audio) with random weights in the base (or large) configuration: median ms of a forward, of a forward +
-- backward (all parameters trained), and of one DDIM step of CompoNet (ControlNet + U-Net + scheduler),
-- with the peak resident memory of each process; beside diffusers 0.27.2 on PyTorch measured in the same
-- run with the same weights (written to a temporary diffusers folder) when the venv of
-- spec/fixtures/audioldm2/README.md is there (python=/opt/genoracle/bin/python).
-- Usage: lua5.4 recipes/bench_diffusion.lua [threads=2] [repeats=3] [batch=1] [large=false] [torch=true]
--        [device=cpu|cuda] [pipeline=DIR] [pipeline_steps=20] [pipeline_seconds=0.016] [pipeline_repeats=N]
--        pipeline= names the AudioLDM 2 folder of the prompt-to-audio row (the tiny one of the specs by default;
--        recipes/audioldm2_random_pipeline.lua writes one of the real size, e.g. pipeline=/tmp/base_pipe
--        pipeline_seconds=10.24 pipeline_steps=10 pipeline_repeats=1); pipeline= (empty) skips that row.
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local cjson = require "cjson"
local UNet = require "cocola.models.audioldm2.unet"
local ControlNet = require "cocola.models.audioldm2.controlnet"
local ddim = require "cocola.schedulers.ddim"

local config = recipe.config({ threads = 2, repeats = 3, batch = 1, large = false, torch = true, seed = 0,
  python = "/opt/genoracle/bin/python", device = "cpu", text_tokens = 20,
  pipeline = "spec/fixtures/audioldm2/pipeline_tiny", pipeline_steps = 20, pipeline_seconds = 0.016,
  pipeline_repeats = 0 }, arg)
recipe.log_config(config)
cocola.set_num_threads(config.threads)
cocola.manual_seed(config.seed)

local function unet_config(large) return require("cocola.models.audioldm2.configs").unet(large) end

local function peak_rss_mb()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local kb = text:match("VmHWM:%s*(%d+)")
  return kb and tonumber(kb) / 1024 or nil
end

local function median_ms(label, fn, repeats)
  repeats = repeats or config.repeats
  fn()
  local times = {}
  for r = 1, repeats do
    local t0 = cocola.wall_time()
    fn()
    if config.device == "cuda" then cocola.cuda.synchronize() end
    times[#times + 1] = (cocola.wall_time() - t0) * 1000
    io.stderr:write(string.format("\r%s %d/%d", label, r, repeats))
  end
  io.stderr:write("\n")
  table.sort(times)
  return times[(#times + 1) // 2]
end

local cfg = unet_config(config.large)
local unet = UNet(cfg)
local controlnet = ControlNet.from_unet(unet)
-- random (not zero) zero-convs, so the ControlNet's residuals are not trivially zero
local init = require "cocola.nn.init_weights"
for _, conv in ipairs(controlnet.controlnet_down_blocks) do init.normal_(conv.weight, 0, 0.02) end
init.normal_(controlnet.controlnet_mid_block.weight, 0, 0.02)
local sched = ddim.from_config({ num_train_timesteps = 1000, beta_schedule = "scaled_linear", beta_start = 0.0015,
  beta_end = 0.0195, set_alpha_to_one = false, steps_offset = 1, timestep_spacing = "leading",
  prediction_type = "epsilon", clip_sample = false })
sched:set_timesteps(200)

local B = config.batch
local z = cocola.randn({ B, 8, 256, 16 })
local w = cocola.randn({ B, 8, 256, 16 })
local text = { encoder_hidden_states = cocola.randn({ B, 8, 768 }),
  encoder_hidden_states_1 = cocola.randn({ B, config.text_tokens, 1024 }),
  encoder_attention_mask_1 = cocola.ones({ B, config.text_tokens }) }

-- the same weights and inputs for PyTorch, in a diffusers folder
local dir
if config.torch then
  dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. dir .. "/unet " .. dir .. "/controlnet")
  local function write(path, t) local f = assert(io.open(path, "w")); f:write(cjson.encode(t)); f:close() end
  write(dir .. "/unet/config.json", cfg)
  cocola.save(dir .. "/unet/diffusion_pytorch_model.safetensors", unet:state_dict())
  cocola.save(dir .. "/controlnet/weights.safetensors", controlnet:state_dict())
  cocola.save(dir .. "/inputs.safetensors", { z = z, w = w, states = text.encoder_hidden_states,
    states_1 = text.encoder_hidden_states_1, mask_1 = text.encoder_attention_mask_1 })
end

if config.device == "cuda" then
  unet:to("cuda")
  controlnet:to("cuda")
  z, w = z:to("cuda"), w:to("cuda")
  for k, v in pairs(text) do text[k] = v:to("cuda") end
end

unet:eval()
controlnet:eval()
local t = 501
local forward = median_ms("forward", function() cocola.no_grad(function() return unet(z, t, text) end) end)
local step = median_ms("DDIM step", function()
  cocola.no_grad(function()
    local o = { encoder_hidden_states = text.encoder_hidden_states, encoder_hidden_states_1 = text.encoder_hidden_states_1,
      encoder_attention_mask_1 = text.encoder_attention_mask_1 }
    o.down_block_additional_residuals, o.mid_block_additional_residual = controlnet(z, t, w, o)
    return sched:step(unet(z, t, o), t, z).prev_sample
  end)
end)
local infer_peak = peak_rss_mb()
unet:train()
local train = median_ms("forward + backward", function()
  unet:zero_grad()
  local loss = unet(z, t, text):pow(2):mean()
  loss:backward()
end)
local train_peak = peak_rss_mb()

-- prompt to audio with a whole pipeline folder (the tiny random one of the specs by default)
local prompt_ms
if config.pipeline ~= "" then
  local Pipeline = require "cocola.models.audioldm2.pipeline"
  local pipe = Pipeline.from_pretrained(config.pipeline)
  if config.device == "cuda" then pipe:cuda() end
  cocola.manual_seed(config.seed)
  local latents = cocola.randn((pipe:latent_shape(1, config.pipeline_seconds)))
  if dir then cocola.save(dir .. "/pipeline_latents.safetensors", { latents = latents }) end
  prompt_ms = median_ms("prompt to audio", function()
    return pipe:generate({ "in: bass, drums; out: guitar, piano" }, { seconds = config.pipeline_seconds,
      steps = config.pipeline_steps, guidance_scale = 3.5, latents = latents })
  end, config.pipeline_repeats > 0 and config.pipeline_repeats or nil)
end

local torch_result
if config.torch then
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  local cmd = string.format("%s %s/reference/bench_diffusion_torch.py %s %d %d '%s' %d %s %d 2>/dev/null", config.python,
    here, dir, config.threads, config.repeats, config.pipeline, config.pipeline_steps, config.pipeline_seconds,
    config.pipeline_repeats > 0 and config.pipeline_repeats or config.repeats)
  local p = io.popen(cmd)
  local out = p and p:read("a") or ""
  if p then p:close() end
  local json = out:match("(%b{})%s*$")
  if json then torch_result = cjson.decode(json) end
  os.execute("rm -rf '" .. dir .. "'")
end

print(string.format("\nAudioLDM 2 U-Net (%s, %d parameters), latent %dx8x256x16, %d threads, %s, median of %d",
  config.large and "large" or "base", unet:num_parameters(), B, config.threads, config.device, config.repeats))
local tr = torch_result or {}
recipe.print_ratio_table({
  { "U-Net forward", forward, tr.forward_ms },
  { "CompoNet DDIM step (ControlNet + U-Net)", step, tr.step_ms },
  { "U-Net forward + backward", train, tr.train_ms },
  prompt_ms and { string.format("prompt to audio, %s, %g s, %d steps, guidance 3.5", config.pipeline:match("[^/]+$"),
    config.pipeline_seconds, config.pipeline_steps), prompt_ms, tr.prompt_ms } or nil,
})
print(string.format("peak resident memory (MB): cocola %.0f after inference, %.0f after the training step%s",
  infer_peak or 0, train_peak or 0, torch_result and string.format("; PyTorch %.0f after inference, %.0f after the training step",
  tr.infer_peak_mb, tr.train_peak_mb) or ""))
if torch_result then print("PyTorch " .. tr.torch .. ", diffusers " .. tr.diffusers)
else print("PyTorch/diffusers not available (" .. config.python .. "): ratio not measured") end
