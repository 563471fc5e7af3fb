-- encodec_spec.lua — cocola.models.encodec (the encoder of transformers' EncodecModel, the continuous
-- embeddings of FAD) against spec/fixtures/encodec/ (gen_encodec.py, transformers 4.38.2): the tiny random
-- 24 kHz-kind model (causal, weight_norm, reflect padding, 1x1 shortcuts, dilations 1 and 2, 2 LSTM layers)
-- gives model.encoder(x) within 1e-4 relative for batch 2 with extra last-frame padding, a length that needs
-- none and an input shorter than the reflect padding; the 48 kHz kind (non-causal, time_group_norm, stereo,
-- identity shortcuts) likewise; the original facebookresearch checkpoint layout through the renaming table;
-- :embed on a 48 kHz stereo wave (mono, resampling, ceil(samples_24k / hop) frames); the encoder's state-dict
-- names are the file's encoder.* names; strict loading, config and input errors; the real 24 kHz and 48 kHz
-- encoders have upstream's parameter counts; gradients reach weight_g, weight_v and the LSTM weights.
local cocola = require "cocola"
local cjson = require "cjson"
local compare = require "helpers.compare"
local files = require "helpers.files"
local read, write = files.read, files.write
local EncodecModel = require "cocola.models.encodec"
local EncodecConv1d = require "cocola.models.encodec.encodec_conv1d"

local DIR = "spec/fixtures/encodec/"
local fx = cocola.load(DIR .. "io.safetensors")
local expected = cjson.decode(read(DIR .. "expected.json"))
local TOL = 1e-4

local function error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return tostring(err)
end

local function no_grad(fn) return cocola.no_grad(fn) end

-- a copy of tiny_24k/ with config.json text replaced by cfg_fn(text) and the weights by weights_fn(state dict)
local function edited_copy(cfg_fn, weights_fn)
  local dir = files.tmpdir()
  local text = read(DIR .. "tiny_24k/config.json")
  write(dir .. "/config.json", cfg_fn and cfg_fn(text) or text)
  if weights_fn then
    local sd = cocola.load(DIR .. "tiny_24k/model.safetensors")
    cocola.save(dir .. "/model.safetensors", weights_fn(sd) or sd)
  else
    write(dir .. "/model.safetensors", read(DIR .. "tiny_24k/model.safetensors"))
  end
  return dir
end

local function remove_dir(dir)
  for _, n in ipairs({ "config.json", "model.safetensors", "encodec_24khz-d7cc33bc.th" }) do os.remove(dir .. "/" .. n) end
  os.remove(dir)
end

