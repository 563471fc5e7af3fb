-- recipes/eval_cocola.lua — Table 2 (K-way accuracy, the paper's protocol and a harder same-track one)
-- and Table 3's ground-truth / random COCOLA scores; the recipe itself is lua/cocola/recipes/eval.lua
-- (also run by `cocola eval`).
-- Usage: lua5.4 recipes/eval_cocola.lua models=runs/x/best.safetensors datasets=slakh:data/midi_stems ks=2,8
os.exit(require("cocola.recipes.eval").main(arg))
