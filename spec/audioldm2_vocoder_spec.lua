-- audioldm2_vocoder_spec.lua — cocola.models.audioldm2.hifigan (transformers SpeechT5HifiGan) against
-- spec/fixtures/audioldm2/vocoder.safetensors (transformers 4.38.2): the tiny vocoder/ and vocoder_norm/
-- folders, unbatched (10, 8) -> (40,) and batched (2, 10, 8) -> (2, 40), rel. error < 1e-4; state-dict
-- names and order; the length arithmetic; config and loading errors.
local cocola = require "cocola"
local compare = require "helpers.compare"
local files = require "helpers.files"
local write, copy = files.write, files.copy
local HifiGan = require "cocola.models.audioldm2.hifigan"

local DIR = "spec/fixtures/audioldm2/"
local fx = cocola.load(DIR .. "vocoder.safetensors")


-- a copy of vocoder/ with config.json text replaced by fn(text)
local function edited_copy(fn)
  local dir = files.tmpdir()
  local f = assert(io.open(DIR .. "vocoder/config.json", "rb"))
  local text = f:read("a")
  f:close()
  write(dir .. "/config.json", fn(text))
  copy(DIR .. "vocoder/model.safetensors", dir .. "/model.safetensors")
  return dir
end

local function error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return tostring(err)
end

describe("SpeechT5HifiGan", function()
  for _, case in ipairs({ { "vocoder", "plain" }, { "vocoder_norm", "norm" } }) do
    describe(case[1] .. "/", function()
      local model = HifiGan.from_pretrained(DIR .. case[1])

      it("reads normalize_before from config.json", function()
        assert.are.equal(case[2] == "norm", model.config.normalize_before)
        assert.are.equal(8, model.config.model_in_dim)
      end)

      it("matches transformers on an unbatched (T, mel) input", function()
        local y = cocola.no_grad(function() return model(fx["input.mel"]) end)
        assert.are.same({ 40 }, y.shape)
        compare.assert_close(y, fx["output." .. case[2] .. ".waveform"], 1e-4, case[1] .. " unbatched")
      end)

      it("matches transformers on a batched (B, T, mel) input", function()
        local y = cocola.no_grad(function() return model(fx["input.mel_batched"]) end)
        assert.are.same({ 2, 40 }, y.shape)
        compare.assert_close(y, fx["output." .. case[2] .. ".waveform_batched"], 1e-4, case[1] .. " batched")
      end)
    end)
  end

  it("uses the transformers state-dict names, in torch's order", function()
    local keys = HifiGan.from_pretrained(DIR .. "vocoder"):state_dict_keys()
    local expected = { "mean", "scale", "conv_pre.weight", "conv_pre.bias" }
    for i = 0, 1 do
      expected[#expected + 1] = "upsampler." .. i .. ".weight"
      expected[#expected + 1] = "upsampler." .. i .. ".bias"
    end
    for j = 0, 3 do
      for _, which in ipairs({ "convs1", "convs2" }) do
        for k = 0, 2 do
          expected[#expected + 1] = string.format("resblocks.%d.%s.%d.weight", j, which, k)
          expected[#expected + 1] = string.format("resblocks.%d.%s.%d.bias", j, which, k)
        end
      end
    end
    expected[#expected + 1] = "conv_post.weight"
    expected[#expected + 1] = "conv_post.bias"
    assert.are.same(expected, keys)
  end)

  it("gives 160 T + 32 samples with the AudioLDM 2 upsampling layout", function()
    local m = HifiGan.from_config({ model_in_dim = 4, upsample_initial_channel = 32, upsample_rates = { 5, 4, 2, 2, 2 },
      upsample_kernel_sizes = { 16, 16, 8, 4, 4 }, resblock_kernel_sizes = { 3 }, resblock_dilation_sizes = { { 1 } },
      normalize_before = false })
    local y = cocola.no_grad(function() return m(cocola.randn({ 6, 4 })) end)
    assert.are.same({ 160 * 6 + 32 }, y.shape)
  end)

  it("takes SpeechT5HifiGanConfig's defaults for missing keys", function()
    local m = HifiGan.from_config({})
    assert.are.equal(80, m.config.model_in_dim)
    assert.is_true(m.config.normalize_before)
    assert.are.equal(4, #m.upsampler)
    assert.are.equal(12, #m.resblocks)
    assert.are.same({ 1, 32, 7 }, m.conv_post.weight.shape)
  end)

  it("passes gradients back to the mel and the first layer", function()
    local m = HifiGan.from_pretrained(DIR .. "vocoder_norm")
    local x = fx["input.mel_batched"]:clone():requires_grad(true)
    m(x):sum():backward()
    assert.are.same({ 2, 10, 8 }, x.grad.shape)
    assert.is_true(x.grad:abs():sum():item() > 0)
    assert.is_true(m.conv_pre.weight.grad:abs():sum():item() > 0)
  end)

  describe("errors", function()
    local model = HifiGan.from_pretrained(DIR .. "vocoder")

    it("rejects a wrong mel width or rank", function()
      assert.matches("expected %(T, 8%) or %(B, T, 8%)", error_of(model.forward, model, cocola.zeros({ 10, 7 })))
      assert.matches("got %(10%)", error_of(model.forward, model, cocola.zeros({ 10 })))
      assert.matches("expected a tensor", error_of(model.forward, model, "mel"))
    end)

    it("names a missing folder or file", function()
      assert.matches("no such folder 'spec/fixtures/audioldm2/nope'", error_of(HifiGan.from_pretrained, DIR .. "nope"))
      local dir = files.tmpdir()
      assert.matches("missing file '" .. dir .. "/config.json'", error_of(HifiGan.from_pretrained, dir), 1, true)
      copy(DIR .. "vocoder/config.json", dir .. "/config.json")
      assert.matches("missing weights in", error_of(HifiGan.from_pretrained, dir))
    end)

    it("names the file and key of an unsupported or unknown config value", function()
      local dir = edited_copy(function(t) return (t:gsub('"hifigan"', '"speecht5"')) end)
      local err = error_of(HifiGan.from_pretrained, dir)
      assert.matches("config key 'model_type'", err, 1, true)
      assert.matches(dir .. "/config.json", err, 1, true)
      assert.matches("'speecht5'; supported: hifigan", err, 1, true)
      dir = edited_copy(function(t) return (t:gsub('"model_in_dim"', '"mel_dim"')) end)
      assert.matches("unknown config key(s) in " .. dir .. "/config.json: mel_dim",
        error_of(HifiGan.from_pretrained, dir), 1, true)
      dir = edited_copy(function(t) return (t:gsub('"leaky_relu_slope": 0.1', '"leaky_relu_slope": "x"')) end)
      assert.matches("config key 'leaky_relu_slope' in " .. dir .. "/config.json must be a number",
        error_of(HifiGan.from_pretrained, dir), 1, true)
      dir = edited_copy(function(t) return "{ not json" end)
      assert.matches("is not valid JSON", error_of(HifiGan.from_pretrained, dir), 1, true)
    end)

    it("loads strictly: a config that does not fit the weights names the tensors", function()
      local dir = edited_copy(function(t) return (t:gsub('"upsample_initial_channel": 16', '"upsample_initial_channel": 32')) end)
      local err = error_of(HifiGan.from_pretrained, dir)
      assert.matches("model.safetensors", err, 1, true)
      assert.matches("size mismatch for conv_pre.weight", err, 1, true)
    end)
  end)
end)
