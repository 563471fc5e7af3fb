-- spec/helpers/models.lua — small models the specs share: a random HPSS (or mel) COCOLA model whose
-- BatchNorm statistics are re-estimated from one batch of noise at four levels, so that its
-- eval-mode embeddings depend on the input (the initial statistics make them all alike).
local cocola = require "cocola"

local M = {}

--- calibrated(input = "hpss", seed = 7) -> an eval-mode cocola.models.cocola
function M.calibrated(input, seed)
  cocola.manual_seed(seed or 7)
  local m = cocola.models.cocola { input = input or "hpss" }
  local calib = cocola.randn({ 4, 80000 }) * cocola.tensor({ { 0.3 }, { 0.1 }, { 0.03 }, { 0.01 } })
  return m:recalibrate_batchnorm(m:features(calib))
end

return M
