-- recipes/bench_fad.lua — the whole FAD job over many ten-second files, per backbone, beside PyTorch:
-- read each file, resample it to the backbone's rate, embed it, fold its frames into the Gaussian
-- statistics, and the Fréchet distance between the first half of the files and the second half.
-- The files are synthetic music-like clips (a plucked melody with harmonics, a bass line, noise-burst
-- drums; 16 kHz mono PCM16, 10 s each) made from a fixed seed in a temporary folder, removed at the end.
-- Backbones, each a real-size network with random weights, the same weights on both sides:
--   vggish   torchvggish's VGG (72 M parameters), 0.96 s examples at 16 kHz, no final ReLU (the FAD
--            libraries' use); written as a torchvggish-keyed state dict (safetensors)
--   encodec  the EnCodec 24 kHz encoder (transformers EncodecConfig's defaults), 75 frames a second;
--            written as a transformers folder (config.json + model.safetensors, the encoder's tensors; the
--            PyTorch side lets transformers initialise the quantizer and the decoder, which are not used)
--   clap     CLAP's HTSAT audio tower + projection (AudioLDM 2's / LAION's unfused configuration), 10 s
--            chunks every 1 s (fadtk's framing: 10 chunks a 10 s file, the heavy one); a transformers
--            ClapModel folder with a preprocessor_config.json
-- cocola: cocola.metrics.backbones (libsoxr resampling) + cocola.metrics.fad (statistics and distance in
-- C). PyTorch (recipes/reference/bench_fad_torch.py, same run): soundfile, resampy as the FAD libraries
-- resample (torchaudio.functional.resample when resampy is missing; the output names the one used),
-- torchvggish restated (spec/fixtures/gen_vggish.py) / transformers 4.38 EncodecModel / ClapModel, NumPy
-- mean and covariance and scipy.linalg.sqrtm as frechet_audio_distance computes the distance.
-- Each side is timed once over the whole job (models loaded before; no other warm-up), and both print the
-- FAD of the two halves: with the same weights they agree closely; the resamplers differ (soxr HQ against
-- resampy's kaiser_best), so EnCodec's and CLAP's inputs differ slightly, VGGish's not (16 kHz files);
-- torch_resampler=soxr resamples the PyTorch side with libsoxr too, and then all the FADs agree.
-- Usage: lua5.4 recipes/bench_fad.lua [files=200] [backbones=vggish,encodec,clap] [threads=2] [torch=true]
--        [python=/opt/genoracle/bin/python] [torch_resampler=auto] [seed=0]
--   files      number of ten-second files (at least 4; the halves are files // 2 and the rest)
--   backbones  any subset of vggish, encodec, clap, comma-separated
--   threads    threads of both sides
--   torch      false: only the cocola side
--   python     the interpreter with torch, transformers, safetensors, soundfile, scipy (and resampy)
--   torch_resampler  auto: resampy, else torchaudio (the FAD libraries' way); soxr: python-soxr HQ, the
--              resampler cocola uses, so that both sides embed the same samples and the FADs match
--   seed       the seed of the audio and of the random weights
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local cjson = require "cjson"
local backbones = require "cocola.metrics.backbones"

local config = recipe.config({ files = 200, backbones = "vggish,encodec,clap", threads = 2, torch = true,
  python = "/opt/genoracle/bin/python", torch_resampler = "auto", seed = 0 }, arg)
recipe.log_config(config)
cocola.set_num_threads(config.threads)

local SR, SECONDS = 16000, 10
local KNOWN = { vggish = true, encodec = true, clap = true }
local selected = {}
for name in tostring(config.backbones):gmatch("[^,%s]+") do
  if not KNOWN[name] then error("bench_fad: unknown backbone '" .. name .. "' (known: vggish, encodec, clap)", 0) end
  selected[#selected + 1] = name
end
if #selected == 0 then error("bench_fad: no backbone given (backbones=vggish,encodec,clap)", 0) end
if config.torch_resampler ~= "auto" and config.torch_resampler ~= "soxr" then
  error("bench_fad: torch_resampler must be auto or soxr", 0)
end
if math.type(config.files) ~= "integer" or config.files < 4 then
  error("bench_fad: files must be an integer of at least 4", 0)
end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function write_json(path, t)
  local f = assert(io.open(path, "w"))
  f:write(cjson.encode(t))
  f:close()
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. quote(dir .. "/audio")), "bench_fad: cannot create " .. dir)

-- ---- the audio: synthetic music-like clips from a fixed seed ------------------------------------------
math.randomseed(config.seed)
cocola.manual_seed(config.seed)
local N = SR * SECONDS
local SCALE = { 0, 3, 5, 7, 10, 12, 15, 17, 19 } -- minor pentatonic over two octaves

local function ramp(len) return cocola.arange(0, len):to("float32") / SR end

-- a plucked tone: harmonics 1..4 with 1/h amplitudes under an exponential decay, a 5 ms attack
local function tone(freq, len, decay, amp)
  local t = ramp(len)
  local w = (t * (2 * math.pi * freq)):sin()
  for h = 2, 4 do w = w + (t * (2 * math.pi * freq * h)):sin() * (1 / h) end
  local env = (t * (-1 / decay)):exp() * (t * 200):clamp(0, 1)
  return w * env * amp
end

-- a stream of segments (each a function of its length) cut to N samples
local function stream(step, make)
  local parts, at = {}, 0
  while at < N do
    local len = math.min(step(), N - at)
    parts[#parts + 1] = make(len)
    at = at + len
  end
  return cocola.cat(parts, 1)
end

local function make_clip()
  local root = 220 * 2 ^ (math.random(-5, 6) / 12)
  local beat = math.floor(SR * 60 / math.random(80, 140))
  local melody = stream(function() return beat // (math.random() < 0.6 and 2 or 1) end, function(len)
    if math.random() < 0.15 then return cocola.zeros({ len }) end
    return tone(root * 2 ^ (SCALE[math.random(#SCALE)] / 12), len, 0.08 + 0.2 * math.random(), 0.3)
  end)
  local bass = stream(function() return 2 * beat end, function(len)
    return tone(root / 2 * 2 ^ (SCALE[math.random(4)] / 12), len, 0.4, 0.35)
  end)
  local drums = stream(function() return beat // 2 end, function(len)
    local t = ramp(len)
    local kick = math.random() < 0.5
    local hit = kick and (t * (2 * math.pi * 60)):sin() * (t * -25):exp() * 0.6
      or cocola.randn({ len }) * (t * -40):exp() * 0.15
    return hit
  end)
  local w = melody + bass + drums
  local peak = w:abs():max():item()
  return (w * (0.8 / peak)):view(1, N)
end

local paths = {}
for i = 1, config.files do
  recipe.progress("writing audio", i - 1, config.files)
  paths[i] = string.format("%s/audio/clip_%04d.wav", dir, i)
  cocola.audio.save(paths[i], make_clip(), SR, { subtype = "pcm16" })
end
recipe.progress("writing audio", config.files, config.files)
recipe.end_progress()
local half = config.files // 2
local first, second = {}, {}
for i, p in ipairs(paths) do if i <= half then first[#first + 1] = p else second[#second + 1] = p end end

-- ---- the networks: real size, random weights, written in the upstream layouts -------------------------
local META = { metadata = { format = "pt" } }
local WRITERS = {}

function WRITERS.vggish()
  local model = require("cocola.models.vggish").VGGish()
  local path = dir .. "/vggish.safetensors"
  cocola.save(path, model:state_dict(), META)
  return "vggish=" .. path, model:num_parameters()
end

function WRITERS.encodec()
  local EncodecModel = require "cocola.models.encodec"
  local model = EncodecModel({})
  local cfg = {}
  for k, v in pairs(model.config) do cfg[k] = v end
  cfg.model_type = "encodec"
  local out = dir .. "/encodec"
  os.execute("mkdir -p " .. quote(out))
  write_json(out .. "/config.json", cfg)
  cocola.save(out .. "/model.safetensors", model:state_dict(), META)
  return "encodec=" .. out, model:num_parameters()
end

function WRITERS.clap()
  local ClapAudio = require "cocola.models.text.clap_audio"
  local cfg = require("cocola.models.audioldm2.configs").clap_audio()
  cfg.model_type = "clap"
  local model = ClapAudio(cfg)
  local out = dir .. "/clap"
  os.execute("mkdir -p " .. quote(out))
  write_json(out .. "/config.json", cfg)
  write_json(out .. "/preprocessor_config.json", { feature_extractor_type = "ClapFeatureExtractor",
    feature_size = 64, sampling_rate = 48000, hop_length = 480, max_length_s = 10, fft_window_size = 1024,
    frequency_min = 50, frequency_max = 14000, truncation = "rand_trunc", padding = "repeatpad",
    padding_value = 0.0, return_attention_mask = false })
  cocola.save(out .. "/model.safetensors", model:state_dict(), META)
  return "clap=" .. out, model:num_parameters()
end

local LABELS = {
  vggish = "VGGish (16 kHz, no resampling), 0.96 s examples",
  encodec = "EnCodec 24 kHz encoder (16 -> 24 kHz), 75 frames/s",
  clap = "CLAP audio tower (16 -> 48 kHz), 10 s chunks every 1 s",
}

-- ---- the cocola side ----------------------------------------------------------------------------------
local ours = {}
for _, name in ipairs(selected) do
  cocola.manual_seed(config.seed)
  local spec, params = WRITERS[name]()
  collectgarbage()
  local bb = backbones.open(spec)
  local t0 = cocola.wall_time()
  local a = backbones.stats_of(bb, first, function(i) recipe.progress(name .. " (cocola)", i, #paths) end)
  local b = backbones.stats_of(bb, second, function(i) recipe.progress(name .. " (cocola)", half + i, #paths) end)
  local distance = backbones.fad(a, b)
  local ms = (cocola.wall_time() - t0) * 1000
  recipe.end_progress()
  ours[name] = { ms = ms, fad = distance, frames = a:count() + b:count(), dim = a:dim(), params = params }
  bb = nil
  collectgarbage()
end

-- ---- the PyTorch side ---------------------------------------------------------------------------------
local torch_result
if config.torch then
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  local cmd = string.format("%s %s/reference/bench_fad_torch.py %s %d %s %d %s 2>/dev/null", config.python, here,
    quote(dir), config.threads, table.concat(selected, ","), half, config.torch_resampler)
  local p = io.popen(cmd)
  local out = p and p:read("a") or ""
  if p then p:close() end
  local json = out:match("(%b{})%s*$")
  if json then torch_result = cjson.decode(json) end
end
os.execute("rm -rf " .. quote(dir))

-- ---- report -------------------------------------------------------------------------------------------
local tr = torch_result or {}
print(string.format("\nFAD job per backbone: %d files of %d s (16 kHz mono), FAD of files 1-%d against %d-%d, "
  .. "%d threads, one run", config.files, SECONDS, half, half + 1, config.files, config.threads))
local rows = {}
for _, name in ipairs(selected) do
  local o, t = ours[name], tr[name]
  rows[#rows + 1] = { string.format("%s, %d files", LABELS[name], config.files), o.ms, t and t.ms or nil }
end
recipe.print_ratio_table(rows)
print("\n| backbone | parameters | frames (D) | FAD cocola | FAD PyTorch | relative difference |")
print("|---|---:|---:|---:|---:|---:|")
for _, name in ipairs(selected) do
  local o, t = ours[name], tr[name]
  print(string.format("| %s | %d | %d (%d) | %.6g | %s | %s |", name, o.params, o.frames, o.dim, o.fad,
    t and string.format("%.6g", t.fad) or "n/a",
    t and string.format("%.2e", math.abs(o.fad - t.fad) / math.max(math.abs(t.fad), 1e-30)) or "n/a"))
  if t and t.frames ~= o.frames then
    print(string.format("  (%s: PyTorch pooled %d frames, cocola %d)", name, t.frames, o.frames))
  end
end
print("resampling: cocola libsoxr (HQ)" .. (torch_result and ("; PyTorch " .. tr.resampler) or ""))
if torch_result then
  print(string.format("PyTorch %s, transformers %s, NumPy %s, SciPy %s", tr.torch, tr.transformers, tr.numpy, tr.scipy))
else
  print("PyTorch not measured (torch=false, or " .. config.python .. " lacks what the reference script needs)")
end