describe("EncodecModel (encoder)", function()
  local model = EncodecModel.from_pretrained(DIR .. "tiny_24k")

  it("has the encoder.* names of the save_pretrained file, in torch's order", function()
    local keys = model:state_dict_keys()
    local f = cocola.open_safetensors(DIR .. "tiny_24k/model.safetensors")
    local want = {}
    for name in pairs(f.entries) do if name:sub(1, 8) == "encoder." then want[#want + 1] = name end end
    local got = { table.unpack(keys) }
    table.sort(want)
    table.sort(got)
    assert.are.same(want, got)
    assert.equals("encoder.layers.0.conv.bias", keys[1])
    assert.equals("encoder.layers.0.conv.weight_g", keys[2])
    assert.equals("encoder.layers.0.conv.weight_v", keys[3])
    assert.equals("encoder.layers.1.block.1.conv.bias", keys[4])
    local lstm = {}
    for _, k in ipairs(keys) do if k:find("lstm", 1, true) then lstm[#lstm + 1] = k end end
    assert.are.same({
      "encoder.layers.9.lstm.weight_ih_l0", "encoder.layers.9.lstm.weight_hh_l0", "encoder.layers.9.lstm.bias_ih_l0",
      "encoder.layers.9.lstm.bias_hh_l0", "encoder.layers.9.lstm.weight_ih_l1", "encoder.layers.9.lstm.weight_hh_l1",
      "encoder.layers.9.lstm.bias_ih_l1", "encoder.layers.9.lstm.bias_hh_l1" }, lstm)
    assert.equals(expected.encoder_parameters_tiny_24k, model:num_parameters())
  end)

  it("matches model.encoder(x) for batch 2 with extra last-frame padding (123 samples, hop 8)", function()
    local y = no_grad(function() return model(fx.x) end)
    assert.are.same({ 2, 8, 16 }, y.shape)
    local err = compare.assert_close(y, fx.y, TOL, "tiny_24k encoder, batch 2")
    print(string.format("\n  encodec tiny_24k batch 2: rel err %.2e", err))
    -- each row alone gives its batch row
    local y1 = no_grad(function() return model(fx.x:narrow(1, 2, 1)) end)
    compare.assert_close(y1, fx.y:narrow(1, 2, 1), TOL, "tiny_24k encoder, row 2 alone")
  end)

  it("matches for a multiple of the hop and for an input shorter than the reflect padding", function()
    local y = no_grad(function() return model(fx.x_even) end)
    local err = compare.assert_close(y, fx.y_even, TOL, "tiny_24k encoder, 96 samples")
    local ys = no_grad(function() return model(fx.x_short) end)
    local err_s = compare.assert_close(ys, fx.y_short, TOL, "tiny_24k encoder, 3 samples")
    print(string.format("\n  encodec tiny_24k 96 / 3 samples: rel err %.2e / %.2e", err, err_s))
  end)

  it("has upstream's frame count ceil(samples / hop) and last-frame padding rule", function()
    for _, L in ipairs({ 1, 2, 3, 7, 8, 9, 15, 16, 17, 123 }) do
      local y = no_grad(function() return model(cocola.randn({ 1, 1, L })) end)
      assert.equals(math.ceil(L / 8), y:size(3), "samples " .. L)
      assert.equals(math.ceil(L / 8), model:num_frames(L))
    end
    -- _get_extra_padding_for_conv1d with kernel 4, stride 2, padding_total 2: (ceil((L - 2) / 2 + 1) - 1) * 2 + 2 - L
    for L = 1, 12 do
      local want = (math.ceil((L - 4 + 2) / 2 + 1) - 1) * 2 + (4 - 2) - L
      assert.equals(want, EncodecConv1d.extra_padding(L, 4, 2, 2), "length " .. L)
    end
  end)

  it("pads by reflection as torch does (and zero-extends a too short signal first)", function()
    local x = cocola.tensor({ { { 1, 2, 3, 4, 5 } } })
    assert.are.same({ { { 4, 3, 2, 1, 2, 3, 4, 5, 4 } } }, EncodecConv1d.pad1d(x, 3, 1, "reflect"):totable())
    -- length 2 <= max pad 3: [1, 2, 0, 0] reflected (3 left, 2 right: 0 0 2 | 1 2 0 0 | 0 2), then the 2
    -- added zeros' worth cut off the end (as upstream's _pad1d)
    local s = cocola.tensor({ { { 1, 2 } } })
    assert.are.same({ { { 0, 0, 2, 1, 2, 0, 0 } } }, EncodecConv1d.pad1d(s, 3, 2, "reflect"):totable())
    assert.are.same({ { { 0, 0, 1, 2, 0 } } }, EncodecConv1d.pad1d(s, 2, 1, "constant"):totable())
  end)

  it("matches the 48 kHz kind (non-causal, time_group_norm, stereo, identity shortcuts)", function()
    local m48 = EncodecModel.from_pretrained(DIR .. "tiny_48k")
    assert.is_nil(m48.encoder.layers[2].shortcut.conv)
    local y = no_grad(function() return m48(fx.x48) end)
    local err = compare.assert_close(y, fx.y48, TOL, "tiny_48k encoder")
    print(string.format("\n  encodec tiny_48k batch 2: rel err %.2e", err))
    assert.equals(expected.encoder_parameters_tiny_48k, m48:num_parameters())
  end)

  it("loads the original facebookresearch layout through the renaming table", function()
    assert.equals("encoder.layers.0.conv.weight_g", EncodecModel.original_name("encoder.model.0.conv.conv.weight_g"))
    assert.equals("encoder.layers.1.block.3.conv.bias", EncodecModel.original_name("encoder.model.1.block.3.conv.conv.bias"))
    assert.equals("encoder.layers.4.shortcut.conv.weight_v",
      EncodecModel.original_name("encoder.model.4.shortcut.conv.conv.weight_v"))
    assert.equals("encoder.layers.13.lstm.weight_hh_l1", EncodecModel.original_name("encoder.model.13.lstm.weight_hh_l1"))
    assert.equals("encoder.layers.12.norm.weight", EncodecModel.original_name("encoder.model.12.conv.norm.weight"))
    assert.is_nil(EncodecModel.original_name("quantizer.vq.layers.0._codebook.embed"))
    assert.is_nil(EncodecModel.original_name("decoder.model.0.conv.conv.weight_g"))
    local dir = files.tmpdir()
    write(dir .. "/config.json", read(DIR .. "tiny_24k/config.json"))
    write(dir .. "/encodec_24khz-d7cc33bc.th", read(DIR .. "tiny_24k_original.th"))
    local m = EncodecModel.from_pretrained(dir)
    local y = no_grad(function() return m(fx.x) end)
    local err = compare.assert_close(y, fx.y, TOL, "tiny_24k encoder from the original layout")
    print(string.format("\n  encodec original layout: rel err %.2e", err))
    -- without config.json the 24 kHz defaults are built: the tiny tensors do not fit, named with the file
    os.remove(dir .. "/config.json")
    local e = error_of(EncodecModel.from_pretrained, dir)
    assert.truthy(e:find("encodec_24khz-d7cc33bc.th", 1, true), e)
    assert.truthy(e:find("encoder.layers.0.conv.weight_v", 1, true), e)
    remove_dir(dir)
  end)

  it("embeds a 48 kHz stereo wave: mono, resampled to 24 kHz, ceil(samples_24k / hop) frames of hidden_size", function()
    local wave = cocola.randn({ 2, 4801 }) * 0.2
    local e = model:embed(wave, 48000)
    local n24 = math.ceil(4801 * 24000 / 48000)
    assert.are.same({ math.ceil(n24 / 8), 8 }, e.shape)
    assert.equals(301, e:size(1))
    local mono = cocola.audio.resample(wave:mean(1, true):contiguous(), 48000, 24000)
    assert.equals(n24, mono:size(2))
    local ref = no_grad(function() return model(mono:unsqueeze(1)) end)
    compare.assert_close(e, ref:select(1, 1):t(), 1e-6, "embed vs encoder(resampled mono)")
    -- a 1-D wave at the model's rate: no resampling
    local w = cocola.randn({ 100 }) * 0.2
    local e1 = model:embed(w, 24000)
    assert.are.same({ 13, 8 }, e1.shape)
    compare.assert_close(e1, no_grad(function() return model(w:view({ 1, 1, 100 })) end):select(1, 1):t(), 1e-6,
      "embed at 24 kHz")
    assert.is_false(e1:requires_grad())
  end)

  it("embed_batch gives each clip what embed gives it, clips of equal length encoded together", function()
    cocola.manual_seed(12)
    local clips = { { cocola.randn({ 2, 4801 }) * 0.2, 48000 }, { cocola.randn({ 100 }) * 0.2, 24000 },
      { cocola.randn({ 2401 }) * 0.3, 24000 }, { cocola.randn({ 100 }) * 0.1, 24000 } }
    local batch = model:embed_batch(clips)
    assert.equals(#clips, #batch)
    for i, clip in ipairs(clips) do
      local one = model:embed(clip[1], clip[2])
      assert.are.same(one.shape, batch[i].shape)
      compare.assert_close(batch[i], one, 1e-5, "clip " .. i)
    end
  end)

  it("refuses renamed, missing and wrong-shape tensors, naming the file and the key", function()
    local dir = edited_copy(nil, function(sd)
      sd["encoder.layers.4.conv.weight_gg"] = sd["encoder.layers.4.conv.weight_g"]
      sd["encoder.layers.4.conv.weight_g"] = nil
    end)
    local e = error_of(EncodecModel.from_pretrained, dir)
    assert.truthy(e:find(dir .. "/model.safetensors", 1, true), e)
    assert.truthy(e:find("missing: encoder.layers.4.conv.weight_g", 1, true), e)
    assert.truthy(e:find("unexpected: encoder.layers.4.conv.weight_gg", 1, true), e)
    remove_dir(dir)
    dir = edited_copy(nil, function(sd) sd["encoder.layers.9.lstm.bias_hh_l1"] = nil end)
    e = error_of(EncodecModel.from_pretrained, dir)
    assert.truthy(e:find("missing: encoder.layers.9.lstm.bias_hh_l1", 1, true), e)
    remove_dir(dir)
    dir = edited_copy(nil, function(sd) sd["encoder.layers.9.lstm.weight_ih_l0"] = cocola.zeros({ 64, 15 }) end)
    e = error_of(EncodecModel.from_pretrained, dir)
    assert.truthy(e:find("wrong shape: encoder.layers.9.lstm.weight_ih_l0 has shape {64,15}", 1, true), e)
    remove_dir(dir)
    -- the quantizer and decoder tensors are ignored: a file without them loads
    dir = edited_copy(nil, function(sd)
      for k in pairs(sd) do if k:sub(1, 8) ~= "encoder." then sd[k] = nil end end
    end)
    EncodecModel.from_pretrained(dir)
    remove_dir(dir)
  end)

  it("refuses unsupported config values and unknown keys, naming the key", function()
    local cases = {
      { '"pad_mode": "reflect"', '"pad_mode": "replicate"', "pad_mode" },
      { '"norm_type": "weight_norm"', '"norm_type": "batch_norm"', "norm_type" },
      { '"num_lstm_layers": 2', '"num_lstm_layers": 0', "num_lstm_layers" },
      { '"upsampling_ratios": %[', '"upsampling_ratios": [0, ', "upsampling_ratios" },
      { '"use_causal_conv": true', '"use_causal_conv": "yes"', "use_causal_conv" },
      { '"compress": 2', '"compress": 2, "use_lstm_skip": false', "use_lstm_skip" },
    }
    for _, c in ipairs(cases) do
      local dir = edited_copy(function(text)
        local out, n = text:gsub(c[1], c[2])
        assert.equals(1, n, c[1])
        return out
      end)
      local e = error_of(EncodecModel.from_pretrained, dir)
      assert.truthy(e:find(dir .. "/config.json", 1, true), e)
      assert.truthy(e:find("'" .. c[3] .. "'", 1, true) or e:find(c[3] .. " = ", 1, true), e)
      remove_dir(dir)
    end
    local e = error_of(EncodecModel, { num_filters = 1, compress = 2 })
    assert.truthy(e:find("num_filters", 1, true), e)
  end)

  it("gives clear errors for bad input", function()
    local e = error_of(model.forward, model, cocola.randn({ 1, 100 }))
    assert.truthy(e:find("expected audio (batch, channels, samples)", 1, true), e)
    e = error_of(model.forward, model, cocola.randn({ 1, 2, 100 }))
    assert.truthy(e:find("takes 1 audio channel, got 2", 1, true), e)
    e = error_of(model.forward, model, cocola.zeros({ 1, 1, 100 }, { dtype = "int64" }))
    assert.truthy(e:find("float", 1, true), e)
    e = error_of(model.forward, model, "wave")
    assert.truthy(e:find("expected audio", 1, true), e)
    e = error_of(model.embed, model, cocola.randn({ 1, 1, 100 }), 24000)
    assert.truthy(e:find("expected a wave (samples) or (channels, samples)", 1, true), e)
    e = error_of(model.embed, model, cocola.randn({ 100 }))
    assert.truthy(e:find("sample rate", 1, true), e)
    local m48 = EncodecModel.from_pretrained(DIR .. "tiny_48k")
    e = error_of(m48.embed, m48, cocola.randn({ 3, 100 }), 48000)
    assert.truthy(e:find("takes 2 channels", 1, true), e)
    e = error_of(EncodecModel.from_pretrained, DIR .. "no_such_folder")
    assert.truthy(e:find("no_such_folder/config.json", 1, true), e)
  end)

  it("lets gradients reach weight_g, weight_v, the biases and the LSTM weights", function()
    local m = EncodecModel.from_pretrained(DIR .. "tiny_24k")
    local y = m(fx.x_even)
    y:pow(2):sum():backward()
    for _, k in ipairs({ "encoder.layers.0.conv.weight_g", "encoder.layers.0.conv.weight_v",
      "encoder.layers.11.conv.bias", "encoder.layers.9.lstm.weight_hh_l0", "encoder.layers.9.lstm.bias_ih_l1" }) do
      local p
      for _, e in ipairs(m:named_parameters()) do if e[1] == k then p = e[2] end end
      assert.is_not_nil(p, k)
      assert.is_not_nil(p.grad, k)
      assert.is_true(p.grad:abs():sum():item() > 0, k)
    end
  end)

  it("builds the real 24 kHz and 48 kHz encoders with upstream's parameter counts", function()
    local m24 = EncodecModel({})
    assert.equals(expected.encoder_parameters_24khz, m24:num_parameters())
    assert.equals(320, m24.hop_length)
    local m48 = EncodecModel({ sampling_rate = 48000, audio_channels = 2, norm_type = "time_group_norm",
      use_causal_conv = false, normalize = true, chunk_length_s = 1.0, overlap = 0.01 })
    assert.equals(expected.encoder_parameters_48khz, m48:num_parameters())
    -- 1 s at 24 kHz: 75 frames of 128
    local e = m24:embed(cocola.randn({ 24000 }) * 0.1, 24000)
    assert.are.same({ 75, 128 }, e.shape)
  end)
end)
