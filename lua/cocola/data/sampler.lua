-- cocola.data.sampler — batches for COCOLA's contrastive training and evaluation.
-- The tracks are cut into windows of `window` seconds on a grid of hop (1 - max_overlap) * window,
-- so two windows of a track overlap at most max_overlap (the last window is zero-padded on the
-- right, as the reference pads its last chunk). Each epoch visits the windows in a seeded order.
-- For a window, stems whose RMS is below silence_rms are inactive; a window with fewer than two
-- active stems is skipped. Of the N active stems, the anchor takes a ~ U{1..N-1} of them and the
-- positive p ~ U{1..N-a} of the rest (the reference's distribution); each side is summed into a
-- sub-mix, and Gaussian noise of std `noise` is added to the positive (the paper's sigma = 1e-3).
-- next_batch() -> {anchor = (K, samples), positive = (K, samples), windows = {{track, offset}}}.
-- state()/set_state() give the position for exact resumption.
-- With prefetch (the default), the stems of the next windows in the order are decoded ahead on the
-- C loader's background threads (cocola.core.audio_prefetch) while the caller trains on the batch
-- just returned; the batches are bit-identical to loading on demand (same loader, same RMS in Lua).
local cocola = require "cocola"
local core = require "cocola.core"
local Rng = require "cocola.data.rng"

local Sampler = {}
Sampler.__index = Sampler

local DEFAULTS = {
  batch_size = 32, window = 5.0, max_overlap = 0.5, sample_rate = 16000, seed = 0,
  silence_rms = 1e-4, noise = 1e-3, shuffle = true, drop_last = true, prefetch = true,
}

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
  self.tracks = tracks
  self.samples = math.floor(o.window * o.sample_rate + 0.5)
  local hop = o.window * (1 - o.max_overlap)
  self.windows = {}
  for ti, t in ipairs(tracks) do
    if #t.stems >= 2 then
      local offset = 0
      repeat
        self.windows[#self.windows + 1] = { ti, offset }
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

-- the read requests of every stem of a window (what audio.load gets on the synchronous path)
local function window_requests(self, window_index)
  local w = self.windows[window_index]
  local requests = {}
  for i, stem in ipairs(self.tracks[w[1]].stems) do
    requests[i] = { path = stem.path, sr = self.opts.sample_rate, mono = true, offset = w[2], duration = self.opts.window }
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
  for i, r in ipairs(window_requests(self, window_index)) do loaded[i] = cocola.audio.load(r.path, r) end
  return waves_and_rms(self, loaded)
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
    if not self.pending[key] then self.pending[key] = core.audio_prefetch(window_requests(self, order[position])) end
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

local function sum_of(waves, picks)
  local s = waves[picks[1]]:clone()
  for i = 2, #picks do s = s + waves[picks[i]] end
  return s
end

-- the sub-mix pair of a window from its loaded waves
local function pair_of(self, window_index, waves, rms)
  local ti, offset = self.windows[window_index][1], self.windows[window_index][2]
  local track = self.tracks[ti]
  local active = {}
  for i = 1, #waves do
    if rms[i] > self.opts.silence_rms then active[#active + 1] = i end
  end
  if #active < 2 then return nil end
  local rng = Rng.new(self.opts.seed, self.epoch, window_index)
  local n = #active
  local a = rng:int(1, n - 1)
  local shuffled = rng:shuffled(active)
  local anchor = table.move(shuffled, 1, a, 1, {})
  local p = rng:int(1, n - a)
  local positive = table.move(shuffled, a + 1, a + p, 1, {})
  return sum_of(waves, anchor), sum_of(waves, positive), { track = track.name, offset = offset, anchor = anchor, positive = positive }
end

--- the sub-mix pair of one window, or nil when it has fewer than two active stems
function Sampler:pair(window_index)
  return pair_of(self, window_index, load_window(self, window_index))
end

--- the next batch; nil at the end of an epoch (the next call starts the next epoch)
function Sampler:next_batch()
  local K = self.opts.batch_size
  local anchors, positives, windows = {}, {}, {}
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
    end
  end
  local anchor, positive = cocola.stack(anchors, 1), cocola.stack(positives, 1)
  if self.opts.noise > 0 then
    -- the noise comes from its own seeded stream, leaving the engine's generator where it was
    local seed, offset = cocola.get_rng_state()
    cocola.set_rng_state(Rng.new(self.opts.seed, self.epoch, self.position, 7):next(), 0)
    positive = positive + cocola.randn(positive.shape) * self.opts.noise
    cocola.set_rng_state(seed, offset)
  end
  if self.opts.prefetch then self:_prefetch_ahead() end -- loads while the caller trains on this batch
  return { anchor = anchor, positive = positive, windows = windows }
end

return Sampler
