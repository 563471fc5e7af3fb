-- audio_spec.lua — cocola.audio: parity with torchaudio and a NumPy/SciPy restatement of librosa
-- (spec/fixtures/gen_audio.py), resampling quality, file round trips and bad input.
local cocola = require "cocola"
local audio = require "cocola.audio"
local compare = require "helpers.compare"

local fx = cocola.load("spec/fixtures/audio.safetensors")

local function flat(t)
  local out, v = {}, t:contiguous():view(-1):totable()
  for i = 1, #v do out[i] = v[i] end
  return out
end

-- max |a - b| over the entries where the reference b is above `floor`
local function max_db_diff(a, b, floor)
  local va, vb = flat(a), flat(b)
  assert(#va == #vb, "sizes differ")
  local m, counted = 0, 0
  for i = 1, #vb do
    if vb[i] > floor then
      counted = counted + 1
      local d = math.abs(va[i] - vb[i])
      if d ~= d then return math.huge, counted end
      if d > m then m = d end
    end
  end
  return m, counted
end

local function same_shape(a, b) return table.concat(a.shape, "x") == table.concat(b.shape, "x") end

local tmpfiles = {}
local function tmp(ext)
  local p = os.tmpname()
  os.remove(p)
  p = p .. ext
  tmpfiles[#tmpfiles + 1] = p
  return p
end

-- amplitude of the component at freq (Hz) of x (1-D table), Hann-windowed DFT at one frequency
local function tone_amplitude(x, sr, freq)
  local n = #x
  local re, im, wsum = 0.0, 0.0, 0.0
  for i = 1, n do
    local w = 0.5 - 0.5 * math.cos(2 * math.pi * (i - 1) / n)
    local ph = 2 * math.pi * freq * (i - 1) / sr
    re = re + w * x[i] * math.cos(ph)
    im = im - w * x[i] * math.sin(ph)
    wsum = wsum + w
  end
  return 2 * math.sqrt(re * re + im * im) / wsum
end

local function sine(n, sr, freq, amp)
  local v = {}
  for i = 1, n do v[i] = amp * math.sin(2 * math.pi * freq * (i - 1) / sr) end
  return cocola.tensor(v)
end

describe("cocola.audio", function()
  teardown(function()
    for _, p in ipairs(tmpfiles) do os.remove(p) end
  end)

  describe("parity", function()
    it("HPSS features match the librosa restatement within 1e-3 dB", function()
      local f = audio.cocola_features(fx.wave, { mode = "hpss" })
      assert.is_true(same_shape(f, fx.hpss), "shape " .. table.concat(f.shape, "x"))
      assert.are.same({ 2, 2, 64, 501 }, f.shape)
      local d, n = max_db_diff(f, fx.hpss, -79)
      assert.is_true(n > 50000, "too few compared entries")
      assert.is_true(d <= 1e-3, string.format("max dB difference %.3e", d))
    end)

    it("mel features match torchaudio within 1e-3 dB", function()
      local f = audio.cocola_features(fx.wave, { mode = "mel" })
      assert.are.same({ 2, 1, 64, 501 }, f.shape)
      local d, n = max_db_diff(f, fx.mel, -79)
      assert.is_true(n > 50000)
      assert.is_true(d <= 1e-3, string.format("max dB difference %.3e", d))
    end)

    it("the AudioLDM 2 log-mel matches the restatement", function()
      local f = audio.audioldm_mel(fx.ldm_in)
      assert.are.same({ 1, 1, 101, 64 }, f.shape)
      -- natural log: 1e-3 dB is 2.3e-4 in ln units
      local d = max_db_diff(f, fx.ldm, math.log(1e-5) + 0.01)
      assert.is_true(d <= 2.3e-4, string.format("max ln difference %.3e", d))
    end)

    it("STFT matches torch.stft to 1e-5 relative", function()
      local X = audio.stft(fx.stft_in, { n_fft = 1024, hop_length = 160, win_length = 400, pad_mode = "constant" })
      compare.assert_close(X, fx.stft, 1e-5, "stft")
    end)

    it("mel filterbanks match librosa (Slaney) and torchaudio (HTK) to 1e-5 relative", function()
      local s = audio.mel_filterbank({ sr = 16000, n_fft = 1024, n_mels = 64, f_min = 60, f_max = 7800 })
      compare.assert_close(s, fx.fb_slaney, 1e-5, "slaney fbank")
      local h = audio.mel_filterbank({ sr = 16000, n_fft = 1024, n_mels = 64, f_min = 60, f_max = 7800, htk = true,
                                       norm = false })
      compare.assert_close(h, fx.fb_htk, 1e-5, "htk fbank")
    end)

    it("gives the same features with 1 and 2 threads", function()
      local was = cocola.get_num_threads()
      cocola.set_num_threads(1)
      local a = audio.cocola_features(fx.wave, { mode = "hpss" })
      cocola.set_num_threads(2)
      local b = audio.cocola_features(fx.wave, { mode = "hpss" })
      cocola.set_num_threads(was)
      assert.are.equal(0, (a - b):abs():max():item())
    end)
  end)

  describe("building blocks", function()
    it("median_filter is scipy's with 'reflect' edges", function()
      cocola.manual_seed(3)
      local x = cocola.rand({ 7, 5 })
      local v = x:totable()
      local function refl(j, n)
        local p = 2 * n
        local m = j % p
        if m >= n then m = p - 1 - m end
        return m + 1
      end
      for _, case in ipairs({ { 3, -1 }, { 5, -2 }, { 9, -1 }, { 11, -2 } }) do
        local size, dim = case[1], case[2]
        local y = audio.median_filter(x, size, dim):totable()
        for r = 1, 7 do
          for c = 1, 5 do
            local win = {}
            for k = -(size // 2), size // 2 do
              if dim == -1 then win[#win + 1] = v[r][refl(c - 1 + k, 5)]
              else win[#win + 1] = v[refl(r - 1 + k, 7)][c] end
            end
            table.sort(win)
            assert.are.equal(win[size // 2 + 1], y[r][c])
          end
        end
      end
    end)

    it("STFT -> iSTFT reconstructs to 1e-5", function()
      local o = { n_fft = 1024, hop_length = 160, win_length = 400 }
      local x = fx.wave
      local y = audio.istft(audio.stft(x, o), { n_fft = 1024, hop_length = 160, win_length = 400, length = 80000 })
      assert.is_true((y - x):abs():max():item() <= 1e-5)
      local o2 = { n_fft = 512, hop_length = 128, pad_mode = "reflect" }
      local y2 = audio.istft(audio.stft(x, o2), { n_fft = 512, hop_length = 128, length = 80000 })
      assert.is_true((y2 - x):abs():max():item() <= 1e-5)
    end)

    it("hpss splits a magnitude into parts that add up below it", function()
      local X = audio.stft(fx.wave:narrow(1, 1, 1), { n_fft = 1024, hop_length = 160, win_length = 400 })
      local mag = audio.magnitude(X)
      local h, p = audio.hpss(mag)
      assert.are.same(mag.shape, h.shape)
      assert.is_true(((h + p) - mag):max():item() <= 1e-4)
    end)

    it("power_to_db and amplitude_to_db follow librosa", function()
      local S = cocola.tensor({ 1, 10, 100, 1e-12 })
      local d = audio.power_to_db(S, { ref = "max", top_db = 80 }):totable()
      assert.is_true(math.abs(d[1] + 20) < 1e-5 and math.abs(d[2] + 10) < 1e-5 and math.abs(d[3]) < 1e-5)
      assert.is_true(math.abs(d[4] + 80) < 1e-5)
      local a = audio.amplitude_to_db(cocola.tensor({ 1, 10 }), { top_db = false }):totable()
      assert.is_true(math.abs(a[1]) < 1e-5 and math.abs(a[2] - 20) < 1e-5)
    end)
  end)

  describe("resampling", function()
    it("keeps a 1 kHz sine at 44.1 kHz -> 16 kHz and does not alias 12 kHz", function()
      local x = sine(44100, 44100, 1000, 0.5) + sine(44100, 44100, 12000, 0.5)
      local y = audio.resample(x:view(1, -1), 44100, 16000)
      assert.are.same({ 1, 16000 }, y.shape)
      local v = flat(y:narrow(2, 2001, 12000))
      local a1 = tone_amplitude(v, 16000, 1000)
      assert.is_true(math.abs(20 * math.log(a1 / 0.5, 10)) < 0.1, "1 kHz amplitude " .. a1)
      for _, f in ipairs({ 4000, 3000, 6000, 7000 }) do -- 12 kHz would alias to 4 kHz
        local a = tone_amplitude(v, 16000, f)
        assert.is_true(20 * math.log(a / 0.5, 10) < -80, string.format("%d Hz at %.1f dB", f, 20 * math.log(a / 0.5, 10)))
      end
    end)

    it("handles 22.05 kHz and 48 kHz", function()
      for _, sr in ipairs({ 22050, 48000 }) do
        local y = audio.resample(sine(sr, sr, 1000, 0.5):view(1, -1), sr, 16000)
        assert.are.same({ 1, 16000 }, y.shape)
        local a = tone_amplitude(flat(y:narrow(2, 2001, 12000)), 16000, 1000)
        assert.is_true(math.abs(20 * math.log(a / 0.5, 10)) < 0.1)
      end
    end)
  end)

  describe("files", function()
    it("round-trips PCM16 and float WAV exactly, FLAC within a PCM step", function()
      local rows = {}
      for c = 1, 2 do
        rows[c] = {}
        for i = 1, 3000 do rows[c][i] = ((i * 7919 * c) % 65536 - 32768) / 32768 end -- on the PCM16 grid
      end
      local x = cocola.tensor(rows)
      local p = tmp(".wav")
      audio.save(p, x, 22050)
      local y, sr = audio.load(p)
      assert.are.equal(22050, sr)
      assert.are.equal(0, (y - x):abs():max():item())
      local info = audio.info(p)
      assert.are.same({ 3000, 22050, 2 }, { info.frames, info.rate, info.channels })
      assert.is_true(math.abs(info.duration - 3000 / 22050) < 1e-12)

      local z = cocola.randn({ 1, 1000 }) * 0.3
      local pf = tmp(".wav")
      audio.save(pf, z, 16000, { subtype = "float" })
      assert.are.equal(0, (audio.load(pf) - z):abs():max():item())

      local pc = tmp(".flac")
      audio.save(pc, x, 16000)
      assert.is_true((audio.load(pc) - x):abs():max():item() <= 1 / 32768)
      assert.are.equal(3000, audio.info(pc).frames)
    end)

    it("loads a window with offset and duration, mono and resampled", function()
      local x = cocola.arange(0, 8000, { dtype = "float32" }):div(8000):view(1, -1)
      local st = cocola.cat({ x, x * 0.5 }, 1)
      local p = tmp(".wav")
      audio.save(p, st, 8000, { subtype = "float" })
      local w = audio.load(p, { offset = 0.25, duration = 0.5 })
      assert.are.same({ 2, 4000 }, w.shape)
      assert.are.equal(0, (w - st:narrow(2, 2001, 4000)):abs():max():item())
      local m = audio.load(p, { mono = true, duration = 0.5 })
      assert.are.same({ 1, 4000 }, m.shape)
      assert.is_true((m - x:narrow(2, 1, 4000) * 0.75):abs():max():item() < 1e-6)
      local r, sr = audio.load(p, { sr = 16000, duration = 0.5, mono = true })
      assert.are.equal(16000, sr)
      assert.are.same({ 1, 8000 }, r.shape)
    end)

    it("zero-pads a window past the end on the right", function()
      local p = tmp(".wav")
      audio.save(p, cocola.ones({ 1, 1000 }) * 0.5, 1000, { subtype = "float" })
      local w = audio.load(p, { offset = 0.5, duration = 1.0 })
      assert.are.same({ 1, 1000 }, w.shape)
      assert.are.equal(0.5, w:narrow(2, 1, 500):min():item())
      assert.are.equal(0, w:narrow(2, 501, 500):abs():max():item())
      local past = audio.load(p, { offset = 5, duration = 0.25 })
      assert.are.same({ 1, 250 }, past.shape)
      assert.are.equal(0, past:abs():max():item())
    end)

    it("reads OGG/Vorbis through libsndfile", function()
      local p = tmp(".ogg")
      audio.save(p, sine(16000, 16000, 440, 0.5):view(1, -1), 16000)
      local y, sr = audio.load(p)
      assert.are.equal(16000, sr)
      assert.is_true(math.abs(y.shape[2] - 16000) <= 0)
      local a = tone_amplitude(flat(y:narrow(2, 4001, 8000)), 16000, 440)
      assert.is_true(math.abs(a - 0.5) < 0.02)
    end)
  end)

  describe("bad input", function()
    it("raises a clear error for a missing file", function()
      assert.has_error(function() audio.load("/nonexistent/x.wav") end)
      local ok, err = pcall(audio.info, "/nonexistent/x.wav")
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("cannot open", 1, true))
    end)

    it("raises for a non-audio file", function()
      local p = tmp(".wav")
      local f = assert(io.open(p, "wb"))
      f:write(string.rep("this is not audio\n", 100))
      f:close()
      local ok, err = pcall(audio.load, p)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("audio.load", 1, true))
    end)

    it("loads what a truncated file holds (zeros after), never crashes", function()
      local p = tmp(".wav")
      audio.save(p, cocola.ones({ 1, 4000 }) * 0.25, 8000)
      local f = assert(io.open(p, "rb"))
      local bytes = f:read("a")
      f:close()
      f = assert(io.open(p, "wb"))
      f:write(bytes:sub(1, 44 + 2 * 1000)) -- header + 1000 samples
      f:close()
      local ok, w = pcall(audio.load, p, { duration = 0.5 })
      if ok then
        assert.are.same({ 1, 4000 }, w.shape)
        assert.is_true(math.abs(w:narrow(2, 1, 1000):mean():item() - 0.25) < 1e-4)
      else
        assert.is_truthy(tostring(w):find("audio.load", 1, true))
      end
      -- a file cut inside its header
      f = assert(io.open(p, "wb"))
      f:write(bytes:sub(1, 20))
      f:close()
      assert.has_error(function() audio.load(p) end)
    end)

    it("handles zero-length audio", function()
      local p = tmp(".wav")
      audio.save(p, cocola.zeros({ 1, 0 }), 16000)
      assert.are.equal(0, audio.info(p).frames)
      local w = audio.load(p)
      assert.are.same({ 1, 0 }, w.shape)
      local z = audio.load(p, { duration = 0.1 })
      assert.are.same({ 1, 1600 }, z.shape)
      assert.has_error(function() audio.cocola_features(cocola.zeros({ 1, 0 })) end)
    end)

    it("refuses NaN samples", function()
      local x = cocola.zeros({ 2, 80000 })
      x:narrow(2, 100, 1):fill_(0 / 0)
      local ok, err = pcall(audio.cocola_features, x, { mode = "hpss" })
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("NaN", 1, true))
      assert.has_error(function() audio.save(tmp(".wav"), x, 16000) end)
    end)

    it("checks options", function()
      assert.has_error(function() audio.cocola_features(fx.wave, { mode = "cqt" }) end)
      assert.has_error(function() audio.median_filter(cocola.rand({ 4, 4 }), 4) end)
      assert.has_error(function() audio.stft(cocola.rand({ 100 }), { n_fft = 1024, pad_mode = "reflect" }) end)
      assert.has_error(function() audio.save(tmp(".xyz"), cocola.zeros({ 1, 10 }), 16000) end)
    end)
  end)
end)

describe("audio.load options", function()
  local path
  setup(function()
    path = os.tmpname() .. ".wav"
    audio.save(path, sine(16000, 16000, 440, 0.5):reshape({ 1, 16000 }), 16000)
  end)
  teardown(function() os.remove(path) end)

  it("rejects unknown options and bad values, naming the valid ones", function()
    local cases = {
      { { sr = 0 }, "sr must be a positive whole number" },
      { { sr = -16000 }, "sr must be a positive whole number" },
      { { sr = 16000.5 }, "sr must be a positive whole number" },
      { { duration = -1 }, "duration must be a positive number" },
      { { duration = 0 }, "duration must be a positive number" },
      { { offset = -0.5 }, "offset must be a number of seconds >= 0" },
      { { offset = 0 / 0 }, "offset must be a number of seconds >= 0" },
      { { mono = "yes" }, "mono must be true or false" },
      { { sample_rate = 16000 }, "unknown option 'sample_rate'" },
      { "16000", "expected an options table" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(audio.load, path, c[1])
      assert.is_false(ok, c[2])
      assert.truthy(tostring(err):find("audio.load: " .. c[2], 1, true), err)
      assert.truthy(tostring(err):find("(options: sr, mono, offset, duration)", 1, true), err)
    end
  end)

  it("still takes every valid option", function()
    local w, sr = audio.load(path, { sr = 8000, mono = true, offset = 0.25, duration = 0.5 })
    assert.are.equal(8000, sr)
    assert.are.same({ 1, 4000 }, w.shape)
    local whole, rate = audio.load(path)
    assert.are.equal(16000, rate)
    assert.are.same({ 1, 16000 }, whole.shape)
  end)
end)
