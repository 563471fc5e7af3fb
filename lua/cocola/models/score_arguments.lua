-- cocola.models.score_arguments — the one reading of a score call's arguments, shared by every
-- model (cocola.models.cocola, chroma_onset_cocola, cocola.baselines): the named form
-- score{cond = y, gen = x, mode = m} (cond: features of the conditioning audio, gen: features of the
-- generated accompaniment), or the positional form score(cond, gen[, mode]) in the same order.
-- CCS(y, x~) = h_y^T W h_x~ is not symmetric, so the names say which side is which.
local cocola = require "cocola"

local NAMES = { cond = true, gen = true, mode = true }

--- score_arguments(what, a, b, c) -> cond, gen, mode; unknown names and missing sides are errors
-- that list the valid names (level: the caller of the model's score method).
return function(what, a, b, c)
  if type(a) == "table" and not cocola.is_tensor(a) then
    if b ~= nil then
      error(what .. ": give either score{cond = ..., gen = ..., mode = ...} or score(cond, gen[, mode]), not both", 3)
    end
    for k in pairs(a) do
      if not NAMES[k] then
        error(string.format("%s: unknown argument '%s' (the names are cond, gen and mode)", what, tostring(k)), 3)
      end
    end
    if a.cond == nil or a.gen == nil then
      error(string.format("%s: expected cond = <features of the conditioning audio> and gen = <features of the generated accompaniment>; %s is missing",
        what, a.cond == nil and "cond" or "gen"), 3)
    end
    return a.cond, a.gen, a.mode
  end
  return a, b, c
end
