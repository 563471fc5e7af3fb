-- optim_spec.lua — cocola.optim against PyTorch: 5-step trajectories of Adam, AdamW and SGD
-- (spec/fixtures/optim.safetensors, written by spec/fixtures/gen_optim.py with torch 1.13), exact
-- resumption from saved optimizer state, parameter groups and adjustable learning rates.
local cocola = require "cocola"
local optim = require "cocola.optim"
local nn = require "cocola.nn"

local FIXTURE = "spec/fixtures/optim.safetensors"

-- keep in sync with RUNS in spec/fixtures/gen_optim.py
local RUNS = {
  adam = function(ps) return optim.Adam(ps, { lr = 1e-2, weight_decay = 0.01 }) end,
  adamw = function(ps) return optim.AdamW(ps, { lr = 1e-2, betas = { 0.9, 0.99 }, eps = 1e-6, weight_decay = 0.1 }) end,
  sgd_nesterov = function(ps) return optim.SGD(ps, { lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 0.01 }) end,
  sgd_dampening = function(ps) return optim.SGD(ps, { lr = 0.05, momentum = 0.9, dampening = 0.1 }) end,
}
local RUN_NAMES = { "adam", "adamw", "sgd_nesterov", "sgd_dampening" }

local fx = cocola.load(FIXTURE)

local function maxdiff(a, b) return (a:double() - b:double()):abs():max():item() end

local function fresh_params()
  return fx["init.weight"]:clone():requires_grad(true), fx["init.bias"]:clone():requires_grad(true)
end

local function loss_of(w, b)
  return ((fx.x:matmul(w:t()) + b - fx.y) ^ 2):mean()
end

local function train_step(opt, w, b)
  opt:zero_grad()
  local loss = loss_of(w, b)
  loss:backward()
  opt:step()
  return loss:item()
end

describe("optim against torch 1.13", function()
  for _, name in ipairs(RUN_NAMES) do
    it(name .. " follows torch's trajectory for 5 steps (rtol 1e-5)", function()
      local w, b = fresh_params()
      local opt = RUNS[name]({ w, b })
      for k = 1, 5 do
        train_step(opt, w, b)
        for _, which in ipairs({ "weight", "bias" }) do
          local expected = fx[string.format("%s.step%d.%s", name, k, which)]
          local got = which == "weight" and w or b
          assert.is_true(got:allclose(expected, 1e-5, 1e-6),
            string.format("%s step %d %s differs by %g", name, k, which, maxdiff(got, expected)))
        end
      end
      -- and the run really moved the weights
      assert.is_true(maxdiff(w, fx["init.weight"]) > 1e-3)
    end)
  end
end)

describe("optim state", function()
  for _, name in ipairs(RUN_NAMES) do
    it(name .. ": saving the state after 3 steps and resuming gives the uninterrupted weights", function()
      local w1, b1 = fresh_params()
      local opt1 = RUNS[name]({ w1, b1 })
      for _ = 1, 5 do train_step(opt1, w1, b1) end

      local w2, b2 = fresh_params()
      local opt2 = RUNS[name]({ w2, b2 })
      for _ = 1, 3 do train_step(opt2, w2, b2) end
      local path = os.tmpname()
      opt2:save(path)
      local wsave, bsave = w2:detach():clone(), b2:detach():clone()
      -- keep training the original so the saved file must not alias live tensors
      train_step(opt2, w2, b2)

      local w3, b3 = wsave:requires_grad(true), bsave:requires_grad(true)
      local opt3 = RUNS[name]({ w3, b3 })
      opt3:load(path)
      os.remove(path)
      for _ = 4, 5 do train_step(opt3, w3, b3) end
      assert.equal(0, maxdiff(w1, w3))
      assert.equal(0, maxdiff(b1, b3))
    end)
  end

  it("state_dict holds step counts and cloned moments; load_state_dict restores them in memory", function()
    local w, b = fresh_params()
    local opt = optim.Adam({ w, b }, { lr = 1e-2 })
    for _ = 1, 2 do train_step(opt, w, b) end
    local sd = opt:state_dict()
    assert.equal(2, sd.state[1].step)
    assert.same({ 3, 5 }, sd.state[1].exp_avg.shape)
    assert.same({ 3 }, sd.state[2].exp_avg_sq.shape)
    assert.same({ 1, 2 }, sd.param_groups[1].params)
    assert.equal(1e-2, sd.param_groups[1].lr)
    local m_before = sd.state[1].exp_avg:clone()
    train_step(opt, w, b)
    assert.equal(0, maxdiff(sd.state[1].exp_avg, m_before)) -- a clone, untouched by later steps
    assert.equal(3, opt:state_dict().state[1].step)

    local w2, b2 = w:detach():clone():requires_grad(true), b:detach():clone():requires_grad(true)
    local opt2 = optim.Adam({ w2, b2 }, { lr = 5 })
    opt2:load_state_dict(opt:state_dict())
    assert.equal(1e-2, opt2.param_groups[1].lr)
    train_step(opt, w, b)
    train_step(opt2, w2, b2)
    assert.equal(0, maxdiff(w, w2))
  end)

  it("load_state_dict refuses a state for a different parameter layout", function()
    local w, b = fresh_params()
    local opt = optim.SGD({ w, b }, { lr = 0.1, momentum = 0.9 })
    train_step(opt, w, b)
    local only_w = fresh_params()
    local other = optim.SGD({ only_w }, { lr = 0.1, momentum = 0.9 })
    assert.has_error(function() other:load_state_dict(opt:state_dict()) end)
  end)
end)

