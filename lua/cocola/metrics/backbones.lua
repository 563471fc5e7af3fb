-- cocola.metrics.backbones — the embedding backbones of FAD, one interface for all:
--   backbones.open(spec, ctx) -> backbone {name, sample_rate, embed_file = function(path) -> (frames, D)}
--   backbones.stats_of(backbone, paths, progress?) -> cocola.metrics.fad statistics of all their frames
--   backbones.fad(reference_stats, stats) -> the Fréchet distance
-- Specs:
--   cocola          the window embeddings (cocola.scoring: 5 s windows) of ctx.models[1], the vectors its
--                   bilinear score compares (512-d for the paper's models; the frames of a chroma-onset
--                   model, each frame a row of frame_size values)
--   cocola=CKPT     the same with that model (a checkpoint, "default" or a baseline name)
--   cocola-pre[=CKPT]  EfficientNet COCOLA models: the 1280-d encoder features before the projection
--   vggish=FILE     VGGish (vggish-10086976.pth), 0.96 s examples at 16 kHz, 128-d, no PCA, no final ReLU
--   encodec=DIR     the EnCodec 24 kHz encoder (a transformers EncodecModel folder), 75 frames/s, 128-d
--   clap=DIR        CLAP's audio tower (a transformers ClapModel folder), 10 s chunks every 1 s, 512-d
-- Audio is read mono (mean of the channels) and resampled to the backbone's rate with libsoxr.
local cocola = require "cocola"
local scoring = require "cocola.scoring"

local backbones = {}

local function fad_module() return require "cocola.metrics.fad" end

local function load_mono(path, rate)
  return cocola.audio.load(path, { sr = rate, mono = true }):view(-1)
end

local function cocola_model(spec, ctx)
  if spec == nil or spec == "" then
    if not (ctx and ctx.models and ctx.models[1]) then
      error("backbone cocola: no model given (cocola=CHECKPOINT)", 0)
    end
    return ctx.models[1]
  end
  return (require("cocola.recipes.eval").load_model(spec))
end

local OPENERS = {}

function OPENERS.cocola(arg, ctx)
  local model = cocola_model(arg, ctx)
  -- frame models (chroma-onset COCOLA) embed a window as T frames of frame_size values: each frame is a row
  local frame = model.encoder and model.encoder.frame_size
  return {
    name = "COCOLA", sample_rate = scoring.SAMPLE_RATE,
    embed_file = function(path)
      local e = scoring.embed_waves(model, load_mono(path, scoring.SAMPLE_RATE))
      if frame and e:size(2) % frame == 0 then e = e:reshape({ -1, frame }) end
      return e
    end,
  }
end

OPENERS["cocola-pre"] = function(arg, ctx)
  local model = cocola_model(arg, ctx)
  local enc = model.encoder and model.encoder.encoder
  if not enc then
    error("backbone cocola-pre: the model has no EfficientNet encoder before a projection (an EfficientNet COCOLA "
      .. "checkpoint has; use backbone cocola for this one)", 0)
  end
  -- the embedding path of the model with the projection and what follows it left out
  local pre = setmetatable({}, { __index = model })
  function pre:embed(features) return cocola.no_grad(function() return enc(features) end) end
  return {
    name = "COCOLA-pre", sample_rate = scoring.SAMPLE_RATE,
    embed_file = function(path) return (scoring.embed_waves(pre, load_mono(path, scoring.SAMPLE_RATE))) end,
  }
end

local function need(arg, name, what)
  if arg == nil or arg == "" then error(string.format("backbone %s: give %s (%s=...)", name, what, name), 0) end
  return arg
end

-- audio read at its own rate, channels averaged; the model resamples
local function load_native(path)
  local w, sr = cocola.audio.load(path, { mono = true })
  return w:view(-1), sr
end

