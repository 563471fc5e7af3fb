-- recipes/train_ldm.lua — phase 1 of CompoNet's recipe: a small latent diffusion model (VAE, then U-Net with a tag
-- encoder) on a stem dataset; the recipe itself is lua/cocola/recipes/train_ldm.lua (also `cocola train-ldm`).
-- Usage: lua5.4 recipes/train_ldm.lua stage=vae|unet root=data/midi_stems out=runs/x [key=value ...]
os.exit(require("cocola.recipes.train_ldm").main(arg))
