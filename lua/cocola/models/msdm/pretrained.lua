-- cocola.models.msdm.pretrained — an MSDM model folder, as cocola.recipes.train_msdm writes it:
--   DIR/config.json        {_class_name = "MSDM", unet = UNet1d arguments, diffusion = {sigma_data, ...},
--                           data = {sample_rate = 22050, length = 262144, stems = {bass, drums, guitar, piano}}}
--   DIR/model.safetensors  the UNet1d's state dict (the reference's parameter names)
--   save_pretrained(net, dir, {data, diffusion}) -> dir
--   from_pretrained(dir) -> net (eval mode), info = {path, config, data, diffusion}
--   load(path) -> net, info: a model folder, or a released checkpoint file (.ckpt / .safetensors, read by
--     cocola.models.msdm.checkpoint with MSDM's data settings)
local cocola = require "cocola"
local cjson = require "cjson"
local fs = require "cocola.data.fs"
local UNet1d = require "cocola.models.msdm.unet1d"
local configs = require "cocola.models.msdm.configs"
local checkpoint = require "cocola.models.msdm.checkpoint"

local M = {}

M.CLASS = "MSDM"
M.WEIGHTS = "model.safetensors"

local function fail(fmt, ...) error(string.format(fmt, ...), 3) end

local function plain(err) return (tostring(err):gsub("^[^:\n]+:%d+: ", "")) end

--- save_pretrained(net, dir, {data = configs.data(), diffusion = configs.diffusion()}) -> dir
function M.save_pretrained(net, dir, opts)
  opts = opts or {}
  if type(net) ~= "table" or type(net.config) ~= "table" or not net.in_channels then
    fail("msdm.save_pretrained: expected a UNet1d, got %s", type(net))
  end
  if not os.execute(string.format("mkdir -p '%s'", dir:gsub("'", "'\\''"))) then
    fail("msdm.save_pretrained: cannot create the folder %s", dir)
  end
  local weights = fs.join(dir, M.WEIGHTS)
  cocola.save(weights .. ".tmp", net:state_dict())
  assert(os.rename(weights .. ".tmp", weights))
  local config = { _class_name = M.CLASS, unet = net.config, data = opts.data or configs.data(),
    diffusion = opts.diffusion or configs.diffusion() }
  require("cocola.recipe").write_atomic(fs.join(dir, "config.json"), cjson.encode(config))
  return dir
end

-- JSON numbers that are whole become Lua integers (UNet1d checks its integers)
local function integers(v)
  if type(v) == "number" then return math.tointeger(v) or v end
  if type(v) == "table" then
    local out = {}
    for k, e in pairs(v) do out[k] = integers(e) end
    return out
  end
  return v
end

--- from_pretrained(dir) -> net (eval mode), info {path, config, data, diffusion}
function M.from_pretrained(dir)
  if type(dir) ~= "string" then fail("msdm.from_pretrained: expected a folder path, got %s", type(dir)) end
  local path = fs.join(dir, "config.json")
  if not fs.is_dir(dir) then fail("msdm.from_pretrained: '%s' is not a folder", dir) end
  if not fs.is_file(path) then fail("msdm.from_pretrained: '%s' is not an MSDM model folder (no config.json)", dir) end
  local config = integers(require("cocola.json_config").read(path, "MSDM config"))
  if config._class_name ~= M.CLASS or type(config.unet) ~= "table" then
    fail("msdm.from_pretrained: '%s' is not an MSDM model folder (config.json has _class_name %s, not %s)", dir,
      tostring(config._class_name), M.CLASS)
  end
  local weights = fs.join(dir, M.WEIGHTS)
  if not fs.is_file(weights) then fail("msdm.from_pretrained: '%s' has no %s", dir, M.WEIGHTS) end
  local ok, net = pcall(UNet1d.from_state_dict, cocola.load(weights), config.unet)
  if not ok then fail("msdm.from_pretrained: '%s': %s", dir, plain(net)) end
  net:eval()
  local data = config.data or configs.data()
  return net, { path = dir, config = config.unet, data = data, diffusion = config.diffusion or configs.diffusion() }
end

--- load(path) -> net, info: an MSDM model folder (from_pretrained) or a checkpoint file (checkpoint.load)
function M.load(path)
  if type(path) == "string" and fs.is_dir(path) then return M.from_pretrained(path) end
  if type(path) ~= "string" or not fs.is_file(path) then
    fail("MSDM model '%s': neither a model folder nor a checkpoint file", tostring(path))
  end
  local net, info = checkpoint.load(path)
  net:eval()
  info.data, info.diffusion = configs.data(), configs.diffusion()
  return net, info
end

return M
