-- componet_checkpoint_spec.lua — CompoNet's Lightning checkpoints loaded on top of the tiny AudioLDM 2 pipeline
-- (spec/fixtures/audioldm2/gen_componet_ckpt.py: componet_tiny.ckpt, componet_tiny.safetensors): the ControlNet's
-- residuals (2,8,8,8) x 3, (2,16,4,4) and the checkpoint's U-Net fed with them (2,8,8,8) within 1e-5 relative, the
-- info fields, Pipeline.from_pretrained with the file as its controlnet, the same weights from a safetensors file,
-- a float64 pipeline; errors for a file that is not a checkpoint, one without controlnet.* weights, a missing, an
-- unknown and a wrongly shaped key. Temporary files are removed.
local cocola = require "cocola"
local compare = require "helpers.compare"
local Pipeline = require "cocola.models.audioldm2.pipeline"
local UNet = require "cocola.models.audioldm2.unet"
local checkpoint = require "cocola.models.audioldm2.componet_checkpoint"

local TOL = 1e-5
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local D = here .. "fixtures/audioldm2/"
local CKPT = D .. "componet_tiny.ckpt"

local tmpfiles = {}
local function tmp(ext)
  local p = os.tmpname()
  os.remove(p)
  p = p .. ext
  tmpfiles[#tmpfiles + 1] = p
  return p
end

local function text_inputs(fx)
  return { encoder_hidden_states = fx["input.encoder_hidden_states"],
    encoder_hidden_states_1 = fx["input.encoder_hidden_states_1"],
    encoder_attention_mask_1 = fx["input.encoder_attention_mask_1"] }
end

local function tiny_unet() return { unet = UNet.from_pretrained(D .. "pipeline_tiny") } end

-- the checkpoint's state_dict entries whose key passes keep(key), as a safetensors file
local function write_subset(keep, extra)
  local sd = cocola.load(CKPT).state_dict
  local out = {}
  for k, v in pairs(sd) do
    if cocola.is_tensor(v) and keep(k) then out[k] = v:contiguous() end
  end
  for k, v in pairs(extra or {}) do out[k] = v end
  local path = tmp(".safetensors")
  cocola.save(path, out)
  return path
end

-- the ControlNet's residuals and the U-Net's output with them, compared with the fixture
local function check_outputs(cn, unet, fx, eps_key, tol)
  local o = text_inputs(fx)
  local down, mid = cn(fx["input.sample"], fx["input.timestep"], fx["input.controlnet_cond"], o)
  assert.equal(4, #down)
  for i, d in ipairs(down) do compare.assert_close(d, fx["output.down." .. i], tol, "down " .. i) end
  compare.assert_close(mid, fx["output.mid"], tol, "mid")
  o.down_block_additional_residuals, o.mid_block_additional_residual = down, mid
  compare.assert_close(unet(fx["input.sample"], fx["input.timestep"], o), fx[eps_key], tol, eps_key)
end

describe("CompoNet checkpoints", function()
  local fx = cocola.load(D .. "componet_tiny.safetensors")

  teardown(function()
    for _, p in ipairs(tmpfiles) do os.remove(p) end
  end)

  it("loads the Lightning checkpoint: the ControlNet's residuals and the fine-tuned U-Net's output", function()
    local pipe = Pipeline.from_pretrained(D .. "pipeline_tiny")
    -- the folder's U-Net first, fed with the reference residuals
    local o = text_inputs(fx)
    o.down_block_additional_residuals = { fx["output.down.1"], fx["output.down.2"], fx["output.down.3"], fx["output.down.4"] }
    o.mid_block_additional_residual = fx["output.mid"]
    compare.assert_close(pipe.unet(fx["input.sample"], fx["input.timestep"], o), fx["output.eps_folder"], TOL, "folder eps")
    local cn, info = checkpoint.load(CKPT, pipe)
    assert.equal("ControlNetAudioLDM2Model", cn:type_name())
    assert.is_false(cn.training)
    check_outputs(cn, pipe.unet, fx, "output.eps", TOL)
    assert.is_true(compare.rel_err(fx["output.eps"], fx["output.eps_folder"]) > 1e-2)
  end)

  it("is Pipeline.from_pretrained's controlnet when given as a file", function()
    local pipe = Pipeline.from_pretrained(D .. "pipeline_tiny", { controlnet = CKPT })
    assert.equal(93, pipe.componet_checkpoint.epoch)
    assert.is_true(pipe.componet_checkpoint.unet_replaced)
    check_outputs(pipe.controlnet, pipe.unet, fx, "output.eps", TOL)
    compare.raises(function() Pipeline.from_pretrained(D .. "pipeline_tiny", { controlnet = D .. "componet_tiny.safetensors" }) end,
      "is not a CompoNet checkpoint: no controlnet.* weights")
  end)

  it("reports what it read", function()
    local _, info = checkpoint.load(CKPT, tiny_unet())
    assert.equal(CKPT, info.path)
    assert.equal("ckpt", info.format)
    assert.equal(93, info.epoch)
    assert.equal(1234, info.global_step)
    assert.equal("1.7.7", info.lightning_version)
    assert.equal(218, info.controlnet)
    assert.equal(416, info.unet)
    assert.is_true(info.unet_replaced)
    assert.same({ vae = 3, stft = 1 }, info.ignored)
    assert.equal(1e-4, info.hyper_parameters.lr)
    -- an object other than a container or tensor is an inert placeholder
    assert.equal("argparse.Namespace", info.hyper_parameters.args.__global)
  end)

  it("reads the same keys from a safetensors file; without unet.* the folder's U-Net stays", function()
    local path = write_subset(function(k) return k:match("^controlnet%.") or k:match("^vae%.") end)
    local pipe = tiny_unet()
    local cn, info = checkpoint.load(path, pipe)
    assert.equal("safetensors", info.format)
    assert.is_false(info.unet_replaced)
    assert.equal(0, info.unet)
    assert.same({ vae = 3 }, info.ignored)
    assert.is_nil(info.epoch)
    check_outputs(cn, pipe.unet, fx, "output.eps_folder", TOL)
  end)

  it("gives the ControlNet the U-Net's dtype", function()
    local pipe = tiny_unet()
    pipe.unet:double()
    local cn = checkpoint.load(CKPT, pipe)
    for _, p in ipairs(cn:parameters()) do assert.equal("float64", p:dtype()) end
    for _, p in ipairs(pipe.unet:parameters()) do assert.equal("float64", p:dtype()) end
    local f64 = {}
    for k, v in pairs(fx) do f64[k] = v:double() end
    check_outputs(cn, pipe.unet, f64, "output.eps", TOL)
  end)

  it("rejects a file that is not a checkpoint, and a missing file", function()
    local path = tmp(".ckpt")
    local f = assert(io.open(path, "wb"))
    f:write("this is not a checkpoint\n")
    f:close()
    compare.raises(function() checkpoint.load(path, tiny_unet()) end, path,
      "is neither a PyTorch checkpoint (.ckpt) nor a safetensors file")
    compare.raises(function() checkpoint.load(path .. ".absent", tiny_unet()) end, "no such file")
    compare.raises(function() checkpoint.load(CKPT, {}) end, "expects an AudioLDM 2 pipeline")
  end)

  it("rejects a checkpoint without controlnet.* weights", function()
    local path = write_subset(function(k) return k:match("^unet%.") end)
    compare.raises(function() checkpoint.load(path, tiny_unet()) end, path,
      "is not a CompoNet checkpoint: no controlnet.* weights")
  end)

  it("rejects a missing or an unknown ControlNet key and leaves the U-Net as it was", function()
    local pipe = tiny_unet()
    local before = pipe.unet:state_dict()["down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k.weight"]:clone()
    local path = write_subset(function(k) return k ~= "controlnet.controlnet_mid_block.bias" end)
    compare.raises(function() checkpoint.load(path, pipe) end, path, "missing: controlnet.controlnet_mid_block.bias")
    local after = pipe.unet:state_dict()["down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k.weight"]
    assert.equal(0, compare.rel_err(after, before))
    path = write_subset(function() return true end, { ["controlnet.controlnet_down_blocks.9.weight"] = cocola.zeros({ 8, 8, 1, 1 }) })
    compare.raises(function() checkpoint.load(path, pipe) end, "unknown: controlnet.controlnet_down_blocks.9.weight")
  end)

  it("rejects wrongly shaped weights, naming the key and both shapes", function()
    local path = write_subset(function(k) return k ~= "controlnet.conv_in.weight" end,
      { ["controlnet.conv_in.weight"] = cocola.zeros({ 16, 8, 3, 3 }) })
    compare.raises(function() checkpoint.load(path, tiny_unet()) end,
      "controlnet.conv_in.weight has shape {16,8,3,3} in the checkpoint, {8,8,3,3} in the ControlNet")
    path = write_subset(function(k) return k ~= "unet.conv_out.bias" end, { ["unet.conv_out.bias"] = cocola.zeros({ 4 }) })
    compare.raises(function() checkpoint.load(path, tiny_unet()) end,
      "unet.conv_out.bias has shape {4} in the checkpoint, {8} in the U-Net", "pipeline's U-Net")
  end)
end)
