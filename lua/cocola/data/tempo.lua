-- cocola.data.tempo — the beat of a track from its MIDI: for Slakh-layout tracks (<track>/stems/SNN.flac,
-- as recipes/make_midi_stems.lua writes them) the song's <track>/all_src.mid, else <track>/MIDI/S00.mid.
--   beat_seconds(track, offset, cache?) -> the length in seconds of a quarter note at `offset` seconds
--     (the tempo in force there; a file without tempo events is 120 bpm), or nil when the track has no
--     readable MIDI (SMPTE-timed files included). cache (a table) keeps each track's parsed MIDI.
local midi = require "cocola.data.midi"
local lfs = require "lfs"

local tempo = {}

-- the MIDI file of a Slakh-layout track, or nil
local function midi_file_of(track)
  local dir = track.stems[1] and track.stems[1].path:match("^(.*)/stems/[^/]+$")
  if not dir then return nil end
  for _, candidate in ipairs({ dir .. "/all_src.mid", dir .. "/MIDI/S00.mid" }) do
    if lfs.attributes(candidate, "mode") == "file" then return candidate end
  end
  return nil
end

-- {events (merged, sorted), division} of a track's MIDI, or false when it has none (or it is unreadable)
local function source(track, cache)
  if cache[track] ~= nil then return cache[track] end
  local src = false
  local path = midi_file_of(track)
  if path then
    local ok, song = pcall(midi.read, path)
    if ok and song.division < 0x8000 then src = { events = midi.merge(song), division = song.division } end
  end
  cache[track] = src
  return src
end

function tempo.beat_seconds(track, offset, cache)
  local src = source(track, cache or {})
  if not src then return nil end
  local tick = midi.tick_at(src.events, src.division, offset)
  local usec = 500000 -- microseconds per quarter until the first tempo event (the MIDI default)
  for _, ev in ipairs(src.events) do
    if tick and ev.tick > tick then break end
    if ev.kind == "meta" and ev.meta == 0x51 and #ev.data == 3 then usec = string.unpack(">I3", ev.data) end
  end
  if usec <= 0 then return nil end -- a tempo event of 0: no usable beat
  return usec / 1e6
end

return tempo
