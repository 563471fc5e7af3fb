-- ddim_scheduler_spec.lua — cocola.schedulers.ddim against diffusers 0.27.2's DDIMScheduler
-- (spec/fixtures/audioldm2/ddim.safetensors, scheduler/scheduler_config.json = the AudioLDM 2 config):
-- betas and alphas_cumprod (within 1e-7), set_timesteps(10/150/200/3) exactly, the stored single steps
-- (eta 0, eta 0.5 with the stored variance noise, prev < 0, v_prediction), add_noise, get_velocity, the
-- 3-step loop's arithmetic from its stored eps (rel. error < 1e-4), the other spacings and prediction
-- types by their formulas, and the config errors.
local cocola = require "cocola"
local compare = require "helpers.compare"
local files = require "helpers.files"
local ddim = require "cocola.schedulers.ddim"

local DIR = "spec/fixtures/audioldm2/"
local fx = cocola.load(DIR .. "ddim.safetensors")

local AUDIOLDM2 = { num_train_timesteps = 1000, beta_schedule = "scaled_linear", beta_start = 0.0015,
  beta_end = 0.0195, clip_sample = false, set_alpha_to_one = false, steps_offset = 1, prediction_type = "epsilon",
  timestep_spacing = "leading" }

local function with(over)
  local t = {}
  for k, v in pairs(AUDIOLDM2) do t[k] = v end
  for k, v in pairs(over) do t[k] = v end
  return t
end

local function ints(t)
  local out = {}
  for i, v in ipairs(t:totable()) do out[i] = math.tointeger(v) end
  return out
end

local function max_abs(a, b) return (a:double() - b:double()):abs():max():item() end

local function error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return tostring(err)
end

