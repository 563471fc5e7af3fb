-- cocola.baselines — non-learned coherence baselines usable wherever a COCOLA model is (scoring,
-- embedding, evaluation): objects with features(waves), embed(features, mode), similarity(a, b),
-- score(y, x, mode), eval(), train(), parameters() and the fields input, embedding_mode, training.
--
--   local baselines = require "cocola.baselines"
--   baselines.is_baseline("chroma-onset")      -- true
--   local model = baselines.load("chroma-onset")
--   local r = require("cocola.scoring").score_files(model, "cond.wav", "gen.wav")
--
-- Baselines: "chroma-onset" (also "chroma_onset"): cocola.baselines.chroma_onset, half the cosine of
-- frame-averaged chroma plus half the Pearson correlation of onset-strength envelopes.
local baselines = {}

-- canonical name -> module; aliases -> canonical name
local MODULES = { ["chroma-onset"] = "cocola.baselines.chroma_onset" }
local ALIASES = { chroma_onset = "chroma-onset" }

--- baselines.names() -> the sorted list of canonical baseline names.
function baselines.names()
  local out = {}
  for name in pairs(MODULES) do out[#out + 1] = name end
  table.sort(out)
  return out
end

--- baselines.canonical(name) -> the canonical name of a baseline, or nil.
function baselines.canonical(name)
  if type(name) ~= "string" then return nil end
  if MODULES[name] then return name end
  return ALIASES[name]
end

--- baselines.is_baseline(name) -> whether name names a baseline.
function baselines.is_baseline(name) return baselines.canonical(name) ~= nil end

--- baselines.load(name) -> a new baseline object; an unknown name is an error listing the known ones.
function baselines.load(name)
  local canonical = baselines.canonical(name)
  if not canonical then
    error(string.format("unknown baseline '%s'; known baselines: %s", tostring(name),
      table.concat(baselines.names(), ", ")), 2)
  end
  return require(MODULES[canonical]).new()
end

-- submodules load on first use: baselines.chroma_onset
return setmetatable(baselines, {
  __index = function(t, key)
    local canonical = baselines.canonical(key)
    if canonical and key == MODULES[canonical]:match("[^.]+$") then
      local m = require(MODULES[canonical])
      rawset(t, key, m)
      return m
    end
  end,
})
