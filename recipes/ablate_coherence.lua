-- recipes/ablate_coherence.lua — what each coherence-training addition does, at an equal step budget:
-- every variant starts from the same weights (init), trains `steps` steps on the same data with the
-- same seed, has its BatchNorm statistics re-estimated (bn_recalibration_batches) at its one
-- validation, and is then evaluated with cocola.recipes.eval (every protocol, beside the chroma-onset
-- baseline and the starting model) on the same windows of `split`. Writes <out>/<variant>/ (the
-- training runs), <out>/eval/ (results.md / .csv / .json) and <out>/ablation.md (one table, a row per
-- variant). Resumable: a variant whose run already reached `steps` is not trained again.
-- Variants (cumulative, in this order; `variants` picks a subset):
--   paper       the paper's recipe (no negatives or augmentation), continued from init
--   negatives   + hard negatives: shifted and same-song columns
--   transposed  + transposed columns
--   augment     + per-stem gains (gain_db) and feature equalisation (eq_db)
--   timbre      + anchor and positive from different renderings (needs `renderings`)
-- input=chroma_onset ablates the chroma-onset model instead (cocola.models.chroma_onset_cocola): init=""
-- trains every variant from the same seeded fresh weights, "augment" adds gains only (its features
-- are not log-mel bands to equalise) and there is no BatchNorm to re-estimate; frame_prior (1, 0) is
-- train.lua's setting of that name (whether the model starts from the baseline's similarity).
-- Usage: lua5.4 recipes/ablate_coherence.lua init=assets/cocola_midi_hpss.safetensors root=data/midi_stems
--        [renderings=data/midi_stems=data/midi_stems_musescore] [steps=150] [batch_size=8] [out=runs/ablation]
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local train = require "cocola.recipes.train"
local eval = require "cocola.recipes.eval"
local cjson = require "cjson"
local fs = require "cocola.data.fs"

local DEFAULTS = {
  init = "assets/cocola_midi_hpss.safetensors", input = "hpss", layout = "slakh", root = "data/midi_stems", renderings = "",
  out = "runs/ablation", variants = "paper,negatives,transposed,augment,timbre", steps = 150, batch_size = 8,
  lr = 3e-4, lr_similarity = 3e-5, warmup_steps = 20, gain_db = 6, eq_db = 6, bn_recalibration_batches = 16,
  split = "validation", eval_split = "validation", ks = "2", protocols = "paper,same_track,shifted,transposed",
  max_windows = 200, min_distance = 10.0, seed = 0, threads = 2, frame_prior = 1,
}

local VARIANTS = {
  { name = "paper", settings = {} },
  { name = "negatives", settings = { hard_negatives = "shifted,same_song" } },
  { name = "transposed", settings = { hard_negatives = "shifted,same_song,transposed" } },
  { name = "augment", settings = { hard_negatives = "shifted,same_song,transposed", gain_db = true, eq_db = true } },
  { name = "timbre", settings = { hard_negatives = "shifted,same_song,transposed", gain_db = true, eq_db = true, renderings = true } },
}

