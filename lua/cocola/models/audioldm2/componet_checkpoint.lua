-- cocola.models.audioldm2.componet_checkpoint — CompoNet's released checkpoints, read natively on top of an
-- AudioLDM 2 pipeline. A checkpoint is a PyTorch Lightning `.ckpt` (a torch zip pickle, read by the safe native
-- reader: nothing in it runs, objects other than tensors and containers, e.g. in hyper_parameters or callbacks,
-- become inert placeholders) whose `state_dict` keys carry the LightningModule's attribute names, or a
-- `.safetensors` file with the same keys (read one tensor at a time). The reader refuses globals whose module could
-- touch the system (pathlib, types, os, ...) wherever they are in the pickle, so a .ckpt whose hyper_parameters
-- hold e.g. a pathlib.PosixPath is refused as a whole; its state_dict saved as .safetensors loads.
--   controlnet.*  the ControlNet (ControlNetAudioLDM2Model names: conv_in, time_embedding, down_blocks, mid_block,
--                 controlnet_cond_embedding, controlnet_down_blocks.{0..N}, controlnet_mid_block), loaded strictly
--                 into ControlNet.from_unet(pipeline.unet): every parameter present with the model's shape, no
--                 other controlnet.* key;
--   unet.*        the whole U-Net (its transformer blocks fine-tuned in the `attentions` variant): when present,
--                 loaded strictly the same way into pipeline.unet, replacing the folder's weights;
--   vae.*, text_encoder.*, text_encoder_2.*, projection_model.*, language_model.*, vocoder.* (frozen copies of
--                 the folder's networks), stft.* (mel_basis, forward/inverse bases) and any other prefix: ignored,
--                 counted in info.ignored.
-- Tensors of any float dtype (float16 and bfloat16 widen on reading) are converted to the model's dtype; the
-- ControlNet gets the U-Net's dtype and device.
--   load(path, pipeline) -> controlnet (eval mode), info = {path, format = "ckpt" | "safetensors",
--     controlnet = number of controlnet.* tensors, unet_replaced = true | false, unet = number of unet.* tensors,
--     ignored = {prefix = count}, epoch, global_step, lightning_version, hyper_parameters (when the checkpoint
--     has them)}
-- Errors name the file and the keys; nothing is changed in the pipeline unless the whole checkpoint fits.
local cocola = require "cocola"
local ControlNet = require "cocola.models.audioldm2.controlnet"

local M = {}

local WHAT = "CompoNet checkpoint"

local function fail(fmt, ...) error(string.format(WHAT .. " " .. fmt, ...), 4) end

-- an error message without its "file:line: " position
local function plain(err) return (tostring(err):gsub("^[^:\n]+:%d+: ", "")) end

local function shape_of(t)
  local s = {}
  for d = 1, t:dim() do s[d] = t:size(d) end
  return s
end

local function shape_string(s) return "{" .. table.concat(s, ",") .. "}" end

local list_some = require("cocola.models.audioldm2.pretrained").list_some

-- the checkpoint as a source of named tensors: {format, names = {key = true}, shape(key), read(key), root}
local function open(path)
  local fh = io.open(path, "rb")
  if not fh then fail("'%s': no such file", path) end
  local magic = fh:read(4)
  fh:close()
  if magic == "PK\3\4" then
    local ok, root = pcall(cocola.load, path)
    if not ok then
      local msg = plain(root)
      if msg:find("refusing the pickle global", 1, true) then
        msg = msg .. " (the reader refuses such globals anywhere in the file; its state_dict saved as .safetensors "
          .. "loads here)"
      end
      fail("'%s' could not be read as a PyTorch checkpoint: %s", path, msg)
    end
    local sd = root
    if type(root) == "table" and type(root.state_dict) == "table" and not cocola.is_tensor(root.state_dict) then
      sd = root.state_dict
    end
    if type(sd) ~= "table" or cocola.is_tensor(sd) then
      fail("'%s' is not a CompoNet checkpoint: it holds a %s, not a state_dict", path,
        cocola.is_tensor(sd) and "tensor" or type(sd))
    end
    local names = {}
    for k in pairs(sd) do
      if type(k) == "string" then names[k] = true end
    end
    return {
      format = "ckpt", root = root, names = names,
      is_tensor = function(k) return cocola.is_tensor(sd[k]) end,
      shape = function(k) return shape_of(sd[k]) end,
      read = function(k) return sd[k] end,
    }
  end
  local ok, file = pcall(cocola.open_safetensors, path)
  if not ok then
    fail("'%s' is neither a PyTorch checkpoint (.ckpt) nor a safetensors file: %s", path, plain(file))
  end
  local names = {}
  for k in pairs(file.entries) do names[k] = true end
  return {
    format = "safetensors", root = {}, names = names,
    is_tensor = function() return true end,
    shape = function(k) return file.entries[k].shape end,
    read = function(k) return file:read(k) end,
  }
end

-- checks that the `prefix`.* keys of src match `module`'s state exactly; returns {model entry, source key} pairs
local function plan(module, src, prefix, keys, path, what, short)
  local expected = module:named_state()
  local missing, wrong, known = {}, {}, {}
  local out = {}
  for _, e in ipairs(expected) do
    local key = prefix .. "." .. e[1]
    known[key] = true
    if not src.names[key] then
      missing[#missing + 1] = key
    elseif not src.is_tensor(key) then
      wrong[#wrong + 1] = string.format("%s is not a tensor", key)
    else
      local have, want = src.shape(key), shape_of(e[2])
      local same = #have == #want
      for d = 1, #want do same = same and have[d] == want[d] end
      if not same then
        wrong[#wrong + 1] = string.format("%s has shape %s in the checkpoint, %s in the %s", key, shape_string(have),
          shape_string(want), short)
      end
      out[#out + 1] = { e[2], key }
    end
  end
  local unexpected = {}
  for _, k in ipairs(keys) do
    if not known[k] then unexpected[#unexpected + 1] = k end
  end
  if #missing > 0 or #unexpected > 0 or #wrong > 0 then
    local parts = {}
    if #wrong > 0 then parts[#parts + 1] = "wrong shape: " .. list_some(wrong, 4) end
    if #missing > 0 then parts[#parts + 1] = "missing: " .. list_some(missing, 8) end
    if #unexpected > 0 then parts[#parts + 1] = "unknown: " .. list_some(unexpected, 8) end
    error(string.format("%s '%s': its %s.* weights do not fit the %s (%s)%s", WHAT, path, prefix, what,
      table.concat(parts, "; "), #wrong > 0 and "; was it made for another AudioLDM 2 model (e.g. audioldm2-large "
      .. "weights on a base folder)?" or ""), 0)
  end
  return out
end

-- copies the planned tensors in, converted to each target's dtype and device
local function copy_in(pairs_, src)
  cocola.no_grad(function()
    for _, p in ipairs(pairs_) do
      local dst, t = p[1], src.read(p[2])
      if t:device() ~= dst:device() then t = t:to(dst:device()) end
      if t:dtype() ~= dst:dtype() then t = t:to(dst:dtype()) end
      dst:copy_(t)
    end
  end)
end

--- load(path, pipeline) -> controlnet, info (see the header)
function M.load(path, pipeline)
  if type(path) ~= "string" then error(WHAT .. ": load expects a file path", 2) end
  if type(pipeline) ~= "table" or type(pipeline.unet) ~= "table" or type(pipeline.unet.named_state) ~= "function" then
    error(WHAT .. ": load expects an AudioLDM 2 pipeline (with its unet) as the second argument", 2)
  end
  local src = open(path)
  local groups, ignored = { controlnet = {}, unet = {} }, {}
  local names = {}
  for k in pairs(src.names) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local prefix = k:match("^([^.]+)%.") or k
    if groups[prefix] then
      table.insert(groups[prefix], k)
    else
      ignored[prefix] = (ignored[prefix] or 0) + 1
    end
  end
  if #groups.controlnet == 0 then
    error(string.format("%s '%s' is not a CompoNet checkpoint: no controlnet.* weights", WHAT, path), 2)
  end

  local unet = pipeline.unet
  local first = unet:parameters()[1]
  local cn = ControlNet.from_unet(unet)
  if first and first:dtype() ~= "float32" then cn:to(first:dtype()) end
  if first and first:device() ~= "cpu" then cn:to(first:device()) end

  local ok, err = pcall(function()
    local cn_plan = plan(cn, src, "controlnet", groups.controlnet, path, "ControlNet built from the pipeline's U-Net",
      "ControlNet")
    local unet_plan = #groups.unet > 0 and plan(unet, src, "unet", groups.unet, path, "pipeline's U-Net", "U-Net")
      or nil
    copy_in(cn_plan, src)
    if unet_plan then copy_in(unet_plan, src) end
  end)
  if not ok then error(tostring(err), 2) end
  cn:eval()

  local root = src.root
  local info = {
    path = path, format = src.format, controlnet = #groups.controlnet, unet = #groups.unet,
    unet_replaced = #groups.unet > 0, ignored = ignored,
  }
  if math.type(root.epoch) == "integer" then info.epoch = root.epoch end
  if math.type(root.global_step) == "integer" then info.global_step = root.global_step end
  if type(root["pytorch-lightning_version"]) == "string" then info.lightning_version = root["pytorch-lightning_version"] end
  if type(root.hyper_parameters) == "table" then info.hyper_parameters = root.hyper_parameters end
  return cn, info
end

return M
