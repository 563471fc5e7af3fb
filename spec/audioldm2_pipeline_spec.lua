-- audioldm2_pipeline_spec.lua — the parts of AudioLDM 2's pipeline that exist natively, run on a complete tiny
-- random pipeline folder saved by diffusers 0.27.2 (spec/fixtures/audioldm2/pipeline_tiny, made by
-- gen_pipeline.py with its tokenizers trained there) against what diffusers' AudioLDM2Pipeline computed from
-- two prompts: the T5 stream (tokenizer_2 + text_encoder_2 -> prompt_embeds and its mask), and, from the
-- pipeline's own text states, the 3-step DDIM loop over the U-Net with and without classifier-free guidance,
-- the VAE decode and the vocoder; then the whole pipeline (cocola.models.audioldm2.pipeline: CLAP, T5,
-- projection, GPT-2's 8 generated embeddings, DDIM with and without guidance, VAE, vocoder) and the
-- `cocola generate` command on that folder.
local cocola = require "cocola"
local compare = require "helpers.compare"
local audioldm2 = require "cocola.models.audioldm2"
local ddim = require "cocola.schedulers.ddim"
local Tokenizer = require "cocola.models.text.tokenizer"
local T5 = require "cocola.models.text.t5"

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local DIR = here .. "fixtures/audioldm2/pipeline_tiny"
local TOL = 1e-4
local PROMPTS = { "in: bass, drums; out: guitar, piano", "a hammer hitting a wooden surface" }

describe("AudioLDM 2 pipeline parts against diffusers' AudioLDM2Pipeline", function()
  local fx = cocola.load(here .. "fixtures/audioldm2/pipeline_tiny.safetensors")

  it("T5 stream: tokenizer_2 (padding to the longest) and text_encoder_2 give prompt_embeds and its mask", function()
    local tok = Tokenizer.from_pretrained(DIR, { subfolder = "tokenizer_2" })
    local t5 = T5.from_pretrained(DIR)
    local enc = tok(PROMPTS, { padding = "longest", truncation = true })
    compare.assert_close(enc.attention_mask:float(), fx["plain.attention_mask"], 0, "mask")
    local states = cocola.no_grad(t5, enc.input_ids, { attention_mask = enc.attention_mask })
    -- diffusers zeroes nothing: the padded positions are the encoder's outputs there
    compare.assert_close(states, fx["plain.prompt_embeds"], TOL, "prompt_embeds")
  end)

  for _, case in ipairs({ { "plain", 1.0 }, { "guided", 3.0 } }) do
    local name, guidance = case[1], case[2]
    it(name .. ": 3 DDIM steps over the U-Net (guidance " .. guidance .. "), VAE decode and vocoder", function()
      local unet = audioldm2.UNet.from_pretrained(DIR)
      local vae = audioldm2.AutoencoderKL.from_pretrained(DIR)
      local vocoder = audioldm2.HifiGan.from_pretrained(DIR)
      local sched = ddim.from_pretrained(DIR)
      sched:set_timesteps(3)
      local text = { encoder_hidden_states = fx[name .. ".generated_prompt_embeds"],
        encoder_hidden_states_1 = fx[name .. ".prompt_embeds"], encoder_attention_mask_1 = fx[name .. ".attention_mask"] }
      local z = fx["latents"]
      cocola.no_grad(function()
        for k, t in ipairs(sched.timesteps) do
          local input = guidance > 1 and cocola.cat({ z, z }, 1) or z
          local eps = unet(input, t, text)
          if guidance > 1 then -- the first half is the negative prompt's
            local uncond, cond = eps:narrow(1, 1, z:size(1)), eps:narrow(1, z:size(1) + 1, z:size(1))
            eps = uncond + (cond - uncond) * guidance
          end
          z = sched:step(eps, t, z).prev_sample
          compare.assert_close(z, fx[name .. ".latents." .. k], TOL, name .. " latents " .. k)
        end
        local mel = vae:decode(z * (1 / vae.scaling_factor))
        compare.assert_close(mel, fx[name .. ".mel"], TOL, name .. " mel")
        local audio = vocoder(mel:squeeze(2))
        compare.assert_close(audio:narrow(2, 1, fx[name .. ".audio"]:size(2)), fx[name .. ".audio"], TOL, name .. " audio")
      end)
    end)
  end
end)

describe("AudioLDM2Pipeline from prompt to audio", function()
  local Pipeline = require "cocola.models.audioldm2.pipeline"
  local fx = cocola.load(here .. "fixtures/audioldm2/pipeline_tiny.safetensors")
  local pipe
  setup(function() pipe = Pipeline.from_pretrained(DIR) end)

  for _, case in ipairs({ { "plain", 1.0, nil }, { "guided", 3.0, { "", "rain" } } }) do
    local name, guidance, negative = case[1], case[2], case[3]
    it(name .. ": encode_prompt gives diffusers' T5 states, mask and GPT-2's generated embeddings", function()
      local e, m, g = pipe:encode_prompt(PROMPTS, { guidance_scale = guidance, negative_prompt = negative })
      compare.assert_close(e, fx[name .. ".prompt_embeds"], TOL, "prompt_embeds")
      compare.assert_close(m:float(), fx[name .. ".attention_mask"], 0, "attention_mask")
      compare.assert_close(g, fx[name .. ".generated_prompt_embeds"], TOL, "generated_prompt_embeds")
    end)
    it(name .. ": generate gives diffusers' waveforms from the same initial latents", function()
      local audio, z = pipe:generate(PROMPTS, { seconds = 0.016, steps = 3, guidance_scale = guidance,
        negative_prompt = negative, latents = fx["latents"] })
      compare.assert_close(z, fx[name .. ".latents.3"], TOL, "latents")
      compare.assert_close(audio, fx[name .. ".audio"], TOL, "audio")
    end)
  end

  it("refuses latents of the wrong shape and a control latent without a ControlNet", function()
    local ok, err = pcall(pipe.generate, pipe, PROMPTS, { seconds = 0.016, steps = 1, latents = cocola.zeros({ 2, 7, 32, 4 }) })
    assert.is_false(ok)
    assert.matches("latents must have shape %(2, 8, frames, bands%)", err)
    ok, err = pcall(pipe.generate, pipe, PROMPTS, { seconds = 0.016, steps = 1, latents = cocola.zeros({ 3, 8, 32, 4 }) })
    assert.is_false(ok)
    assert.matches("latents must have shape %(2, 8, frames, bands%)", err)
    ok, err = pcall(pipe.generate, pipe, PROMPTS, { seconds = 0.016, steps = 1, control_latent = cocola.zeros({ 2, 8, 32, 4 }) })
    assert.is_false(ok)
    assert.matches("needs a ControlNet", err)
  end)

  it("refuses an autocast mode other than bf16, and bf16 autocast with the U-Net on the CPU", function()
    local ok, err = pcall(pipe.generate, pipe, PROMPTS, { seconds = 0.016, steps = 1, autocast = "fp16" })
    assert.is_false(ok)
    assert.matches('autocast must be "bf16" or false, got fp16', err, 1, true)
    ok, err = pcall(pipe.generate, pipe, PROMPTS, { seconds = 0.016, steps = 1, autocast = "bf16" })
    assert.is_false(ok)
    assert.matches("bf16 autocast needs the U-Net on the GPU", err, 1, true)
  end)
end)

describe("AudioLDM2Pipeline on the GPU #cuda", function()
  if not cocola.cuda.is_available() then
    pending("no CUDA device")
    return
  end
  local Pipeline = require "cocola.models.audioldm2.pipeline"
  local fx = cocola.load(here .. "fixtures/audioldm2/pipeline_tiny.safetensors")

  it("gives diffusers' waveforms with every network on the GPU, and with only the diffusion part there", function()
    local pipe = Pipeline.from_pretrained(DIR):cuda()
    local audio, z = pipe:generate(PROMPTS, { seconds = 0.016, steps = 3, guidance_scale = 3.0,
      negative_prompt = { "", "rain" }, latents = fx["latents"] })
    assert.equal("cuda", audio:device())
    compare.assert_close(z:cpu(), fx["guided.latents.3"], TOL, "latents")
    compare.assert_close(audio:cpu(), fx["guided.audio"], TOL, "audio")
    local split = Pipeline.from_pretrained(DIR)
    split.unet:cuda()
    split.vae:cuda()
    split.vocoder:cuda()
    audio = split:generate(PROMPTS, { seconds = 0.016, steps = 3, guidance_scale = 1.0, latents = fx["latents"] })
    compare.assert_close(audio:cpu(), fx["plain.audio"], TOL, "audio, text stack on the CPU")
  end)

  it("bf16 autocast stays close to the float32 waveforms and leaves autocast off afterwards", function()
    local pipe = Pipeline.from_pretrained(DIR):cuda()
    local audio = pipe:generate(PROMPTS, { seconds = 0.016, steps = 3, guidance_scale = 1.0, latents = fx["latents"],
      autocast = "bf16" })
    assert.is_false(cocola.cuda.get_autocast())
    compare.assert_close(audio:cpu(), fx["plain.audio"], 2e-2, "audio under bf16 autocast")
    -- and it did run in bfloat16: float32 matches diffusers to 1e-6, bfloat16 GEMMs cannot
    local ref = fx["plain.audio"]
    assert.is_true(((audio:cpu() - ref):norm() / ref:norm()):item() > 1e-5, "bf16 autocast changed nothing")
  end)
end)

describe("cocola generate", function()
  local cli = require "helpers.cli"
  local files = require "helpers.files"
  it("writes the waveforms of a prompt with the tiny pipeline, and names a bad --model", function()
    local dir = files.tmpdir()
    finally(function() os.execute("rm -rf '" .. dir .. "'") end)
    local status, out, err = cli.cocola(string.format("generate --model '%s' --prompt 'in: bass; out: piano' --seconds 0.016 "
      .. "--steps 2 --guidance 2 --waveforms 2 --seed 3 --quiet --out '%s/gen.wav'", DIR, dir), dir)
    assert.equal(0, status, err)
    assert.matches("wrote .*gen_2%.wav", out)
    for i = 1, 2 do
      local wave, sr = cocola.audio.load(string.format("%s/gen_%d.wav", dir, i))
      assert.equal(16000, sr)
      assert.equal(256, wave:size(wave:dim()))
      assert.is_true(wave:abs():max():item() > 0)
    end
    local bad_status, _, bad = cli.cocola("generate --model /nonexistent --prompt x --quiet --out " .. dir .. "/x.wav", dir)
    cli.one_line_error(bad_status, bad, "--model: '/nonexistent' is not a folder")
    bad_status, _, bad = cli.cocola(string.format("generate --model '%s' --prompt x --autocast bf16 --quiet --out %s/x.wav",
      DIR, dir), dir)
    cli.one_line_error(bad_status, bad, "--autocast bf16 needs --device cuda")
  end)
end)
