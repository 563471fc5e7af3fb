-- audioldm2_spec.lua — AudioLDM 2's U-Net (both cross-attention layouts), CompoNet's ControlNet and the
-- AutoencoderKL against diffusers 0.27.2 on tiny random configurations (spec/fixtures/audioldm2, made by
-- gen_audioldm2.py with save_pretrained, so the loader reads the real folder layout): outputs, input and
-- parameter gradients within 1e-4 relative; the ControlNet built from a U-Net; bad inputs, configs and
-- weight files raising errors that name the problem.
local cocola = require "cocola"
local compare = require "helpers.compare"
local files = require "helpers.files"
local UNet = require "cocola.models.audioldm2.unet"
local ControlNet = require "cocola.models.audioldm2.controlnet"
local AutoencoderKL = require "cocola.models.audioldm2.autoencoder_kl"

local TOL = 1e-4
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local D = here .. "fixtures/audioldm2/"

local function text_inputs(fx)
  return { encoder_hidden_states = fx["input.encoder_hidden_states"],
    encoder_hidden_states_1 = fx["input.encoder_hidden_states_1"],
    encoder_attention_mask_1 = fx["input.encoder_attention_mask_1"] }
end

local function leaf(t) return t:clone():requires_grad(true) end

-- compares every grad.param.<name> of the fixture with the model's parameter gradient
local function check_param_grads(model, fx, prefix)
  local params, n = {}, 0
  for _, np in ipairs(model:named_parameters()) do params[np[1]] = np[2] end
  for key, ref in pairs(fx) do
    local name = key:match("^" .. prefix:gsub("%.", "%%.") .. "(.+)$")
    if name then
      local p = params[name]
      assert(p, "no parameter " .. name)
      assert(p.grad, "no gradient for " .. name)
      compare.assert_close(p.grad, ref, TOL, name)
      n = n + 1
    end
  end
  assert(n >= 4, "too few parameter gradients checked: " .. n)
end

