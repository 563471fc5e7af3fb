-- recipes/prepare.lua — resamples a stem dataset once to 16 kHz mono FLAC stems (<out>/<split>/<track>/
-- <stem>.flac) in parallel and resumably, and writes <out>/index.json; the recipe is lua/cocola/recipes/prepare.lua.
-- Usage: lua5.4 recipes/prepare.lua layout=slakh root=data/slakh2100 out=data/slakh16k [workers=2 ...]
os.exit(require("cocola.recipes.prepare").main(arg))
