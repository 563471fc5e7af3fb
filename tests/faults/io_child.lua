-- tests/faults/io_child.lua — one writer of cocola run for the write-failure cases of
-- tests/faults/driver.lua, under tests/faults/fault_shim.so (FAULT_IO_PATH names the file to fail):
--   lua5.4 tests/faults/io_child.lua CASE DIR SEED
-- writes what CASE writes into DIR (contents varying with SEED, so that a rewrite differs from the
-- previous file). Cases: safetensors (cocola.save), wav and flac (cocola.audio.save), checkpoint
-- (the train recipe's checkpoint folder DIR/last), diffusion_checkpoint (the diffusion trainers'),
-- prepare (the prepare recipe: stems and index.json). An error is raised as it is (status 1).
local build = os.getenv("COCOLA_BUILD_DIR") or "build"
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = (build:sub(1, 1) == "/" and "" or "./") .. build .. "/?.so;" .. package.cpath
local cocola = require "cocola"
cocola.set_num_threads(1)
local case, dir, seed = arg[1], arg[2], tonumber(arg[3]) or 1
cocola.manual_seed(seed)

local cases = {}
function cases.safetensors()
  cocola.save(dir .. "/x.safetensors", { w = cocola.randn({ 64, 32 }), b = cocola.randn({ 7 }) }, { metadata = { seed = seed } })
end
function cases.wav()
  cocola.audio.save(dir .. "/x.wav", cocola.randn({ 1, 16000 }) * 0.1, 16000)
end
function cases.flac()
  cocola.audio.save(dir .. "/x.flac", cocola.randn({ 1, 16000 }) * 0.1, 16000)
end
local function tiny() -- about 6 k parameters: files past 4096 bytes
  local model = cocola.models.chroma_onset_cocola { dim = 8, width = 32, blocks = 1 }
  local opt = require("cocola.optim").AdamW(model:parameters(), { lr = 1e-3 })
  for _, p in ipairs(model:parameters()) do p.grad = cocola.randn(p.shape) end
  opt:step()
  return model, opt
end
function cases.checkpoint()
  local model, opt = tiny()
  local sampler = { state = function() return { epoch = 0, position = seed } end }
  require("cocola.recipes.train").save_checkpoint(dir .. "/last", model, opt, sampler, { step = seed })
end
function cases.diffusion_checkpoint()
  local model, opt = tiny()
  local job = { modules = { unet = model }, optimizer = opt, windows = { state = function() return { seed = seed } end } }
  require("cocola.recipes.diffusion_trainer").save(dir .. "/last", job, { step = seed })
end
function cases.prepare()
  local recipe = require "cocola.recipe"
  local prepare = require "cocola.recipes.prepare"
  local cfg = recipe.config(prepare.DEFAULTS, { "layout=stems_folder", "root=" .. dir .. "/src", "out=" .. dir .. "/out",
    "splits=train", "workers=1" })
  io.stderr:setvbuf("no")
  prepare.run(cfg, function() end)
end

local run = cases[case]
if not run then error("io_child: unknown case " .. tostring(case), 0) end
run()