local function run(cfg)
  recipe.log_config(cfg)
  fs.mkdir_p(cfg.out)
  local wanted = {}
  for v in tostring(cfg.variants):gmatch("[^,%s]+") do wanted[v] = true end
  local checkpoints, names = {}, {}
  for _, variant in ipairs(VARIANTS) do
    if wanted[variant.name] then
      wanted[variant.name] = nil
      if variant.settings.renderings and cfg.renderings == "" then
        print("variant " .. variant.name .. " skipped: it needs renderings=root=other")
      else
        local dir = fs.join(cfg.out, variant.name)
        local frames = cfg.input == "chroma_onset"
        local args = {
          "layout=" .. cfg.layout, "root=" .. cfg.root, "out=" .. dir, "init=" .. cfg.init, "input=" .. cfg.input,
          "batch_size=" .. cfg.batch_size, "max_steps=" .. cfg.steps, "lr=" .. cfg.lr,
          "lr_similarity=" .. cfg.lr_similarity, "warmup_steps=" .. cfg.warmup_steps, "valid_every=" .. cfg.steps,
          "bn_recalibration_batches=" .. (frames and 0 or cfg.bn_recalibration_batches), "checkpoint_every=25",
          "seed=" .. cfg.seed, "threads=" .. cfg.threads, "embedding_mode=both", "min_distance=" .. cfg.min_distance,
        }
        if frames then args[#args + 1] = "frame_prior=" .. cfg.frame_prior end
        for key, value in pairs(variant.settings) do
          if value == true then value = cfg[key] end
          if not (frames and key == "eq_db") then args[#args + 1] = key .. "=" .. tostring(value) end
        end
        table.sort(args)
        local state_text = recipe.read(fs.join(dir, "last", "state.json"))
        local done = state_text and cjson.decode(state_text).step >= cfg.steps
        if not done then
          local resume = state_text and { "resume=" .. fs.join(dir, "last") } or {}
          table.move(resume, 1, #resume, #args + 1, args)
          print(string.format("\n== variant %s: %s", variant.name, table.concat(args, " ")))
          train.run(recipe.config(train.DEFAULTS, args))
        end
        checkpoints[#checkpoints + 1] = fs.join(dir, "best.safetensors")
        names[#names + 1] = variant.name
      end
    end
  end
  local unknown = next(wanted)
  if unknown then error("ablate_coherence: unknown variant '" .. unknown .. "'", 0) end
  -- one evaluation of the starting model, every variant and the baseline on the same windows
  local models = cfg.init ~= "" and { cfg.init } or {}
  table.move(checkpoints, 1, #checkpoints, #models + 1, models)
  local rows, scores = eval.run(recipe.config(eval.DEFAULTS, {
    "models=" .. table.concat(models, ","), "datasets=" .. cfg.layout .. ":" .. cfg.root:match("^[^,]+"),
    "split=" .. cfg.eval_split, "ks=" .. cfg.ks, "protocols=" .. cfg.protocols, "out=" .. fs.join(cfg.out, "eval"),
    "max_windows=" .. cfg.max_windows, "seed=" .. cfg.seed, "threads=" .. cfg.threads,
    "min_distance=" .. cfg.min_distance,
  }))
  -- one row per model: accuracy ± cluster SE for each protocol and K, then the score separation
  local columns, seen = {}, {}
  for _, r in ipairs(rows) do
    local key = r.protocol .. " K=" .. r.k
    if not seen[key] then seen[key] = true; columns[#columns + 1] = key end
  end
  local cells = {}
  for _, r in ipairs(rows) do
    cells[r.model] = cells[r.model] or {}
    local se = r.se_cluster or r.se_naive or 0
    cells[r.model][r.protocol .. " K=" .. r.k] = string.format("%.3f ± %.3f", r.accuracy, se)
  end
  local separation = {}
  for _, s in ipairs(scores) do separation[s.model] = s.separation end
  local lines = {
    string.format("Ablation: %d steps of K = %d (input %s) from %s on %s; evaluated on %d windows of the %s split (± cluster SE by track)",
      cfg.steps, cfg.batch_size, cfg.input .. (cfg.input == "chroma_onset" and ", frame_prior " .. cfg.frame_prior or ""), cfg.init ~= "" and cfg.init or "fresh weights (seed " .. cfg.seed .. ")",
      cfg.root, cfg.max_windows, cfg.eval_split), "",
    "| model | " .. table.concat(columns, " | ") .. " | GT vs random separation |",
    "|---|" .. string.rep("---:|", #columns + 1),
  }
  local order = {}
  for _, r in ipairs(rows) do
    if not order[r.model] then order[r.model] = true; order[#order + 1] = r.model end
  end
  for _, model in ipairs(order) do
    local row = {}
    for i, c in ipairs(columns) do row[i] = cells[model][c] or "-" end
    local sep = separation[model]
    lines[#lines + 1] = "| " .. model .. " | " .. table.concat(row, " | ") .. " | " ..
      (sep and sep == sep and string.format("%.2f", sep) or "-") .. " |"
  end
  local text = table.concat(lines, "\n") .. "\n"
  recipe.write_atomic(fs.join(cfg.out, "ablation.md"), text)
  io.write("\n", text)
end

os.exit(recipe.main("ablate_coherence", DEFAULTS, run, arg))