-- a backbone over a model with embed(wave, sr) and embed_batch({{wave, sr}, ...}): files read at their own
-- rate (the model resamples), `batch` files per forward pass
local function batched(name, rate, batch, model)
  return { name = name, sample_rate = rate, batch = batch,
    embed_file = function(path) return model:embed(load_native(path)) end,
    embed_files = function(paths)
      local waves = {}
      for i, path in ipairs(paths) do waves[i] = { load_native(path) } end
      return model:embed_batch(waves)
    end }
end

-- VGGish: 16 files a pass, so that the 12288 -> 4096 layer reads its 200 MB of weights once a batch instead of
-- once a (10-example) file
function OPENERS.vggish(arg)
  return batched("VGGish", 16000, 16,
    require("cocola.models.vggish").from_file(need(arg, "vggish", "the weights file vggish-10086976.pth")))
end

-- EnCodec: 8 files a pass (those of equal length share the LSTM's steps)
function OPENERS.encodec(arg)
  return batched("EnCodec", 24000, 8,
    require("cocola.models.encodec").from_pretrained(need(arg, "encodec", "an EnCodec 24 kHz folder")))
end

function OPENERS.clap(arg)
  local ClapAudio = require "cocola.models.text.clap_audio"
  local model = ClapAudio.from_pretrained(need(arg, "clap", "a CLAP (transformers ClapModel) folder"))
  return { name = "CLAP", sample_rate = 48000,
    embed_file = function(path) return model:embed_chunks(load_mono(path, 48000), { chunk_s = 10, hop_s = 1 }) end }
end

local KNOWN = "cocola, cocola-pre, vggish=FILE, encodec=DIR, clap=DIR"

--- open(spec, ctx) -> backbone; spec "name" or "name=argument"
function backbones.open(spec, ctx)
  local name, arg = tostring(spec):match("^([^=]+)=(.*)$")
  if not name then name = tostring(spec) end
  local opener = OPENERS[name]
  if not opener then error(string.format("unknown FAD backbone '%s' (known: %s)", name, KNOWN), 0) end
  return opener(arg, ctx)
end

--- register(name, opener): adds a backbone; opener(argument, ctx) -> backbone
function backbones.register(name, opener) OPENERS[name] = opener end

backbones.MAX_DIM = 8192

--- embed_files(backbone, paths) -> their embeddings, in batches of files where the backbone has them
function backbones.embed_files(bb, paths)
  if bb.embed_files and #paths > 1 then return bb.embed_files(paths) end
  local out = {}
  for i, path in ipairs(paths) do out[i] = bb.embed_file(path) end
  return out
end

--- stats_of(backbone, paths, progress?, embed_chunk?) -> the float64 mean and covariance statistics of every
--- frame of every file, and the number of frames; files go bb.batch at a time through embed_chunk(paths) ->
--- embeddings (default backbones.embed_files; cocola.metrics.fad_folders passes its cached one)
function backbones.stats_of(bb, paths, progress, embed_chunk)
  embed_chunk = embed_chunk or function(list) return backbones.embed_files(bb, list) end
  local stats, frames, batch = fad_module().stats(), 0, bb.batch or 1
  for first = 1, #paths, batch do
    local list = table.move(paths, first, math.min(first + batch - 1, #paths), 1, {})
    for k, e in ipairs(embed_chunk(list)) do
      if e:dim() ~= 2 or e:size(2) > backbones.MAX_DIM then
        error(string.format("backbone %s: embeddings of %s are %s; FAD needs (frames, D) with D at most %d (a D x D covariance)",
          bb.name, list[k], e:shape_string(), backbones.MAX_DIM), 0)
      end
      if e:size(1) > 0 then stats:add(e) end
      frames = frames + e:size(1)
      if progress then progress(first + k - 1, #paths) end
    end
  end
  return stats, frames
end

--- fad(reference_stats, stats) -> FAD of stats against the reference
function backbones.fad(ref, stats) return (fad_module().score(ref, stats)) end

return backbones