describe("AudioLDM 2 U-Net against diffusers", function()
  for _, name in ipairs({ "unet_base", "unet_large" }) do
    it(name .. ": prediction, input gradients and parameter gradients", function()
      local unet = UNet.from_pretrained(D .. name)
      local fx = cocola.load(D .. name .. ".safetensors")
      local sample = leaf(fx["input.sample"])
      local o = text_inputs(fx)
      o.encoder_hidden_states = leaf(o.encoder_hidden_states)
      o.encoder_hidden_states_1 = leaf(o.encoder_hidden_states_1)
      local eps = unet(sample, fx["input.timestep"], o)
      compare.assert_close(eps, fx["output.eps"], TOL, "eps")
      local loss = (eps * fx["grad_out"]):sum()
      loss:backward()
      compare.assert_close(sample.grad, fx["grad.sample"], TOL, "grad sample")
      compare.assert_close(o.encoder_hidden_states.grad, fx["grad.encoder_hidden_states"], TOL, "grad states")
      compare.assert_close(o.encoder_hidden_states_1.grad, fx["grad.encoder_hidden_states_1"], TOL, "grad states_1")
      check_param_grads(unet, fx, "grad.param.")
    end)
  end

  it("adds ControlNet residuals to every skip and after the middle block, with their gradients", function()
    local unet = UNet.from_pretrained(D .. "unet_base")
    local fx = cocola.load(D .. "unet_base_residuals.safetensors")
    local o = text_inputs(fx)
    local down = {}
    for i = 0, 8 do down[i + 1] = leaf(fx["input.down_block_additional_residuals." .. i]) end
    assert.is_nil(fx["input.down_block_additional_residuals.9"])
    o.down_block_additional_residuals = down
    o.mid_block_additional_residual = leaf(fx["input.mid_block_additional_residual"])
    local eps = unet(fx["input.sample"], fx["input.timestep"], o)
    compare.assert_close(eps, fx["output.eps"], TOL, "eps")
    local loss = (eps * fx["grad_out"]):sum()
    loss:backward()
    for i = 0, 8 do
      compare.assert_close(down[i + 1].grad, fx["grad.down_block_additional_residuals." .. i], TOL, "residual " .. i)
    end
    compare.assert_close(o.mid_block_additional_residual.grad, fx["grad.mid_block_additional_residual"], TOL, "mid")
  end)

  it("gives the same gradients with activation checkpointing, and frozen parameters get none", function()
    local unet = UNet.from_pretrained(D .. "unet_base")
    unet:enable_gradient_checkpointing()
    assert.is_true(unet:freeze({ "^up_blocks%.0%.", "^conv_out%." }) > 10)
    local fx = cocola.load(D .. "unet_base.safetensors")
    local sample = leaf(fx["input.sample"])
    local eps = unet(sample, fx["input.timestep"], text_inputs(fx))
    compare.assert_close(eps, fx["output.eps"], TOL, "eps")
    local loss = (eps * fx["grad_out"]):sum()
    loss:backward()
    compare.assert_close(sample.grad, fx["grad.sample"], TOL, "grad sample")
    local params = {}
    for _, np in ipairs(unet:named_parameters()) do params[np[1]] = np[2] end
    for _, name in ipairs({ "conv_in.weight", "down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k.weight",
      "mid_block.attentions.1.norm.weight", "up_blocks.1.upsamplers.0.conv.weight" }) do
      compare.assert_close(params[name].grad, fx["grad.param." .. name], TOL, name)
    end
    assert.is_nil(params["up_blocks.0.attentions.8.proj_out.weight"].grad)
    assert.is_nil(params["conv_out.weight"].grad)
    assert.is_false(params["conv_out.weight"]:requires_grad())
    assert.is_true(unet:unfreeze("^conv_out%.") == 2)
  end)

  it("a masked T5 token changes nothing", function()
    local unet = UNet.from_pretrained(D .. "unet_base")
    local fx = cocola.load(D .. "unet_base.safetensors")
    local o = text_inputs(fx)
    local a = unet(fx["input.sample"], fx["input.timestep"], o)
    local states = o.encoder_hidden_states_1:clone()
    states:narrow(1, 2, 1):narrow(2, 5, 2):fill_(7.5) -- row 2's tokens 5-6 are masked
    o.encoder_hidden_states_1 = states
    local b = unet(fx["input.sample"], fx["input.timestep"], o)
    assert.is_true(compare.rel_err(b, a) < 1e-6)
    states:narrow(1, 2, 1):narrow(2, 1, 1):fill_(7.5) -- an unmasked one does
    local c = unet(fx["input.sample"], fx["input.timestep"], o)
    assert.is_true(compare.rel_err(c, a) > 1e-3)
  end)
end)

