-- griffin_lim_spec.lua — cocola.models.audioldm2.griffin_lim (the Griffin-Lim vocoder for the AudioLDM 2
-- log-mel) against spec/fixtures/audioldm2/griffin_lim.safetensors (librosa 0.10.1, gen_griffin_lim.py) on
-- a 0.4 s chirp with two tones (log-mel (64, 41)):
--  * NNLS: with nnls_iter = 0 the magnitude is librosa's mel_to_stft within 1e-5 relative (librosa's
--    L-BFGS-B returns its start, clip(pinv(A) mel, 0), whose mel misses the input by 5.9 %); the default
--    100 projected-gradient steps fit the mel within 2e-3 relative (the exact NNLS optimum fits it to 1e-12)
--    and its log within 0.08 nats on average.
--  * Griffin-Lim from zero phase is unstable in floating point (librosa's own float32 and float64 runs
--    differ by 3 % after 8 rounds on this input, and a 1e-6 change of the magnitude moves the wave by
--    37 %), so it is checked tightly after one round (1e-3 relative; measured ~1e-4) and after 8 rounds
--    by its spectral convergence |(|STFT(y)| - S)| / |S|, within 3 % of librosa's (0.2335 vs 0.2366; momentum
--    0.5 instead of 0.99 would give 0.261, 0 would give 0.291). From librosa's own random
--    phases (stored) the 8 rounds are stable and must match within 1e-4 relative.
--  * Round trip wave -> log-mel -> GriffinLim -> log-mel: mean absolute log-mel error over the bins within
--    7 nats (61 dB) of the loudest < 0.3 nats, over every bin < 0.6 nats (the quiet bins take the leakage
--    of an inconsistent spectrogram).
--  * Output length T * 160 (or `length`), batch rows equal to single rows, seeded random phases
--    reproducible without touching the global generator, errors for bad input, config round trip.
local cocola = require "cocola"
local compare = require "helpers.compare"
local files = require "helpers.files"
local fs = require "cocola.data.fs"
local audio = require "cocola.audio"
local mel = require "cocola.models.audioldm2.mel"
local GriffinLim = require "cocola.models.audioldm2.griffin_lim"

local fx = cocola.load("spec/fixtures/audioldm2/griffin_lim.safetensors")
local LOG_MEL = fx.log_mel:t():contiguous() -- (41, 64): the vocoder's (T, bands) layout
local T = LOG_MEL:size(1)
local STFT = { n_fft = 1024, hop_length = 160, center = true, pad_mode = "reflect" }

local function rel(a, b) return compare.rel_err(a, b) end

local function error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return tostring(err)
end

-- | |STFT(y)| - S | / |S|
local function spectral_convergence(y, S)
  return rel(audio.magnitude(audio.stft(y:contiguous(), STFT)), S)
end

