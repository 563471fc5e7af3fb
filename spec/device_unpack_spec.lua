-- device_unpack_spec.lua — the unpack scripts of recipes/device/ on folders shaped like what the GPU machine
-- sends back (read-only files, large ones split into NAME.part00, NAME.part01 ...): unpack_msdm.sh makes a model
-- folder that cocola.models.msdm reads back with the same weights, unpack.sh a training folder; a missing
-- part and a missing file are named; an existing destination is set aside, not overwritten.
local cocola = require "cocola"
local files = require "helpers.files"
local compare = require "helpers.compare"
local msdm = require "cocola.models.msdm"

local D = "spec/fixtures/msdm/"
local TINY = dofile(D .. "tiny_config.lua")

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- a fetched folder: the files of a tiny MSDM model folder, the weights in parts of `part` bytes, read-only
local function fetched(part)
  local model = files.tmpdir()
  cocola.manual_seed(3)
  local net = msdm.UNet1d.from_config(TINY)
  msdm.save_pretrained(net, model, {})
  local out = files.tmpdir()
  assert(files.sh(string.format("split -b %d -d -a 2 %s %s && cp %s %s && echo 'step 1' > %s && chmod a-w %s/*", part,
    q(model .. "/model.safetensors"), q(out .. "/model.safetensors.part"), q(model .. "/config.json"), q(out),
    q(out .. "/train.log"), q(out))))
  return out, net
end

local function unpack(script, ...)
  local args = { "bash", "recipes/device/" .. script }
  for _, a in ipairs({ ... }) do args[#args + 1] = q(a) end
  return files.sh(table.concat(args, " "))
end

describe("recipes/device unpack scripts", function()
  it("unpack_msdm.sh joins the parts into a model folder with the trained weights, and sets an old one aside", function()
    local src, net = fetched(20000)
    assert.is_true(files.sh("test -e " .. q(src .. "/model.safetensors.part02")))
    local dest = files.tmpdir() .. "/run"
    local ok, out = unpack("unpack_msdm.sh", src, dest)
    assert.is_true(ok, out)
    local loaded = msdm.from_pretrained(dest .. "/model")
    local want = net:state_dict()
    local n = 0
    for k, t in pairs(loaded:state_dict()) do compare.assert_close(t, want[k], 0, k) n = n + 1 end
    assert.is_true(n > 10)
    assert.equal("step 1\n", files.read(dest .. "/train.log"))
    ok, out = unpack("unpack_msdm.sh", src, dest)
    assert.is_true(ok, out)
    assert.matches("the previous .*/run is now .*/run%.1", out)
    assert.is_true(files.sh("test -f " .. q(dest .. ".1/model/model.safetensors")))
  end)

  it("names a missing part, a missing file and a bad call", function()
    local src = fetched(20000)
    local function without(...)
      local cut = files.tmpdir()
      assert(files.sh(string.format("cp %s/* %s && chmod -R u+w %s", q(src), q(cut), q(cut))))
      for _, name in ipairs({ ... }) do assert(os.remove(cut .. "/" .. name)) end
      return unpack("unpack_msdm.sh", cut, files.tmpdir() .. "/x")
    end
    local parts = 0
    while files.sh("test -e " .. q(string.format("%s/model.safetensors.part%02d", src, parts))) do parts = parts + 1 end
    assert.is_true(parts >= 3)
    local ok, out = without("model.safetensors.part01")
    assert.is_falsy(ok)
    assert.matches("model%.safetensors: " .. (parts - 1) .. " parts up to part" .. string.format("%02d", parts - 1)
      .. " %(one is missing%)", out)
    ok, out = without(string.format("model.safetensors.part%02d", parts - 1))
    assert.is_falsy(ok)
    assert.matches("model%.safetensors is not a whole safetensors file %(a part missing%?%)", out)
    ok, out = without("config.json")
    assert.is_falsy(ok)
    assert.matches("holds no config%.json", out)
    ok, out = unpack("unpack_msdm.sh")
    assert.is_falsy(ok)
    assert.matches("usage: unpack_msdm%.sh FETCHED_FOLDER", out)
  end)

  it("unpack.sh puts a COCOLA run's parts back into a training folder", function()
    local src = fetched(30000)
    local dest = files.tmpdir() .. "/device"
    local ok, out = unpack("unpack.sh", src, dest)
    assert.is_true(ok, out)
    local whole = ""
    for k = 0, 99 do
      local part = string.format("%s/model.safetensors.part%02d", src, k)
      if not files.sh("test -e " .. q(part)) then break end
      whole = whole .. files.read(part)
    end
    assert.equal(whole, files.read(dest .. "/last/model.safetensors"))
    assert.equal("step 1\n", files.read(dest .. "/train.log"))
    assert.matches("continue with init=.*/last/model%.safetensors", out)
  end)
end)
