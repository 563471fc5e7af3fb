-- cocola.data.stems_folder — the plain layout <root>/<split>/<track>/<stem>.wav|flac|ogg (also what
-- recipes/prepare.lua writes). Tags are the stem file names without extension.
local fs = require "cocola.data.fs"
local track = require "cocola.data.track"

local AUDIO = { "wav", "flac", "ogg", "aiff", "mp3" }

return function(root, split)
  local tracks, skipped = {}, {}
  local dir = fs.join(root, split)
  if not fs.is_dir(dir) then error(string.format("stems folder: no split directory '%s'", dir), 2) end
  for _, name in ipairs(fs.dirs(dir)) do
    local stems = {}
    for _, file in ipairs(fs.files(fs.join(dir, name), AUDIO)) do
      local stem = file:match("^(.*)%.[^.]+$")
      if stem ~= "mix" and stem ~= "mixture" then
        stems[#stems + 1] = { name = stem, tag = stem, path = fs.join(dir, name, file) }
      end
    end
    local t, why = track.new("stems_folder", split, name, stems)
    if t then tracks[#tracks + 1] = t else skipped[#skipped + 1] = name .. ": " .. why end
  end
  return tracks, skipped
end
