-- cocola.optim — optimisers (Adam, AdamW, SGD), their base class Optimizer and clip_grad_norm.
local optim = {}

optim.Optimizer = require "cocola.optim.Optimizer"
optim.Adam = require "cocola.optim.Adam"
optim.AdamW = require "cocola.optim.AdamW"
optim.SGD = require "cocola.optim.SGD"
optim.clip_grad_norm = require("cocola.optim.clip").clip_grad_norm

return optim