describe("DDIMScheduler", function()
  local s = ddim.from_pretrained(DIR .. "scheduler")

  it("reads scheduler_config.json", function()
    assert.are.equal(1000, s.config.num_train_timesteps)
    assert.are.equal("scaled_linear", s.config.beta_schedule)
    assert.are.equal("leading", s.config.timestep_spacing)
    assert.are.equal(1, s.config.steps_offset)
    assert.are.equal(1.0, s.init_noise_sigma)
  end)

  it("computes betas and alphas_cumprod as diffusers (float32) within 1e-7", function()
    assert.are.same({ 1000 }, s.betas.shape)
    assert.is_true(max_abs(s.betas, fx.betas) <= 1e-8)
    assert.is_true(max_abs(s.alphas_cumprod, fx.alphas_cumprod) <= 1e-7)
    assert.are.equal(fx.final_alpha_cumprod:item(), s.final_alpha_cumprod)
    assert.are.equal(s.alphas_cumprod_list[1], s.final_alpha_cumprod)
  end)

  it("sets the leading timesteps of 10, 150, 200 and 3 steps exactly", function()
    for _, n in ipairs({ 10, 150, 200 }) do
      assert.are.same(ints(fx["timesteps." .. n]), ddim.set_timesteps(s, n))
      assert.are.equal(n, s.num_inference_steps)
    end
    assert.are.same(ints(fx["loop.timesteps"]), s:set_timesteps(3))
    assert.are.same({ 667, 334, 1 }, s.timesteps)
  end)

  for _, case in ipairs({ "eps_eta0_n200_t501", "eps_eta0_n200_t1", "eps_eta05_n200_t501", "eps_eta05_n10_t901",
    "v_eta0_n200_t501" }) do
    it("matches the stored step " .. case, function()
      local meta = fx["step." .. case .. ".meta"]:totable()
      local n, t, eta = math.tointeger(meta[1]), math.tointeger(meta[2]), meta[3]
      local sc = meta[4] == 1 and ddim.from_config(with({ prediction_type = "v_prediction" })) or s
      ddim.set_timesteps(sc, n)
      local out = ddim.step(sc, fx["step.model_output"], t, fx["step.sample"],
        { eta = eta, variance_noise = fx["step.variance_noise"] })
      compare.assert_close(out.prev_sample, fx["step." .. case .. ".prev_sample"], 1e-4, case .. " prev_sample")
      compare.assert_close(out.pred_original_sample, fx["step." .. case .. ".pred_original_sample"], 1e-4,
        case .. " pred_original_sample")
    end)
  end

  it("adds noise and computes the velocity per batch row", function()
    local x0, noise, t = fx["noise.x0"], fx["noise.noise"], fx["noise.timesteps"]
    compare.assert_close(ddim.add_noise(s, x0, noise, t), fx["noise.add_noise"], 1e-6, "add_noise")
    compare.assert_close(s:get_velocity(x0, noise, { 999, 250 }), fx["noise.get_velocity"], 1e-6, "get_velocity")
  end)

  it("reproduces the stored 3-step loop from its eps", function()
    ddim.set_timesteps(s, 3)
    local x = fx["loop.latent.0"]
    for i, t in ipairs(s.timesteps) do
      local out = ddim.step(s, fx["loop.eps." .. (i - 1)], t, x)
      compare.assert_close(out.pred_original_sample, fx["loop.pred_original_sample." .. (i - 1)], 1e-4,
        "loop x0 " .. i)
      compare.assert_close(out.prev_sample, fx["loop.latent." .. i], 1e-4, "loop latent " .. i)
      x = out.prev_sample
    end
    compare.assert_close(x, fx["loop.final"], 1e-4, "loop final")
  end)

  it("spaces trailing and linspace timesteps as diffusers (values from numpy 1.26)", function()
    local tr = ddim.from_config(with({ timestep_spacing = "trailing" }))
    assert.are.same({ 999, 899, 799, 699, 599, 499, 399, 299, 199, 99 }, tr:set_timesteps(10))
    assert.are.same({ 999, 666, 332 }, tr:set_timesteps(3)) -- round(arange(1000, 0, -333.33)) - 1 (numpy)
    assert.are.same({ 999, 856, 713, 570, 428, 285, 142 }, tr:set_timesteps(7))
    local ls = ddim.from_config(with({ timestep_spacing = "linspace" }))
    assert.are.same({ 999, 888, 777, 666, 555, 444, 333, 222, 111, 0 }, ls:set_timesteps(10))
    assert.are.same({ 999, 500, 0 }, ls:set_timesteps(3)) -- 499.5 rounds half to even
    assert.are.same({ 999, 832, 666, 500, 333, 166, 0 }, ls:set_timesteps(7))
  end)

  it("uses linear betas and set_alpha_to_one", function()
    local lin = ddim.from_config({ beta_schedule = "linear", beta_start = 0.0001, beta_end = 0.02 })
    local b = lin.betas:double():totable()
    assert.is_true(math.abs(b[1] - 0.0001) < 1e-9 and math.abs(b[1000] - 0.02) < 1e-9)
    assert.are.equal(1.0, lin.final_alpha_cumprod)
    local tb = {}
    for i = 1, 10 do tb[i] = 0.01 * i end
    local tr = ddim.from_config({ num_train_timesteps = 10, trained_betas = tb })
    assert.is_true(math.abs(tr.betas:double():totable()[10] - 0.1) < 1e-8)
  end)

  it("steps with sample prediction, clipping and eta from a seeded generator", function()
    local sc = ddim.from_config(with({ prediction_type = "sample", clip_sample = true, clip_sample_range = 0.5 }))
    sc:set_timesteps(10)
    local x, m = fx["step.sample"], fx["step.model_output"]
    local out = sc:step(m, 901, x)
    compare.assert_close(out.pred_original_sample, m:clamp(-0.5, 0.5), 1e-7, "clipped x0")
    local a_t, a_prev = sc.alphas_cumprod_list[902], sc.alphas_cumprod_list[802]
    local x0 = m:clamp(-0.5, 0.5)
    local eps = (x - m * math.sqrt(a_t)) / math.sqrt(1 - a_t)
    compare.assert_close(out.prev_sample, x0 * math.sqrt(a_prev) + eps * math.sqrt(1 - a_prev), 1e-5, "sample step")
    -- use_clipped_model_output re-derives eps from the clipped x0
    local out2 = sc:step(m, 901, x, { use_clipped_model_output = true })
    local eps2 = (x - x0 * math.sqrt(a_t)) / math.sqrt(1 - a_t)
    compare.assert_close(out2.prev_sample, x0 * math.sqrt(a_prev) + eps2 * math.sqrt(1 - a_prev), 1e-5, "clipped eps")
    -- eta > 0: the same generator seed gives the same step, and the global generator is left alone
    cocola.manual_seed(7)
    local before = cocola.randn({ 4 })
    cocola.manual_seed(7)
    local g1, g2 = { seed = 3 }, { seed = 3 }
    local y1 = s:step(m, 901, x, { eta = 1, generator = g1 })
    local y2 = s:step(m, 901, x, { eta = 1, generator = g2 })
    assert.is_true(y1.prev_sample:equal(y2.prev_sample))
    assert.is_true(g1.offset > 0)
    assert.is_true(cocola.randn({ 4 }):equal(before))
    local y3 = s:step(m, 901, x, { eta = 1, generator = g1 })
    assert.is_false(y3.prev_sample:equal(y1.prev_sample))
  end)

  it("gives the DDPM training targets and uniform timesteps", function()
    local x0, noise = fx["noise.x0"], fx["noise.noise"]
    assert.are.equal(noise, s:training_target(x0, noise, { 1, 2 }))
    local v = ddim.from_config(with({ prediction_type = "v_prediction" }))
    compare.assert_close(v:training_target(x0, noise, fx["noise.timesteps"]), fx["noise.get_velocity"], 1e-6, "v target")
    assert.are.equal(x0, ddim.from_config(with({ prediction_type = "sample" })):training_target(x0, noise, 5))
    local t = s:sample_timesteps(4096)
    assert.are.equal("int64", t:dtype())
    assert.is_true(t:min():item() >= 0 and t:max():item() <= 999 and t:max():item() > 900)
  end)

  describe("errors", function()
    it("rejects unsupported options, naming the key", function()
      assert.matches("config key 'thresholding' is true", error_of(ddim.from_config, with({ thresholding = true })), 1, true)
      assert.matches("config key 'beta_schedule' is 'squaredcos_cap_v2'; supported: linear, scaled_linear",
        error_of(ddim.from_config, with({ beta_schedule = "squaredcos_cap_v2" })), 1, true)
      assert.matches("config key 'prediction_type' is 'eps'",
        error_of(ddim.from_config, with({ prediction_type = "eps" })), 1, true)
      assert.matches("config key 'timestep_spacing' is 'karras'",
        error_of(ddim.from_config, with({ timestep_spacing = "karras" })), 1, true)
      assert.matches("config key 'rescale_betas_zero_snr' is true",
        error_of(ddim.from_config, with({ rescale_betas_zero_snr = true })), 1, true)
      assert.matches("unknown config key(s) in the config: use_karras_sigmas",
        error_of(ddim.from_config, with({ use_karras_sigmas = true })), 1, true)
    end)

    it("names the file of a bad config and a missing file", function()
      local dir = files.tmpdir()
      assert.matches("missing file '" .. dir .. "/scheduler_config.json'", error_of(ddim.from_pretrained, dir), 1, true)
      local f = assert(io.open(dir .. "/scheduler_config.json", "wb"))
      f:write('{"_class_name": "DDIMScheduler", "thresholding": true}')
      f:close()
      assert.matches("config key 'thresholding' in " .. dir .. "/scheduler_config.json is true",
        error_of(ddim.from_pretrained, dir), 1, true)
    end)

    it("checks steps and timesteps", function()
      local sc = ddim.from_config(AUDIOLDM2)
      local m = fx["step.model_output"]
      assert.matches("call set_timesteps first", error_of(sc.step, sc, m, 1, m), 1, true)
      assert.matches("cannot be larger than num_train_timesteps", error_of(sc.set_timesteps, sc, 1001), 1, true)
      assert.matches("positive integer", error_of(sc.set_timesteps, sc, 0), 1, true)
      sc:set_timesteps(10)
      assert.matches("timestep 1000 is outside [0, 1000)", error_of(sc.step, sc, m, 1000, m), 1, true)
      assert.matches("cannot pass both generator and variance_noise",
        error_of(sc.step, sc, m, 901, m, { eta = 1, variance_noise = m, generator = { seed = 1 } }), 1, true)
      assert.matches("2 timesteps for a batch of 1", error_of(sc.add_noise, sc, m, m, { 1, 2 }), 1, true)
    end)
  end)
end)

describe("DDIM scheduler on the GPU #cuda", function()
  if not cocola.cuda.is_available() then
    pending("no CUDA device")
    return
  end
  it("add_noise and get_velocity keep CUDA tensors on the GPU, as on the CPU", function()
    local s = ddim.from_config(AUDIOLDM2)
    local x0, noise = cocola.randn({ 3, 2, 4, 4 }), cocola.randn({ 3, 2, 4, 4 })
    local t = { 1, 500, 999 }
    for _, fn in ipairs({ "add_noise", "get_velocity" }) do
      local gpu = ddim[fn](s, x0:cuda(), noise:cuda(), t)
      assert.equal("cuda", gpu:device())
      compare.assert_close(gpu:cpu(), ddim[fn](s, x0, noise, t), 1e-6, fn)
    end
  end)
end)
