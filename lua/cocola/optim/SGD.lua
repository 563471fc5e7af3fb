-- cocola.optim.SGD — stochastic gradient descent with momentum, dampening, Nesterov momentum,
-- weight decay and maximize, exactly as torch.optim.SGD; written with tensor ops (in place
-- through copy_, gradients off). Per-parameter state: momentum_buffer (when momentum ~= 0).
local Optimizer = require "cocola.optim.Optimizer"

local SGD = Optimizer:extend("SGD", {
  lr = nil, momentum = 0, dampening = 0, weight_decay = 0, nesterov = false, maximize = false,
})

function SGD:validate(o)
  if o.lr ~= nil and (type(o.lr) ~= "number" or o.lr < 0) then error("Invalid learning rate: " .. tostring(o.lr), 4) end
  if type(o.momentum) ~= "number" or o.momentum < 0 then error("Invalid momentum value: " .. tostring(o.momentum), 4) end
  if type(o.weight_decay) ~= "number" or o.weight_decay < 0 then
    error("Invalid weight_decay value: " .. tostring(o.weight_decay), 4)
  end
  if o.nesterov and (o.momentum <= 0 or o.dampening ~= 0) then
    error("Nesterov momentum requires a momentum and zero dampening", 4)
  end
end

function SGD:update(p, grad, st, g)
  local d_p = g.maximize and -grad or grad
  if g.weight_decay ~= 0 then d_p = d_p + p:detach() * g.weight_decay end
  if g.momentum ~= 0 then
    local buf = st.momentum_buffer
    if buf == nil then
      buf = d_p:detach():clone()
      st.momentum_buffer = buf
    else
      buf:copy_(buf * g.momentum + d_p * (1 - g.dampening))
    end
    if g.nesterov then
      d_p = d_p + buf * g.momentum
    else
      d_p = buf
    end
  end
  p:copy_(p:detach() - d_p * g.lr)
end

return SGD
