-- bench_audio.lua — COCOLA front ends over a batch: ms per batch (median of REPEATS) of
-- cocola.audio.cocola_features in "mel" and "hpss" modes, beside torchaudio MelSpectrogram + AmplitudeToDB
-- measured in the same run (recipes/reference/bench_audio_torch.py with /usr/bin/python3, when present).
-- Usage: lua5.4 recipes/bench_audio.lua [BATCH=32] [THREADS=2] [REPEATS=7]
-- Targets: mel at least 2x faster than torchaudio; hpss within 3x of mel.
local cocola = require "cocola"
local audio = require "cocola.audio"

local B, threads, repeats = tonumber(arg[1]) or 32, tonumber(arg[2]) or 2, tonumber(arg[3]) or 7
local samples = 5 * 16000
cocola.set_num_threads(threads)
cocola.manual_seed(0)
local x = cocola.randn({ B, samples }) * 0.1

local function wall()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("l"))
  p:close()
  return t
end

local function bench(mode)
  audio.cocola_features(x, { mode = mode }) -- warm up (FFT plans)
  local ts = {}
  for i = 1, repeats do
    local t0 = wall()
    audio.cocola_features(x, { mode = mode })
    ts[i] = (wall() - t0) * 1e3
  end
  table.sort(ts)
  return ts[(repeats + 1) // 2]
end

local mel = bench("mel")
local hpss = bench("hpss")

local torch_ms
local script = "recipes/reference/bench_audio_torch.py"
local f = io.open("/usr/bin/python3", "r")
if f and io.open(script, "r") then
  f:close()
  local p = io.popen(string.format("/usr/bin/python3 %s %d %d %d %d 2>/dev/null", script, B, samples, threads, repeats))
  local out = p:read("a") or ""
  p:close()
  torch_ms = tonumber(out:match('"torchaudio_mel_ms":%s*([%d%.eE+-]+)'))
end

print(string.format("batch %d x 5 s, %d threads, median of %d", B, threads, repeats))
print(string.format("cocola mel    %8.2f ms/batch", mel))
print(string.format("cocola hpss   %8.2f ms/batch  (%.2fx mel; target <= 3x)", hpss, hpss / mel))
if torch_ms then
  print(string.format("torchaudio mel %7.2f ms/batch  (cocola mel is %.2fx faster; target >= 2x)", torch_ms, torch_ms / mel))
else
  print("torchaudio: not available (no /usr/bin/python3 or reference script)")
end
