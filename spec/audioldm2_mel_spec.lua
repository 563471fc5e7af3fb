-- audioldm2_mel_spec.lua — cocola.models.audioldm2.mel (the AudioLDM 2 / CompoNet log-mel front end)
-- against spec/fixtures/audioldm2/mel.safetensors (computed in float64 from the definition with numpy
-- and librosa 0.10.1): the mel basis, the STFT magnitude at both reflect-padded edges and the log-mel
-- (64, 101) of 1 s at 16 kHz, each within 1e-4 relative; batched layout; bad input errors.
local cocola = require "cocola"
local compare = require "helpers.compare"
local mel = require "cocola.models.audioldm2.mel"

local fx = cocola.load("spec/fixtures/audioldm2/mel.safetensors")

local function error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return tostring(err)
end

describe("AudioLDM 2 mel front end", function()
  it("uses librosa's Slaney mel basis (64 x 513, 0-8000 Hz)", function()
    compare.assert_close(mel.mel_basis(), fx.mel_basis, 1e-6, "mel_basis")
  end)

  it("takes the STFT magnitude with a periodic Hann window and reflect padding", function()
    local mag = mel.magnitude(fx.waveform)
    assert.are.same({ 513, 101 }, mag.shape)
    compare.assert_close(mag:narrow(2, 1, 8), fx.magnitude_first8, 1e-5, "first frames")
    compare.assert_close(mag:narrow(2, 98, 4), fx.magnitude_last4, 1e-5, "last frames")
  end)

  it("gives the log-mel (64, frames) within 1e-4", function()
    local m = mel.log_mel(fx.waveform)
    assert.are.same({ 64, 101 }, m.shape)
    compare.assert_close(m, fx.log_mel, 1e-4, "log_mel")
  end)

  it("keeps the batch: (B, samples) -> (B, 64, frames), and the VAE layout (B, 1, frames, 64)", function()
    local w = cocola.stack({ fx.waveform, fx.waveform * 0.25 })
    local m = mel.log_mel(w)
    assert.are.same({ 2, 64, 101 }, m.shape)
    compare.assert_close(m:select(1, 1), fx.log_mel, 1e-4, "row 0")
    compare.assert_close(m:select(1, 2), mel.log_mel(fx.waveform * 0.25), 1e-6, "row 1")
    local v = mel.vae_input(w)
    assert.are.same({ 2, 1, 101, 64 }, v.shape)
    compare.assert_close(v:select(2, 1):transpose(2, 3), m, 1e-7, "vae layout")
  end)

  it("has frames = 1 + samples // 160", function()
    assert.are.same({ 64, 1 + 8000 // 160 }, mel.log_mel(cocola.zeros({ 8000 })).shape)
    assert.are.same({ 64, 1024 }, mel.log_mel(cocola.zeros({ 163680 })).shape)
  end)

  it("rejects bad input clearly", function()
    assert.matches("expected a wave %(samples%) or %(B, samples%)", error_of(mel.log_mel, cocola.zeros({ 1, 1, 1000 })))
    assert.matches("at least 513 are needed", error_of(mel.log_mel, cocola.zeros({ 100 })), 1, true)
    assert.matches("must lie in [-1, 1]", error_of(mel.log_mel, cocola.full({ 1000 }, 2.0)), 1, true)
    assert.matches("expected a tensor wave", error_of(mel.log_mel, {}), 1, true)
  end)
end)
