-- cocola.models.audioldm2.pretrained — reading a diffusers/transformers component folder: config.json
-- (JSON null kept as pretrained.null), checks that every config key is one this port supports, and strict
-- loading of the weights by their upstream names from `diffusion_pytorch_model.safetensors` /
-- `model.safetensors` (one tensor at a time, so a large checkpoint is never held twice; float16 and
-- bfloat16 files widen to float32) or the `.bin` pickle through the safe native reader.
local cocola = require "cocola"
local cjson = require "cjson"
local json_config = require "cocola.json_config"

local M = {}
M.null = cjson.null

--- true when a config value is absent or JSON null
function M.is_null(v) return v == nil or v == cjson.null end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

--- reads dir/config.json (or the given file name); errors name the file
function M.read_config(dir, name)
  local path = dir .. "/" .. (name or "config.json")
  if not exists(path) then error(string.format("%s: no such file (expected a diffusers component folder)", path), 3) end
  local cfg = json_config.decode_file(path, "config", 2)
  cfg._path = path
  return M.integers(cfg)
end

--- JSON numbers that are whole become Lua integers (cjson may give floats), recursively
function M.integers(v)
  if type(v) == "number" then return math.tointeger(v) or v end
  if type(v) == "table" and v ~= cjson.null then
    for k, x in pairs(v) do v[k] = M.integers(x) end
  end
  return v
end

--- checks a config against a table of known keys: key -> true (any value) or a function(value) returning
--- nil when supported, else a message; keys starting with "_" are metadata
function M.check_keys(cfg, known, what)
  local path = cfg._path or "config"
  local unknown = json_config.unknown_keys(cfg, function(k) return known[k] ~= nil end)
  if #unknown == 1 then
    error(string.format("%s: config key '%s' is not supported by this %s", path, unknown[1], what), 3)
  elseif #unknown > 1 then
    error(string.format("%s: config keys '%s' are not supported by this %s", path, table.concat(unknown, "', '"), what), 3)
  end
  local keys = {}
  for k in pairs(cfg) do
    if type(known[k]) == "function" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local problem = known[k](cfg[k])
    if problem then error(string.format("%s: %s = %s is not supported (%s)", path, k, cjson.encode(cfg[k]), problem), 3) end
  end
end

--- a rule: the value must be JSON null (or absent)
-- rules for check_keys: function(value) -> nil when supported, else what was expected
function M.positive_integer(v) if math.type(v) ~= "integer" or v < 1 then return "expected a positive integer" end end
function M.non_negative_integer(v) if math.type(v) ~= "integer" or v < 0 then return "expected a non-negative integer" end end
function M.number(v) if type(v) ~= "number" then return "expected a number" end end
function M.positive_number(v) if type(v) ~= "number" or not (v > 0) then return "expected a positive number" end end
function M.non_negative_number(v) if type(v) ~= "number" or v < 0 then return "expected a non-negative number" end end
function M.boolean(v) if type(v) ~= "boolean" then return "expected true or false" end end
--- a rule accepting only `value`
function M.must_be(value)
  return function(v) if v ~= value then return "only " .. tostring(value) .. " is supported" end end
end

-- PretrainedConfig's own keys (transformers 4.38.2: bookkeeping, generation settings), which every
-- transformers config.json may hold: accepted, unused here
M.PRETRAINED_CONFIG_KEYS = { "_name_or_path", "architectures", "bad_words_ids", "begin_suppress_tokens",
  "bos_token_id", "chunk_size_feed_forward", "cross_attention_hidden_size", "decoder_start_token_id",
  "diversity_penalty", "do_sample", "early_stopping", "encoder_no_repeat_ngram_size", "eos_token_id",
  "exponential_decay_length_penalty", "finetuning_task", "forced_bos_token_id", "forced_eos_token_id",
  "id2label", "is_encoder_decoder", "label2id", "length_penalty", "max_length", "min_length",
  "no_repeat_ngram_size", "num_beam_groups", "num_beams", "num_return_sequences", "output_attentions",
  "output_hidden_states", "output_scores", "prefix", "problem_type", "remove_invalid_values",
  "repetition_penalty", "return_dict", "return_dict_in_generate", "sep_token_id", "suppress_tokens",
  "task_specific_params", "temperature", "tf_legacy_loss", "tie_encoder_decoder", "tie_word_embeddings",
  "tokenizer_class", "top_k", "top_p", "torch_dtype", "torchscript", "transformers_version", "typical_p",
  "use_bfloat16", "use_cache", "initializer_factor" }

--- marks PRETRAINED_CONFIG_KEYS and the `extra` keys as accepted in a check_keys table, leaving the rules
--- it already has
function M.accept_pretrained_keys(known, extra)
  for _, list in ipairs({ M.PRETRAINED_CONFIG_KEYS, extra or {} }) do
    for _, k in ipairs(list) do
      if known[k] == nil then known[k] = true end
    end
  end
  return known
end

function M.must_be_null(v) if not M.is_null(v) then return "only null is supported" end end
--- a rule: one of the given values (null allowed when `allow_null`)
function M.one_of(values, allow_null)
  return function(v)
    if allow_null and M.is_null(v) then return nil end
    for _, x in ipairs(values) do if v == x then return nil end end
    return "expected one of " .. cjson.encode(values)
  end
end

