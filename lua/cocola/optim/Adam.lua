-- cocola.optim.Adam — Adam (torch.optim.Adam semantics, L2 weight decay added to the gradient);
-- with decoupled = true it is AdamW. Each update is the fused C step cocola.adam_step.
-- Per-parameter state: step (integer), exp_avg, exp_avg_sq.
local core = require "cocola.core"
local Optimizer = require "cocola.optim.Optimizer"

local Adam = Optimizer:extend("Adam", {
  lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0, amsgrad = false, decoupled = false,
})

function Adam:validate(o)
  if type(o.lr) ~= "number" or o.lr < 0 then error("Invalid learning rate: " .. tostring(o.lr), 4) end
  if type(o.eps) ~= "number" or o.eps < 0 then error("Invalid epsilon value: " .. tostring(o.eps), 4) end
  local b = o.betas
  if type(b) ~= "table" or type(b[1]) ~= "number" or b[1] < 0 or b[1] >= 1 then
    error("Invalid beta parameter at index 1: " .. tostring(type(b) == "table" and b[1] or b), 4)
  end
  if type(b[2]) ~= "number" or b[2] < 0 or b[2] >= 1 then error("Invalid beta parameter at index 2: " .. tostring(b[2]), 4) end
  if type(o.weight_decay) ~= "number" or o.weight_decay < 0 then
    error("Invalid weight_decay value: " .. tostring(o.weight_decay), 4)
  end
  if o.amsgrad then error(self.__name .. ": amsgrad is not supported", 4) end
end

local function zeros_like(p) return p:detach():clone():zero_() end

function Adam:update(p, grad, st, g)
  if st.step == nil then
    st.step = 0
    st.exp_avg = zeros_like(p)
    st.exp_avg_sq = zeros_like(p)
  end
  st.step = st.step + 1
  core.adam_step(p, grad, st.exp_avg, st.exp_avg_sq, g.lr, g.betas[1], g.betas[2], g.eps, g.weight_decay, st.step,
    g.decoupled and true or false)
end

return Adam
