-- recipes/demo.lua — the main job (`make demo`): scores the example pairs in assets/examples with the
-- bundled COCOLA model (cocola.models.cocola.default(): trained by recipes/train_cocola.lua on stems
-- rendered from Debian's MIDI songs) and prints each pair's COCOLA score (with its harmonic and
-- percussive variants for an HPSS model), then the mean of each kind of pair. Coherent pairs (condition and
-- accompaniment from the same moment of a song) should score clearly above incoherent ones
-- (another song's accompaniment) and above the same accompaniment shifted off the beat.
-- The same scores from the command line: cocola score --cond assets/examples/cond --gen assets/examples/gen
-- Then, where the bundled CompoNet is present (assets/componet: trained here by recipes/train_componet_local.sh,
-- exported by recipes/export_componet.lua), it generates the accompaniment its example asks for
-- (assets/componet/example: a Table 3 task's input and prompt) into runs/demo/accompaniment.wav and scores it
-- against the input beside the task's ground truth and Random accompaniments.
-- Usage: lua5.4 recipes/demo.lua [model=path] [examples=assets/examples] [threads=2]
--        [componet=assets/componet ("" to skip)] [componet_steps=50] [out=runs/demo]
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local scoring = require "cocola.scoring"

local DEFAULTS = { model = "", examples = "assets/examples", threads = 2, componet = "assets/componet",
  componet_steps = 50, out = "runs/demo" }

local KINDS = { "coherent", "shifted", "incoherent" }

-- the bundled CompoNet's example: generate the accompaniment it asks for and score it beside the task's own
local function accompany_example(cfg, model)
  local fs = require "cocola.data.fs"
  local example_dir = cfg.componet .. "/example"
  if not fs.is_file(cfg.componet .. "/model_index.json") or not fs.is_file(example_dir .. "/example.json") then
    print(string.format("\nno CompoNet in %s (recipes/train_componet_local.sh, then recipes/export_componet.lua)", cfg.componet))
    return
  end
  local example = require("cjson").decode(fs.read(example_dir .. "/example.json"))
  print(string.format("\nCompoNet (%s): %s, %d DDIM steps", cfg.componet, example.prompt, cfg.componet_steps))
  local t0 = cocola.wall_time()
  fs.mkdir_p(cfg.out)
  local out = cfg.out .. "/accompaniment.wav"
  require("cocola.recipes.accompany").run({ model = cfg.componet, controlnet = "", cond = example_dir .. "/" .. example.files.input,
    tasks = "", prompt = example.prompt, inputs = "", outputs = "", genre = "", out = out, seconds = example.window or 10.23, offset = 0.0,
    steps = cfg.componet_steps, guidance = 1.0, conditioning_scale = 1.0, eta = 0, seed = 0, batch_size = 1, device = "cpu",
    autocast = "off", threads = cfg.threads }, function() end)
  print(string.format("%s written in %.1f s; COCOLA score against the input:", out, cocola.wall_time() - t0))
  local input = example_dir .. "/" .. example.files.input
  for _, row in ipairs({ { "CompoNet", out }, { "ground truth", example_dir .. "/" .. example.files.ground_truth },
    { "random", example_dir .. "/" .. example.files.random } }) do
    local r = scoring.score_files(model, input, row[2])
    print(string.format("  %-14s %8.2f", row[1], r.mean))
  end
end

local function run(cfg)
  recipe.log_config(cfg)
  cocola.set_num_threads(cfg.threads)
  local Cocola = cocola.models.cocola
  local model = cfg.model ~= "" and Cocola.from_checkpoint(cfg.model) or Cocola.default()
  print("model: " .. model:extra_repr())
  local t0 = cocola.wall_time()
  local result = scoring.score_folders(model, cfg.examples .. "/cond", cfg.examples .. "/gen", {
    progress = function(i, n, name) recipe.progress("scoring", i - 1, n, name) end,
  })
  recipe.progress("scoring", result.n, result.n, "")
  -- HPSS models also give the harmonic and percussive scores; other models one score per pair
  local split = result.rows[1] and result.rows[1].harmonic ~= nil
  if split then
    print(string.format("\n%-16s %9s %9s %11s", "pair", "score", "harmonic", "percussive"))
  else
    print(string.format("\n%-16s %9s", "pair", "score"))
  end
  local by_kind = {}
  for _, row in ipairs(result.rows) do
    if split then
      print(string.format("%-16s %9.2f %9.2f %11.2f", row.name, row.score, row.harmonic, row.percussive))
    else
      print(string.format("%-16s %9.2f", row.name, row.score))
    end
    local kind = row.name:match("^(%a+)_")
    if kind then
      by_kind[kind] = by_kind[kind] or {}
      table.insert(by_kind[kind], row.score)
    end
  end
  print("")
  local means = {}
  for _, kind in ipairs(KINDS) do
    local xs = by_kind[kind]
    if xs then
      local s = 0
      for _, x in ipairs(xs) do s = s + x end
      means[kind] = s / #xs
      print(string.format("mean %-11s %9.2f  (%d pairs)", kind, means[kind], #xs))
    end
  end
  if means.coherent and means.incoherent then
    local wins, n = 0, 0
    for _, row in ipairs(result.rows) do
      local i = row.name:match("^coherent_(%d+)$")
      if i then
        for _, other in ipairs(result.rows) do
          if other.name == "incoherent_" .. i or other.name == "shifted_" .. i then
            n = n + 1
            if row.score > other.score then wins = wins + 1 end
          end
        end
      end
    end
    print(string.format("a coherent pair outscores its incoherent / shifted counterparts in %d of %d comparisons", wins, n))
  end
  print(string.format("(%d pairs of %.0f s in %.1f s)", result.n, result.rows[1].duration, cocola.wall_time() - t0))
  if cfg.componet ~= "" then accompany_example(cfg, model) end
end

os.exit(recipe.main("demo", DEFAULTS, run, arg))
