-- clap_audio_spec.lua — cocola.models.text.clap_audio (the audio side of transformers ClapModel without
-- fusion: HTSAT Swin tower with shifted windows and patch merging, audio projection, L2 normalisation),
-- clap_audio_features (ClapFeatureExtractor's rand_trunc / repeatpad front end) and clap_model (both sides)
-- against spec/fixtures/text/clap_audio_io.safetensors (gen_clap_audio.py: transformers 4.38.2): the tiny
-- clap_audio_tiny/ folder loaded strictly on its audio side; last hidden state, pooled output, projection and
-- get_audio_features (and a flat ClapAudioModelWithProjection whose grid is padded to whole windows,
-- clap_audio_pad/), the features of a padded clip, of a long clip cropped at two offsets and of the real-size
-- extractor, waves to embeddings end to end, the logits of ClapModel; all rel. error < 1e-4. Also: the real
-- HTSAT-tiny configuration's parameter count, the chunked embedding's framing, config, loading and input
-- errors.
local cocola = require "cocola"
local compare = require "helpers.compare"
local files = require "helpers.files"
local read, write = files.read, files.write
local ClapAudio = require "cocola.models.text.clap_audio"
local ClapAudioFeatures = require "cocola.models.text.clap_audio_features"
local ClapModel = require "cocola.models.text.clap_model"
local ClapText = require "cocola.models.text.clap_text"

local DIR = "spec/fixtures/text/"
local TINY = DIR .. "clap_audio_tiny"
local fx = cocola.load(DIR .. "clap_audio_io.safetensors")
local TOL = 1e-4
local SR = 48000

-- the generator's clip(seconds): three sines (one a chirp) and 31-bit LCG noise, rounded to float32
local function clip(seconds)
  local n = math.floor(seconds * SR + 0.5)
  local out, state = {}, 12345
  for i = 0, n - 1 do
    state = (1103515245 * state + 12345) % 2147483648
    local noise = state / 2147483648.0 - 0.5
    local t = i / SR
    out[i + 1] = 0.3 * math.sin(2 * math.pi * 440.0 * t) + 0.2 * math.sin(2 * math.pi * 1234.5 * t + 0.3)
      + 0.1 * math.sin(2 * math.pi * (200.0 + 3000.0 * t) * t) + 0.05 * noise
  end
  return cocola.tensor(out)
end

local function failure(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

-- a copy of clap_audio_tiny/ whose file `name` has `from` replaced by `to` (unchanged when from is nil)
local function altered(name, from, to)
  local dir = files.tmpdir()
  for _, f in ipairs({ "config.json", "model.safetensors", "preprocessor_config.json" }) do
    write(dir .. "/" .. f, read(TINY .. "/" .. f))
  end
  if from then
    local text, n = read(TINY .. "/" .. name):gsub(from, to)
    assert(n == 1, "pattern not found in " .. name .. ": " .. from)
    write(dir .. "/" .. name, text)
  end
  return dir
end

-- a copy of clap_audio_tiny/ whose weights are those of the file, changed by edit(name -> tensor table)
local function altered_weights(edit)
  local dir = altered()
  local sd = cocola.load(TINY .. "/model.safetensors")
  edit(sd)
  os.remove(dir .. "/model.safetensors")
  cocola.save(dir .. "/model.safetensors", sd)
  return dir
end

local errs = {}
local function record(what, err) errs[#errs + 1] = string.format("%s %.2e", what, err) end

describe("ClapAudio (transformers 4.38.2 ClapModel, audio side, no fusion)", function()
  local model = ClapAudio.from_pretrained(TINY)

  it("reads the nested audio_config, the top-level projection settings and the extractor settings", function()
    local c = model.config
    assert.equal(64, c.spec_size)
    assert.equal(16, c.num_mel_bins)
    assert.equal(4, c.freq_ratio)
    assert.same({ 16, 16 }, c.grid)
    assert.same({ 2, 2 }, c.depths)
    assert.same({ 2, 4 }, c.num_attention_heads)
    assert.equal(4, c.window_size)
    assert.equal(16, c.num_features)
    assert.equal(8, c.projection_dim)
    assert.equal(2.0, c.mlp_ratio)
    local fc = model.feature_extractor.config
    assert.equal(16, fc.feature_size)
    assert.equal(96000, fc.max_length)
    assert.equal(201, fc.frames)
    assert.equal(50, fc.frequency_min)
    -- the second block of each stage is shifted by window_size // 2
    assert.equal(0, model.audio_model.audio_encoder.layers[1].blocks[1].shift_size)
    assert.equal(2, model.audio_model.audio_encoder.layers[2].blocks[2].shift_size)
  end)

  it("has ClapModel's audio-side parameter and buffer names", function()
    local keys = model:state_dict_keys()
    local set = {}
    for _, k in ipairs(keys) do set[k] = true end
    for _, k in ipairs({ "audio_model.audio_encoder.batch_norm.running_var",
      "audio_model.audio_encoder.batch_norm.num_batches_tracked", "audio_model.audio_encoder.patch_embed.proj.weight",
      "audio_model.audio_encoder.patch_embed.norm.bias",
      "audio_model.audio_encoder.layers.1.blocks.1.attention.self.relative_position_bias_table",
      "audio_model.audio_encoder.layers.1.blocks.1.attention.self.relative_position_index",
      "audio_model.audio_encoder.layers.0.blocks.0.attention.self.query.bias",
      "audio_model.audio_encoder.layers.0.blocks.1.attention.output.dense.weight",
      "audio_model.audio_encoder.layers.0.blocks.0.intermediate.dense.weight",
      "audio_model.audio_encoder.layers.0.blocks.0.output.dense.bias",
      "audio_model.audio_encoder.layers.0.blocks.0.layernorm_after.weight",
      "audio_model.audio_encoder.layers.0.downsample.reduction.weight",
      "audio_model.audio_encoder.layers.0.downsample.norm.weight", "audio_model.audio_encoder.norm.weight",
      "audio_projection.linear1.weight", "audio_projection.linear2.bias" }) do
      assert.is_true(set[k] == true, k)
    end
    assert.is_nil(set["audio_model.audio_encoder.layers.1.downsample.reduction.weight"])
    -- batch norm 5, patch embed 4, 4 blocks of 18 (16 parameters, the bias table, its index), one merging 3, final
    -- norm 2, projection 4
    assert.equal(5 + 4 + 4 * 18 + 3 + 2 + 4, #keys)
  end)

  it("matches last_hidden_state, pooler_output, the projection and get_audio_features", function()
    cocola.no_grad(function()
      local out = model(fx.input_features)
      record("last_hidden_state", compare.assert_close(out.last_hidden_state, fx.last_hidden_state, TOL,
        "last_hidden_state"))
      record("pooler_output", compare.assert_close(out.pooler_output, fx.pooler_output, TOL, "pooler_output"))
      record("audio_embeds (projection)", compare.assert_close(out.projected, fx.audio_embeds, TOL, "projected"))
      record("get_audio_features", compare.assert_close(out.audio_embeds, fx.audio_features, TOL, "audio_embeds"))
      compare.assert_close(model:get_audio_features(fx.input_features), fx.audio_features, TOL, "get_audio_features")
      for _, n in ipairs(out.audio_embeds:norm(2, 2):totable()) do assert.is_true(math.abs(n - 1) < 1e-5) end
      -- each row alone gives its batched result
      local one = model(fx.input_features:narrow(1, 2, 1):contiguous())
      compare.assert_close(one.audio_embeds, out.audio_embeds:narrow(1, 2, 1), 1e-5, "row alone")
    end)
  end)

  it("matches a flat ClapAudioModelWithProjection whose grid is padded to whole windows", function()
    -- clap_audio_pad/: 144 frames x 14 mels, the mel axis resized to 16, a 12 x 12 grid, window 8: padded to
    -- 16 x 16, the shifted block's mask over the padding
    local pfx = cocola.load(DIR .. "clap_audio_pad_io.safetensors")
    local m = ClapAudio.from_pretrained(DIR .. "clap_audio_pad")
    assert.same({ 12, 12 }, m.config.grid)
    assert.equal(3, m.config.freq_ratio)
    assert.equal(6, m.config.projection_dim)
    cocola.no_grad(function()
      local out = m(pfx.input_features)
      record("padded grid: last_hidden_state", compare.assert_close(out.last_hidden_state, pfx.last_hidden_state, TOL,
        "padded grid: last_hidden_state"))
      record("padded grid: pooler_output", compare.assert_close(out.pooler_output, pfx.pooler_output, TOL,
        "padded grid: pooler_output"))
      record("padded grid: audio_embeds", compare.assert_close(out.projected, pfx.audio_embeds, TOL,
        "padded grid: audio_embeds"))
      -- fewer frames too: both axes would need resizing, which the reference cannot do
      assert.matches("100 frames and 14 mel bins would both need resizing (to 144 x 16)", failure(m.forward, m,
        cocola.zeros({ 1, 1, 100, 14 })), 1, true)
    end)
  end)

  it("computes ClapFeatureExtractor's input_features (repeatpad, rand_trunc at an explicit offset)", function()
    local fe = model.feature_extractor
    local short = fe:features(clip(0.7))
    assert.same({ 1, 1, 201, 16 }, short.shape)
    record("features, 0.7 s repeatpad", compare.assert_close(short, fx.wave_short_features, TOL, "short clip"))
    local long = clip(2.5)
    record("features, 2.5 s offset 7000", compare.assert_close(fe:features(long, { offset = 7000 }),
      fx.wave_long_features, TOL, "long clip, offset 7000"))
    record("features, 2.5 s offset 0", compare.assert_close(fe:features(long), fx.wave_long0_features, TOL,
      "long clip, default offset 0"))
    -- a batch, a list of clips of different lengths
    local both = fe:features({ clip(0.7), long }, { offset = 7000 })
    compare.assert_close(both, fx.input_features, TOL, "list of clips")
    -- the real settings (defaults): 64 mels, 10 s, 1001 frames
    local real = ClapAudioFeatures()
    local f = real:features(clip(3.0))
    assert.same({ 1, 1, 1001, 64 }, f.shape)
    local idx = {}
    for i = 0, 1000, 20 do idx[#idx + 1] = i end
    record("features, real size (every 20th frame)", compare.assert_close(
      f:index_select(3, cocola.tensor(idx, { dtype = "int64" })), fx.real_features_strided, TOL, "real-size features"))
  end)

  it("embeds waves end to end as features then get_audio_features", function()
    local e = model:embed({ clip(0.7), clip(2.5) }, { offset = 7000 })
    record("embed (waves -> embeddings)", compare.assert_close(e, fx.audio_features, TOL, "embed"))
    local one = model:embed(clip(0.7))
    compare.assert_close(one, fx.audio_features:narrow(1, 1, 1), TOL, "embed, one wave")
    compare.assert_close(model:embed({ clip(0.7), clip(2.5) }, { offset = 7000, batch_size = 1 }), e, 1e-6,
      "batch_size 1")
  end)

  it("embeds a long wave in chunks with fadtk's framing (zero-padded last chunks)", function()
    -- 4.5 s, 2 s chunks every second: starts 0, 1, 2, 3, 4 s -> 5 chunks, the last three zero-padded
    local wave = clip(4.5)
    assert.same({ 0, 48000, 96000, 144000, 192000 }, ClapAudio.chunk_starts(wave:size(1), 96000, 48000))
    local chunks = model:embed_chunks(wave, { chunk_s = 2, hop_s = 1 })
    assert.same({ 5, 8 }, chunks.shape)
    compare.assert_close(chunks:narrow(1, 2, 1), model:embed(wave:narrow(1, 48001, 96000)), 1e-6, "chunk 2 alone")
    local tail = wave:narrow(1, 192001, 24000)
    local padded = cocola.cat({ tail, cocola.zeros({ 72000 }) }, 1)
    compare.assert_close(chunks:narrow(1, 5, 1), model:embed(padded), 1e-6, "last chunk, zero-padded")
    -- zero padding, not the extractor's repeatpad
    assert.is_true(compare.rel_err(chunks:narrow(1, 5, 1), model:embed(tail)) > 1e-3)
    for _, n in ipairs(chunks:norm(2, 2):totable()) do assert.is_true(math.abs(n - 1) < 1e-5) end
    assert.equal(1, model:embed_chunks(clip(0.5), { chunk_s = 2, hop_s = 1 }):size(1))
    assert.matches("expected a mono wave tensor", failure(model.embed_chunks, model, cocola.zeros({ 2, 100 })), 1, true)
    assert.matches("hop_s must be positive", failure(model.embed_chunks, model, wave, { hop_s = 0 }), 1, true)
    assert.matches("unknown option 'hop'", failure(model.embed_chunks, model, wave, { hop = 1 }), 1, true)
  end)

  it("builds the real HTSAT-tiny tower of AudioLDM 2's text_encoder with transformers' parameter count", function()
    local configs = require "cocola.models.audioldm2.configs"
    local real = ClapAudio(configs.clap_audio())
    -- 28,190,872: ClapAudioModelWithProjection(ClapConfig().audio_config), counted by gen_clap_audio.py
    assert.equal(fx.real_audio_parameters:item(), real:num_parameters())
    assert.equal(28190872, real:num_parameters())
    assert.equal(real:num_parameters(), ClapAudio({}):num_parameters())
    local c = real.config
    assert.same({ 64, 64 }, c.grid)
    assert.equal(768, c.num_features)
    -- the extractor's 1001 frames fit the 1024 the tower takes (resized by bicubic interpolation)
    assert.equal(1001, real.feature_extractor.config.frames)
    assert.equal(1024, c.spec_size * c.freq_ratio)
    assert.is_nil(real:extractor_mismatch())
  end)

  it("loads with ClapModel (both sides) and gives its logits", function()
    local both = ClapModel.from_pretrained(TINY)
    cocola.no_grad(function()
      local out = both(fx.input_ids, fx.input_features)
      record("logits_per_text", compare.assert_close(out.logits_per_text, fx.logits_per_text, TOL, "logits_per_text"))
      record("logits_per_audio", compare.assert_close(out.logits_per_audio, fx.logits_per_audio, TOL,
        "logits_per_audio"))
      compare.assert_close(both:get_audio_features(fx.input_features), fx.audio_features, TOL, "audio side")
    end)
    -- the text side of this folder loads alone too, and the audio side of the text spec's folder
    local text = ClapText.from_pretrained(TINY)
    cocola.no_grad(function()
      compare.assert_close(text:get_text_features(fx.input_ids), both:get_text_features(fx.input_ids), 1e-6, "text")
    end)
    local a = ClapAudio.from_pretrained(DIR .. "clap_tiny")
    assert.equal(8, a.config.spec_size)
    cocola.no_grad(function() assert.same({ 2, 8 }, a(cocola.randn({ 2, 1, 8, 8 })).audio_embeds.shape) end)
    -- its folder has no preprocessor_config.json: the default extractor (64 mels) does not fit its 8 bins
    assert.matches("gives 64 mel bins (feature_size), the model takes num_mel_bins = 8",
      failure(a.embed, a, cocola.zeros({ 1000 })), 1, true)
    -- ClapModel uses every tensor of the file
    local dir = altered_weights(function(sd) sd.logit_scale_a = nil end)
    assert.matches("missing: logit_scale_a", failure(ClapModel.from_pretrained, dir), 1, true)
  end)

  it("accepts a pipeline folder holding text_encoder/ and feature_extractor/", function()
    local root = files.tmpdir()
    assert(files.sh("mkdir -p " .. root .. "/text_encoder " .. root .. "/feature_extractor"))
    for _, f in ipairs({ "config.json", "model.safetensors" }) do
      write(root .. "/text_encoder/" .. f, read(TINY .. "/" .. f))
    end
    write(root .. "/feature_extractor/preprocessor_config.json", read(TINY .. "/preprocessor_config.json"))
    local m = ClapAudio.from_pretrained(root)
    assert.equal(16, m.feature_extractor.config.feature_size)
    compare.assert_close(m:embed(clip(0.7)), fx.audio_features:narrow(1, 1, 1), TOL, "pipeline folder")
  end)

  it("refuses unsupported config values, naming the file and key", function()
    local dir = altered("config.json", '"window_size": 4', '"window_size": 4, "enable_fusion": true')
    local err = failure(ClapAudio.from_pretrained, dir)
    assert.matches(dir .. "/config.json audio_config: enable_fusion = true is not supported", err, 1, true)
    assert.matches("fusion", err, 1, true)
    assert.matches("enable_fusion", failure(ClapAudio, { model_type = "clap_audio_model", enable_fusion = true }), 1,
      true)
    err = failure(ClapAudio.from_pretrained, altered("config.json", '"window_size": 4', '"window_size": 4, '
      .. '"hidden_act": "relu"'))
    assert.matches("hidden_act = \"relu\" is not supported", err, 1, true)
    err = failure(ClapAudio.from_pretrained, altered("config.json", '"window_size": 4', '"window_size": 4, "made_up": 1'))
    assert.matches("config key 'made_up' is not supported", err, 1, true)
    err = failure(ClapAudio.from_pretrained, altered("config.json", '"hidden_size": 16', '"hidden_size": 12'))
    assert.matches("hidden_size (12) must equal patch_embeds_hidden_size * 2^(stages - 1) = 16", err, 1, true)
    err = failure(ClapAudio.from_pretrained, altered("config.json", '"window_size": 4', '"window_size": 16'))
    assert.matches("stage 2 works on a 8 x 8 grid, smaller than window_size (16)", err, 1, true)
    err = failure(ClapAudio, { model_type = "clap_audio_model", depths = { 2, 2 }, num_attention_heads = { 4 } })
    assert.matches("num_attention_heads has 1 entries, depths 2", err, 1, true)
    err = failure(ClapAudio, { model_type = "clap_audio_model", patch_embed_input_channels = 4 })
    assert.matches("patch_embed_input_channels", err, 1, true)
    -- the extractor's settings
    err = failure(ClapAudio.from_pretrained, altered("preprocessor_config.json", '"truncation": "rand_trunc"',
      '"truncation": "fusion"'))
    assert.matches("preprocessor_config.json: truncation = \"fusion\" is not supported", err, 1, true)
    err = failure(ClapAudio.from_pretrained, altered("preprocessor_config.json", '"padding": "repeatpad"',
      '"padding": "wrap"'))
    assert.matches("padding = \"wrap\" is not supported", err, 1, true)
    err = failure(ClapAudio.from_pretrained, altered("preprocessor_config.json", '"feature_size": 16',
      '"feature_size": 32'))
    assert.matches("gives 32 mel bins (feature_size), the model takes num_mel_bins = 16", err, 1, true)
    err = failure(ClapAudio.from_pretrained, altered("preprocessor_config.json", '"max_length_s": 2',
      '"max_length_s": 3'))
    assert.matches("nb_max_samples (96000) is not max_length_s * sampling_rate (144000)", err, 1, true)
    assert.matches("no config.json here or in text_encoder/", failure(ClapAudio.from_pretrained, files.tmpdir()), 1,
      true)
  end)

  it("loads the audio side strictly, naming the file and the key", function()
    local dir = altered_weights(function(sd) sd["audio_projection.linear2.bias"] = nil end)
    local err = failure(ClapAudio.from_pretrained, dir)
    assert.matches(dir .. "/model.safetensors", err, 1, true)
    assert.matches("missing: audio_projection.linear2.bias", err, 1, true)
    local name = "audio_model.audio_encoder.layers.1.blocks.1.attention.self.relative_position_index"
    dir = altered_weights(function(sd) sd[name] = nil end)
    assert.matches("missing: " .. name, failure(ClapAudio.from_pretrained, dir), 1, true)
    dir = altered_weights(function(sd)
      local k = "audio_model.audio_encoder.layers.0.blocks.0.attention.self.query.weight"
      sd[k:gsub("query", "queries")], sd[k] = sd[k], nil
    end)
    err = failure(ClapAudio.from_pretrained, dir)
    assert.matches("missing: audio_model.audio_encoder.layers.0.blocks.0.attention.self.query.weight", err, 1, true)
    assert.matches("unexpected: audio_model.audio_encoder.layers.0.blocks.0.attention.self.queries.weight", err, 1, true)
    dir = altered_weights(function(sd)
      sd["audio_model.audio_encoder.layers.1.blocks.0.attention.self.relative_position_bias_table"] = cocola.zeros({ 49, 2 })
    end)
    err = failure(ClapAudio.from_pretrained, dir)
    assert.matches("audio_model.audio_encoder.layers.1.blocks.0.attention.self.relative_position_bias_table has shape "
      .. "{49,2} in the file, {49,4} in the model", err, 1, true)
    -- the text side is not read: dropping it changes nothing
    dir = altered_weights(function(sd)
      for k in pairs(sd) do if k:match("^text") or k:match("^logit_scale") then sd[k] = nil end end
    end)
    cocola.no_grad(function()
      compare.assert_close(ClapAudio.from_pretrained(dir)(fx.input_features).audio_embeds, fx.audio_features, TOL,
        "audio side only")
    end)
    dir = altered()
    os.remove(dir .. "/model.safetensors")
    assert.matches(dir .. "/model.safetensors: no such file", failure(ClapAudio.from_pretrained, dir), 1, true)
  end)

  it("refuses bad inputs with clear errors", function()
    assert.matches("input_features must be a float tensor (batch, 1, frames, 16), got float32 {2,1,201,8}",
      failure(model.forward, model, cocola.zeros({ 2, 1, 201, 8 })), 1, true)
    assert.matches("input_features must be a float tensor (batch, 1, frames, 16), got float32 {201,16}",
      failure(model.forward, model, cocola.zeros({ 201, 16 })), 1, true)
    assert.matches("got table", failure(model.forward, model, {}), 1, true)
    assert.matches("257 frames are more than the model takes (256", failure(model.forward, model,
      cocola.zeros({ 1, 1, 257, 16 })), 1, true)
    assert.matches("must be float32, got float64", failure(model.forward, model,
      cocola.zeros({ 1, 1, 201, 16 }, { dtype = "float64" })), 1, true)
    cocola.no_grad(function()
      -- exactly 256 frames: no interpolation
      assert.same({ 1, 8 }, model(cocola.randn({ 1, 1, 256, 16 })).audio_embeds.shape)
    end)
    local fe = model.feature_extractor
    assert.matches("offset must be an integer in [0, 24000] for wave 1", failure(fe.features, fe, clip(2.5),
      { offset = 30000 }), 1, true)
    assert.matches("wave 1 is empty", failure(fe.features, fe, cocola.zeros({ 0 })), 1, true)
    assert.matches("NaN or infinite", failure(fe.features, fe, cocola.tensor({ 0, 0 / 0, 0 })), 1, true)
    assert.matches("expected a mono wave (samples), a batch (B, samples) or a list of waves, got {1,2,100}",
      failure(fe.features, fe, cocola.zeros({ 1, 2, 100 })), 1, true)
    assert.matches("unknown option 'ofset'", failure(fe.features, fe, clip(0.1), { ofset = 1 }), 1, true)
    assert.matches("waves must be float32 or float64", failure(model.embed, model,
      cocola.zeros({ 100 }, { dtype = "int64" })), 1, true)
    assert.matches("options table", failure(model.embed, model, clip(0.1), 3), 1, true)
  end)

  it("fills short clips as the extractor's padding says", function()
    local w = clip(0.7)
    local pad = ClapAudioFeatures({ feature_size = 16, max_length_s = 2, padding = "pad" })
    local f = pad:features(w)
    -- frames wholly in the zero tail are floor-clamped to 10 log10(1e-10) = -100 dB
    assert.is_true(math.abs(f:narrow(3, 201, 1):max():item() + 100) < 1e-4)
    local rep = ClapAudioFeatures({ feature_size = 16, max_length_s = 2, padding = "repeat" })
    local rp = ClapAudioFeatures({ feature_size = 16, max_length_s = 2 })
    -- repeat: 3 copies cut to 2 s, so the end is not silent; repeatpad: 2 copies then silence
    assert.is_true(rep:features(w):narrow(3, 201, 1):max():item() > -50)
    assert.is_true(math.abs(rp:features(w):narrow(3, 201, 1):max():item() + 100) < 1e-4)
    local n = w:size(1)
    compare.assert_close(rep:fit(w, 0, 1):narrow(1, 2 * n + 1, 96000 - 2 * n), w:narrow(1, 1, 96000 - 2 * n), 0,
      "repeat: the third copy")
  end)

  it("reports the measured errors", function()
    print("\nclap_audio max relative errors: " .. table.concat(errs, ", "))
  end)
end)
