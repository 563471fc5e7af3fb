-- audioldm2_pipeline_spec.lua — the parts of AudioLDM 2's pipeline that exist natively, run on a complete tiny
-- random pipeline folder saved by diffusers 0.27.2 (spec/fixtures/audioldm2/pipeline_tiny, made by
-- gen_pipeline.py with its tokenizers trained there) against what diffusers' AudioLDM2Pipeline computed from
-- two prompts: the T5 stream (tokenizer_2 + text_encoder_2 -> prompt_embeds and its mask), and, from the
-- pipeline's own text states, the 3-step DDIM loop over the U-Net with and without classifier-free guidance,
-- the VAE decode and the vocoder. (The CLAP stream and GPT-2's generated embeddings join when the pipeline
-- class is assembled.)
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
