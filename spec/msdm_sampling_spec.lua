-- msdm_sampling_spec.lua — MSDM's sampling (cocola.models.msdm.sampling) against audio-diffusion-pytorch 0.0.43 and
-- MSDM's generation notebook on the tiny U-Net of msdm_unet_spec (spec/fixtures/msdm, made by gen_sampling.py):
-- Karras schedules within 1e-6; one ADPM2 step and a full 10-step ADPM2 sampling, imputation with churn (1 and 2
-- resamples) and unconditional generation within 1e-4 relative, replaying the reference's recorded noise; given
-- stems reproduced exactly; seeded runs repeatable; bad inputs raising errors that name the problem.
local cocola = require "cocola"
local compare = require "helpers.compare"
local msdm = require "cocola.models.msdm"
local sampling = msdm.sampling

local TOL = 1e-4
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local D = here .. "fixtures/msdm/"

local TINY = dofile(D .. "tiny_config.lua")

local fx, meta, net
local function fixture()
  if not fx then fx, meta = cocola.load(D .. "sampling_tiny.safetensors") end
  return fx, meta
end
local function tiny_net()
  if not net then net = msdm.UNet1d.from_state_dict(cocola.load(D .. "unet1d_tiny.safetensors"), TINY,
    { prefix = "param." }) end
  return net
end

-- replays draws (steps, K, B, C, L) as noise(shape, step, k), with the initial noise at step 0
local function replay(initial, draws)
  local used = 0
  return function(shape, step, k)
    used = used + 1
    if step == 0 then return initial end
    return draws:select(1, step):select(1, k):contiguous()
  end, function() return used end
end

local function max_abs_diff(a, b) return (a - b):abs():max():item() end