describe("GriffinLim", function()
  describe("the NNLS inversion of the mel filterbank", function()
    local linear_mel = fx.log_mel:exp():unsqueeze(1)

    it("starts where librosa's mel_to_stft stops (nnls_iter = 0)", function()
      local X = GriffinLim.mel_to_magnitude(linear_mel, 0):select(1, 1)
      assert.are.same({ 513, T }, X.shape)
      local err = rel(X, fx.mel_to_stft)
      assert.is_true(err < 1e-5, "relative error " .. err)
      local librosa_fit = rel(cocola.matmul(mel.mel_basis(), fx.mel_to_stft), fx.log_mel:exp())
      assert.is_true(librosa_fit > 0.05, "librosa's fit " .. librosa_fit)
    end)

    it("reaches the NNLS optimum with the default steps", function()
      local X = GriffinLim.mel_to_magnitude(linear_mel):select(1, 1)
      assert.is_true(X:min():item() >= 0)
      local fit = cocola.matmul(mel.mel_basis(), X)
      local err = rel(fit, fx.log_mel:exp())
      assert.is_true(err < 2e-3, "relative mel fit " .. err)
      local log_err = (fit:clamp(1e-5, math.huge):log() - fx.log_mel):abs():mean():item()
      assert.is_true(log_err < 0.08, "mean log-mel error " .. log_err)
    end)
  end)

  describe("the Griffin-Lim rounds", function()
    local S = fx.mel_to_stft:unsqueeze(1)

    it("match librosa's first round from zero phase", function()
      local y = GriffinLim.griffin_lim(S, { n_iter = 1, init = "zeros" }):select(1, 1)
      assert.are.same({ (T - 1) * 160 }, y.shape)
      local err = rel(y, fx.griffinlim_zeros_1)
      assert.is_true(err < 1e-3, "relative error " .. err)
    end)

    it("converge as librosa's over 8 rounds from zero phase", function()
      local y = GriffinLim.griffin_lim(S, { n_iter = 8, momentum = 0.99, init = "zeros" }):select(1, 1)
      local ours, theirs = spectral_convergence(y, fx.mel_to_stft), spectral_convergence(fx.griffinlim_zeros_8,
        fx.mel_to_stft)
      assert.is_true(math.abs(ours - theirs) < 0.03 * theirs, string.format("spectral convergence %.5f vs %.5f",
        ours, theirs))
    end)

    it("match librosa over 8 rounds from its random phases", function()
      local y = GriffinLim.griffin_lim(S, { n_iter = 8, momentum = 0.99, init = fx.init_phase }):select(1, 1)
      local err = rel(y, fx.griffinlim_random_8)
      assert.is_true(err < 1e-4, "relative error " .. err)
    end)
  end)

  describe("as a vocoder", function()
    it("gives back the log-mel of the wave it was made from", function()
      assert.is_true(rel(mel.log_mel(fx.waveform), fx.log_mel) < 1e-4)
      for _, init in ipairs({ "random", "zeros" }) do
        local y = GriffinLim({ init = init })(LOG_MEL)
        local again = mel.log_mel(y:narrow(1, 1, fx.waveform:size(1)):clamp(-1, 1))
        local err = (again - fx.log_mel):abs()
        local loud = fx.log_mel:gt(fx.log_mel:max():item() - 7):float()
        local loud_err = ((err * loud):sum() / loud:sum()):item()
        local all_err = err:mean():item()
        assert.is_true(loud_err < 0.3, string.format("%s: %.3f nats within 7 nats of the peak", init, loud_err))
        assert.is_true(all_err < 0.6, string.format("%s: %.3f nats over every bin", init, all_err))
      end
    end)

    it("gives T * 160 samples for T frames, or the length asked for", function()
      local vocoder = GriffinLim({ n_iter = 2 })
      assert.are.same({ T * 160 }, vocoder(LOG_MEL).shape)
      assert.are.same({ 1, T * 160 }, vocoder(LOG_MEL:unsqueeze(1)).shape)
      local short = vocoder(LOG_MEL, { length = (T - 1) * 160 })
      assert.are.same({ (T - 1) * 160 }, short.shape)
      assert.is_true(rel(short, vocoder(LOG_MEL):narrow(1, 1, (T - 1) * 160)) < 1e-6)
    end)

    it("makes each row of a batch as it makes that row alone", function()
      local vocoder = GriffinLim({ n_iter = 4 })
      local quieter = LOG_MEL - 1.5
      local batch = vocoder(cocola.stack({ LOG_MEL, quieter }, 1))
      assert.are.same({ 2, T * 160 }, batch.shape)
      assert.is_true(rel(batch:select(1, 1), vocoder(LOG_MEL)) < 1e-5)
      assert.is_true(rel(batch:select(1, 2), vocoder(quieter)) < 1e-5)
    end)

    it("draws its random phases from its seed, leaving the global generator alone", function()
      cocola.manual_seed(7)
      local expected = cocola.rand({ 3 })
      cocola.manual_seed(7)
      local a = GriffinLim({ n_iter = 2, seed = 3 })(LOG_MEL)
      assert.are.same(expected:totable(), cocola.rand({ 3 }):totable())
      local b = GriffinLim({ n_iter = 2, seed = 3 })(LOG_MEL)
      assert.are.same(a:totable(), b:totable())
      local c = GriffinLim({ n_iter = 2, seed = 4 })(LOG_MEL)
      assert.is_true(rel(c, a) > 0.01)
    end)

    it("raises clear errors for bad input", function()
      local vocoder = GriffinLim({ n_iter = 1 })
      assert.matches("expected a log%-mel tensor", error_of(vocoder, "mel"))
      assert.matches("got rank 4 %(1, 1, 41, 64%)", error_of(vocoder, LOG_MEL:view({ 1, 1, T, 64 })))
      assert.matches("expected 64 mel bands in the last dim, got 80", error_of(vocoder, cocola.zeros({ T, 80 })))
      assert.matches("at least 5 frames", error_of(vocoder, cocola.zeros({ 4, 64 })))
      local bad = LOG_MEL:clone()
      bad[3][5] = 0 / 0
      assert.matches("holds NaN or infinite values", error_of(vocoder, bad))
      assert.matches("exp overflows", error_of(vocoder, LOG_MEL + 100))
      assert.matches("length must be a positive integer", error_of(vocoder, LOG_MEL, { length = 0 }))
      assert.matches("config key 'init'.* is 'noise'", error_of(GriffinLim, { init = "noise" }))
      assert.matches("unknown config key%(s%) in the config: hop", error_of(GriffinLim, { hop = 256 }))
      assert.matches("'momentum' must be >= 0", error_of(GriffinLim, { momentum = -1 }))
    end)
  end)

  describe("in the pipeline's place", function()
    it("has a vocoder's config and Module methods, and no parameters", function()
      local vocoder = GriffinLim()
      local c = vocoder.config
      assert.are.equal(16000, c.sampling_rate)
      assert.are.equal(64, c.model_in_dim)
      assert.are.same({ 160 }, c.upsample_rates)
      assert.are.same({}, vocoder:parameters())
      assert.are.equal(0, vocoder:freeze()) -- no parameter to freeze
      assert.are.equal(vocoder, vocoder:eval())
      assert.are.equal(vocoder, vocoder:to("cpu"))
      -- Pipeline:latent_shape reads the vocoder's config: AudioLDM 2's 10.24 s as with its HiFi-GAN
      local Pipeline = require "cocola.models.audioldm2.pipeline"
      local shape, samples = Pipeline.latent_shape({ vocoder = vocoder, vae = { downsample = 4 },
        unet = { config = { sample_size = 256, in_channels = 8 } } }, 1)
      assert.are.same({ 1, 8, 256, 16 }, shape)
      assert.are.equal(163840, samples)
    end)

    it("saves and reads its config.json (vocoder/ of a model folder)", function()
      local dir = files.tmpdir()
      local path = GriffinLim({ n_iter = 12, momentum = 0.5, init = "zeros", seed = 9, nnls_iter = 40 })
        :save_pretrained(dir)
      assert.are.equal(fs.join(dir, "vocoder", "config.json"), path)
      local text = files.read(path)
      assert.matches('"_class_name": "GriffinLim"', text, 1, true)
      assert.matches('"momentum": 0.5', text, 1, true)
      for _, folder in ipairs({ dir, fs.join(dir, "vocoder") }) do
        local c = GriffinLim.from_pretrained(folder).config
        assert.are.same({ 12, 0.5, "zeros", 9, 40, 16000, 64 }, { c.n_iter, c.momentum, c.init, c.seed, c.nnls_iter,
          c.sampling_rate, c.model_in_dim })
      end
      -- a pipeline folder naming GriffinLim as its vocoder
      local Pipeline = require "cocola.models.audioldm2.pipeline"
      local from_pipeline = Pipeline.vocoder_from_pretrained(dir)
      assert.is_true(from_pipeline:is_instance_of(GriffinLim))
      assert.are.equal(12, from_pipeline.config.n_iter)
      assert.are.equal(GriffinLim, require("cocola.models.audioldm2").GriffinLim)
      files.write(path, text:gsub('"GriffinLim"', '"SpeechT5HifiGan"'))
      assert.matches("names the class 'SpeechT5HifiGan', not GriffinLim", error_of(GriffinLim.from_pretrained, dir))
      files.write(path, text:gsub('"n_iter": 12', '"n_iters": 12'))
      assert.matches("unknown config key%(s%) in .*config.json: n_iters", error_of(GriffinLim.from_pretrained, dir))
      files.write(path, text:gsub('"sampling_rate": 16000', '"sampling_rate": 22050'))
      assert.matches("must be 16000 and 64", error_of(GriffinLim.from_pretrained, dir))
      os.remove(path)
      os.remove(fs.join(dir, "vocoder"))
      os.remove(dir)
      assert.is_false(fs.is_dir(dir))
      assert.matches("no config.json here", error_of(GriffinLim.from_pretrained, dir))
    end)
  end)
end)
