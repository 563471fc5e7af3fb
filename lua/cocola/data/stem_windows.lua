-- cocola.data.stem_windows — the examples CompoNet trains on (the released code's _get_slices and
-- collate_fn_conditional), for any stem dataset cocola.data.open reads, deterministic and resumable.
--   Windows: per epoch and track, a window grid of `seconds` (10.23 s: 163680 samples at 16 kHz, which
--   give 1024 mel frames) started at a random shift in [0, length - floor(length / chunk) * chunk]; window
--   i starts at min(length - chunk, i * chunk + shift). The windows of all tracks are shuffled per epoch.
--   Stems: those with RMS above silence_rms in the window are active; a window with none is skipped.
--   Subsets (mode "componet"): input indices = a random sample of k ~ U{1..n} of the n active stems, output
--   indices likewise and independently (they may overlap, as in the released code; subsets = "disjoint"
--   draws the output from the stems not in the input and skips windows with one active stem).
--   Mode "mixture" (phase-1 pre-training of the latent diffusion model): one random non-empty sub-mix per
--   window, k ~ U{1..n} stems, the full mix among them, prompt "out: <tags>".
--   Mode "channels" (MSDM): one channel per stem type of `channels` (default bass, drums, guitar, piano),
--   matched by the lowercased tag; the stems of a type are summed into its channel, stems of other types
--   dropped (counted in windows.dropped = {tag = stems}), tracks with none of the types skipped (counted in
--   windows.skipped_tracks); a window is kept when at least one channel is active. `length` (samples) sets
--   the window instead of seconds (MSDM: 262144 at sample_rate 22050).
-- Batches are {x = target sub-mixes (B, S), y = input sub-mixes (B, S) (nil in mixture mode), z = prompts,
-- info = {{track, start, input = {names}, output = {names}}}}; in channels mode {stems = (B, C, S),
-- info = {{track, start, channels = {{names} per channel}}}}. Every draw comes from a counter-based
-- generator seeded by (seed, epoch, ...), so state() = {epoch, position} resumes the exact sequence.
-- Prompts are the released code's: "in: bass_1, drums_1; out: guitar_1" (tags lowercased, "_k" their
-- occurrence count in the list), "genre: <genre>; " first where the dataset has one.
--   StemWindows.new(tracks, {seconds = 10.23, sample_rate = 16000, seed = 0, silence_rms = 1e-4,
--                   batch_size = 2, mode = "componet" | "mixture" | "channels", subsets = "released" | "disjoint",
--                   channels = {"bass", "drums", "guitar", "piano"} (channels mode), length = samples (or nil)})
--                   loaders = 2 (threads decoding ahead; 0: each stem read when its example is made)})
--   windows:next_batch() -> batch (the next epoch begins when one ends); windows:state(), set_state(s)
-- With loaders > 0 (modes componet and mixture), the stems of the next batch's windows (and a few more) are
-- decoded on the C loader's background threads (cocola.core.audio_prefetch, the same decoder as audio.load)
-- while the caller trains on this one: the batches are the same either way.
local cocola = require "cocola"
local audio = require "cocola.audio"
local core = require "cocola.core"
local Rng = require "cocola.data.rng"

local StemWindows = {}
StemWindows.__index = StemWindows

local MODES = { componet = true, mixture = true, channels = true }
StemWindows.CHANNELS = { "bass", "drums", "guitar", "piano" }
local SUBSETS = { released = true, disjoint = true }

local function fail(fmt, ...) error(string.format("StemWindows: " .. fmt, ...), 3) end

