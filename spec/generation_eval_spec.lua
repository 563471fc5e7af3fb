-- generation_eval_spec.lua — Table 3 as recipes, on a tiny stems dataset made here: make_generation_tasks
-- (cocola.recipes.generation_tasks) draws tasks whose input and target are disjoint non-empty sets of
-- active stems of one window, writes their sub-mixes (the sums of those stems' windows), the Random row's
-- sub-mix from another track with the target's stem types, prompts in the released code's form, and the
-- same tasks for the same seed; eval_generation (cocola.recipes.eval_generation) scores systems, Random
-- and Ground Truth with the COCOLA score (equal to cocola.scoring on each pair) and with FAD against the
-- targets (equal to cocola.metrics.fad on the backbone's embeddings), picks the largest-L2 candidate,
-- names missing audio, and writes its Markdown, CSV and JSON, and the rows' score distributions as a
-- picture (none with plots=false, one log line without gnuplot); `cocola make-tasks` / `eval-generation`.
local cocola = require "cocola"
local fs = require "cocola.data.fs"
local cjson = require "cjson"
local tasks_recipe = require "cocola.recipes.generation_tasks"
local eval_generation = require "cocola.recipes.eval_generation"
local backbones = require "cocola.metrics.backbones"
local fad = require "cocola.metrics.fad"
local scoring = require "cocola.scoring"
local files = require "helpers.files"
local stems = require "helpers.stems"

local RATE = 16000
local TAGS = { "Bass", "Drums", "Piano", "Guitar" }
local made = {}
local function temp()
  local d = files.tmpdir()
  made[#made + 1] = d
  return d
end

-- 4 test tracks of 4 stems, 14 s: tones whose pitch depends on track and stem; stem 4 of track 1 is silent
local root = temp()
for t = 1, 4 do stems.track(root, "test", t, TAGS, { seconds = 14, silent = t == 1 and { [4] = true } or nil }) end

local function quiet() end
local function config(over)
  local cfg = {}
  for k, v in pairs(tasks_recipe.DEFAULTS) do cfg[k] = v end
  cfg.root, cfg.n, cfg.seconds = root, 6, 6.0
  for k, v in pairs(over or {}) do cfg[k] = v end
  return cfg
end

local function load(path) return (cocola.audio.load(path)):view(-1) end

local out = temp()
local manifest = tasks_recipe.run(config({ out = out }), quiet)

describe("make_generation_tasks", function()
  it("draws tasks with disjoint non-empty input and target stems, and writes their sub-mixes", function()
    assert.equal(6, #manifest.tasks)
    local decoded = cjson.decode(files.read(out .. "/tasks.json"))
    assert.equal(6, #decoded.tasks)
    assert.equal(6.0, decoded.settings.seconds)
    for k, t in ipairs(manifest.tasks) do
      assert.equal(string.format("task_%04d", k), t.id)
      assert.is_true(#t.input >= 1 and #t.target >= 1)
      local used = {}
      for _, s in ipairs(t.input) do used[s.name] = true end
      for _, s in ipairs(t.target) do assert.is_nil(used[s.name], "a stem on both sides") end
      -- the written sub-mixes are the sums of the stems' windows
      for side, list in pairs({ input = t.input, target = t.target }) do
        local sum
        for _, s in ipairs(list) do
          local w = cocola.audio.load(string.format("%s/test/%s/stems/%s.wav", root, t.track, s.name),
            { offset = t.offset, duration = t.seconds }):view(-1)
          sum = sum and sum + w or w
        end
        local got = load(string.format("%s/%s/%s.wav", out, side, t.id))
        assert.equal(math.floor(6.0 * RATE + 0.5), got:size(1))
        assert.is_true((got - sum):abs():max():item() < 1e-6, side .. " of " .. t.id .. ": " .. (got - sum):abs():max():item() .. " " .. sum:abs():max():item() .. " " .. got:abs():max():item())
      end
      -- the silent stem is never drawn
      for _, s in ipairs(t.input) do assert.is_false(t.track == "Track00001" and s.name == "S03") end
      for _, s in ipairs(t.target) do assert.is_false(t.track == "Track00001" and s.name == "S03") end
      -- Random: another track, the target's stem types (every track has them all here)
      assert.are_not.equal(t.track, t.random.track)
      assert.is_true(t.random.all_matched)
      local want, got = {}, {}
      for _, s in ipairs(t.target) do want[#want + 1] = s.tag end
      for _, s in ipairs(t.random.stems) do got[#got + 1] = s.tag end
      table.sort(want); table.sort(got)
      assert.same(want, got)
      assert.equal(6.0 * RATE, load(out .. "/random/" .. t.id .. ".wav"):size(1))
    end
  end)

  it("writes prompts in the released code's form and draws the same tasks for the same seed", function()
    assert.equal("in: bass_1, guitar_1, guitar_2; out: drums_1",
      tasks_recipe.prompt({ { tag = "Bass" }, { tag = "Guitar" }, { tag = "Guitar" } }, { { tag = "Drums" } }))
    assert.equal("genre: pop; in: synth_lead_1; out: piano_1",
      tasks_recipe.prompt({ { tag = "Synth Lead" } }, { { tag = "Piano" } }, "Pop"))
    for _, t in ipairs(manifest.tasks) do assert.matches("^in: [%w_, ]+; out: [%w_, ]+$", t.prompt) end
    local again = tasks_recipe.run(config({ out = temp() }), quiet)
    assert.equal(cjson.encode(manifest.tasks), cjson.encode(again.tasks))
    local other = tasks_recipe.run(config({ out = temp(), seed = 7 }), quiet)
    assert.are_not.equal(cjson.encode(manifest.tasks), cjson.encode(other.tasks))
  end)

  it("names what is missing or wrong", function()
    local function err(over)
      local ok, e = pcall(tasks_recipe.run, config(over), quiet)
      assert.is_false(ok)
      return tostring(e)
    end
    assert.matches("root= %(the dataset folder%) is required", err({ root = "", out = temp() }))
    assert.matches("out= %(the output folder%) is required", err({ out = "" }))
    assert.matches("n must be a positive integer", err({ out = temp(), n = 0 }))
    assert.matches("no directory", err({ out = temp(), root = root .. "/nope" }))
  end)
end)

describe("eval_generation", function()
  local model = cocola.models.cocola.default()
  model:eval()
  -- stand-in systems: the input mix itself, and quiet noise; a third with candidates of different loudness
  local sys_input, sys_noise, sys_cand = temp(), temp(), temp()
  cocola.manual_seed(3)
  for _, t in ipairs(manifest.tasks) do
    local w = load(out .. "/input/" .. t.id .. ".wav")
    cocola.audio.save(sys_input .. "/" .. t.id .. ".wav", w:view(1, -1), RATE, { subtype = "float" })
    cocola.audio.save(sys_noise .. "/" .. t.id .. ".wav", (cocola.randn(w:size()) * 0.01):view(1, -1), RATE, { subtype = "float" })
    local target = load(out .. "/target/" .. t.id .. ".wav")
    cocola.audio.save(sys_cand .. "/" .. t.id .. "_1.wav", (target * 0.1):view(1, -1), RATE, { subtype = "float" })
    cocola.audio.save(sys_cand .. "/" .. t.id .. "_2.wav", target:view(1, -1), RATE, { subtype = "float" })
    cocola.audio.save(sys_cand .. "/" .. t.id .. "_3.wav", (target * 0.5):view(1, -1), RATE, { subtype = "float" })
  end
  local function cfg(over)
    local c = {}
    for k, v in pairs(eval_generation.DEFAULTS) do c[k] = v end
    c.tasks, c.systems, c.backbones = out, "Input=" .. sys_input .. ",Noise=" .. sys_noise, "cocola"
    for k, v in pairs(over or {}) do c[k] = v end
    return c
  end
  local result = eval_generation.run(cfg(), quiet)

  it("scores every row with the COCOLA score of cocola.scoring, with its standard error", function()
    local names = {}
    for _, row in ipairs(result.rows) do names[#names + 1] = row.name end
    assert.same({ "Input", "Noise", "Random", "Ground Truth" }, names)
    local dirs = { Input = sys_input, Noise = sys_noise, Random = out .. "/random", ["Ground Truth"] = out .. "/target" }
    for _, row in ipairs(result.rows) do
      local s = row.cocola.default
      assert.equal(6, s.n)
      local sum, values = 0, {}
      for k, t in ipairs(manifest.tasks) do
        local want = scoring.score_files(model, out .. "/input/" .. t.id .. ".wav", dirs[row.name] .. "/" .. t.id .. ".wav").mean
        assert.is_true(math.abs(s.scores[k] - want) <= 1e-4 * math.max(1, math.abs(want)), row.name .. " " .. t.id)
        sum, values[k] = sum + want, want
      end
      local mean = sum / 6
      local var = 0
      for _, v in ipairs(values) do var = var + (v - mean) ^ 2 end
      assert.is_true(math.abs(s.mean - mean) < 1e-4 * math.max(1, math.abs(mean)))
      assert.is_true(math.abs(s.se - math.sqrt(var / 5 / 6)) < 1e-4 * math.max(1, s.se))
    end
  end)

  it("gives FAD against the Ground Truth targets as cocola.metrics.fad computes it, none for Ground Truth", function()
    local bb = backbones.open("cocola", { models = { model } })
    local ref, noise = {}, {}
    for _, t in ipairs(manifest.tasks) do
      ref[#ref + 1] = bb.embed_file(out .. "/target/" .. t.id .. ".wav")
      noise[#noise + 1] = bb.embed_file(sys_noise .. "/" .. t.id .. ".wav")
    end
    local want = fad.score(ref, noise)
    local got = result.rows[2].fad.COCOLA
    assert.is_true(math.abs(got - want) <= 1e-6 * math.max(1, math.abs(want)), got .. " vs " .. want)
    assert.is_nil(result.rows[4].fad.COCOLA)
    -- the input mix is real music like the targets: nearer to them than quiet noise
    assert.is_true(result.rows[1].fad.COCOLA < got)
  end)

  it("picks the candidate with the largest L2 norm, and needs pick=largest_l2 for several", function()
    local r = eval_generation.run(cfg({ systems = "Cand=" .. sys_cand, pick = "largest_l2", backbones = "" }), quiet)
    for k, file in ipairs(r.rows[1].files) do
      assert.equal(sys_cand .. "/" .. manifest.tasks[k].id .. "_2.wav", file)
    end
    -- the loudest candidate is the target itself: it scores as Ground Truth does
    assert.is_true(math.abs(r.rows[1].cocola.default.mean - r.rows[3].cocola.default.mean) < 1e-3)
    local ok, e = pcall(eval_generation.run, cfg({ systems = "Cand=" .. sys_cand, backbones = "" }), quiet)
    assert.is_false(ok)
    assert.matches("3 candidates for task task_0001.*pick=largest_l2", tostring(e))
  end)

  it("names a task without audio, or leaves it out with missing=skip", function()
    local partial = temp()
    for k, t in ipairs(manifest.tasks) do
      if k ~= 4 then files.copy(sys_input .. "/" .. t.id .. ".wav", partial .. "/" .. t.id .. ".wav") end
    end
    local ok, e = pcall(eval_generation.run, cfg({ systems = "P=" .. partial, backbones = "" }), quiet)
    assert.is_false(ok)
    assert.matches("P: no audio for 1 of 6 tasks %(first: task_0004%)", tostring(e))
    local r = eval_generation.run(cfg({ systems = "P=" .. partial, backbones = "", missing = "skip" }), quiet)
    assert.equal(5, r.rows[1].n)
    assert.same({ "task_0004" }, r.rows[1].missing)
  end)

  it("refuses bad settings with the setting named", function()
    local function err(over)
      local ok, e = pcall(eval_generation.run, cfg(over), quiet)
      assert.is_false(ok)
      return tostring(e)
    end
    assert.matches("tasks= %(the task folder%) is required", err({ tasks = "" }))
    assert.matches("no tasks.json in", err({ tasks = temp() }))
    assert.matches("pick must be first or largest_l2", err({ pick = "loudest" }))
    assert.matches("unknown FAD backbone 'pann'", err({ backbones = "pann" }))
    assert.matches("backbone vggish: give the weights file", err({ backbones = "vggish" }))
    assert.matches("the name 'A' is given twice", err({ systems = "A=" .. sys_input .. ",A=" .. sys_noise }))
  end)

  it("writes Markdown in the paper's layout, CSV and JSON, and runs as `cocola eval-generation`", function()
    local dir = temp()
    local pictures = eval_generation.write(result, dir, cfg(), quiet)
    local have_gnuplot = os.execute("command -v gnuplot >/dev/null 2>&1")
    if have_gnuplot then
      assert.are.same({ dir .. "/scores-default.png" }, pictures)
      local img = require("helpers.png").read(dir .. "/scores-default.png")
      assert.are.same({ 800, 500 }, { img.width, img.height })
    end
    local off = temp()
    assert.are.same({}, eval_generation.write(result, off, cfg({ plots = false }), quiet))
    assert.is_nil(io.open(off .. "/scores-default.png", "rb"))
    local plot, logged = require "cocola.plot", {}
    local saved = plot.gnuplot
    plot.gnuplot = "/nonexistent/gnuplot"
    local ok, err = pcall(eval_generation.write, result, off, cfg(), function(l) logged[#logged + 1] = l end)
    plot.gnuplot = saved
    assert(ok, err)
    assert.matches("^plots skipped: .*gnuplot not found", logged[1])
    assert.truthy(files.read(off .. "/table3.md"))
    local md = files.read(dir .. "/table3.md")
    assert.matches("| | FAD COCOLA ↓ | COCOLA default ↑ |", md, 1, true)
    assert.matches("| Ground Truth | — |", md, 1, true)
    local csv = files.read(dir .. "/table3.csv")
    assert.matches("Noise,6,fad,COCOLA,", csv, 1, true)
    local json = cjson.decode(files.read(dir .. "/table3.json"))
    assert.equal(4, #json.result.rows)
    assert.equal(result.tasks_hash, json.result.tasks_hash)
    local per = files.read(dir .. "/scores.csv")
    local lines = 0
    for _ in per:gmatch("\n") do lines = lines + 1 end
    assert.equal(1 + 4 * 6, lines)
    local cli = require "helpers.cli"
    local cdir = temp()
    local status, stdout, stderr = cli.cocola(string.format("eval-generation tasks='%s' systems='%s' backbones= out='%s'",
      out, sys_input, cdir .. "/t"), cdir)
    assert.equal(0, status, stderr)
    assert.matches("| Ground Truth |", stdout, 1, true)
    assert.truthy(cli.read(cdir .. "/t/table3.md"))
    if have_gnuplot then assert.matches("scores-default.png", stdout, 1, true) end
    status, _, stderr = cli.cocola("eval-generation tasks=" .. cdir .. "/none", cdir)
    cli.one_line_error(status, stderr, "no tasks.json in")
  end)
end)

teardown(function()
  for _, d in ipairs(made) do os.execute("rm -rf '" .. d .. "'") end
end)
