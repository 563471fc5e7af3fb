-- cocola.metrics — the contrastive objective and its accuracy on a K x K similarity matrix whose
-- row i holds anchor i against every positive (the matching positive on the diagonal), and
-- optionally against M extra columns of hard negatives (a K x (K + M) matrix):
--   contrastive_loss(sim) = cross_entropy(sim, 0..K-1), mean over the rows (the paper's Eq. 3);
--   accuracy(sim) = fraction of rows whose argmax is their own index (Eq. 8).
-- metrics.fad is cocola.metrics.fad, the Fréchet audio distance between two sets of embeddings.
local cocola = require "cocola"

local metrics = {}

local function check(sim, what)
  if not cocola.is_tensor(sim) then error(what .. ": expected a K x K similarity tensor", 3) end
  if sim:dim() ~= 2 or sim:size(2) < sim:size(1) or sim:size(1) < 1 then
    error(what .. ": expected a K x K similarity matrix (or K x (K + M) with M negative columns), got " .. sim:shape_string(), 3)
  end
end

local function labels(sim)
  local y = cocola.arange(0, sim:size(1))
  if sim:device() ~= "cpu" then y = y:to(sim:device()) end
  return y
end

--- Mean cross-entropy of each row of sim against its own index; differentiable (a scalar tensor).
function metrics.contrastive_loss(sim)
  check(sim, "contrastive_loss")
  return cocola.cross_entropy(sim, labels(sim))
end

--- Fraction (a Lua number in [0, 1]) of rows whose largest entry is on the diagonal. Ties go to
-- the first maximum, as torch.max.
function metrics.accuracy(sim)
  check(sim, "accuracy")
  local hits = sim:detach():argmax(2):eq(labels(sim))
  return hits:sum():item() / sim:size(1)
end

metrics.fad = require "cocola.metrics.fad"

return metrics