-- a stem tag as the released CompoNet code writes it: lowercase, words joined by "_", then "_<k>", k the
-- 1-based count of that tag so far in the list ("Drums", "Guitar", "Guitar" -> drums_1, guitar_1, guitar_2)
function StemWindows.prompt_tags(list)
  local seen, out = {}, {}
  for _, s in ipairs(list) do
    local tag = tostring(s.tag):lower():gsub("[%s%-]+", "_")
    seen[tag] = (seen[tag] or 0) + 1
    out[#out + 1] = tag .. "_" .. seen[tag]
  end
  return table.concat(out, ", ")
end

--- prompt(input_stems | nil, target_stems, genre?) -> "in: bass_1, drums_1; out: guitar_1" (the released
--- code's form; "genre: <genre>; " first where the dataset has one); without input stems "out: guitar_1"
function StemWindows.prompt(input, target, genre)
  local text = input and string.format("in: %s; out: %s", StemWindows.prompt_tags(input), StemWindows.prompt_tags(target))
    or "out: " .. StemWindows.prompt_tags(target)
  if genre and genre ~= "" then text = "genre: " .. tostring(genre):lower() .. "; " .. text end
  return text
end

function StemWindows.new(tracks, opts)
  opts = opts or {}
  if type(tracks) ~= "table" or #tracks == 0 then fail("no tracks") end
  local o = { seconds = 10.23, sample_rate = 16000, seed = 0, silence_rms = 1e-4, batch_size = 2, mode = "componet",
    subsets = "released", channels = false, length = false, loaders = 2 }
  for k, v in pairs(opts) do
    if o[k] == nil then fail("unknown option '%s'", tostring(k)) end
    o[k] = v
  end
  if not MODES[o.mode] then fail("mode must be componet or mixture (or channels), got %s", tostring(o.mode)) end
  if not SUBSETS[o.subsets] then fail("subsets must be released or disjoint, got %s", tostring(o.subsets)) end
  if math.type(o.batch_size) ~= "integer" or o.batch_size < 1 then fail("batch_size must be a positive integer") end
  if type(o.seconds) ~= "number" or not (o.seconds > 0) then fail("seconds must be positive") end
  if o.length and (math.type(o.length) ~= "integer" or o.length < 1) then fail("length must be a positive integer") end
  if math.type(o.loaders) ~= "integer" or o.loaders < 0 or o.loaders > 64 then fail("loaders must be an integer in 0..64") end
  if o.mode == "channels" then
    o.channels = o.channels or StemWindows.CHANNELS
    if type(o.channels) ~= "table" or #o.channels == 0 then fail("channels must be a non-empty list of stem types") end
  elseif o.channels then
    fail("channels is an option of mode channels")
  end
  local self = setmetatable({ tracks = {}, opts = o, epoch = 0, position = 0, pending = {} }, StemWindows)
  self.prefetch = o.loaders > 0 and o.mode ~= "channels"
  if self.prefetch then core.audio_prefetch_workers(o.loaders) end
  self.chunk = o.length or math.floor(o.sample_rate * o.seconds)
  if o.mode == "channels" then tracks = self:_channel_tracks(tracks) end
  for _, t in ipairs(tracks) do
    local length = math.floor(t.duration * o.sample_rate + 1e-9)
    if length >= self.chunk then self.tracks[#self.tracks + 1] = t end
  end
  if #self.tracks == 0 then
    fail("no track is at least %.2f s long (%d tracks given)", self.chunk / o.sample_rate, #tracks)
  end
  self:_order()
  return self
end

-- channels mode: the tracks with a stem of one of the channels' types, each stem's channel noted in
-- self.channel_of[track] = {stem index = channel index or false}; dropped stems and skipped tracks counted
function StemWindows:_channel_tracks(tracks)
  local index = {}
  for c, name in ipairs(self.opts.channels) do index[tostring(name):lower()] = c end
  self.channel_of, self.dropped, self.skipped_tracks = {}, {}, 0
  local kept = {}
  for _, t in ipairs(tracks) do
    local of, any = {}, false
    for i, stem in ipairs(t.stems) do
      local tag = tostring(stem.tag):lower()
      of[i] = index[tag] or false
      any = any or of[i] ~= false
    end
    if any then
      kept[#kept + 1] = t
      self.channel_of[t] = of
      for i, stem in ipairs(t.stems) do
        if not of[i] then
          local tag = tostring(stem.tag):lower()
          self.dropped[tag] = (self.dropped[tag] or 0) + 1
        end
      end
    else
      self.skipped_tracks = self.skipped_tracks + 1
    end
  end
  if #kept == 0 then
    fail("no track has a stem of the types %s (%d tracks given)", table.concat(self.opts.channels, ", "), #tracks)
  end
  return kept
end

--- dropped_summary() -> "12 stems of other types dropped (strings 8, vocals 4); 1 track without any skipped"
function StemWindows:dropped_summary()
  local tags, n = {}, 0
  for tag, k in pairs(self.dropped or {}) do tags[#tags + 1] = string.format("%s %d", tag, k); n = n + k end
  table.sort(tags)
  return string.format("%d stems of types other than %s dropped%s; %d tracks without any of them skipped", n,
    table.concat(self.opts.channels or {}, ", "), n > 0 and (" (" .. table.concat(tags, ", ") .. ")") or "",
    self.skipped_tracks or 0)
end

-- the windows of an epoch, {track index, start sample}, shuffled
function StemWindows:_order()
  local o, windows = self.opts, {}
  for ti, t in ipairs(self.tracks) do
    local length = math.floor(t.duration * o.sample_rate + 1e-9)
    local count = length // self.chunk
    local shift = Rng.new(o.seed, self.epoch, ti, 1):int(0, length - count * self.chunk)
    for i = 0, count - 1 do windows[#windows + 1] = { ti, math.min(length - self.chunk, i * self.chunk + shift) } end
  end
  self.windows = Rng.new(o.seed, self.epoch, 2):shuffled(windows)
end

function StemWindows:state() return { epoch = self.epoch, position = self.position } end

-- drops every queued load (their unstarted reads are cancelled)
function StemWindows:_discard_prefetch()
  for _, handle in pairs(self.pending) do handle:cancel() end
  self.pending = {}
end

function StemWindows:set_state(s)
  if type(s) ~= "table" or math.type(s.epoch) ~= "integer" or math.type(s.position) ~= "integer" then
    fail("a state is {epoch = integer, position = integer}")
  end
  self:_discard_prefetch()
  self.epoch, self.position = s.epoch, s.position
  self:_order()
end

function StemWindows:windows_per_epoch() return #self.windows end

local function sum_of(waves, picks)
  local s
  for _, i in ipairs(picks) do s = s and s + waves[i] or waves[i]:clone() end
  return s
end

local function read_window(path, o, offset, duration, chunk)
  local wave = audio.load(path, { sr = o.sample_rate, mono = true, offset = offset, duration = duration }):view(-1)
  if wave:size(1) ~= chunk then
    fail("%s: %d samples read at %.3f s, %d expected", path, wave:size(1), offset, chunk)
  end
  return wave
end

local function rms(wave) return math.sqrt((wave * wave):mean():item()) end

-- channels mode: the example of window w, {x = (C, S), info} (nil when no channel is active)
function StemWindows:channel_example(w)
  local o = self.opts
  local t = self.tracks[w[1]]
  local offset, duration = w[2] / o.sample_rate, self.chunk / o.sample_rate
  local sums, names = {}, {}
  for c = 1, #o.channels do names[c] = {} end
  for i, stem in ipairs(t.stems) do
    local c = self.channel_of[t][i]
    if c then
      local wave = read_window(stem.path, o, offset, duration, self.chunk)
      sums[c] = sums[c] and sums[c] + wave or wave
      names[c][#names[c] + 1] = stem.name
    end
  end
  local rows, active = {}, false
  for c = 1, #o.channels do
    rows[c] = (sums[c] or cocola.zeros({ self.chunk })):unsqueeze(1)
    active = active or (sums[c] ~= nil and rms(sums[c]) > o.silence_rms)
  end
  if not active then return nil end
  return { x = cocola.cat(rows, 1), info = { track = t.name, start = w[2], channels = names } }
end

-- the reads of every stem of window w, for cocola.core.audio_prefetch
local function requests_of(self, w)
  local o = self.opts
  local requests = {}
  for i, stem in ipairs(self.tracks[w[1]].stems) do
    requests[i] = { path = stem.path, sr = o.sample_rate, mono = true, offset = w[2] / o.sample_rate,
      duration = self.chunk / o.sample_rate }
  end
  return requests
end

-- queues the loads of the windows after the current position in this epoch (a batch and a few more;
-- windows with no active stem are skipped, so a batch may use more than batch_size of them)
function StemWindows:_prefetch_ahead()
  local K = self.opts.batch_size
  for p = self.position + 1, math.min(#self.windows, self.position + K + math.max(2, K // 4)) do
    local key = self.epoch .. ":" .. p
    if not self.pending[key] then self.pending[key] = core.audio_prefetch(requests_of(self, self.windows[p])) end
  end
end

-- the waves of window w's stems: those queued for (epoch, position), else read now
function StemWindows:_waves(w)
  local o = self.opts
  local key = self.epoch .. ":" .. self.position
  local handle = self.pending[key]
  local waves = {}
  if handle then
    self.pending[key] = nil
    local loaded = handle:wait()
    local t = self.tracks[w[1]]
    for i, wave in ipairs(loaded) do
      wave = wave:view(-1)
      if wave:size(1) ~= self.chunk then
        fail("%s: %d samples read at %.3f s, %d expected", t.stems[i].path, wave:size(1), w[2] / o.sample_rate, self.chunk)
      end
      waves[i] = wave
    end
    return waves
  end
  local offset, duration = w[2] / o.sample_rate, self.chunk / o.sample_rate
  for i, stem in ipairs(self.tracks[w[1]].stems) do waves[i] = read_window(stem.path, o, offset, duration, self.chunk) end
  return waves
end

-- the example of window w (nil when no stem is active, or, disjoint, fewer than two)
function StemWindows:example(w, rng)
  local o = self.opts
  if o.mode == "channels" then return self:channel_example(w) end
  local t = self.tracks[w[1]]
  local waves, active = self:_waves(w), {}
  for i, wave in ipairs(waves) do
    if rms(wave) > o.silence_rms then active[#active + 1] = i end
  end
  local n = #active
  if n == 0 or (o.mode == "componet" and o.subsets == "disjoint" and n < 2) then return nil end
  local function stems(picks)
    local out = {}
    for _, i in ipairs(picks) do out[#out + 1] = t.stems[i] end
    return out
  end
  local function names(picks)
    local out = {}
    for _, i in ipairs(picks) do out[#out + 1] = t.stems[i].name end
    return out
  end
  if o.mode == "mixture" then
    local out = rng:sample(active, rng:int(1, n))
    return { x = sum_of(waves, out), z = StemWindows.prompt(nil, stems(out), t.genre),
      info = { track = t.name, start = w[2], output = names(out) } }
  end
  local input, output
  if o.subsets == "released" then
    input = rng:sample(active, rng:int(1, n))
    output = rng:sample(active, rng:int(1, n))
  else
    input = rng:sample(active, rng:int(1, n - 1))
    local taken, rest = {}, {}
    for _, i in ipairs(input) do taken[i] = true end
    for _, i in ipairs(active) do if not taken[i] then rest[#rest + 1] = i end end
    output = rng:sample(rest, rng:int(1, #rest))
  end
  return { x = sum_of(waves, output), y = sum_of(waves, input), z = StemWindows.prompt(stems(input), stems(output), t.genre),
    info = { track = t.name, start = w[2], input = names(input), output = names(output) } }
end

--- next_batch() -> {x, y, z, info} ({stems, info} in channels mode); epochs roll over (a full pass with no usable
--- window is an error)
function StemWindows:next_batch()
  local xs, ys, zs, infos = {}, {}, {}, {}
  local scanned = 0
  while #xs < self.opts.batch_size do
    if self.position >= #self.windows then
      self:_discard_prefetch()
      self.epoch, self.position = self.epoch + 1, 0
      self:_order()
    end
    if self.prefetch then self:_prefetch_ahead() end
    self.position = self.position + 1
    scanned = scanned + 1
    if scanned > #self.windows and #xs == 0 then fail("no window of the %d tracks has an active stem", #self.tracks) end
    local e = self:example(self.windows[self.position], Rng.new(self.opts.seed, self.epoch, self.position, 3))
    if e then
      xs[#xs + 1], zs[#zs + 1], infos[#infos + 1] = e.x:unsqueeze(1), e.z, e.info
      if e.y then ys[#ys + 1] = e.y:unsqueeze(1) end
    end
  end
  if self.opts.mode == "channels" then return { stems = cocola.cat(xs, 1), info = infos } end
  return { x = cocola.cat(xs, 1), y = #ys > 0 and cocola.cat(ys, 1) or nil, z = zs, info = infos }
end

return StemWindows
