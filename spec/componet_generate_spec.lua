-- componet_generate_spec.lua — generation with CompoNet's ControlNet against diffusers' ControlNet denoising loop
-- (spec/fixtures/audioldm2/gen_componet_generate.py: pipeline_tiny/, componet/controlnet/,
-- componet_generate.safetensors): from the same initial latents and control latent, 3 DDIM steps at guidance 1
-- and at guidance 2.5 with classifier-free guidance ([negative; positive], the control latent in both halves),
-- the final latents and the waveforms within 1e-4 relative; the control latent matters; a batch (of prompts with
-- equal T5 lengths) gives each row what that row gives alone; CompoNet:generate is Pipeline:generate on its
-- condition's latent and its seeded initial latents.
local cocola = require "cocola"
local compare = require "helpers.compare"
local Pipeline = require "cocola.models.audioldm2.pipeline"
local ControlNet = require "cocola.models.audioldm2.controlnet"
local CompoNet = require "cocola.models.audioldm2.componet"

local TOL = 1e-4
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local D = here .. "fixtures/audioldm2/"
local PROMPTS = { "in: bass, drums; out: guitar, piano", "a hammer hitting a wooden surface" }
-- two prompts with the same T5 length: a prompt padded to a longer one's length gets other GPT-2 embeddings (in
-- diffusers too), so only such a batch is the rows side by side
local SAME_LENGTH = { "in: bass, drums; out: guitar, piano", "funky slap bass line" }
local CASES = { { "plain", 1.0 }, { "guided", 2.5 } }

describe("CompoNet generation against diffusers' ControlNet denoising loop", function()
  local fx = cocola.load(D .. "componet_generate.safetensors")
  local pipe
  setup(function()
    pipe = Pipeline.from_pretrained(D .. "pipeline_tiny")
    pipe.controlnet = ControlNet.from_pretrained(D .. "componet/controlnet")
    pipe.controlnet:eval()
  end)

  local function generate(prompts, latents, control, guidance, progress)
    return pipe:generate(prompts, { latents = latents, control_latent = control, steps = 3, seconds = 0.016,
      guidance_scale = guidance, negative_prompt = guidance > 1 and { "", "" } or nil, progress = progress })
  end

  for _, case in ipairs(CASES) do
    local name, guidance = case[1], case[2]
    it(name .. " (guidance " .. guidance .. "): final latents and waveforms", function()
      local audio, z = generate(PROMPTS, fx["latents"], fx["control"], guidance)
      local ez = compare.assert_close(z, fx[name .. ".latents.3"], TOL, name .. " latents")
      local ea = compare.assert_close(audio, fx[name .. ".audio"], TOL, name .. " audio")
      print(string.format("\n%s: latents %.2e, audio %.2e", name, ez, ea))
    end)

    it(name .. ": the control latent matters (w = 0 ends far from the fixture)", function()
      local audio, z = generate(PROMPTS, fx["latents"], cocola.zeros(fx["control"].shape), guidance)
      local ez = compare.rel_err(z, fx[name .. ".latents.3"])
      local ea = compare.rel_err(audio, fx[name .. ".audio"])
      assert.is_true(ez > 1000 * TOL, string.format("w = 0 changes the latents by only %.2e", ez))
      -- (the tiny random vocoder damps differences: ~1e-2 here)
      assert.is_true(ea > 20 * TOL, string.format("w = 0 changes the audio by only %.2e", ea))
    end)
  end

  it("guided: a batch of two gives each row what that row gives alone", function()
    local audio, z = generate(SAME_LENGTH, fx["latents"], fx["control"], 2.5)
    for i = 1, 2 do
      local a1, z1 = pipe:generate({ SAME_LENGTH[i] }, { latents = fx["latents"]:narrow(1, i, 1),
        control_latent = fx["control"]:narrow(1, i, 1), steps = 3, seconds = 0.016, guidance_scale = 2.5,
        negative_prompt = "" })
      compare.assert_close(z1, z:narrow(1, i, 1), TOL, "row " .. i .. " latents")
      compare.assert_close(a1, audio:narrow(1, i, 1), TOL, "row " .. i .. " audio")
    end
  end)

  it("CompoNet:generate (guidance 2.5) is Pipeline:generate on its condition's latent, row by row", function()
    -- the audio front end's 64 mel bins are not the tiny HiFi-GAN's 8: a Griffin-Lim vocoder stands in
    local hifigan = pipe.vocoder
    pipe.vocoder = require("cocola.models.audioldm2.griffin_lim")({ n_iter = 2, init = "zeros", nnls_iter = 0 })
    local ok, err = pcall(function()
      local componet = CompoNet.new({ pipeline = pipe, controlnet = pipe.controlnet })
      local S, rows = 2400, {}
      for i = 1, 2 do
        rows[i] = {}
        for s = 1, S do rows[i][s] = 0.5 * math.sin(2 * math.pi * 220 * i * (s - 1) / 16000) end
      end
      local cond = cocola.tensor(rows):float()
      local audio, z = componet:generate(cond, SAME_LENGTH, { steps = 3, guidance_scale = 2.5, seed = 7 })
      -- the same draws in the same order: the condition's posterior sample, then the initial latents
      cocola.manual_seed(7)
      local w = componet:latents(cond)
      local latents = cocola.randn(w.shape)
      local o = { control_latent = w, steps = 3, guidance_scale = 2.5, seconds = S / 16000 }
      o.latents = latents
      local a2, z2 = pipe:generate(SAME_LENGTH, o)
      compare.assert_close(z, z2, 1e-6, "latents")
      compare.assert_close(audio, a2, 1e-6, "audio")
      for i = 1, 2 do
        o.latents, o.control_latent = latents:narrow(1, i, 1), w:narrow(1, i, 1)
        local a1, z1 = pipe:generate({ SAME_LENGTH[i] }, o)
        compare.assert_close(z1, z:narrow(1, i, 1), TOL, "row " .. i .. " latents")
        -- Griffin-Lim (exp of the random VAE's log-mel, pseudo-inverse) magnifies the latents' float32 rounding
        -- (~4e-7) to ~1.5e-4 in the waves
        compare.assert_close(a1, audio:narrow(1, i, 1), 1e-3, "row " .. i .. " audio")
      end
    end)
    pipe.vocoder = hifigan
    pipe.controlnet:eval()
    assert(ok, err)
  end)
end)
