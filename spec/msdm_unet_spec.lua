-- msdm_unet_spec.lua — MSDM's network, the 1-D U-Net of audio-diffusion-pytorch 0.0.43, against the reference on
-- a tiny configuration with MSDM's flags (spec/fixtures/msdm, made by gen_unet1d.py): state-dict keys in order,
-- output, input and parameter gradients within 1e-4 relative; the EDM preconditioning and loss; a Lightning
-- checkpoint laid out as MSDM's; the real MSDM configuration's parameter count; bad inputs and configs raising
-- errors that name the problem.
local cocola = require "cocola"
local compare = require "helpers.compare"
local msdm = require "cocola.models.msdm"
local UNet1d = msdm.UNet1d

local TOL = 1e-4
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local D = here .. "fixtures/msdm/"

-- gen_unet1d.py's TINY: MSDM's flags at a small size
local TINY = dofile(D .. "tiny_config.lua")

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function leaf(t) return t:clone():requires_grad(true) end

local fx, meta
local function fixture()
  if not fx then fx, meta = cocola.load(D .. "unet1d_tiny.safetensors") end
  return fx, meta
end

local function tiny_net()
  return UNet1d.from_state_dict(fixture(), TINY, { prefix = "param." })
end

-- compares every <prefix><name> of the fixture with the parameter's gradient; returns the largest error
local function check_param_grads(net, prefix, at_least)
  local params, n, worst = {}, 0, 0
  for _, np in ipairs(net:named_parameters()) do params[np[1]] = np[2] end
  for key, ref in pairs(fixture()) do
    local name = key:sub(1, #prefix) == prefix and key:sub(#prefix + 1) or nil
    if name then
      local p = params[name]
      assert(p, "no parameter " .. name)
      assert(p.grad, "no gradient for " .. name)
      worst = math.max(worst, compare.assert_close(p.grad, ref, TOL, name))
      n = n + 1
    end
  end
  assert(n >= at_least, "too few parameter gradients checked: " .. n)
  return worst
end

describe("MSDM UNet1d against audio-diffusion-pytorch 0.0.43", function()
  it("has the reference's state-dict keys, in order, and parameter count", function()
    local _, m = fixture()
    local net = UNet1d.from_config(TINY)
    assert.are.equal(m.state_dict_keys, table.concat(net:state_dict_keys(), ","))
    assert.are.equal(tonumber(m.tiny_num_parameters), net:num_parameters())
  end)

  it("other constructor branches (2 patch blocks, factor 1, nearest upsampling) give the reference's keys and shapes",
    function()
      local _, m = fixture()
      local variant = copy(TINY)
      variant.patch_blocks, variant.factors, variant.use_nearest_upsample = 2, { 1, 2 }, true
      variant.use_skip_scale, variant.attentions, variant.use_attention_bottleneck = false, { true, false }, false
      local net = UNet1d.from_config(variant)
      local entries = {}
      for _, e in ipairs(net:named_state()) do
        local dims = {}
        for d = 1, e[2]:dim() do dims[d] = tostring(e[2]:size(d)) end
        entries[#entries + 1] = e[1] .. ":" .. table.concat(dims, "x")
      end
      assert.are.equal(m.variant_state_dict, table.concat(entries, ","))
      local y = cocola.no_grad(function() return net(cocola.randn({ 1, 4, 16 }), cocola.zeros({ 1 })) end)
      assert.are.same({ 1, 4, 16 }, y.shape)
    end)

  it("output, input gradients and parameter gradients", function()
    local f = fixture()
    local net = tiny_net()
    local x, time = leaf(f["input.x"]), leaf(f["input.time"])
    local y = net(x, time)
    compare.assert_close(y, f["output.net"], TOL, "output")
    ;(y * f["grad_out"]):sum():backward()
    compare.assert_close(x.grad, f["grad.x"], TOL, "grad x")
    compare.assert_close(time.grad, f["grad.time"], TOL, "grad time")
    check_param_grads(net, "grad.param.", 60)
  end)

  it("EDM preconditioning (denoise) and the training loss with its gradients", function()
    local f = fixture()
    local net = tiny_net()
    local data, noise, sigmas = f["input.data"], f["input.noise"], f["input.sigmas"]
    local x_noisy = data + noise * sigmas:reshape({ 2, 1, 1 })
    local denoised = cocola.no_grad(function() return msdm.diffusion.denoise(net, x_noisy, sigmas) end)
    compare.assert_close(denoised, f["output.denoised"], TOL, "denoised")
    local loss = msdm.diffusion.loss(net, data, sigmas, noise, { sigma_data = msdm.configs.diffusion().sigma_data })
    compare.assert_close(loss:reshape({ 1 }), f["output.loss"], TOL, "loss")
    loss:backward()
    check_param_grads(net, "grad.loss.param.", 4)
  end)

  it("loads a Lightning checkpoint laid out as MSDM's (model.unet.* and model.diffusion.net.*)", function()
    local f = fixture()
    local net, info = msdm.checkpoint.load(D .. "msdm_tiny.ckpt")
    assert.are.equal("ckpt", info.format)
    assert.are.equal("model.unet.", info.prefix)
    assert.is_true(info.from_hyper_parameters)
    local y = cocola.no_grad(function() return net(f["input.x"], f["input.time"]) end)
    compare.assert_close(y, f["output.net"], TOL, "output from the checkpoint")
    local net2, info2 = msdm.checkpoint.load(D .. "msdm_tiny.ckpt", { prefix = "model.diffusion.net.", config = TINY })
    assert.are.equal("model.diffusion.net.", info2.prefix)
    local y2 = cocola.no_grad(function() return net2(f["input.x"], f["input.time"]) end)
    compare.assert_close(y2, f["output.net"], TOL, "output from the diffusion.net copy")
    -- the tiny weights do not fit MSDM's real configuration: the error names the prefix and a parameter
    compare.raises(function() msdm.checkpoint.load(D .. "msdm_tiny.ckpt", { config = msdm.configs.msdm() }) end,
      "MSDM checkpoint", "model.unet.", "size mismatch")
    compare.raises(function() msdm.checkpoint.load(D .. "unet1d_tiny.safetensors", { prefix = "nothing." }) end,
      "Missing key(s)")
  end)

  it("MSDM's real configuration has the reference's parameter count", function()
    local _, m = fixture()
    local net = UNet1d.from_config(msdm.configs.msdm())
    assert.are.equal(tonumber(m.msdm_num_parameters), net:num_parameters())
    assert.are.equal(405497700, net:num_parameters())
    assert.are.equal(16 * 4 * 4 * 4 * 2 * 2 * 2, net.total_downsampling)
  end)

  it("bad inputs raise errors naming the problem", function()
    local f = fixture()
    local net = tiny_net()
    local x, time = f["input.x"], f["input.time"]
    compare.raises(function() net(cocola.randn({ 2, 3, 32 }), time) end, "expected 4 input channels, got 3")
    compare.raises(function() net(cocola.randn({ 2, 4, 36 }), time) end,
      "input length 36 is not a multiple of the total downsampling 8")
    compare.raises(function() net(cocola.randn({ 4, 32 }), time) end, "expected input x of shape (B, 4, L)",
      "{4,32}")
    compare.raises(function() net(x) end, "time input")
    compare.raises(function() net(x, cocola.randn({ 3 })) end, "time must be a number or a tensor of shape (2)")
    local y = cocola.no_grad(function() return net(x, -0.5) end) -- one time for the whole batch
    assert.are.same({ 2, 4, 32 }, y.shape)
    compare.assert_close(y, cocola.no_grad(function() return net(x, cocola.full({ 2 }, -0.5)) end), 0, "number time")
    -- a number time or sigma takes the input's dtype: a float64 network runs with them
    local net64, x64 = tiny_net():double(), x:double()
    cocola.no_grad(function()
      assert.are.equal("float64", net64(x64, -0.5):dtype())
      assert.are.equal("float64", msdm.diffusion.denoise(net64, x64, 0.5):dtype())
    end)
    compare.raises(function() msdm.diffusion.denoise(net, x, cocola.ones({ 3 })) end, "sigmas", "(2)")
  end)

  it("bad configs raise errors naming the key", function()
    local unknown = copy(TINY)
    unknown.channel = 8
    compare.raises(function() UNet1d.from_config(unknown) end, "unknown config key(s): channel")
    local short = copy(TINY)
    short.factors = { 2 }
    compare.raises(function() UNet1d.from_config(short) end, "factors must be a list of 2")
    local no_in = copy(TINY)
    no_in.in_channels = nil
    compare.raises(function() UNet1d.from_config(no_in) end, "in_channels is required")
    local cross = copy(TINY)
    cross.context_embedding_features = 16
    compare.raises(function() UNet1d.from_config(cross) end, "context_embedding_features", "not supported")
    local odd = copy(TINY)
    odd.kernel_multiplier_downsample = 3
    compare.raises(function() UNet1d.from_config(odd) end, "kernel_multiplier must be even")
  end)
end)

describe("MSDM UNet1d on the GPU #cuda", function()
  if not cocola.cuda.is_available() then
    pending("no CUDA device")
    return
  end
  it("output, input and parameter gradients, the EDM denoise and loss as the reference's, weights on the GPU", function()
    local f = fixture()
    local function g(t) return t:cuda() end
    local net = tiny_net():cuda()
    for _, np in ipairs(net:named_parameters()) do assert.equal("cuda", np[2]:device(), np[1]) end
    local x, time = g(f["input.x"]):requires_grad(true), g(f["input.time"]):requires_grad(true)
    local y = net(x, time)
    assert.equal("cuda", y:device())
    compare.assert_close(y:cpu(), f["output.net"], TOL, "output")
    ;(y * g(f["grad_out"])):sum():backward()
    compare.assert_close(x.grad:cpu(), f["grad.x"], TOL, "grad x")
    compare.assert_close(time.grad:cpu(), f["grad.time"], TOL, "grad time")
    local params, n = {}, 0
    for _, np in ipairs(net:named_parameters()) do params[np[1]] = np[2] end
    for key, ref in pairs(f) do
      local name = key:match("^grad%.param%.(.*)$")
      if name then
        assert(params[name] and params[name].grad, "no gradient for " .. name)
        compare.assert_close(params[name].grad:cpu(), ref, TOL, name)
        n = n + 1
      end
    end
    assert.is_true(n >= 60, "parameter gradients checked: " .. n)
    net:zero_grad()
    local data, noise, sigmas = g(f["input.data"]), g(f["input.noise"]), g(f["input.sigmas"])
    local denoised = cocola.no_grad(function()
      return msdm.diffusion.denoise(net, data + noise * sigmas:reshape({ 2, 1, 1 }), sigmas)
    end)
    compare.assert_close(denoised:cpu(), f["output.denoised"], TOL, "denoised")
    local loss = msdm.diffusion.loss(net, data, sigmas, noise, { sigma_data = msdm.configs.diffusion().sigma_data })
    assert.equal("cuda", loss:device())
    compare.assert_close(loss:cpu():reshape({ 1 }), f["output.loss"], TOL, "loss")
    -- a number time or sigma is made on the input's device
    local host = tiny_net()
    cocola.no_grad(function()
      compare.assert_close(net(g(f["input.x"]), -0.5):cpu(), host(f["input.x"], -0.5), TOL, "number time")
      compare.assert_close(msdm.diffusion.denoise(net, data, 0.7):cpu(),
        msdm.diffusion.denoise(host, f["input.data"], 0.7), TOL, "number sigma")
    end)
    compare.raises(function() msdm.diffusion.denoise(net, data, f["input.sigmas"]) end,
      "msdm.diffusion.denoise: sigmas are on the cpu, the input on the cuda")
  end)
end)
