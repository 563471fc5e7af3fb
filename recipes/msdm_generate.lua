-- recipes/msdm_generate.lua — MSDM accompaniments by imputation for a Table 3 task folder; the recipe itself is
-- lua/cocola/recipes/msdm_generate.lua (also `cocola msdm-generate`).
-- Usage: lua5.4 recipes/msdm_generate.lua model=runs/msdm/model tasks=runs/tasks out=runs/gen_msdm [key=value ...]
os.exit(require("cocola.recipes.msdm_generate").main(arg))
