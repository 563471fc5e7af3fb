-- recipes/make_generation_tasks.lua — draws the accompaniment-generation tasks of Table 3 from a test split
-- (input and target sub-mixes, the Random row's sub-mix, tasks.json with CompoNet prompts); the recipe
-- itself is lua/cocola/recipes/generation_tasks.lua. `--help` lists the settings.
-- Usage: lua5.4 recipes/make_generation_tasks.lua layout=slakh root=data/midi_stems out=runs/tasks [n=200]
--        [seconds=10.24] [seed=0]
os.exit(require("cocola.recipes.generation_tasks").main(arg))