describe("CompoNet ControlNet against its reference", function()
  it("residuals at conditioning scales 1 and 0.5, and the U-Net fed with them", function()
    local unet = UNet.from_pretrained(D .. "unet_base")
    local cn = ControlNet.from_pretrained(D .. "controlnet")
    for _, f in ipairs({ "controlnet", "controlnet_scale05" }) do
      local fx = cocola.load(D .. f .. ".safetensors")
      local o = text_inputs(fx)
      o.conditioning_scale = fx["input.conditioning_scale"]:item()
      local down, mid = cn(fx["input.sample"], fx["input.timestep"], fx["input.controlnet_cond"], o)
      assert.equal(9, #down)
      for i, d in ipairs(down) do compare.assert_close(d, fx["output.down_block_res_samples." .. (i - 1)], TOL, f .. " down " .. i) end
      compare.assert_close(mid, fx["output.mid_block_res_sample"], TOL, f .. " mid")
      o.down_block_additional_residuals, o.mid_block_additional_residual = down, mid
      compare.assert_close(unet(fx["input.sample"], fx["input.timestep"], o), fx["output.eps"], TOL, f .. " eps")
    end
  end)

  it("gradients reach the control latent, the latent and the ControlNet's parameters through a frozen U-Net", function()
    local unet = UNet.from_pretrained(D .. "unet_base")
    unet:requires_grad_(false)
    local cn = ControlNet.from_pretrained(D .. "controlnet")
    local fx = cocola.load(D .. "controlnet.safetensors")
    local o = text_inputs(fx)
    local sample, cond = leaf(fx["input.sample"]), leaf(fx["input.controlnet_cond"])
    local down, mid = cn(sample, fx["input.timestep"], cond, o)
    o.down_block_additional_residuals, o.mid_block_additional_residual = down, mid
    local eps = unet(sample, fx["input.timestep"], o)
    local loss = (eps * fx["grad_out"]):sum()
    loss:backward()
    compare.assert_close(cond.grad, fx["grad.controlnet_cond"], TOL, "grad control latent")
    compare.assert_close(sample.grad, fx["grad.sample"], TOL, "grad sample")
    check_param_grads(cn, fx, "grad.param.")
    for _, p in ipairs(unet:parameters()) do assert.is_nil(p.grad) end
  end)

  it("from_unet copies the U-Net's input half and starts with zero residuals", function()
    local unet = UNet.from_pretrained(D .. "unet_base")
    local cn = ControlNet.from_unet(unet)
    local usd = unet:state_dict()
    for name, t in pairs(cn:state_dict()) do
      if usd[name] then assert.equal(0, (t - usd[name]):abs():max():item(), name) end
    end
    assert.equal(0, cn.controlnet_mid_block.weight:abs():sum():item())
    local fx = cocola.load(D .. "controlnet.safetensors")
    local down, mid = cn(fx["input.sample"], fx["input.timestep"], fx["input.controlnet_cond"], text_inputs(fx))
    for _, d in ipairs(down) do assert.equal(0, d:abs():max():item()) end
    assert.equal(0, mid:abs():max():item())
    assert.is_true(cn.controlnet_cond_embedding.weight:abs():sum():item() > 0)
  end)
end)

describe("a DDIM loop with ControlNet and U-Net against diffusers", function()
  it("3 steps give diffusers' noise predictions and latents", function()
    local ddim = require "cocola.schedulers.ddim"
    local unet = UNet.from_pretrained(D .. "unet_base")
    local cn = ControlNet.from_pretrained(D .. "controlnet")
    local sched = ddim.from_pretrained(D .. "scheduler")
    local fx = cocola.load(D .. "ddim.safetensors")
    local cfx = cocola.load(D .. "controlnet.safetensors")
    sched:set_timesteps(3)
    local ts = fx["loop.timesteps"]:totable()
    assert.same(ts, sched.timesteps)
    local z = fx["loop.latent.0"]
    cocola.no_grad(function()
      for k, t in ipairs(sched.timesteps) do
        local o = text_inputs(cfx)
        o.down_block_additional_residuals, o.mid_block_additional_residual = cn(z, t, cfx["input.controlnet_cond"], o)
        local eps = unet(z, t, o)
        compare.assert_close(eps, fx["loop.eps." .. (k - 1)], TOL, "eps " .. k)
        local out = sched:step(eps, t, z)
        compare.assert_close(out.pred_original_sample, fx["loop.pred_original_sample." .. (k - 1)], TOL, "x0 " .. k)
        z = out.prev_sample
        compare.assert_close(z, fx["loop.latent." .. k], TOL, "latent " .. k)
      end
    end)
    compare.assert_close(z, fx["loop.final"], TOL, "final")
  end)
end)

describe("AutoencoderKL against diffusers", function()
  local function rel(a, b) return compare.rel_err(a, b) end
  it("posterior, sample, decode and forward", function()
    local vae = AutoencoderKL.from_pretrained(D .. "vae")
    local fx = cocola.load(D .. "vae.safetensors")
    assert.equal(fx["scaling_factor"]:item(), vae.scaling_factor)
    local post = vae:encode(fx["input.mel"])
    compare.assert_close(post.mean, fx["output.mean"], TOL, "mean")
    compare.assert_close(post.logvar, fx["output.logvar"], TOL, "logvar")
    compare.assert_close(post.std, fx["output.std"], TOL, "std")
    compare.assert_close(post.sample(fx["input.posterior_noise"]), fx["output.posterior_sample"], TOL, "sample")
    compare.assert_close(vae:decode(fx["input.latent"]), fx["output.decode"], TOL, "decode")
    compare.assert_close(vae(fx["input.mel"]), fx["output.forward"], TOL, "forward")
    assert.is_true(rel(post.sample(), post.mean) > 0)
  end)

  it("encoder and decoder gradients", function()
    local vae = AutoencoderKL.from_pretrained(D .. "vae")
    local fx = cocola.load(D .. "vae.safetensors")
    local mel = leaf(fx["input.mel"])
    local post = vae:encode(mel)
    local loss = (post.mean * fx["grad_out_mean"]):sum()
    loss:backward()
    compare.assert_close(mel.grad, fx["grad_mean.mel"], TOL, "grad mel")
    check_param_grads(vae, fx, "grad_mean.param.")
    vae:zero_grad()
    local z = leaf(fx["input.latent"])
    local out = vae:decode(z)
    local loss = (out * fx["grad_out_decode"]):sum()
    loss:backward()
    compare.assert_close(z.grad, fx["grad_decode.latent"], TOL, "grad latent")
    check_param_grads(vae, fx, "grad_decode.param.")
  end)
end)

describe("AudioLDM 2 models: bad input", function()
  local function raises(fn, ...)
    local ok, err = pcall(fn)
    assert(not ok, "expected an error")
    err = tostring(err)
    for _, pat in ipairs({ ... }) do assert(err:find(pat), string.format("%q does not match %q", err, pat)) end
  end

  it("refuses latents, text states, masks and residuals of the wrong shape", function()
    local unet = UNet.from_pretrained(D .. "unet_base")
    local fx = cocola.load(D .. "unet_base.safetensors")
    local o = text_inputs(fx)
    local x, t = fx["input.sample"], fx["input.timestep"]
    raises(function() return unet(cocola.zeros({ 2, 4, 16, 8 }), t, o) end, "expected a latent %(B, 8, H, W%)", "{2,4,16,8}")
    raises(function() return unet(x, t, { encoder_hidden_states_1 = o.encoder_hidden_states_1 }) end,
      "encoder_hidden_states %(B, tokens, 12%) is required")
    raises(function() return unet(x, t, { encoder_hidden_states = cocola.zeros({ 2, 8, 13 }),
      encoder_hidden_states_1 = o.encoder_hidden_states_1 }) end, "encoder_hidden_states must be %(2, tokens, 12%)")
    raises(function() return unet(x, t, { encoder_hidden_states = o.encoder_hidden_states,
      encoder_hidden_states_1 = cocola.zeros({ 2, 6, 12 }) }) end, "encoder_hidden_states_1 must be %(2, tokens, 20%)")
    raises(function() return unet(x, t, { encoder_hidden_states = o.encoder_hidden_states,
      encoder_hidden_states_1 = o.encoder_hidden_states_1, encoder_attention_mask_1 = cocola.ones({ 2, 5 }) }) end,
      "encoder_attention_mask_1 must be %(2, 6%)")
    raises(function() return unet(x, cocola.zeros({ 3 }), o) end, "timestep must be a number or a tensor of 2")
    o.down_block_additional_residuals = { cocola.zeros({ 2, 8, 16, 8 }) }
    raises(function() return unet(x, t, o) end, "down_block_additional_residuals must be a list of 9 tensors")
    local cn = ControlNet.from_pretrained(D .. "controlnet")
    raises(function() return cn(x, t, cocola.zeros({ 2, 8, 8, 8 }), text_inputs(fx)) end,
      "control latent must have the latent's shape")
    local vae = AutoencoderKL.from_pretrained(D .. "vae")
    raises(function() return vae:encode(cocola.zeros({ 1, 2, 32, 16 })) end, "AutoencoderKL", "%(B, 1, H, W%)")
    raises(function() return vae:decode(cocola.zeros({ 1, 4, 8, 4 })) end, "AutoencoderKL", "latent %(B, 8, h, w%)")
  end)

  it("names the file and key of a missing folder, an unsupported config and mismatched weights", function()
    raises(function() return UNet.from_pretrained("/nonexistent/pipeline") end, "/nonexistent/pipeline", "config.json")
    local dir = files.tmpdir()
    assert(os.execute("mkdir -p " .. dir .. "/unet"))
    finally(function() os.execute("rm -rf " .. dir) end)
    local src = io.open(D .. "unet_base/config.json"):read("a")
    local write = files.write
    write(dir .. "/unet/config.json", (src:gsub('"use_linear_projection": false', '"use_linear_projection": true')))
    raises(function() return UNet.from_pretrained(dir) end, "config.json", "use_linear_projection = true is not supported")
    write(dir .. "/unet/config.json", (src:gsub('"act_fn"', '"new_option": 1,\n  "act_fn"')))
    raises(function() return UNet.from_pretrained(dir) end, "config key 'new_option' is not supported")
    write(dir .. "/unet/config.json", src)
    raises(function() return UNet.from_pretrained(dir) end, "no weight file", "diffusion_pytorch_model.safetensors")
    -- the large layout's weights under the base config: names and shapes differ
    os.execute(string.format("cp %sunet_large/diffusion_pytorch_model.safetensors %s/unet/", D, dir))
    raises(function() return UNet.from_pretrained(dir) end, "diffusion_pytorch_model.safetensors does not match",
      "missing: ")
    -- float16 weights load (widened) and give the float32 model's output to float16 precision
    local base = UNet.from_pretrained(D .. "unet_base")
    local half = {}
    for k, v in pairs(base:state_dict()) do half[k] = v end
    cocola.save(dir .. "/unet/diffusion_pytorch_model.safetensors", half, { dtype = "float16" })
    local from_half = UNet.from_pretrained(dir)
    local fx = cocola.load(D .. "unet_base.safetensors")
    local a = base(fx["input.sample"], fx["input.timestep"], text_inputs(fx))
    local b = from_half(fx["input.sample"], fx["input.timestep"], text_inputs(fx))
    local err = compare.rel_err(b, a)
    assert.is_true(err < 1e-2 and err > 0, "float16 weights: " .. err)
  end)
end)

describe("AudioLDM 2 models on the GPU #cuda", function()
  if not cocola.cuda.is_available() then
    pending("no CUDA device")
    return
  end
  it("U-Net prediction and input gradient, ControlNet residuals and VAE decode as on the CPU reference", function()
    local function g(t) return t:cuda() end
    local unet = UNet.from_pretrained(D .. "unet_base"):cuda()
    local fx = cocola.load(D .. "unet_base.safetensors")
    local sample = g(fx["input.sample"]):requires_grad(true)
    local o = { encoder_hidden_states = g(fx["input.encoder_hidden_states"]),
      encoder_hidden_states_1 = g(fx["input.encoder_hidden_states_1"]),
      encoder_attention_mask_1 = g(fx["input.encoder_attention_mask_1"]) }
    local eps = unet(sample, g(fx["input.timestep"]), o)
    compare.assert_close(eps:cpu(), fx["output.eps"], TOL, "eps")
    local loss = (eps * g(fx["grad_out"])):sum()
    loss:backward()
    compare.assert_close(sample.grad:cpu(), fx["grad.sample"], TOL, "grad sample")
    local cn = ControlNet.from_pretrained(D .. "controlnet"):cuda()
    local cfx = cocola.load(D .. "controlnet.safetensors")
    local down, mid = cocola.no_grad(cn, g(cfx["input.sample"]), g(cfx["input.timestep"]), g(cfx["input.controlnet_cond"]),
      { encoder_hidden_states = g(cfx["input.encoder_hidden_states"]), encoder_hidden_states_1 = g(cfx["input.encoder_hidden_states_1"]),
        encoder_attention_mask_1 = g(cfx["input.encoder_attention_mask_1"]) })
    compare.assert_close(down[9]:cpu(), cfx["output.down_block_res_samples.8"], TOL, "down 9")
    compare.assert_close(mid:cpu(), cfx["output.mid_block_res_sample"], TOL, "mid")
    local vae = AutoencoderKL.from_pretrained(D .. "vae"):cuda()
    local vfx = cocola.load(D .. "vae.safetensors")
    compare.assert_close(vae:decode(g(vfx["input.latent"])):cpu(), vfx["output.decode"], TOL, "decode")
    compare.assert_close(vae:encode(g(vfx["input.mel"])).mean:cpu(), vfx["output.mean"], TOL, "mean")
  end)
end)
