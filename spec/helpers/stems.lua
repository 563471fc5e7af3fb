-- helpers/stems.lua — tiny Slakh-layout stem datasets made inside a spec: each stem a tone whose pitch depends
-- on its track and stem (optionally with a slow amplitude wobble, so that windows of a track differ), written as
-- float WAV at 16 kHz with a metadata.yaml naming each stem's inst_class; and a runner that keeps a recipe's
-- printed settings off the spec's output.
local cocola = require "cocola"
local fs = require "cocola.data.fs"
local files = require "helpers.files"

local M = {}

M.RATE = 16000

--- wave(t, s, seconds[, wobble]) -> (1, seconds * RATE): 0.2 sin(2 pi f n / RATE), f = 110 (s + 1) (1 + 0.2 t),
--- times 1 + 0.5 sin(2 pi 2 n / RATE) with wobble
function M.wave(t, s, seconds, wobble)
  local n = math.floor(seconds * M.RATE)
  local f = 110 * (s + 1) * (1 + 0.2 * t)
  local i = cocola.arange(0, n, { dtype = "float64" })
  local w = (i * (2 * math.pi * f / M.RATE)):sin() * 0.2
  if wobble then w = w * ((i * (4 * math.pi / M.RATE)):sin() * 0.5 + 1) end
  return w:float():view(1, -1)
end

--- track(root, split, t, tags, {seconds = 6, wobble = false, silent = {stem index = true}}): root/split/Track<t>
--- with one stem per tag (S00, S01, ...); silent stems are all zeros
function M.track(root, split, t, tags, opts)
  opts = opts or {}
  local dir = string.format("%s/%s/Track%05d", root, split, t)
  fs.mkdir_p(dir .. "/stems")
  local yaml = { "stems:" }
  for s, tag in ipairs(tags) do
    local w = M.wave(t, s, opts.seconds or 6, opts.wobble)
    if opts.silent and opts.silent[s] then w = w * 0 end
    cocola.audio.save(string.format("%s/stems/S%02d.wav", dir, s - 1), w, M.RATE, { subtype = "float" })
    yaml[#yaml + 1] = string.format("  S%02d:\n    inst_class: %s\n    program_num: 0\n    is_drum: false", s - 1, tag)
  end
  files.write(dir .. "/metadata.yaml", table.concat(yaml, "\n") .. "\n")
end

--- silently(fn) -> fn's results, with io.output sent to /dev/null while it runs (errors pass through)
function M.silently(fn)
  local saved = io.output()
  io.output("/dev/null")
  local ok, a, b = pcall(fn)
  io.output():close()
  io.output(saved)
  if not ok then error(a, 0) end
  return a, b
end

return M
