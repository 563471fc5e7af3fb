-- cocola.data.midi — Standard MIDI File (SMF) reading, splitting into parts and writing, in pure Lua.
--
--  * parse(bytes) / read(path) -> song {format, ntracks, division, tracks = {{events}}}; an event is
--    {tick (absolute), kind, channel (1-16), a, b, meta, data, track, seq}; kind is one of note_on,
--    note_off, poly_aftertouch, control, program, channel_pressure, pitch_bend (b unused, a = 0..16383),
--    meta (meta = type byte, data = payload string) or sysex (data). A note-on with velocity 0 is read
--    as note_off. Running status, sysex (F0/F7) and format 0, 1 (and 2, merged as if 1) are handled;
--    SMPTE divisions are kept as read (parts are written with the same division).
--  * merge(song) -> one list of events sorted by tick, stable (track order, then file order).
--  * split(song) -> parts, each {channel, program, is_drum, events, notes}: melodic note events are
--    grouped by (channel, program in force at the note-on), so a mid-song program change starts a new
--    part; channel 10 is one drum part whatever its programs (kit changes and bank selects kept in place).
--    Every part gets the tempo / time-signature / key-signature meta events and the channel's
--    controllers, pitch bend and pressure; a melodic part gets one program change at tick 0 and no bank
--    selects (General MIDI banks only). Note-offs follow their note-on's part. Sysex and text metas
--    are dropped. All parts end at the same tick (the song's last event + `tail_beats`, default 2).
--  * write(events, division) -> bytes of an SMF format-0 file (events with absolute ticks, any order
--    of ticks: sorted stably; an end-of-track meta is added at `end_tick` or the last event).
--  * seconds(song_or_events, division, tick) -> time in seconds of `tick` under the tempo map;
--    tick_at(events, division, seconds) -> the first tick at or after a time; split(song, {max_seconds})
--    drops events from that time on;
--    duration(song) -> seconds of the last event.
--  * GM helpers: family(program) -> "Piano" .. "Sound Effects" (program 0-127), DRUM_CHANNEL = 10.
local midi = {}

midi.DRUM_CHANNEL = 10

midi.FAMILIES = {
  "Piano", "Chromatic Percussion", "Organ", "Guitar", "Bass", "Strings", "Ensemble", "Brass",
  "Reed", "Pipe", "Synth Lead", "Synth Pad", "Synth Effects", "Ethnic", "Percussive", "Sound Effects",
}

--- family(program 0-127) -> GM instrument family name.
function midi.family(program)
  assert(program >= 0 and program <= 127, "midi.family: program must be 0-127")
  return midi.FAMILIES[program // 8 + 1]
end

local KIND = { [0x8] = "note_off", [0x9] = "note_on", [0xA] = "poly_aftertouch", [0xB] = "control",
               [0xC] = "program", [0xD] = "channel_pressure", [0xE] = "pitch_bend" }
local STATUS = {}
for k, v in pairs(KIND) do STATUS[v] = k end

local META_TEMPO, META_TIMESIG, META_KEYSIG, META_EOT = 0x51, 0x58, 0x59, 0x2F

local function fail(msg, name) error(string.format("midi: %s%s", name and (name .. ": ") or "", msg), 0) end

-- reads a variable-length quantity at byte position i (1-based); returns value, next position
local function vlq(s, i, lim, name)
  local v = 0
  for _ = 1, 4 do
    if i > lim then fail("truncated variable-length number", name) end
    local c = s:byte(i)
    i = i + 1
    v = v * 128 + (c & 0x7F)
    if c < 0x80 then return v, i end
  end
  fail("variable-length number longer than 4 bytes", name)
end

local function parse_track(s, i, lim, tno, name, seq)
  local events, tick, running = {}, 0, nil
  while i <= lim do
    local delta
    delta, i = vlq(s, i, lim, name)
    tick = tick + delta
    if i > lim then fail("truncated event in track " .. tno, name) end
    local st = s:byte(i)
    local ev = { tick = tick, track = tno }
    if st == 0xFF then
      if i + 1 > lim then fail("truncated meta event", name) end
      local mt = s:byte(i + 1)
      local len
      len, i = vlq(s, i + 2, lim, name)
      if i + len - 1 > lim then fail("meta event past the end of its track", name) end
      ev.kind, ev.meta, ev.data = "meta", mt, s:sub(i, i + len - 1)
      i = i + len
      -- running status survives metas and sysex (lenient: some writers rely on it)
      if mt == META_EOT then
        seq = seq + 1
        ev.seq = seq
        events[#events + 1] = ev
        break
      end
    elseif st == 0xF0 or st == 0xF7 then
      local len
      len, i = vlq(s, i + 1, lim, name)
      if i + len - 1 > lim then fail("sysex past the end of its track", name) end
      ev.kind, ev.data, ev.sysex_status = "sysex", s:sub(i, i + len - 1), st
      i = i + len
      -- running status survives metas and sysex (lenient: some writers rely on it)
    else
      if st >= 0x80 then
        if st >= 0xF0 then fail(string.format("unexpected status byte 0x%02X", st), name) end
        running = st
        i = i + 1
      elseif not running then
        fail("data byte without a running status", name)
      end
      local hi, ch = running >> 4, (running & 0x0F) + 1
      local n = (hi == 0xC or hi == 0xD) and 1 or 2
      if i + n - 1 > lim then fail("truncated channel event", name) end
      local a, b = s:byte(i), n == 2 and s:byte(i + 1) or nil
      i = i + n
      ev.kind, ev.channel, ev.a, ev.b = KIND[hi], ch, a, b
      if hi == 0x9 and b == 0 then ev.kind = "note_off" end
      if hi == 0xE then ev.a, ev.b = a + 128 * b, nil end
    end
    seq = seq + 1
    ev.seq = seq
    events[#events + 1] = ev
  end
  return events, seq
end

--- parse(bytes, name?) -> song. Errors name the file (name) and the problem.
function midi.parse(s, name)
  local i, n = 1, #s
  -- RIFF-wrapped MIDI (RMID): skip to the MThd chunk
  if s:sub(1, 4) == "RIFF" then
    local p = s:find("MThd", 1, true)
    if not p then fail("RIFF file without an MThd chunk", name) end
    i = p
  end
  if s:sub(i, i + 3) ~= "MThd" then fail("not a Standard MIDI File (no MThd header)", name) end
  local hlen = string.unpack(">I4", s, i + 4)
  if hlen < 6 or i + 7 + hlen > n then fail("truncated header", name) end
  local format, ntracks, division = string.unpack(">I2I2I2", s, i + 8)
  if format > 2 then fail("unknown SMF format " .. format, name) end
  if division == 0 then fail("division 0", name) end
  local song = { format = format, ntracks = ntracks, division = division, tracks = {} }
  i = i + 8 + hlen
  local seq, tno = 0, 0
  while i + 7 <= n and tno < ntracks do
    local id, len = s:sub(i, i + 3), string.unpack(">I4", s, i + 4)
    local first, lim = i + 8, math.min(i + 7 + len, n) -- tolerate a last chunk cut short
    if id == "MTrk" then
      tno = tno + 1
      local events
      events, seq = parse_track(s, first, lim, tno, name, seq)
      song.tracks[tno] = events
    end
    i = i + 8 + len
  end
  if tno == 0 then fail("no MTrk chunk", name) end
  song.ntracks = tno
  return song
end

--- read(path) -> song
function midi.read(path)
  local f, err = io.open(path, "rb")
  if not f then fail(err) end
  local s = f:read("a")
  f:close()
  return midi.parse(s, path)
end

local function by_tick(x, y)
  if x.tick ~= y.tick then return x.tick < y.tick end
  return x.seq < y.seq
end

--- merge(song) -> all events in one list, sorted by (tick, track order, file order).
function midi.merge(song)
  local all = {}
  for _, tr in ipairs(song.tracks) do
    for _, ev in ipairs(tr) do all[#all + 1] = ev end
  end
  table.sort(all, by_tick) -- seq grows with the track number, so ties keep track then file order
  return all
end

--- tempo_map(events sorted by tick) -> list of {tick, usec_per_quarter}
local function tempo_map(events)
  local map = { { tick = 0, tempo = 500000 } }
  for _, ev in ipairs(events) do
    if ev.kind == "meta" and ev.meta == META_TEMPO and #ev.data == 3 then
      local t = string.unpack(">I3", ev.data)
      if ev.tick == map[#map].tick then map[#map].tempo = t else map[#map + 1] = { tick = ev.tick, tempo = t } end
    end
  end
  return map
end

--- seconds(song or sorted event list, division?, tick) -> seconds at `tick`.
function midi.seconds(x, division, tick)
  local events = x
  if x.tracks then events, division = midi.merge(x), x.division end
  if division >= 0x8000 then -- SMPTE: -frames per second (high byte, signed), ticks per frame
    local fps = 256 - (division >> 8)
    if fps == 29 then fps = 29.97 end
    return tick / (fps * (division & 0xFF))
  end
  local map, secs = tempo_map(events), 0
  for k, seg in ipairs(map) do
    local nxt = map[k + 1]
    local stop = (nxt and nxt.tick < tick) and nxt.tick or tick
    if stop > seg.tick then secs = secs + (stop - seg.tick) * seg.tempo / 1e6 / division end
    if not nxt or nxt.tick >= tick then break end
  end
  return secs
end

--- tick_at(sorted events, division, seconds) -> the first tick at or after `seconds` (tempo map).
function midi.tick_at(events, division, secs)
  if division >= 0x8000 then
    local fps = 256 - (division >> 8)
    if fps == 29 then fps = 29.97 end
    return math.ceil(secs * fps * (division & 0xFF))
  end
  local map, t = tempo_map(events), 0
  for k, seg in ipairs(map) do
    local nxt = map[k + 1]
    local per_tick = seg.tempo / 1e6 / division
    local span = nxt and (nxt.tick - seg.tick) * per_tick or math.huge
    if t + span >= secs then return seg.tick + math.ceil((secs - t) / per_tick - 1e-9) end
    t = t + span
  end
end

--- duration(song) -> seconds of the last event
function midi.duration(song)
  local all = midi.merge(song)
  return midi.seconds(all, song.division, #all > 0 and all[#all].tick or 0)
end

local SHARED_META = { [META_TEMPO] = true, [META_TIMESIG] = true, [META_KEYSIG] = true }
local function copy(ev, t)
  local c = {}
  for k, v in pairs(ev) do c[k] = v end
  if t then for k, v in pairs(t) do c[k] = v end end
  return c
end

--- split(song, {tail_beats = 2, max_seconds = none}) -> parts sorted by (channel, first note), each
-- {channel, program, is_drum, events (absolute ticks), notes (note-on count), end_tick}.
-- max_seconds drops the events from that time on and ends every part there.
function midi.split(song, o)
  local tail_beats = (o and o.tail_beats) or 2
  local all = midi.merge(song)
  local max_s = o and o.max_seconds
  if max_s and max_s > 0 then
    local cut, kept = midi.tick_at(all, song.division, max_s), {}
    for _, ev in ipairs(all) do if ev.tick < cut then kept[#kept + 1] = ev end end
    all = kept
  end
  local last = 0
  for _, ev in ipairs(all) do if ev.tick > last then last = ev.tick end end
  local tail = song.division < 0x8000 and song.division * tail_beats or 0
  local end_tick = last + tail
  if max_s and max_s > 0 then
    end_tick = math.min(end_tick, midi.tick_at(midi.merge(song), song.division, max_s))
    -- notes still sounding at the cut are released there, and the sustain pedal lifted: a synthesiser
    -- holds them otherwise, and FluidSynth's file player waits for every voice to end
    local sounding, pedal, seq = {}, {}, 0
    for _, ev in ipairs(all) do
      seq = math.max(seq, ev.seq or 0)
      local k = ev.channel and ev.a and ev.channel * 128 + ev.a
      if ev.kind == "note_on" then
        sounding[k] = (sounding[k] or 0) + 1
      elseif ev.kind == "note_off" and (sounding[k] or 0) > 0 then
        sounding[k] = sounding[k] - 1
      elseif ev.kind == "control" and ev.a == 64 then
        pedal[ev.channel] = ev.b >= 64 or nil
      end
    end
    local keys = {}
    for k, n in pairs(sounding) do if n > 0 then keys[#keys + 1] = k end end
    table.sort(keys)
    for c = 1, 16 do
      if pedal[c] then
        seq = seq + 1
        all[#all + 1] = { tick = end_tick, kind = "control", channel = c, a = 64, b = 0, seq = seq }
      end
    end
    for _, k in ipairs(keys) do
      for _ = 1, sounding[k] do
        seq = seq + 1
        all[#all + 1] = { tick = end_tick, kind = "note_off", channel = k // 128, a = k % 128, b = 0, seq = seq }
      end
    end
  end

  -- pass 1: the part of every note event
  local program = {}
  for c = 1, 16 do program[c] = 0 end
  local parts, by_key, owner, active = {}, {}, {}, {}
  for _, ev in ipairs(all) do
    local c = ev.channel
    if ev.kind == "program" then
      program[c] = ev.a
    elseif ev.kind == "note_on" then
      local drum = c == midi.DRUM_CHANNEL
      local key = drum and "drum" or (c * 128 + program[c])
      local p = by_key[key]
      if not p then
        p = { channel = c, program = program[c], is_drum = drum, notes = 0, first = ev.tick, seq = ev.seq, events = {} }
        by_key[key] = p
        parts[#parts + 1] = p
      end
      p.notes = p.notes + 1
      owner[ev] = p
      local k = c * 128 + ev.a -- a note-off goes to the oldest sounding note-on of its key
      active[k] = active[k] or {}
      table.insert(active[k], p)
    elseif ev.kind == "note_off" or ev.kind == "poly_aftertouch" then
      local q = active[c * 128 + ev.a]
      if q and #q > 0 then
        owner[ev] = ev.kind == "note_off" and table.remove(q, 1) or q[1]
      end
    end
  end

  -- pass 2: copy each event to the parts that need it
  local of_channel = {}
  for _, p in ipairs(parts) do
    of_channel[p.channel] = of_channel[p.channel] or {}
    table.insert(of_channel[p.channel], p)
    if not p.is_drum then
      p.events[1] = { tick = 0, kind = "program", channel = p.channel, a = p.program, seq = -1 }
    end
  end
  for _, ev in ipairs(all) do
    if ev.kind == "meta" then
      if SHARED_META[ev.meta] then
        for _, p in ipairs(parts) do p.events[#p.events + 1] = ev end
      end
    elseif ev.kind == "note_on" or ev.kind == "note_off" or ev.kind == "poly_aftertouch" then
      local p = owner[ev]
      if p then p.events[#p.events + 1] = ev end
    elseif ev.kind ~= "sysex" then
      for _, p in ipairs(of_channel[ev.channel] or {}) do
        local keep = true
        if not p.is_drum then
          if ev.kind == "program" then keep = false end
          if ev.kind == "control" and (ev.a == 0 or ev.a == 32) then keep = false end -- bank select
        end
        if keep then p.events[#p.events + 1] = ev end
      end
    end
  end
  table.sort(parts, function(x, y)
    if x.channel ~= y.channel then return x.channel < y.channel end
    return x.seq < y.seq
  end)
  for _, p in ipairs(parts) do
    p.end_tick, p.first, p.seq = end_tick, nil, nil
  end
  return parts
end

local function wvlq(v)
  assert(v >= 0 and v < 0x10000000, "midi.write: delta time out of range")
  local b = { v & 0x7F }
  v = v >> 7
  while v > 0 do
    table.insert(b, 1, (v & 0x7F) | 0x80)
    v = v >> 7
  end
  return string.char(table.unpack(b))
end

local function encode(ev)
  if ev.kind == "meta" then
    return "\xFF" .. string.char(ev.meta) .. wvlq(#ev.data) .. ev.data
  elseif ev.kind == "sysex" then
    return string.char(ev.sysex_status or 0xF0) .. wvlq(#ev.data) .. ev.data
  end
  local st = (STATUS[ev.kind] << 4) | (ev.channel - 1)
  if ev.kind == "program" or ev.kind == "channel_pressure" then return string.char(st, ev.a) end
  if ev.kind == "pitch_bend" then return string.char(st, ev.a & 0x7F, ev.a >> 7) end
  if ev.kind == "note_off" then return string.char(st, ev.a, ev.b or 0) end
  return string.char(st, ev.a, ev.b)
end

--- write(events, division, end_tick?) -> bytes of an SMF format-0 file.
function midi.write(events, division, end_tick)
  local evs = {}
  for k, ev in ipairs(events) do
    if not (ev.kind == "meta" and ev.meta == META_EOT) then evs[#evs + 1] = copy(ev, { order = k }) end
  end
  table.sort(evs, function(x, y)
    if x.tick ~= y.tick then return x.tick < y.tick end
    return x.order < y.order
  end)
  local out, tick = {}, 0
  for _, ev in ipairs(evs) do
    out[#out + 1] = wvlq(ev.tick - tick) .. encode(ev)
    tick = ev.tick
  end
  local last = math.max(tick, end_tick or tick)
  out[#out + 1] = wvlq(last - tick) .. "\xFF\x2F\x00"
  local body = table.concat(out)
  return "MThd" .. string.pack(">I4I2I2I2", 6, 0, 1, division) .. "MTrk" .. string.pack(">I4", #body) .. body
end

--- write_file(path, events, division, end_tick?)
function midi.write_file(path, events, division, end_tick)
  local f, err = io.open(path, "wb")
  if not f then fail(err) end
  f:write(midi.write(events, division, end_tick))
  f:close()
end

return midi
