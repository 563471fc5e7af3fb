-- cocola.data.rng — a small deterministic generator (splitmix64 on Lua integers) for data sampling:
-- the same seed gives the same draws on every machine, independent of math.random and of the
-- engine's tensor generator. rng.new(seed, ...) mixes several integers into one stream.
local Rng = {}
Rng.__index = Rng

local function mix(z)
  z = (z ~ (z >> 30)) * -4658895280553007687 -- 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * -7723592293110705685 -- 0x94D049BB133111EB
  return z ~ (z >> 31)
end

function Rng.new(...)
  local state = 0x2545F4914F6CDD1D
  for _, v in ipairs({ ... }) do state = mix(state + math.tointeger(v) * -7046029254386353131) end
  return setmetatable({ state = state }, Rng)
end

function Rng:next()
  self.state = self.state + -7046029254386353131 -- 0x9E3779B97F4A7C15
  return mix(self.state)
end

--- uniform integer in [lo, hi]
function Rng:int(lo, hi)
  if hi < lo then error(string.format("rng:int: empty range [%d, %d]", lo, hi), 2) end
  return lo + ((self:next() >> 1) % (hi - lo + 1))
end

--- uniform float in [0, 1)
function Rng:float() return ((self:next() >> 11) * (1.0 / 9007199254740992.0)) end

--- Fisher-Yates shuffle of a copy
function Rng:shuffled(list)
  local out = table.move(list, 1, #list, 1, {})
  for i = #out, 2, -1 do
    local j = self:int(1, i)
    out[i], out[j] = out[j], out[i]
  end
  return out
end

--- k distinct elements of list, in random order
function Rng:sample(list, k)
  local s = self:shuffled(list)
  local out = {}
  for i = 1, k do out[i] = s[i] end
  return out
end

return Rng