describe("optim behaviour", function()
  it("zero_grad sets gradients to nil and step skips parameters without one", function()
    local w, b = fresh_params()
    local frozen = cocola.ones({ 2 }):requires_grad(true)
    local opt = optim.Adam({ w, b, frozen }, { lr = 0.1 })
    train_step(opt, w, b)
    assert.is_not_nil(w.grad)
    assert.is_nil(frozen.grad)
    assert.equal(0, maxdiff(frozen, cocola.ones({ 2 })))
    assert.is_nil(opt.state[frozen])
    assert.is_nil(opt:state_dict().state[3])
    opt:zero_grad()
    assert.is_nil(w.grad)
    assert.is_nil(b.grad)
  end)

  it("param_groups[i].lr can be changed between steps", function()
    local w, b = fresh_params()
    local opt = optim.SGD({ w, b }, { lr = 0.1 })
    opt.param_groups[1].lr = 0
    train_step(opt, w, b)
    assert.equal(0, maxdiff(w, fx["init.weight"]))
    opt.param_groups[1].lr = 0.05
    opt:zero_grad()
    loss_of(w, b):backward()
    local expected = w:detach() - w.grad * 0.05
    opt:step()
    assert.is_true(maxdiff(w, expected) < 1e-7)
    local adam = optim.Adam({ w, b }, { lr = 1e-3 })
    adam.param_groups[1].lr = 0
    local before = w:detach():clone()
    train_step(adam, w, b)
    assert.equal(0, maxdiff(w, before))
  end)

  it("parameter groups take their own settings and the rest from the defaults", function()
    local w, b = fresh_params()
    local opt = optim.SGD({ { params = { w } }, { params = { b }, lr = 0 } }, { lr = 0.1, momentum = 0.5 })
    assert.equal(0.1, opt.param_groups[1].lr)
    assert.equal(0, opt.param_groups[2].lr)
    assert.equal(0.5, opt.param_groups[2].momentum)
    train_step(opt, w, b)
    assert.equal(0, maxdiff(b, fx["init.bias"]))
    assert.is_true(maxdiff(w, fx["init.weight"]) > 0)
    assert.has_error(function() optim.SGD({ { params = { w } }, { params = { w } } }, { lr = 0.1 }) end)
  end)

  it("accepts named parameter lists and modules", function()
    local lin = nn.Linear(5, 3)
    local opt = optim.AdamW(lin:named_parameters(), { lr = 1e-2 })
    assert.same({ "weight", "bias" }, opt.param_groups[1].names)
    assert.equal(1e-2, opt.param_groups[1].weight_decay)
    local opt2 = optim.Adam(lin, { lr = 1e-2 })
    assert.is_true(rawequal(opt2.param_groups[1].params[1], lin.weight))
  end)

  it("validates settings like torch", function()
    local w = fresh_params()
    assert.has_error(function() optim.SGD({ w }, {}) end)                                    -- no lr
    assert.has_error(function() optim.SGD({ w }, { lr = 0.1, nesterov = true }) end)         -- no momentum
    assert.has_error(function() optim.SGD({ w }, { lr = 0.1, momentum = 0.9, nesterov = true, dampening = 0.1 }) end)
    assert.has_error(function() optim.Adam({ w }, { lr = -1 }) end)
    assert.has_error(function() optim.Adam({ w }, { betas = { 1.0, 0.999 } }) end)
    assert.has_error(function() optim.Adam({}, { lr = 1 }) end)
    assert.has_error(function() optim.Adam({ w }, { amsgrad = true }) end)
  end)

  it("SGD maximize ascends", function()
    local w, b = fresh_params()
    local opt = optim.SGD({ w, b }, { lr = 0.01, maximize = true })
    local l1 = train_step(opt, w, b)
    local l2 = loss_of(w, b):item()
    assert.is_true(l2 > l1)
  end)
end)
