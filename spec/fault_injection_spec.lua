-- fault_injection_spec.lua — a quick run of tests/faults (make test-faults runs all of it): the Nth
-- allocation failing, for every 9th N of each workload (loading a safetensors file and a torch
-- checkpoint, a training step of a tiny COCOLA model, feature extraction, saving), ends in a Lua error
-- or the right result, with no crash, hang or leak, and the engine gives the right result afterwards;
-- every write-failure case (cocola.save, audio.save, both trainers' checkpoints, prepare, cocola score)
-- ends in an error naming the file, the previous files byte-identical and no temporary file left.
-- Pending where the shim cannot be built (no gcc) or under a sanitizer build (which replaces malloc).
local D = dofile("tests/faults/driver.lua")

local STRIDE = 9

local function unavailable()
  local build = os.getenv("COCOLA_BUILD_DIR")
  if build and build ~= "build" then return "the fault shim replaces malloc: not with " .. build end
  local shim, why = D.build_shim()
  if not shim then return why end
  return nil
end

describe("fault injection", function()
  local skip = unavailable()

  describe("allocation failures", function()
    for _, w in ipairs(D.WORKLOADS) do
      it(w .. ": every point ends in a Lua error or the right result, no crash, hang or leak", function()
        if skip then
          pending(skip)
          return
        end
        local scratch = D.tmpdir()
        local count, err = D.count(w, scratch)
        assert.is_not_nil(count, err)
        assert.is_true(count > 50, "allocations of " .. w .. ": " .. tostring(count))
        local s = D.sweep(w, D.points(count, STRIDE), scratch)
        os.execute("rm -rf '" .. scratch .. "'")
        assert.is_true(s.tried >= count // STRIDE, w .. ": points tried " .. s.tried)
        assert.is_true(s.error > 0, w .. ": no point raised an error")
        for _, k in ipairs({ "crash", "hang", "leak", "wrong", "unrecovered", "nomessage" }) do
          assert.are.equal(0, #s[k], string.format("%s: %s at points %s", w, k, table.concat(s[k], ",")))
        end
      end)
    end
  end)

  describe("write failures", function()
    for _, case in ipairs(D.CASES) do
      it(case.name .. ": an error naming the file, the previous files intact, nothing left behind", function()
        if skip then
          pending(skip)
          return
        end
        for _, v in ipairs(D.VARIANTS) do
          local ok, msg = D.io_case(case, v)
          assert.is_true(ok ~= false, case.name .. ", " .. v.name .. ": " .. msg)
        end
      end)
    end
  end)
end)
