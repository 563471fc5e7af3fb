-- cocola.data.musdb — MUSDB18-HQ: <root>/{train,test}/<track>/{bass,drums,other,vocals}.wav
-- (mixture.wav is never used, as in the reference). 44.1 kHz stereo; loaders down-mix and resample.
local fs = require "cocola.data.fs"
local track = require "cocola.data.track"

local STEMS = { "bass", "drums", "other", "vocals" }

return function(root, split)
  if split ~= "train" and split ~= "test" then
    error(string.format("musdb: split must be 'train' or 'test' (got '%s')", tostring(split)), 2)
  end
  local dir = fs.join(root, split)
  if not fs.is_dir(dir) then error(string.format("musdb: no directory '%s'", dir), 2) end
  local tracks, skipped = {}, {}
  for _, name in ipairs(fs.dirs(dir)) do
    local stems = {}
    for _, s in ipairs(STEMS) do
      local path = fs.join(dir, name, s .. ".wav")
      if fs.is_file(path) then stems[#stems + 1] = { name = s, tag = s, path = path } end
    end
    local t, why = track.new("musdb", split, name, stems)
    if t then tracks[#tracks + 1] = t else skipped[#skipped + 1] = name .. ": " .. why end
  end
  return tracks, skipped
end
