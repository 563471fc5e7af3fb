-- recipes/train_componet.lua — CompoNet's ControlNet fine-tuning on a stem dataset; the recipe itself is
-- lua/cocola/recipes/train_componet.lua (also `cocola train-componet`).
-- Usage: lua5.4 recipes/train_componet.lua model=AUDIOLDM2_DIR root=data/midi_stems out=runs/x [key=value ...]
os.exit(require("cocola.recipes.train_componet").main(arg))
