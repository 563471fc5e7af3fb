-- recipes/train_msdm.lua — MSDM's training on a stem dataset (one channel per stem type: bass, drums, guitar,
-- piano); the recipe itself is lua/cocola/recipes/train_msdm.lua (also `cocola train-msdm`).
-- Usage: lua5.4 recipes/train_msdm.lua root=data/midi_stems out=runs/msdm [key=value ...]
os.exit(require("cocola.recipes.train_msdm").main(arg))
