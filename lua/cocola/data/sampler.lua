-- cocola.data.sampler — batches for COCOLA's contrastive training and evaluation.
-- The tracks are cut into windows of `window` seconds on a grid of hop (1 - max_overlap) * window,
-- so two windows of a track overlap at most max_overlap (the last window is zero-padded on the
-- right, as the reference pads its last chunk; whole_windows = true keeps only windows that end
-- inside the track, as evaluation and scoring do, so no window is partly silence). Each epoch visits
-- the windows in a seeded order.
-- For a window, stems whose RMS is below silence_rms are inactive; a window with fewer than two
-- active stems is skipped. Of the N active stems, the anchor takes a ~ U{1..N-1} of them and the
-- positive p ~ U{1..N-a} of the rest (the reference's distribution); each side is summed into a
-- sub-mix, and Gaussian noise of std `noise` is added to the positive (the paper's sigma = 1e-3).
-- next_batch() -> {anchor = (K, samples), positive = (K, samples), windows = {{track, offset}}}.
-- state()/set_state() give the position for exact resumption.
--
-- Augmentations and hard negatives, all off by default (the paper's recipe) and all drawn from
-- seeded streams of their own, so a batch depends only on (seed, epoch, window):
--  * gain_db = g: every active stem is scaled by 10^(u g / 20), u ~ U[-1, 1], before the sub-mixes
--    are summed (the balance inside a sub-mix changes; the features' max normalisation removes a
--    global gain anyway).
--  * renderings: tracks whose stems carry `paths` (the same notes rendered with other sounds, as
--    Sampler.attach_renderings makes them) draw the anchor from one rendering and the positive from
--    another, so that timbre cannot tell a positive from a negative.
--  * hard_negatives = "shifted,same_song,transposed" (any of them): next_batch() also returns
--    negatives = (M K, samples), M blocks of K rows in the order of the list, row i of each block
--    belonging to anchor i: "shifted" is the positive's stems at the same place moved by
--    u in [shift_min, shift_max] seconds (either way, real audio read from the files), or, with
--    shift_beats = "0.25,0.5,..." and a track whose MIDI gives its tempo (cocola.data.tempo), by one
--    of those fractions of the beat at the window (whole beats, nearly coherent, left out); "same_song"
--    the positive's stems at least min_distance seconds away in the same track (a non-silent place,
--    else the farthest one); "transposed" the positive pitch-shifted by 1 to transpose_max
--    semitones up or down (cocola.audio.pitch_shift). Negatives get the positives' noise.
-- With prefetch (the default), the stems of the next windows in the order are decoded ahead on the
-- C loader's background threads (cocola.core.audio_prefetch) while the caller trains on the batch
-- just returned; the batches are bit-identical to loading on demand (same loader, same RMS in Lua).
local cocola = require "cocola"
local core = require "cocola.core"
local Rng = require "cocola.data.rng"
local tempo = require "cocola.data.tempo"

local Sampler = {}
Sampler.__index = Sampler

local DEFAULTS = {
  batch_size = 32, window = 5.0, max_overlap = 0.5, sample_rate = 16000, seed = 0,
  silence_rms = 1e-4, noise = 1e-3, shuffle = true, drop_last = true, prefetch = true,
  gain_db = 0, hard_negatives = "", shift_min = 0.1, shift_max = 0.6, shift_beats = "", min_distance = 10.0,
  transpose_max = 6, whole_windows = false,
}

local NEGATIVE_KINDS = { shifted = true, same_song = true, transposed = true }

--- Sampler.attach_renderings(tracks, others): for each track, the tracks of the same name in the
-- lists `others` (the same songs rendered with other sounds) that have every one of its stems (by
-- name) become extra renderings: every stem gets stem.paths = {its own path, its path in each such
-- rendering} (the same index is the same rendering for every stem of the track). Renderings missing a
-- stem are left out, so a sub-mix never mixes sounds. Returns the number of tracks that found at
-- least one other rendering.
function Sampler.attach_renderings(tracks, others)
  local found = 0
  local by_name = {}
  for r, list_ in ipairs(others) do
    by_name[r] = {}
    for _, t in ipairs(list_) do by_name[r][t.name] = t end
  end
  for _, t in ipairs(tracks) do
    for _, stem in ipairs(t.stems) do stem.paths = { stem.path } end
    for r = 1, #others do
      local other = by_name[r][t.name]
      local stems = {}
      for _, st in ipairs(other and other.stems or {}) do stems[st.name] = st end
      local complete = other ~= nil
      for _, stem in ipairs(t.stems) do complete = complete and stems[stem.name] ~= nil end
      if complete then
        for _, stem in ipairs(t.stems) do stem.paths[#stem.paths + 1] = stems[stem.name].path end
        t.duration = math.min(t.duration, other.duration)
      end
    end
    if #t.stems[1].paths > 1 then found = found + 1 end
  end
  return found
end

--- Sampler.new(tracks, opts): tracks from cocola.data.open/mixture
function Sampler.new(tracks, opts)
  local self = setmetatable({}, Sampler)
  self.opts = {}
  for k, v in pairs(DEFAULTS) do self.opts[k] = v end
  for k, v in pairs(opts or {}) do
    if DEFAULTS[k] == nil then error("sampler: unknown option '" .. tostring(k) .. "'", 2) end
    self.opts[k] = v
  end
  local o = self.opts
  if not (o.max_overlap >= 0 and o.max_overlap < 1) then error("sampler: max_overlap must be in [0, 1)", 2) end
  if math.type(o.batch_size) ~= "integer" or o.batch_size < 2 then error("sampler: batch_size must be an integer >= 2", 2) end
  if not (type(o.gain_db) == "number" and o.gain_db >= 0) then error("sampler: gain_db must be a number >= 0", 2) end
  self.negative_kinds = {}
  for kind in tostring(o.hard_negatives):gmatch("[^,%s]+") do
    if not NEGATIVE_KINDS[kind] then
      error("sampler: unknown hard negative '" .. kind .. "' (known: shifted, same_song, transposed)", 2)
    end
    self.negative_kinds[#self.negative_kinds + 1] = kind
  end
  if not (o.shift_min > 0 and o.shift_max >= o.shift_min) then error("sampler: need 0 < shift_min <= shift_max", 2) end
  self.shift_beats = {}
  for item in tostring(o.shift_beats):gmatch("[^,%s]+") do
    local f = tonumber(item)
    if not f or f <= 0 then error("sampler: shift_beats must be positive fractions of a beat, got '" .. item .. "'", 2) end
    self.shift_beats[#self.shift_beats + 1] = f
  end
  self.tempo_cache = {}
  if math.type(o.transpose_max) ~= "integer" or o.transpose_max < 1 or o.transpose_max > 11 then
    error("sampler: transpose_max must be an integer in 1..11 (an octave keeps the pitch classes)", 2)
  end
  if not (type(o.min_distance) == "number" and o.min_distance >= o.window) then
    error("sampler: min_distance must be at least the window (same-song negatives must not overlap the positive)", 2)
  end
  if o.shift_min * o.sample_rate < 1 then error("sampler: shift_min must be at least one sample", 2) end
  self.tracks = tracks
  self.samples = math.floor(o.window * o.sample_rate + 0.5)
  local hop = o.window * (1 - o.max_overlap)
  self.windows = {}
  for ti, t in ipairs(tracks) do
    if #t.stems >= 2 then
      local offset = 0
      repeat
        if not o.whole_windows or offset + o.window <= t.duration + 1e-9 then
          self.windows[#self.windows + 1] = { ti, offset }
        end
        offset = offset + hop
      until offset >= t.duration - 1e-9
    end
  end
  if #self.windows < o.batch_size then
    error(string.format("sampler: %d windows in %d tracks, fewer than one batch of %d", #self.windows, #tracks, o.batch_size), 2)
  end
  self.epoch, self.position = 0, 0
  self:_order()
  self.pending = {} -- prefetch handles by "epoch:position"
  return self
end

function Sampler:_order_of(epoch)
  local idx = {}
  for i = 1, #self.windows do idx[i] = i end
  return self.opts.shuffle and Rng.new(self.opts.seed, epoch):shuffled(idx) or idx
end

function Sampler:_order() self.order = self:_order_of(self.epoch) end

function Sampler:state() return { epoch = self.epoch, position = self.position } end

-- drops every pending prefetch (their unstarted loads are cancelled)
function Sampler:_discard_prefetch()
  for _, handle in pairs(self.pending) do handle:cancel() end
  self.pending = {}
end

function Sampler:set_state(s)
  self:_discard_prefetch()
  self.epoch, self.position = s.epoch, s.position
  self:_order()
end

--- number of full batches in an epoch (upper bound: silent windows are skipped)
function Sampler:batches_per_epoch() return #self.windows // self.opts.batch_size end

-- the renderings (indices into stem.paths) of a window's anchor and positive in an epoch: 1 and 1
-- for a track with one rendering, else two different ones
local function renderings_of(self, epoch, window_index)
  local stem = self.tracks[self.windows[window_index][1]].stems[1]
  local n = stem.paths and #stem.paths or 1
  if n < 2 then return 1, 1 end
  local rng = Rng.new(self.opts.seed, epoch, window_index, 5)
  local ra = rng:int(1, n)
  local rp = rng:int(1, n - 1)
  if rp >= ra then rp = rp + 1 end
  return ra, rp
end

local function stem_path(stem, rendering)
  return stem.paths and (stem.paths[rendering] or stem.path) or stem.path
end

-- the read requests of every stem of a window (what audio.load gets on the synchronous path): the
-- anchor's rendering, then the positive's when it differs
local function window_requests(self, window_index, epoch)
  local w = self.windows[window_index]
  local ra, rp = renderings_of(self, epoch or self.epoch, window_index)
  local requests = {}
  for _, r in ipairs(ra == rp and { ra } or { ra, rp }) do
    for _, stem in ipairs(self.tracks[w[1]].stems) do
      requests[#requests + 1] = { path = stem_path(stem, r), sr = self.opts.sample_rate, mono = true, offset = w[2], duration = self.opts.window }
    end
  end
  return requests
end

-- (samples) waves of every stem of a window, with their RMS (float32 tensor math, on either path)
local function waves_and_rms(self, loaded)
  local waves, rms = {}, {}
  for i, w in ipairs(loaded) do
    w = w:view(-1)
    assert(w:numel() == self.samples, "sampler: a window of unexpected length")
    waves[i] = w
    rms[i] = math.sqrt((w * w):mean():item())
  end
  return waves, rms
end

local function load_window(self, window_index)
  local loaded = {}
  for i, r in ipairs(window_requests(self, window_index)) do
    loaded[i] = cocola.audio.load(r.path, { sr = r.sr, mono = r.mono, offset = r.offset, duration = r.duration })
  end
  return waves_and_rms(self, loaded)
end

-- the positive's stems of a pair read at another offset (rendering of the positive), summed with
-- the pair's stem gains, and the RMS of the sum
local function read_positive_at(self, info, offset)
  local track = self.tracks[info.track_index]
  local s
  for _, i in ipairs(info.positive) do
    local w = cocola.audio.load(stem_path(track.stems[i], info.positive_rendering), {
      sr = self.opts.sample_rate, mono = true, offset = offset, duration = self.opts.window,
    }):view(-1)
    if info.gains then w = w * info.gains[i] end
    s = s and s + w or w
  end
  return s, math.sqrt((s * s):mean():item())
end

local function key_of(epoch, position) return epoch .. ":" .. position end

-- queues loads for the `count` windows after (epoch, position) in visiting order, crossing into
-- the next epoch's order at the end of this one; windows already queued are left as they are
function Sampler:_prefetch_from(epoch, position, count)
  local order = epoch == self.epoch and self.order or self:_order_of(epoch)
  for _ = 1, count do
    position = position + 1
    if position > #order then
      epoch, position = epoch + 1, 1
      order = self:_order_of(epoch)
    end
    local key = key_of(epoch, position)
    if not self.pending[key] then self.pending[key] = core.audio_prefetch(window_requests(self, order[position], epoch)) end
  end
end

-- enough windows for the next batch and a few more (windows with silent stems are skipped)
function Sampler:_prefetch_ahead()
  local K = self.opts.batch_size
  self:_prefetch_from(self.epoch, self.position, K + math.max(2, K // 4))
end

-- the waves and RMS of the window at self.position: prefetched, or queued now and waited on
function Sampler:_window_at_position()
  local window_index = self.order[self.position]
  if not self.opts.prefetch then return load_window(self, window_index) end
  local key = key_of(self.epoch, self.position)
  if not self.pending[key] then self:_prefetch_from(self.epoch, self.position - 1, self.opts.batch_size) end
  local handle = self.pending[key]
  self.pending[key] = nil
  return waves_and_rms(self, (handle:wait()))
end

local function sum_of(waves, picks, gains)
  local s
  for _, i in ipairs(picks) do
    local w = gains and waves[i] * gains[i] or waves[i]
    s = s and s + w or (gains and w or w:clone())
  end
  return s
end

-- the sub-mix pair of a window from its loaded waves (one block of stems per rendering loaded)
local function pair_of(self, window_index, waves, rms)
  local ti, offset = self.windows[window_index][1], self.windows[window_index][2]
  local track = self.tracks[ti]
  local stems = #track.stems
  local ra, rp = renderings_of(self, self.epoch, window_index)
  local anchor_waves, positive_waves = waves, waves
  if #waves > stems then
    anchor_waves = table.move(waves, 1, stems, 1, {})
    positive_waves = table.move(waves, stems + 1, 2 * stems, 1, {})
  end
  local active = {}
  for i = 1, stems do
    if rms[i] > self.opts.silence_rms and (#waves == stems or rms[stems + i] > self.opts.silence_rms) then
      active[#active + 1] = i
    end
  end
  if #active < 2 then return nil end
  local rng = Rng.new(self.opts.seed, self.epoch, window_index)
  local n = #active
  local a = rng:int(1, n - 1)
  local shuffled = rng:shuffled(active)
  local anchor = table.move(shuffled, 1, a, 1, {})
  local p = rng:int(1, n - a)
  local positive = table.move(shuffled, a + 1, a + p, 1, {})
  local gains
  if self.opts.gain_db > 0 then
    local grng = Rng.new(self.opts.seed, self.epoch, window_index, 3)
    gains = {}
    for i = 1, stems do gains[i] = 10 ^ ((2 * grng:float() - 1) * self.opts.gain_db / 20) end
  end
  return sum_of(anchor_waves, anchor, gains), sum_of(positive_waves, positive, gains), {
    track = track.name, track_index = ti, window_index = window_index, offset = offset, anchor = anchor,
    positive = positive, anchor_rendering = ra, positive_rendering = rp, gains = gains,
  }
end

-- the hard negatives of one pair, one wave per kind in self.negative_kinds
local function negatives_of(self, info, positive)
  local o = self.opts
  local track = self.tracks[info.track_index]
  local rng = Rng.new(o.seed, self.epoch, info.window_index, 9)
  local out = {}
  info.negatives = {} -- what each negative is: {kind =, offset = } or {kind =, semitones = }
  for k, kind in ipairs(self.negative_kinds) do
    if kind == "shifted" then
      local shift = o.shift_min + rng:float() * (o.shift_max - o.shift_min)
      local beat = #self.shift_beats > 0 and tempo.beat_seconds(track, info.offset, self.tempo_cache)
      if beat then shift = self.shift_beats[rng:int(1, #self.shift_beats)] * beat end
      local sign = rng:int(0, 1) == 0 and -1 or 1
      -- stay inside the track: move the other way when one side has no room
      if info.offset + sign * shift < 0 then sign = 1 end
      if sign > 0 and info.offset + shift + o.window > track.duration and info.offset - shift >= 0 then sign = -1 end
      out[k] = (read_positive_at(self, info, info.offset + sign * shift))
      info.negatives[k] = { kind = kind, offset = info.offset + sign * shift }
    elseif kind == "same_song" then
      local hop = o.window * (1 - o.max_overlap)
      local candidates, farthest, far_d = {}, nil, -1
      local t = 0
      while t + 1e-9 < track.duration do
        local d = math.abs(t - info.offset)
        if d >= o.min_distance - 1e-9 then candidates[#candidates + 1] = t end
        if d > far_d then farthest, far_d = t, d end
        t = t + hop
      end
      local chosen, at
      for tries, c in ipairs(rng:shuffled(candidates)) do
        local w, r = read_positive_at(self, info, c)
        if r > o.silence_rms then chosen, at = w, c break end
        if tries >= 4 then break end
      end
      if not chosen then
        -- no audible place min_distance away: the farthest one if it does not overlap the positive,
        -- else the window right after it (zero-padded past the end of the track)
        at = far_d >= o.window - 1e-9 and farthest or info.offset + o.window
        chosen = (read_positive_at(self, info, at))
      end
      out[k] = chosen
      info.negatives[k] = { kind = kind, offset = at }
    else -- transposed
      local steps = rng:int(1, o.transpose_max) * (rng:int(0, 1) == 0 and -1 or 1)
      out[k] = cocola.audio.pitch_shift(positive, o.sample_rate, steps)
      info.negatives[k] = { kind = kind, semitones = steps }
    end
  end
  return out
end

--- the sub-mix pair of one window, or nil when it has fewer than two active stems
function Sampler:pair(window_index)
  return pair_of(self, window_index, load_window(self, window_index))
end

--- the next batch; nil at the end of an epoch (the next call starts the next epoch)
function Sampler:next_batch()
  local K = self.opts.batch_size
  local anchors, positives, windows, negatives = {}, {}, {}, {}
  while #anchors < K do
    if self.position >= #self.order then
      self.epoch, self.position = self.epoch + 1, 0
      self:_order()
      if #anchors == 0 or self.opts.drop_last then
        if self.opts.prefetch then self:_prefetch_ahead() end
        return nil
      end
      break
    end
    self.position = self.position + 1
    local a, p, info = pair_of(self, self.order[self.position], self:_window_at_position())
    if a then
      anchors[#anchors + 1], positives[#positives + 1], windows[#windows + 1] = a, p, info
      if #self.negative_kinds > 0 then negatives[#negatives + 1] = negatives_of(self, info, p) end
    end
  end
  local anchor, positive = cocola.stack(anchors, 1), cocola.stack(positives, 1)
  local negative
  if #negatives > 0 then
    local rows = {}
    for k = 1, #self.negative_kinds do
      for i = 1, #negatives do rows[#rows + 1] = negatives[i][k] end
    end
    negative = cocola.stack(rows, 1)
  end
  if self.opts.noise > 0 then
    -- the noise comes from its own seeded stream, leaving the engine's generator where it was
    local seed, offset = cocola.get_rng_state()
    cocola.set_rng_state(Rng.new(self.opts.seed, self.epoch, self.position, 7):next(), 0)
    positive = positive + cocola.randn(positive.shape) * self.opts.noise
    if negative then negative = negative + cocola.randn(negative.shape) * self.opts.noise end
    cocola.set_rng_state(seed, offset)
  end
  if self.opts.prefetch then self:_prefetch_ahead() end -- loads while the caller trains on this batch
  return { anchor = anchor, positive = positive, negative = negative, windows = windows }
end

return Sampler
