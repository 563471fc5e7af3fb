-- cocola.data.slakh — Slakh2100 (redux): <root>/{train,validation,test}/TrackNNNNN/stems/SNN.flac
-- with metadata.yaml (per stem: inst_class, program_num, is_drum, audio_rendered). Every rendered
-- stem is used; its tag is the instrument class. Also reads what recipes/make_midi_stems.lua writes.
local fs = require "cocola.data.fs"
local track = require "cocola.data.track"
local lyaml = require "lyaml"

local SPLITS = { train = "train", validation = "validation", valid = "validation", test = "test" }

return function(root, split)
  local dirname = SPLITS[split]
  if not dirname then error(string.format("slakh: split must be train, validation or test (got '%s')", tostring(split)), 2) end
  local dir = fs.join(root, dirname)
  if not fs.is_dir(dir) then error(string.format("slakh: no directory '%s'", dir), 2) end
  local tracks, skipped = {}, {}
  for _, name in ipairs(fs.dirs(dir)) do
    local tdir = fs.join(dir, name)
    local meta = {}
    local text = fs.read(fs.join(tdir, "metadata.yaml"))
    if text then
      local ok, parsed = pcall(lyaml.load, text)
      if ok and type(parsed) == "table" then meta = parsed.stems or {} end
    end
    local stems = {}
    for _, file in ipairs(fs.files(fs.join(tdir, "stems"), { "flac", "wav" })) do
      local id = file:match("^(S%d+)%.")
      local m = id and meta[id] or {}
      if id and m.audio_rendered ~= false then
        stems[#stems + 1] = {
          name = id, path = fs.join(tdir, "stems", file), tag = m.inst_class or id,
          program = m.program_num, is_drum = m.is_drum == true,
        }
      end
    end
    local t, why = track.new("slakh", split, name, stems)
    if t then tracks[#tracks + 1] = t else skipped[#skipped + 1] = name .. ": " .. why end
  end
  return tracks, skipped
end
