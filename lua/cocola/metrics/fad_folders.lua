-- cocola.metrics.fad_folders — FAD between two folders (or lists) of audio files with one backbone
-- (cocola.metrics.backbones), the way `cocola fad` runs it:
--   fad_folders.run(reference, evaluated, {backbone = "vggish=FILE", model = COCOLA model (backbone cocola),
--     cache = DIR | false, progress = function(label, i, n)}) -> {score, used_eps, backbone,
--     reference = {files, frames}, evaluated = {files, frames}, cached = number of embeddings read back}
-- Each file's (frames, D) embeddings are cached in DIR (default: $XDG_CACHE_HOME/cocola/fad or
-- ~/.cache/cocola/fad; cache = false turns it off) under the FNV-1a hash of the file's bytes and of the
-- backbone's identity (its spec and, for weight files and folders, their sizes and modification times),
-- so a folder scored against several others is embedded once. A cache entry that cannot be read is
-- recomputed. Folders are read without recursion; every audio file in them counts (cocola.scoring's
-- extensions); an empty folder or one with fewer than 2 frames in all is an error naming it.
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local scoring = require "cocola.scoring"
local backbones = require "cocola.metrics.backbones"
local fad = require "cocola.metrics.fad"

local M = {}

local function lfs() return require "lfs" end

--- the FNV-1a hash of a file's bytes (64-bit words, little-endian, then the tail bytes), 16 hex digits
function M.file_hash(path)
  local f, err = io.open(path, "rb")
  if not f then error(string.format("cannot read '%s': %s", path, tostring(err)), 0) end
  local h = -3750763034362895579
  local prime = 1099511628211
  while true do
    local block = f:read(1 << 20)
    if not block then break end
    local n8 = #block - #block % 8
    for i = 1, n8, 8 do
      h = (h ~ string.unpack("<i8", block, i)) * prime
    end
    for i = n8 + 1, #block do h = (h ~ block:byte(i)) * prime end
  end
  f:close()
  return string.format("%016x", h)
end

-- identity of a backbone: its spec, and the size and modification time of the file or folder it names
local function identity(spec)
  local arg = tostring(spec):match("=(.+)$")
  local parts = { tostring(spec) }
  if arg then
    local attr = lfs().attributes(arg)
    if attr then
      if attr.mode == "directory" then
        for name in lfs().dir(arg) do
          local a = lfs().attributes(arg .. "/" .. name)
          if a and a.mode == "file" then parts[#parts + 1] = name .. ":" .. a.size .. ":" .. a.modification end
        end
        table.sort(parts)
      else
        parts[#parts + 1] = attr.size .. ":" .. attr.modification
      end
    end
  end
  return recipe.fnv1a(table.concat(parts, ";"))
end

function M.default_cache()
  local base = os.getenv("XDG_CACHE_HOME")
  if not base or base == "" then base = (os.getenv("HOME") or "/tmp") .. "/.cache" end
  return base .. "/cocola/fad"
end

local function audio_list(what, x)
  if type(x) == "table" then
    if #x == 0 then error(what .. ": no audio files given", 0) end
    return x
  end
  if type(x) ~= "string" then error(what .. ": expected a folder or a list of files", 0) end
  local mode = lfs().attributes(x, "mode")
  if not mode then error(string.format("%s: no such file or folder: '%s'", what, x), 0) end
  if mode ~= "directory" then return { x } end
  local by_stem, stems = scoring.audio_files(x)
  if #stems == 0 then error(string.format("%s: no audio files in '%s'", what, x), 0) end
  local out = {}
  for i, stem in ipairs(stems) do out[i] = x .. "/" .. by_stem[stem] end
  return out
end

-- the embeddings of a chunk of files: read back from the cache where they are, the others embedded together
-- (backbones.embed_files: in batches of files where the backbone has them) and stored; also how many hit
local function embed_chunk(bb, id, paths, cache)
  local out, keys, misses, hits = {}, {}, {}, 0
  for i, path in ipairs(paths) do
    if cache then
      keys[i] = cache .. "/" .. id .. "/" .. M.file_hash(path) .. ".safetensors"
      local ok, t = pcall(cocola.load, keys[i])
      if ok and type(t) == "table" and cocola.is_tensor(t.embeddings) then out[i], hits = t.embeddings, hits + 1 end
    end
    if not out[i] then misses[#misses + 1] = i end
  end
  if #misses > 0 then
    local list = {}
    for k, i in ipairs(misses) do list[k] = paths[i] end
    local embedded = backbones.embed_files(bb, list)
    for k, i in ipairs(misses) do
      out[i] = embedded[k]
      if cache then
        os.execute("mkdir -p '" .. (cache .. "/" .. id):gsub("'", "'\\''") .. "'")
        local tmp = keys[i] .. ".tmp"
        if pcall(cocola.save, tmp, { embeddings = out[i]:contiguous() }) then os.rename(tmp, keys[i]) else os.remove(tmp) end
      end
    end
  end
  return out, hits
end

function M.run(reference, evaluated, opts)
  opts = opts or {}
  local spec = opts.backbone or "vggish"
  local bb = backbones.open(spec, { models = { opts.model } })
  local id = identity(spec) .. "-" .. (opts.model and require("cocola.ranking").model_identity(opts.model).fingerprint or "")
  local cache = opts.cache
  if cache == nil then cache = M.default_cache() end
  local result = { backbone = bb.name, cached = 0 }
  local sets = {}
  for k, side in ipairs({ { "reference", reference }, { "evaluated", evaluated } }) do
    local files = audio_list(side[1], side[2])
    local stats, frames = backbones.stats_of(bb, files,
      opts.progress and function(i, n) opts.progress(side[1], i, n) end,
      function(list)
        local embedded, hits = embed_chunk(bb, id, list, cache)
        result.cached = result.cached + hits
        return embedded
      end)
    if frames < 2 then
      error(string.format("%s: %d embedding frames from %d files with backbone %s; FAD needs at least 2 (files shorter than one %s frame?)",
        side[1], frames, #files, bb.name, bb.name), 0)
    end
    sets[k] = stats
    result[side[1]] = { files = #files, frames = frames }
  end
  result.score, result.used_eps = fad.score(sets[1], sets[2])
  return result
end

return M
