-- cocola.data.track — a track of a stem dataset: {dataset, split, name, stems = {{name, path, tag,
-- program, is_drum}}, sample_rate, frames, duration}. Lengths are read from the file headers only
-- (cocola.audio.info); stems of unequal length count to the shortest, as the reference cuts them.
local audio = require "cocola.audio"

local track = {}

--- makes a track from stems {{name=, path=, tag=, ...}}; nil and a reason when it cannot be used
function track.new(dataset, split, name, stems, extra)
  if #stems == 0 then return nil, "no stems" end
  local frames, rate = math.huge, nil
  for _, stem in ipairs(stems) do
    local ok, info = pcall(audio.info, stem.path)
    if not ok then return nil, tostring(info) end
    stem.frames, stem.sample_rate = info.frames, info.rate
    -- compare in seconds: stems may differ in rate before resampling
    frames = math.min(frames, info.frames / info.rate)
    rate = rate or info.rate
  end
  local t = {
    dataset = dataset, split = split, name = name, stems = stems,
    duration = frames, sample_rate = rate,
  }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

return track
