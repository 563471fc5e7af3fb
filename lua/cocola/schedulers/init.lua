-- cocola.schedulers — diffusion noise schedules and samplers: plain tables plus pure functions of
-- tensors, no model inside. Loaded on first use: schedulers.ddim (diffusers' DDIMScheduler, with the
-- DDPM training helpers add_noise / get_velocity / training_target).
local lazy = { ddim = "cocola.schedulers.ddim", DDIMScheduler = "cocola.schedulers.ddim" }

return setmetatable({}, {
  __index = function(t, key)
    local name = lazy[key]
    if name then
      local m = require(name)
      rawset(t, key, m)
      return m
    end
  end,
})
