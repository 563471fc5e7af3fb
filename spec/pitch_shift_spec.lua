-- pitch_shift_spec.lua — cocola.audio.pitch_shift against librosa.effects.pitch_shift 0.10.1
-- (spec/fixtures/pitch_shift.safetensors, from spec/fixtures/gen_pitch_shift.py): the shifted waves
-- agree within a relative L2 error of 3e-4 (measured: at most 7.5e-5; the rest is FFT and resampler
-- rounding, and the float32 phase accumulator rounding a few steps differently). Batches shift row by
-- row; a tone moves by the expected ratio; bad input is an error naming the problem.
local cocola = require "cocola"
local audio = require "cocola.audio"
local compare = require "helpers.compare"

local SR = 16000
local fx = cocola.load("spec/fixtures/pitch_shift.safetensors")

-- the frequency (Hz) of the largest bin of a wave's magnitude spectrum (n_fft 8192, one frame)
local function peak_hz(w)
  local n = 8192
  local X = audio.stft(w:narrow(1, 1, n), { n_fft = n, hop_length = n, center = false })
  local mag = audio.magnitude(X):view(-1)
  local bin = mag:argmax():item()
  return bin * SR / n
end

describe("audio.pitch_shift", function()
  it("equals librosa.effects.pitch_shift within 3e-4 (relative L2)", function()
    for i, case in ipairs(fx.cases:totable()) do
      local row, steps = math.tointeger(case[1]) + 1, case[2]
      local ours = audio.pitch_shift(fx.wave:select(1, row), SR, steps)
      compare.assert_close(ours, fx.shifted:select(1, i), 3e-4, string.format("wave %d shifted by %g", row, steps))
    end
  end)

  it("shifts a batch row by row, keeping its shape", function()
    local both = audio.pitch_shift(fx.wave, SR, 3)
    assert.are.same({ 2, 16000 }, both.shape)
    for row = 1, 2 do
      local one = audio.pitch_shift(fx.wave:select(1, row), SR, 3)
      assert.are.same({ 16000 }, one.shape)
      compare.assert_close(both:select(1, row), one, 1e-6, "row " .. row)
    end
  end)

  it("moves a tone by 2^(n / 12)", function()
    local rows = {}
    for i = 1, SR do rows[i] = 0.5 * math.sin(2 * math.pi * 440 * (i - 1) / SR) end
    local tone = cocola.tensor(rows)
    local resolution = SR / 8192
    for _, n in ipairs({ 12, 7, -5 }) do
      local want = 440 * 2 ^ (n / 12)
      local got = peak_hz(audio.pitch_shift(tone, SR, n))
      assert.is_true(math.abs(got - want) <= resolution, string.format("%+d: peak at %.1f Hz, expected %.1f", n, got, want))
    end
  end)

  it("refuses bad input with messages naming it", function()
    local function err(...)
      local ok, e = pcall(audio.pitch_shift, ...)
      assert.is_false(ok)
      return tostring(e)
    end
    assert.truthy(err({ 1, 2 }, SR, 1):find("expected a float32 wave", 1, true))
    assert.truthy(err(cocola.zeros({ 2, 2, 100 }), SR, 1):find("expected a float32 wave", 1, true))
    assert.truthy(err(cocola.zeros({ 100 }), 0, 1):find("sr must be a positive number", 1, true))
    assert.truthy(err(cocola.zeros({ 100 }), SR, 0 / 0):find("n_steps must be a finite number", 1, true))
    assert.truthy(err(cocola.zeros({ 100 }), SR, 1, { bins_per_octave = 0 }):find("bins_per_octave", 1, true))
    local values = {}
    for i = 1, 4000 do values[i] = 0 end
    values[10] = 0 / 0
    local bad = cocola.tensor(values)
    assert.truthy(err(bad, SR, 1):find("NaN or infinite", 1, true))
  end)
end)
