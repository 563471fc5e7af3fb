-- bundled_componet_spec.lua — the bundled CompoNet, assets/componet (recipes/train_componet_local.sh, then
-- recipes/export_componet.lua): a self-contained pipeline folder whose weights are all float16, that loads
-- as a CompoNet (ControlNet, U-Net, VAE, tag encoder, Griffin-Lim), knows its example's prompt, generates the
-- example's accompaniment (a few DDIM steps here) the same for a seed, and carries the training runs' logs
-- with validation losses that fell.
local cocola = require "cocola"
local cjson = require "cjson"
local accompany = require "cocola.recipes.accompany"

local read = require("helpers.files").read

local DIR = "assets/componet"

-- the dtypes of a safetensors file's header
local function dtypes(path)
  local f = assert(io.open(path, "rb"))
  local n = string.unpack("<I8", f:read(8))
  local header = cjson.decode(f:read(n))
  f:close()
  local out = {}
  for k, v in pairs(header) do if k ~= "__metadata__" then out[k] = v.dtype end end
  return out
end

local function validation_losses(run)
  local out = {}
  for line in io.lines(DIR .. "/training/" .. run .. ".metrics.jsonl") do
    local r = cjson.decode(line)
    if r.valid_loss then out[#out + 1] = r.valid_loss end
  end
  return out
end

describe("the bundled CompoNet", function()
  it("is a folder of float16 weights, under 20 MB", function()
    local index = cjson.decode(read(DIR .. "/model_index.json"))
    assert.are.equal("AudioLDM2Pipeline", index._class_name)
    local total, tensors = 0, 0
    for _, part in ipairs({ "controlnet", "unet", "vae", "tag_encoder" }) do
      local found = false
      for name in require("lfs").dir(DIR .. "/" .. part) do
        if name:match("%.safetensors$") then
          local path = DIR .. "/" .. part .. "/" .. name
          found = true
          total = total + require("lfs").attributes(path, "size")
          for k, dtype in pairs(dtypes(path)) do
            assert.are.equal("F16", dtype, path .. ": " .. k)
            tensors = tensors + 1
          end
        end
      end
      assert.is_true(found, part .. " has no weights")
    end
    assert.is_true(tensors > 100)
    assert.is_true(total < 20e6, total .. " bytes")
  end)

  it("generates its example's accompaniment from its input, the same for a seed", function()
    local example = cjson.decode(read(DIR .. "/example/example.json"))
    local componet = accompany.load({ model = DIR, controlnet = "", device = "cpu" })
    assert.are.equal("GriffinLim", componet.pipeline.vocoder:type_name())
    local window = math.floor(example.window * 16000 + 1e-9)
    local input = cocola.audio.load(DIR .. "/example/" .. example.files.input, { sr = 16000, mono = true }):view(1, -1)
    assert.is_true(input:size(2) >= window)
    local cond = input:narrow(2, 1, window)
    local function gen(seed)
      return componet:generate(cond, { example.prompt }, { steps = 2, seed = seed }):float()
    end
    local a, b, c = gen(0), gen(0), gen(1)
    assert.are.same({ 1, window }, a.shape)
    local peak = a:abs():max():item()
    assert.is_true(peak > 1e-3 and peak < math.huge, "peak " .. peak)
    assert.are.equal(0, (a - b):abs():max():item())
    assert.is_true((a - c):abs():max():item() > 1e-3)
    -- its tag vocabulary refuses what it was not trained on, by name
    local ok, err = pcall(componet.generate, componet, cond, { "in: drums_1; out: theremin_1" }, { steps = 1 })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("theremin", 1, true), err)
  end)

  it("carries its training runs' settings and metrics, with validation losses that fell", function()
    for _, run in ipairs({ "ldm_vae", "ldm", "componet" }) do
      local settings = cjson.decode(read(DIR .. "/training/" .. run .. ".config.jsonl"):match("^[^\n]+"))
      assert.is_true(settings.max_steps > 0, run)
    end
    for _, run in ipairs({ "ldm_vae", "ldm" }) do
      local v = validation_losses(run)
      assert.is_true(#v >= 2, run)
      assert.is_true(v[#v] < v[1], run .. ": " .. table.concat(v, ", "))
    end
    assert.is_true(#validation_losses("componet") >= 1)
  end)
end)
