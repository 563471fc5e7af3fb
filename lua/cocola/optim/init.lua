-- cocola.optim — optimisers (Adam, AdamW, SGD) and their base class Optimizer.
local optim = {}

optim.Optimizer = require "cocola.optim.Optimizer"
optim.Adam = require "cocola.optim.Adam"
optim.AdamW = require "cocola.optim.AdamW"
optim.SGD = require "cocola.optim.SGD"

return optim
