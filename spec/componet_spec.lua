-- componet_spec.lua — CompoNet's training step (ControlNet fine-tuning of AudioLDM 2) against a PyTorch
-- restatement of the released Model.step on the tiny pipeline (spec/fixtures/audioldm2/gen_componet.py:
-- pipeline_tiny/, componet/controlnet/, componet.safetensors): the VAE latents of the waves given the posterior
-- sample noise, the loss, the ControlNet's gradients, the total gradient norm and its clipping, the weights
-- after one AdamW step, all within 1e-4 relative; the frozen networks get no gradient; cached text states are the
-- batch's own; bad batches raise errors that name the problem.
local cocola = require "cocola"
local compare = require "helpers.compare"
local optim = require "cocola.optim"
local Pipeline = require "cocola.models.audioldm2.pipeline"
local ControlNet = require "cocola.models.audioldm2.controlnet"
local CompoNet = require "cocola.models.audioldm2.componet"

local TOL = 1e-4
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local D = here .. "fixtures/audioldm2/"
local PROMPTS = { "in: bass, drums; out: guitar, piano", "a hammer hitting a wooden surface" }

local function build()
  local pipe = Pipeline.from_pretrained(D .. "pipeline_tiny")
  local cn = ControlNet.from_pretrained(D .. "componet/controlnet")
  return CompoNet.new({ pipeline = pipe, controlnet = cn }), pipe, cn
end

local function batch(fx) return { x = fx["input.x"], y = fx["input.y"], z = PROMPTS } end

local function opts(fx)
  return { noise = fx["input.noise"], t = fx["input.t"], latent_noise_x = fx["input.latent_noise_x"],
    latent_noise_y = fx["input.latent_noise_y"] }
end

local function named(module)
  local out = {}
  for _, np in ipairs(module:named_parameters()) do out[np[1]] = np[2] end
  return out
end

