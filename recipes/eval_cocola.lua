-- recipes/eval_cocola.lua — Table 2 (K-way accuracy: the paper's protocol and the same-track, shifted
-- and transposed protocols, with standard errors) and Table 3's ground-truth / random COCOLA scores, for
-- the models and the chroma-onset baseline; the recipe itself is lua/cocola/recipes/eval.lua (also run
-- by `cocola eval`).
-- Usage: lua5.4 recipes/eval_cocola.lua models=runs/x/best.safetensors datasets=slakh:data/midi_stems ks=2,8
os.exit(require("cocola.recipes.eval").main(arg))
