-- chaos_spec.lua — kill anywhere, the quick run of tests/chaos/chaos.lua (`make test-chaos` is the
-- full one): seeded trials of `cocola train` (train_cocola), prepare, and the generative trainers
-- (`cocola train-ldm` stage unet, `cocola train-componet`, `cocola train-msdm`), each run SIGKILLed as a process group at
-- random moments (up to 3 kills) and resumed until it completes; every output file parses (safetensors
-- sizes, JSON, JSONL lines, audio), no temporary is left, the resumed losses and weights equal the
-- uninterrupted run's and the prepared files are byte-identical to it.
package.path = "./tests/chaos/?.lua;" .. package.path
local chaos = require "chaos"

describe("kill anywhere", function()
  it("resumes killed train_cocola and prepare runs to the uninterrupted run's results", function()
    local lines = {}
    local summary = chaos.run { seed = 7, trials = 3, kills = 3, targets = { "train", "prepare" },
      log = function(l) lines[#lines + 1] = l end }
    assert.are.equal(0, summary.failed, table.concat(lines, "\n"))
    assert.are.equal(6, summary.passed)
    for _, name in ipairs({ "train", "prepare" }) do
      assert.are.equal(3, summary.targets[name].identical)
      assert.is_true(summary.targets[name].files > 0)
    end
  end)

  it("resumes killed latent diffusion, CompoNet and MSDM trainings to the uninterrupted run's losses and weights", function()
    local lines = {}
    -- without plots: a kill while gnuplot draws leaves cocola.plot's data files in /tmp (make test-chaos draws them)
    local summary = chaos.run { seed = 7, trials = 2, kills = 3, targets = { "ldm", "componet", "msdm" }, plots = false,
      log = function(l) lines[#lines + 1] = l end }
    assert.are.equal(0, summary.failed, table.concat(lines, "\n"))
    assert.are.equal(6, summary.passed)
    -- a trial whose run ends before its random delay is not killed: count kills over all of them
    local kills = 0
    for _, name in ipairs({ "ldm", "componet", "msdm" }) do
      assert.are.equal(2, summary.targets[name].identical)
      assert.is_true(summary.targets[name].files > 0)
      kills = kills + summary.targets[name].kills
    end
    assert.is_true(kills > 0, "no run was killed")
  end)
end)
