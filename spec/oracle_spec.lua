-- oracle_spec.lua — parity with the reference's own libraries, run live: real librosa 0.10.1
-- computes the COCOLA HPSS features of a test signal, and the real efficientnet_pytorch 0.7.1
-- EfficientNet-B0 gives its state dict and output, which our encoder loads strictly and must
-- reproduce. Needs the oracle environment (`make oracle` creates /opt/oracle); pending without it.
local cocola = require "cocola"
local EfficientNet = require "cocola.models.efficientnet.EfficientNet"

local PYTHON = "/opt/oracle/bin/python"
local have = io.open(PYTHON, "rb")
if have then have:close() end
local run = have and it or pending

local tmpdir = require("helpers.files").tmpdir

local function python(script, dir)
  local p = io.popen(string.format("%s spec/oracle/%s %s 2>&1", PYTHON, script, dir))
  local out = p:read("a")
  assert(p:close(), out)
end

local function read_f32(path, n)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  local t = {}
  for i = 1, n do t[i] = string.unpack("<f", s, 4 * (i - 1) + 1) end
  return t
end

describe("parity with the reference's libraries (/opt/oracle)", function()
  run("HPSS features equal librosa's within 1e-3 dB", function()
    local dir = tmpdir()
    python("librosa_hpss.py", dir)
    local x = cocola.tensor({ read_f32(dir .. "/x.f32", 80000) })
    local ref = cocola.tensor(read_f32(dir .. "/ref.f32", 2 * 64 * 501)):view(1, 2, 64, 501)
    local ours = cocola.audio.cocola_features(x, { mode = "hpss" })
    local worst = ((ours - ref):abs() * ref:gt(-79)):max():item()
    assert.is_true(worst <= 1e-3, "max dB difference " .. worst)
  end)

  run("EfficientNet-B0 loads efficientnet_pytorch's state dict strictly and matches its output", function()
    local dir = tmpdir()
    python("efficientnet.py", dir)
    local sd = cocola.load(dir .. "/effnet.safetensors")
    local x, y = sd.__input, sd.__output
    sd.__input, sd.__output = nil, nil
    local model = EfficientNet { in_channels = 2 }
    model:load_state_dict(sd) -- strict: every name and shape must agree
    model:eval()
    local out = cocola.no_grad(function() return model(x) end)
    local err = ((out - y):pow(2):sum():sqrt() / y:pow(2):sum():sqrt()):item()
    assert.is_true(err < 1e-4, "relative error " .. err)
  end)
end)
