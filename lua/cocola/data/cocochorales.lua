-- cocola.data.cocochorales — CocoChorales: <root>/{train,valid,test}/<ensemble>_track<N>/stems_audio/
-- <k>_<instrument>.wav; ensembles string, brass, woodwind, random (opts.ensembles filters; the
-- reference's mixed training set keeps "random" only). Tags are the instrument names.
local fs = require "cocola.data.fs"
local track = require "cocola.data.track"

local SPLITS = { train = "train", valid = "valid", validation = "valid", test = "test" }

return function(root, split, opts)
  local dirname = SPLITS[split]
  if not dirname then error(string.format("cocochorales: split must be train, valid or test (got '%s')", tostring(split)), 2) end
  local dir = fs.join(root, dirname)
  if not fs.is_dir(dir) then error(string.format("cocochorales: no directory '%s'", dir), 2) end
  local keep
  if opts and opts.ensembles then
    keep = {}
    for _, e in ipairs(opts.ensembles) do keep[e] = true end
  end
  local tracks, skipped = {}, {}
  for _, name in ipairs(fs.dirs(dir)) do
    local ensemble = name:match("^(%a+)_track%d+$")
    if ensemble and (not keep or keep[ensemble]) then
      local stems = {}
      for _, file in ipairs(fs.files(fs.join(dir, name, "stems_audio"), { "wav" })) do
        local instrument = file:match("^%d+_(.-)%.wav$") or file:match("^(.-)%.wav$")
        stems[#stems + 1] = { name = file:match("^(.-)%.wav$"), tag = instrument, path = fs.join(dir, name, "stems_audio", file) }
      end
      local t, why = track.new("cocochorales", split, name, stems, { ensemble = ensemble })
      if t then tracks[#tracks + 1] = t else skipped[#skipped + 1] = name .. ": " .. why end
    end
  end
  return tracks, skipped
end