--- list_some(list, n) -> the first n entries joined, and how many there are in all when more
function M.list_some(list, n)
  local out = {}
  for i = 1, math.min(#list, n) do out[i] = list[i] end
  local s = table.concat(out, ", ")
  if #list > n then s = s .. string.format(", ... (%d in all)", #list) end
  return s
end

--- loads the weights of `module` from the first existing file of `names` in dir, strictly by name
function M.load_weights(module, dir, names)
  local path
  for _, n in ipairs(names) do
    if exists(dir .. "/" .. n) then path = dir .. "/" .. n break end
  end
  if not path then
    error(string.format("%s: no weight file (looked for %s)", dir, table.concat(names, ", ")), 3)
  end
  if path:match("%.bin$") or path:match("%.pt$") or path:match("%.ckpt$") then
    local sd = cocola.load(path)
    local ok, err = pcall(module.load_state_dict, module, sd, { strict = true })
    if not ok then error(string.format("%s: %s", path, tostring(err)), 3) end
    return path
  end
  return M.load_safetensors(module, path)
end

--- loads a safetensors file into `module` strictly by name, one tensor at a time (float16 / bfloat16 widen):
--- every parameter and persistent buffer must be in the file with its shape, and the file may hold nothing
--- else. opts.ignore(name) -> true skips a file entry on purpose (e.g. an audio tower not built);
--- opts.source(name, entries) -> the file's name for a model name (e.g. a tied tensor saved under another name).
--- Errors name the file and the keys.
function M.load_safetensors(module, path, opts)
  opts = opts or {}
  local ok, file = pcall(cocola.open_safetensors, path)
  if not ok then error(string.format("%s: %s", path, (tostring(file):gsub("^safetensors '[^']*': ", ""))), 3) end
  local expected = module:named_state()
  local missing, wrong, used, source = {}, {}, {}, {}
  for _, e in ipairs(expected) do
    local name, t = e[1], e[2]
    local from = opts.source and opts.source(name, file.entries) or name
    source[name] = from
    used[from] = true
    local ent = file.entries[from]
    if not ent then
      missing[#missing + 1] = name
    else
      local same = #ent.shape == t:dim()
      for d = 1, #ent.shape do same = same and ent.shape[d] == t:size(d) end
      if not same then
        wrong[#wrong + 1] = string.format("%s has shape {%s} in the file, {%s} in the model", from,
          table.concat(ent.shape, ","), table.concat(t.shape, ","))
      end
    end
  end
  local unexpected = {}
  for name in pairs(file.entries) do
    if not used[name] and not (opts.ignore and opts.ignore(name)) then unexpected[#unexpected + 1] = name end
  end
  table.sort(unexpected)
  if #missing > 0 or #unexpected > 0 or #wrong > 0 then
    local parts = {}
    if #missing > 0 then parts[#parts + 1] = "missing: " .. M.list_some(missing, 8) end
    if #unexpected > 0 then parts[#parts + 1] = "unexpected: " .. M.list_some(unexpected, 8) end
    if #wrong > 0 then parts[#parts + 1] = "wrong shape: " .. M.list_some(wrong, 4) end
    error(string.format("%s does not match the %s built from its config: %s", path, module:type_name(),
      table.concat(parts, "; ")), 3)
  end
  cocola.no_grad(function()
    for _, e in ipairs(expected) do
      local src <close> = file:read(source[e[1]])
      e[2]:copy_(src)
    end
  end)
  return path
end

--- the component folder: dir itself when it holds config_name, else dir/subfolder (a pipeline folder)
function M.component_dir(dir, subfolder, config_name)
  if type(dir) ~= "string" then error("from_pretrained: expected a folder path", 3) end
  dir = dir:gsub("/+$", "")
  config_name = config_name or "config.json"
  if exists(dir .. "/" .. config_name) then return dir end
  if subfolder and exists(dir .. "/" .. subfolder .. "/" .. config_name) then return dir .. "/" .. subfolder end
  error(string.format("%s: no %s here%s", dir, config_name,
    subfolder and (" or in " .. subfolder .. "/") or ""), 3)
end

--- Class.from_pretrained for a diffusers component: the folder (or the pipeline's `subfolder`), its
--- config.json, the model built from it and its weights (the first of `names` present), in eval mode
function M.from_pretrained(Class, dir, subfolder, names)
  local folder = M.component_dir(dir, subfolder)
  local model = Class(M.read_config(folder))
  M.load_weights(model, folder, names or { "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin" })
  return model:eval()
end

--- save_pretrained(module, folder, config[, {dtype = "float16", class_name = ...}]): writes folder/config.json
--- (the config without the reader's _path) and folder/diffusion_pytorch_model.safetensors, both atomically;
--- from_pretrained reads them back. dtype "float16" halves the file (float32 weights are kept otherwise).
function M.save_pretrained(module, folder, config, opts)
  opts = opts or {}
  local fs = require "cocola.data.fs"
  if not os.execute(string.format("mkdir -p '%s'", folder:gsub("'", "'\\''"))) then
    error(string.format("save_pretrained: cannot create the folder %s", folder), 2)
  end
  local out = {}
  for k, v in pairs(config) do if k ~= "_path" then out[k] = v end end
  if opts.class_name then out._class_name = opts.class_name end
  local weights = fs.join(folder, "diffusion_pytorch_model.safetensors")
  cocola.save(weights .. ".tmp", module:state_dict(), { dtype = opts.dtype })
  local ok, err = os.rename(weights .. ".tmp", weights)
  if not ok then error(string.format("save_pretrained: %s", tostring(err)), 2) end
  require("cocola.recipe").write_atomic(fs.join(folder, "config.json"), cjson.encode(out))
  return folder
end

return M
