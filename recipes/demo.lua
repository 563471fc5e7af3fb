-- recipes/demo.lua — the main job (`make demo`): scores the example pairs in assets/examples with the
-- bundled COCOLA model (cocola.models.cocola.default(): trained by recipes/train_cocola.lua on stems
-- rendered from Debian's MIDI songs) and prints each pair's COCOLA score (with its harmonic and
-- percussive variants for an HPSS model), then the mean of each kind of pair. Coherent pairs (condition and
-- accompaniment from the same moment of a song) should score clearly above incoherent ones
-- (another song's accompaniment) and above the same accompaniment shifted off the beat.
-- The same scores from the command line: cocola score --cond assets/examples/cond --gen assets/examples/gen
-- Usage: lua5.4 recipes/demo.lua [model=path] [examples=assets/examples] [threads=2]
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local scoring = require "cocola.scoring"

local DEFAULTS = { model = "", examples = "assets/examples", threads = 2 }

local KINDS = { "coherent", "shifted", "incoherent" }

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
end

os.exit(recipe.main("demo", DEFAULTS, run, arg))