local function fixture_names(fx, prefix)
  local names = {}
  for k in pairs(fx) do
    local n = k:match("^" .. prefix:gsub("%.", "%%.") .. "(.+)$")
    if n then names[#names + 1] = n end
  end
  table.sort(names)
  assert.is_true(#names >= 10)
  return names
end

describe("CompoNet training step", function()
  local fx = cocola.load(D .. "componet.safetensors")

  it("encodes the waves to the VAE latents with the given sample noise", function()
    local c = build()
    compare.assert_close(c:latents(fx["input.x"], fx["input.latent_noise_x"]), fx["latent.x"], TOL, "latent x")
    compare.assert_close(c:latents(fx["input.y"], fx["input.latent_noise_y"]), fx["latent.y"], TOL, "latent y")
    -- without given noise the latent is a sample, not the mean
    local a, b = c:latents(fx["input.x"]), c:latents(fx["input.x"])
    assert.is_true(compare.rel_err(a, b) > 1e-6)
  end)

  it("encodes the prompts with the T5 mask set to ones", function()
    local c = build()
    local t = c:text(PROMPTS)
    compare.assert_close(t.encoder_hidden_states_1, fx["text.prompt_embeds"], TOL, "T5 states")
    compare.assert_close(t.encoder_hidden_states, fx["text.generated_prompt_embeds"], TOL, "GPT-2 embeds")
    assert.equal(t.encoder_hidden_states_1:size(1) * t.encoder_hidden_states_1:size(2),
      t.encoder_attention_mask_1:float():sum():item())
  end)

  it("cache_text gives the batch's own text states, whatever its longest prompt", function()
    local pipe = Pipeline.from_pretrained(D .. "pipeline_tiny")
    local cn = ControlNet.from_pretrained(D .. "componet/controlnet")
    local cached = CompoNet.new({ pipeline = pipe, controlnet = cn, cache_text = true })
    local plain = CompoNet.new({ pipeline = pipe, controlnet = cn })
    -- T5 lengths 14 and 24 (the longest the tokenizer gives), then 14 and 14: GPT-2 numbers the padded positions
    -- too, so the first prompt's generated embeddings differ between the two batches
    for _, batch in ipairs({ PROMPTS, { PROMPTS[1], "funky slap bass line" }, PROMPTS }) do
      local a, b = cached:text(batch), plain:text(batch)
      compare.assert_close(a.encoder_hidden_states, b.encoder_hidden_states, 1e-6, "GPT-2 embeds")
      compare.assert_close(a.encoder_hidden_states_1, b.encoder_hidden_states_1, 1e-6, "T5 states")
      compare.assert_close(a.encoder_attention_mask_1:float(), b.encoder_attention_mask_1:float(), 0, "mask")
    end
    assert.equal(4, cached.cached_prompts)
  end)

  it("matches the loss, the gradients and the clipped gradients; the frozen networks get none", function()
    local c, pipe, cn = build()
    local loss = c:loss(batch(fx), opts(fx))
    compare.assert_close(loss:reshape({ 1 }), fx["loss"], TOL, "loss")
    loss:backward()
    local p = named(cn)
    for _, n in ipairs(fixture_names(fx, "grad.")) do compare.assert_close(p[n].grad, fx["grad." .. n], TOL, "grad " .. n) end
    for _, k in ipairs({ "unet", "vae", "text_encoder", "text_encoder_2", "projection_model", "language_model" }) do
      for _, np in ipairs(pipe[k]:named_parameters()) do
        assert(np[2].grad == nil, k .. "." .. np[1] .. " has a gradient")
      end
    end
    -- clipping at 0.1 scales the gradients (torch's clip_grad_norm_ semantics)
    local saved = {}
    for n, t in pairs(p) do saved[n] = t.grad:clone() end
    local norm = optim.clip_grad_norm(cn:parameters(), 0.1)
    assert.is_true(math.abs(norm - fx["total_norm01"]:item()) <= TOL * fx["total_norm01"]:item())
    for _, n in ipairs(fixture_names(fx, "clipped01.")) do
      compare.assert_close(p[n].grad, fx["clipped01." .. n], TOL, "clipped " .. n)
    end
    for n, t in pairs(p) do t.grad = saved[n] end
  end)

  it("takes one AdamW step with clipping at 1.0 as the reference", function()
    local c, _, cn = build()
    local opt = CompoNet.optimiser(cn)
    local loss, norm = c:training_step(batch(fx), opt, opts(fx))
    assert.is_true(math.abs(loss - fx["loss"]:item()) <= TOL * fx["loss"]:item())
    assert.is_true(math.abs(norm - fx["total_norm"]:item()) <= TOL * fx["total_norm"]:item())
    local p = named(cn)
    for _, n in ipairs(fixture_names(fx, "clipped.")) do
      compare.assert_close(p[n].grad, fx["clipped." .. n], TOL, "clipped " .. n)
    end
    for _, n in ipairs(fixture_names(fx, "after.")) do compare.assert_close(p[n], fx["after." .. n], TOL, "after " .. n) end
  end)

  it("rejects bad batches with clear errors", function()
    local c = build()
    local x, y = fx["input.x"], fx["input.y"]
    assert.has_error(function() c:loss({ x = x, y = y, z = {} }, opts(fx)) end,
      "CompoNet: the prompts z must be a non-empty list of strings")
    local ok, err = pcall(c.loss, c, { x = x, y = y:narrow(1, 1, 1), z = PROMPTS }, opts(fx))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("2 target waves but 1 condition waves", 1, true))
    ok, err = pcall(c.loss, c, { x = x, y = y:narrow(2, 1, 1600), z = PROMPTS }, opts(fx))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("shorter than the target window", 1, true))
    ok, err = pcall(c.loss, c, { x = x, y = y, z = { PROMPTS[1] } }, opts(fx))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("2 target waves but 1 prompts", 1, true))
    ok, err = pcall(c.latents, c, x:narrow(2, 1, 2240))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("must be divisible by 4", 1, true))
    ok, err = pcall(c.loss, c, batch(fx), { t = { 5, 1000 } })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("timestep 2 must be an integer in [0, 1000)", 1, true))
  end)
end)