describe("MSDM sampling against audio-diffusion-pytorch 0.0.43", function()
  it("computes Karras schedules as KarrasSchedule does (n sigmas, then 0)", function()
    local f, m = fixture()
    local n_checked = 0
    for spec in m.schedules:gmatch("[^;]+") do
      local key, n, smin, smax, rho = spec:match("^(%w+):(%d+),([^,]+),([^,]+),([^,]+)$")
      local s = sampling.karras_schedule(math.tointeger(tonumber(n)), tonumber(smin), tonumber(smax), tonumber(rho))
      local ref = f["schedule." .. key]:totable()
      assert.are.equal(#ref, #s)
      assert.are.equal(tonumber(n) + 1, #s)
      assert.are.equal(0, s[#s])
      for i = 1, #ref do
        local err = math.abs(s[i] - ref[i]) / math.max(math.abs(ref[i]), 1e-12)
        assert(err < 1e-6, string.format("schedule %s value %d: %.9g vs %.9g", key, i, s[i], ref[i]))
      end
      n_checked = n_checked + 1
    end
    assert.are.equal(4, n_checked)
  end)

  it("takes one ADPM2 step as ADPM2Sampler(rho=1).step", function()
    local f, m = fixture()
    local sigma, sigma_next = m.adpm2_step_sigmas:match("^([^,]+),([^,]+)$")
    local Dn = sampling.denoiser(tiny_net())
    local out = cocola.no_grad(function()
      return sampling.adpm2_step(Dn, f["adpm2_step.x"], tonumber(sigma), tonumber(sigma_next),
        { rho = 1.0, noise = f["adpm2_step.noise"] })
    end)
    compare.assert_close(out, f["adpm2_step.out"], TOL, "adpm2 step")
  end)

  it("samples 10 ADPM2 steps as DiffusionSampler(ADPM2Sampler, KarrasSchedule(1e-4, 3, 9))", function()
    local f = fixture()
    local calls = 0
    local provider, used = replay(nil, f["adpm2.draws"]:reshape({ 9, 1, 2, 4, 32 }))
    local out = sampling.adpm2_sample(tiny_net(), f["adpm2.noise"], { steps = 10, sigma_min = 1e-4, sigma_max = 3.0,
      rho = 9.0, noise = provider, progress = function() calls = calls + 1 end })
    compare.assert_close(out, f["adpm2.out"], TOL, "adpm2 sampling")
    assert.are.equal(9, used())
    assert.are.equal(9, calls)
  end)

  for _, case in ipairs({ { "1", 1, 10.0 }, { "2", 2, 10.0 }, { "_uncond", 1, 20.0 } }) do
    local name, R, s_churn = case[1], case[2], case[3]
    it(string.format("imputes as the notebook's generate_track (num_resamples %d, s_churn %g%s)", R, s_churn,
      name == "_uncond" and ", nothing given" or ""), function()
      local f = fixture()
      local p = "impute" .. name .. "."
      local source, mask4 = f[p .. "source"], f[p .. "mask"]:select(3, 1):contiguous()
      local provider, used = replay(f[p .. "noise"], f[p .. "draws"])
      local steps_seen = {}
      local out = msdm.impute(tiny_net(), source, mask4, { steps = 10, sigma_min = 1e-4, sigma_max = 20.0, rho = 7,
        s_churn = s_churn, num_resamples = R, noise = provider,
        progress = function(i, n) steps_seen[#steps_seen + 1] = i .. "/" .. n end })
      compare.assert_close(out, f[p .. "out"], TOL, "imputation " .. name)
      assert.are.equal(1 + 10 * 2 * R, used())
      assert.are.equal(10, #steps_seen)
      assert.are.equal("10/10", steps_seen[10])
      -- the given stems come back exactly
      local mask = f[p .. "mask"]
      assert.are.equal(0, max_abs_diff(out * mask, source * mask))
    end)
  end

  it("reproduces given stems exactly and takes masks as booleans, names or tensors", function()
    local f = fixture()
    local source = f["impute1.source"]
    local o1 = msdm.impute(tiny_net(), source, { false, true, false, false }, { steps = 4, seed = 3 })
    local o2 = msdm.impute(tiny_net(), source, { "drums" }, { steps = 4, seed = 3 })
    local o3 = msdm.impute(tiny_net(), source, { drums = true }, { steps = 4, seed = 3 })
    local o4 = msdm.impute(tiny_net(), source, cocola.tensor({ { 0, 1, 0, 0 }, { 0, 1, 0, 0 } }), { steps = 4, seed = 3 })
    assert.are.same({ 2, 4, 32 }, o1.shape)
    assert.are.equal(0, max_abs_diff(o1, o2))
    assert.are.equal(0, max_abs_diff(o1, o3))
    assert.are.equal(0, max_abs_diff(o1, o4))
    assert.are.equal(0, max_abs_diff(o1:select(2, 2), source:select(2, 2)))
    assert(max_abs_diff(o1:select(2, 1), source:select(2, 1)) > 0)
    local o5 = msdm.impute(tiny_net(), source, { "drums" }, { steps = 4, seed = 4 })
    assert(max_abs_diff(o1, o5) > 0, "another seed gives another sample")
  end)

  it("rejects bad input with clear errors", function()
    local f = fixture()
    local net_ = tiny_net()
    local source = f["impute1.source"]
    compare.raises(function() msdm.impute(net_, source:narrow(2, 1, 3), { "drums" }, { steps = 3 }) end,
      "3 stems", "MSDM takes 4")
    compare.raises(function() msdm.impute(net_, source, { true, true, true, true }, { steps = 3 }) end,
      "gives all 4 stems", "nothing is left to generate")
    compare.raises(function()
      msdm.impute(net_, source, cocola.tensor({ { 0, 1, 0, 0 }, { 1, 1, 1, 1 } }), { steps = 3 })
    end, "item 2", "nothing is left to generate")
    compare.raises(function() msdm.impute(net_, source:narrow(3, 1, 28), { "drums" }, { steps = 3 }) end,
      "length 28", "total downsampling 8")
    local bad = source:clone()
    bad = bad + cocola.tensor({ 0, 0, 0 / 0, 0 }):reshape({ 1, 4, 1 })
    compare.raises(function() msdm.impute(net_, bad, { "drums" }, { steps = 3 }) end, "non-finite")
    compare.raises(function() msdm.impute(net_, source, { "vocals" }, { steps = 3 }) end, "unknown stem \"vocals\"")
    compare.raises(function() msdm.impute(net_, source, cocola.tensor({ 0, 0.5, 0, 0 }), { steps = 3 }) end,
      "mask values must be 0")
    compare.raises(function() msdm.impute(net_, source, cocola.tensor({ 0, 1, 0 }), { steps = 3 }) end,
      "mask tensor must have shape (4) or (2, 4)")
    compare.raises(function() msdm.impute(net_, source, { "drums" }, { steps = 1 }) end, "num_steps must be")
    compare.raises(function() msdm.impute(net_, source, { "drums" }, { steps = 3, num_resamples = 0 }) end,
      "num_resamples must be")
    compare.raises(function()
      msdm.impute(net_, source, { "drums" }, { steps = 3, noise = function() return cocola.zeros({ 1 }) end })
    end, "noise function returned a tensor of shape")
    compare.raises(function() sampling.karras_schedule(10, 2.0, 1.0, 7) end, "0 < sigma_min < sigma_max")
  end)
end)

describe("MSDM sampling on the GPU #cuda", function()
  if not cocola.cuda.is_available() then
    pending("no CUDA device")
    return
  end
  it("imputes as the reference on the GPU with the same noise, given stems kept exactly", function()
    local f = fixture()
    local gpu_net = msdm.UNet1d.from_state_dict(cocola.load(D .. "unet1d_tiny.safetensors"), TINY,
      { prefix = "param." }):cuda()
    for _, name in ipairs({ "1", "2" }) do
      local p = "impute" .. name .. "."
      local source, mask4 = f[p .. "source"]:cuda(), f[p .. "mask"]:select(3, 1):contiguous()
      local provider = replay(f[p .. "noise"], f[p .. "draws"])
      local out = msdm.impute(gpu_net, source, mask4, { steps = 10, sigma_min = 1e-4, sigma_max = 20.0, rho = 7,
        s_churn = 10.0, num_resamples = tonumber(name), noise = provider })
      assert.equal("cuda", out:device())
      compare.assert_close(out:cpu(), f[p .. "out"], TOL, "imputation " .. name)
      local mask = f[p .. "mask"]
      assert.equal(0, max_abs_diff(out:cpu() * mask, f[p .. "source"] * mask))
    end
    -- seeded sampling draws its noise on the host: the GPU's sample is the CPU's
    local source = f["impute1.source"]
    local cpu = msdm.impute(tiny_net(), source, { "drums" }, { steps = 4, seed = 3 })
    local gpu = msdm.impute(gpu_net, source:cuda(), { "drums" }, { steps = 4, seed = 3 })
    compare.assert_close(gpu:cpu(), cpu, TOL, "seeded imputation")
  end)
end)
