-- recipes/train_cocola.lua — trains a COCOLA encoder on a stem dataset; the recipe itself is
-- lua/cocola/recipes/train.lua (also run by `cocola train`).
-- Usage: lua5.4 recipes/train_cocola.lua root=data/midi_stems layout=slakh out=runs/x [key=value ...]
os.exit(require("cocola.recipes.train").main(arg))
