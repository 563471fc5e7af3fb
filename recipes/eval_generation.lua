-- recipes/eval_generation.lua — the paper's Table 3 (COCOLA scores and FAD of accompaniment generators, with
-- the Random and Ground Truth rows) on the tasks of recipes/make_generation_tasks.lua; the recipe itself is
-- lua/cocola/recipes/eval_generation.lua (also run by `cocola eval-generation`). `--help` lists the settings.
-- Usage: lua5.4 recipes/eval_generation.lua tasks=runs/tasks systems=CompoNet=runs/gen_componet,MSDM=runs/gen_msdm
--        [models=default] [backbones=cocola,vggish=vggish-10086976.pth] [pick=largest_l2] [out=runs/table3]
os.exit(require("cocola.recipes.eval_generation").main(arg))
