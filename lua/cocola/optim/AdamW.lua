-- cocola.optim.AdamW — Adam with decoupled weight decay (torch.optim.AdamW: default
-- weight_decay 1e-2, parameters shrink by lr * weight_decay before the Adam update).
local Adam = require "cocola.optim.Adam"

local AdamW = Adam:extend("AdamW", {
  lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 1e-2, amsgrad = false, decoupled = true,
})

return AdamW
