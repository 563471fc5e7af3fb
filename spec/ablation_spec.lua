-- ablation_spec.lua — recipes/ablate_coherence.lua on a tiny stems folder: each variant trains its
-- steps from the same initial weights, a finished variant is not trained again, and ablation.md has
-- a row per variant beside the starting model and the chroma-onset baseline.
local cocola = require "cocola"
local fs = require "cocola.data.fs"
local files = require "helpers.files"
local BUILD = require("helpers.cli").BUILD

local RATE = 16000

describe("recipes/ablate_coherence.lua", function()
  local dir = files.tmpdir()
  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("trains each variant from the same weights and tabulates them beside the baseline", function()
    for _, split in ipairs({ "train", "validation" }) do
      for t = 1, 3 do
        local track = string.format("%s/data/%s/track%d", dir, split, t)
        fs.mkdir_p(track)
        for s = 1, 3 do
          local rows = {}
          for i = 1, 8 * RATE do
            local time = i / RATE
            rows[i] = 0.2 * math.sin(2 * math.pi * (110 * s + 17 * t + 9 * time) * time) * (0.7 + 0.3 * math.cos(3 * time))
          end
          cocola.audio.save(track .. "/stem" .. s .. ".wav", cocola.tensor({ rows }), RATE, { subtype = "float" })
        end
      end
    end
    cocola.manual_seed(1)
    cocola.save(dir .. "/init.safetensors", cocola.models.cocola({ input = "hpss" }):state_dict())
    local command = string.format([[lua5.4 -e 'package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
      package.cpath = "./%s/?.so;" .. package.cpath' recipes/ablate_coherence.lua layout=stems_folder root=%s/data
      init=%s/init.safetensors out=%s/out variants=paper,negatives steps=1 batch_size=2 bn_recalibration_batches=1
      warmup_steps=0 protocols=paper,shifted max_windows=6 min_distance=5]], BUILD, dir, dir, dir)
    command = command:gsub("\n%s*", " ")
    local ok, out = files.sh(command)
    assert.is_true(ok, out)
    local table_text = assert(io.open(dir .. "/out/ablation.md")):read("a")
    for _, model in ipairs({ "init", "paper/best", "negatives/best", "chroma%-onset" }) do
      assert.truthy(table_text:find("\n| " .. model .. " |"), model .. " row in\n" .. table_text)
    end
    assert.truthy(table_text:find("| paper K=2 | shifted K=2 |", 1, true), table_text)
    -- each variant ran its one step from the initial weights; a second call trains nothing again
    for _, v in ipairs({ "paper", "negatives" }) do
      local state = require("cjson").decode(assert(io.open(dir .. "/out/" .. v .. "/last/state.json")):read("a"))
      assert.are.equal(1, state.step)
    end
    local ok2, out2 = files.sh(command)
    assert.is_true(ok2, out2)
    assert.falsy(out2:find("== variant", 1, true), "a finished variant was trained again")
  end)

  it("ablates the chroma-onset model from fresh weights, with gains but no equalisation", function()
    local command = string.format([[lua5.4 -e 'package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
      package.cpath = "./%s/?.so;" .. package.cpath' recipes/ablate_coherence.lua layout=stems_folder root=%s/data
      input=chroma_onset init= out=%s/frames variants=paper,augment steps=1 batch_size=2 warmup_steps=0
      protocols=paper max_windows=6 min_distance=5 frame_prior=0]], BUILD, dir, dir)
    local ok, out = files.sh((command:gsub("\n%s*", " ")))
    assert.is_true(ok, out)
    assert.truthy(out:find("input=chroma_onset", 1, true), out)
    assert.truthy(out:find("frame_prior=0", 1, true), out)
    assert.truthy(out:find("gain_db=6", 1, true), out)
    assert.falsy(out:find("eq_db=", 1, true), out)
    local table_text = assert(io.open(dir .. "/frames/ablation.md")):read("a")
    assert.truthy(table_text:find("fresh weights (seed 0)", 1, true), table_text)
    assert.truthy(table_text:find("(input chroma_onset, frame_prior 0)", 1, true), table_text)
    for _, model in ipairs({ "paper/best", "augment/best", "chroma%-onset" }) do
      assert.truthy(table_text:find("\n| " .. model .. " |"), model .. " row in\n" .. table_text)
    end
    assert.falsy(table_text:find("\n| init |"), table_text)
  end)
end)
