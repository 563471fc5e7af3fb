-- cocola.models.msdm.checkpoint — MSDM's released weights read into a UNet1d. A checkpoint is a PyTorch
-- Lightning `.ckpt` (read by the safe native reader; its `state_dict`) or a `.safetensors` file. MSDM's
-- LightningModule (main/module_base.py Model) holds the AudioDiffusionModel as `model`, which holds the U-Net
-- twice, as `unet` and as `diffusion.net` (the same module), so the U-Net's keys are `model.unet.*` (and again
-- `model.diffusion.net.*`); `model.model.diffusion.denoise_fn` in MSDM's notebooks is that U-Net under
-- Diffusion.denoise_fn (cocola.models.msdm.diffusion.denoise).
--   load(path, {prefix, config}) -> net (eval mode), info = {path, format = "ckpt" | "safetensors", prefix,
--     config, from_hyper_parameters = true | false}
-- prefix: the first of "model.unet.", "model.diffusion.net.", "unet.", "diffusion.net.", "" whose
-- to_in.module_list.0.block.block1.project.weight is in the file, unless given. config: opts.config, else the
-- checkpoint's hyper_parameters (the UNet1d arguments among them, when all are plain numbers, booleans and lists),
-- else configs.msdm(). The U-Net's keys are
-- loaded strictly: every parameter with its shape, no other key under the prefix except the duplicate copy.
local cocola = require "cocola"
local UNet1d = require "cocola.models.msdm.unet1d"
local configs = require "cocola.models.msdm.configs"

local M = {}

M.PREFIXES = { "model.unet.", "model.diffusion.net.", "unet.", "diffusion.net.", "" }
local PROBE = "to_in.module_list.0.block.block1.project.weight"

local function fail(fmt, ...) error(string.format("MSDM checkpoint " .. fmt, ...), 3) end

local function plain(err) return (tostring(err):gsub("^[^:\n]+:%d+: ", "")) end

-- true for a number, a boolean or a list of them (hyper_parameters may hold other objects, e.g. OmegaConf lists,
-- which the reader leaves as inert placeholders)
local function plain_value(v)
  if type(v) == "number" or type(v) == "boolean" then return true end
  if type(v) ~= "table" or cocola.is_tensor(v) or #v == 0 then return false end
  for k, e in pairs(v) do
    if math.type(k) ~= "integer" or (type(e) ~= "number" and type(e) ~= "boolean") then return false end
  end
  return true
end

-- the UNet1d arguments among a checkpoint's hyper_parameters, or nil when they are absent or not plain values
local function config_from(hp)
  if type(hp) ~= "table" or cocola.is_tensor(hp) or hp.in_channels == nil then return nil end
  local known = { in_channels = true, out_channels = true, context_features = true, context_channels = true,
    context_embedding_features = true }
  for k in pairs(UNet1d.DEFAULTS) do known[k] = true end
  local cfg = {}
  for k, v in pairs(hp) do
    if known[k] then
      if not plain_value(v) then return nil end
      cfg[k] = v
    end
  end
  return cfg
end

function M.load(path, opts)
  opts = opts or {}
  if type(path) ~= "string" then fail("path must be a string, got %s", type(path)) end
  local fh = io.open(path, "rb")
  if not fh then fail("'%s': no such file", path) end
  fh:close()
  local ok, root = pcall(cocola.load, path)
  if not ok then fail("'%s' could not be read: %s", path, plain(root)) end
  local sd, format = root, "safetensors"
  if type(root) == "table" and type(root.state_dict) == "table" and not cocola.is_tensor(root.state_dict) then
    sd, format = root.state_dict, "ckpt"
  end
  local prefix = opts.prefix
  if prefix == nil then
    for _, p in ipairs(M.PREFIXES) do
      if cocola.is_tensor(sd[p .. PROBE]) then prefix = p; break end
    end
    if prefix == nil then
      fail("'%s' holds no UNet1d weights (no %s under any of the prefixes %s)", path, PROBE,
        "model.unet., model.diffusion.net., unet., diffusion.net. or none")
    end
  end
  local config, from_hp = opts.config, false
  if config == nil then
    config = config_from(type(root) == "table" and root.hyper_parameters or nil)
    from_hp = config ~= nil
    config = config or configs.msdm()
  end
  -- the copy of the same U-Net under its other name is not part of the strict check
  local own = {}
  for k, v in pairs(sd) do
    if type(k) == "string" and k:sub(1, #prefix) == prefix then own[k] = v end
  end
  local ok2, net = pcall(UNet1d.from_state_dict, own, config, { prefix = prefix })
  if not ok2 then fail("'%s': %s", path, plain(net)) end
  return net, { path = path, format = format, prefix = prefix, config = config, from_hyper_parameters = from_hp }
end

return M
