-- hostile_files_spec.lua — hostile checkpoints and audio files (spec/fixtures/fuzz, written by
-- spec/fixtures/gen_hostile.py, plus inputs the libFuzzer harnesses of tests/fuzz found) end in a
-- clear Lua error naming the file: zip entries named "../x" or absolute, storages and views far larger
-- than the bytes behind them (refused before anything is allocated), 20000 nested lists (no stack
-- overflow), absurd sample rates and channel counts, a broken Vorbis header.
local cocola = require "cocola"

local DIR = "spec/fixtures/fuzz/"

local function refuses(fn, file, pattern)
  local ok, err = pcall(fn, DIR .. file)
  assert.is_false(ok, file .. " was accepted")
  err = tostring(err)
  assert.is_truthy(err:find(DIR .. file, 1, true), "the error does not name the file: " .. err)
  assert.is_truthy(err:find(pattern), "unexpected error: " .. err)
end

describe("cocola.load refuses a hostile checkpoint:", function()
  it("a zip entry named ../x", function()
    refuses(cocola.load, "dotdot.pt", "entry name '%.%./x' is not a relative path inside the archive")
  end)
  it("a zip entry with an absolute name", function()
    refuses(cocola.load, "absolute.pt", "entry name '/etc/x' is not a relative path inside the archive")
  end)
  it("a storage claiming 2^40 elements for 8 bytes", function()
    refuses(cocola.load, "numel_huge.pt", "storage '0' holds 8 bytes but 1099511627776 elements")
  end)
  it("a view reaching past the end of its storage", function()
    refuses(cocola.load, "view_outside.pt", "outside its storage of 2 elements")
  end)
  it("lists nested 20000 deep", function()
    refuses(cocola.load, "nested.pt", "nests deeper than 200 levels")
  end)
end)

describe("cocola.audio refuses a hostile file:", function()
  local function info(path) return cocola.audio.info(path) end
  local function window(path) return cocola.audio.load(path, {offset = 0.5, duration = 1}) end
  it("a sample rate of 2^31 - 1 Hz (a one-second window would be 8 GiB)", function()
    refuses(info, "rate_huge.wav", "declares a sample rate of 2147483647 Hz")
    refuses(window, "rate_huge.wav", "declares a sample rate of 2147483647 Hz")
  end)
  it("2000 channels", function()
    refuses(info, "channels.wav", "cannot open")
    refuses(window, "channels.wav", "cannot open")
  end)
  it("a sample rate of 0 Hz", function()
    refuses(info, "rate_zero.wav", "cannot open")
    refuses(window, "rate_zero.wav", "cannot open")
  end)
  it("a broken Vorbis header (found by fuzz_audio)", function()
    refuses(info, "vorbis_header.ogg", "cannot open")
    refuses(window, "vorbis_header.ogg", "cannot open")
  end)
end)
