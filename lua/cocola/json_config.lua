-- cocola.json_config — reading a component's JSON config (config.json, scheduler_config.json) and
-- checking it against a class's DEFAULTS: every error names the file and the key.
--   decode_file(path, what) -> table   (JSON null kept as cjson.null), every JSON file's one reader
--   read(path, what) -> table          (JSON null becomes nil; numbers stay Lua numbers)
--   merge(cfg, defaults, opts) -> table  DEFAULTS overridden by cfg; keys starting with "_" and the
--                                     opts.ignored ones are skipped; any other unknown key is an error
--                                     listing them all.
--   integer(cfg, key, min) / number / boolean / one_of / list_of_integers: typed reads with errors.
local cjson = require "cjson"

local M = {}

local function strip_null(v)
  if v == cjson.null then return nil end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = strip_null(x) end
  end
  return v
end

--- decode_file(path, what, level) -> the decoded JSON object of a file, JSON null kept as cjson.null: the
-- one reader of JSON files (configs, tokenizer files); what (e.g. "SpeechT5HifiGan") prefixes errors, which
-- are raised at `level` (default 2: the caller's caller; 0: no position).
function M.decode_file(path, what, level)
  if level ~= 0 then level = (level or 2) + 1 end
  local fh, why = io.open(path, "rb")
  if not fh then error(string.format("%s: cannot read '%s' (%s)", what, path, why), level) end
  local text = fh:read("a")
  fh:close()
  local ok, v = pcall(cjson.decode, text)
  if not ok then error(string.format("%s: '%s' is not valid JSON (%s)", what, path, tostring(v)), level) end
  if type(v) ~= "table" then error(string.format("%s: '%s' does not hold a JSON object", what, path), level) end
  return v
end

--- read(path, what): the decoded JSON object of a config file, JSON null removed.
function M.read(path, what) return strip_null(M.decode_file(path, what, 2)) end

--- merge(cfg, defaults, {what = "...", source = "file", ignored = {key = true}, optional = {key = true}})
-- -> a new table. optional keys have no default (nil when absent, e.g. trained_betas).
function M.merge(cfg, defaults, opts)
  local unknown = M.unknown_keys(cfg, function(k)
    return (opts.ignored and opts.ignored[k]) or defaults[k] ~= nil or (opts.optional and opts.optional[k])
  end)
  if #unknown > 0 then
    error(string.format("%s: unknown config key(s) in %s: %s", opts.what, opts.source or "the config",
      table.concat(unknown, ", ")), 3)
  end
  local out = {}
  for k, v in pairs(defaults) do out[k] = v end
  for k, v in pairs(cfg) do
    -- "_class_name", "_diffusers_version", "_name_or_path": bookkeeping, not arguments; the ignored keys
    -- (generic keys of the reference's config base class) are kept, unused
    if k:sub(1, 1) ~= "_" then out[k] = v end
  end
  return out
end

--- unknown_keys(cfg, is_known) -> the sorted keys of cfg that is_known(key) rejects; keys starting with "_"
-- (bookkeeping: "_class_name", "_diffusers_version", "_name_or_path", "_path") are never unknown, and a
-- key that is not a string always is. The one unknown-key check of every config reader.
function M.unknown_keys(cfg, is_known)
  local unknown = {}
  for k in pairs(cfg) do
    if type(k) ~= "string" then
      unknown[#unknown + 1] = tostring(k)
    elseif k:sub(1, 1) ~= "_" and not is_known(k) then
      unknown[#unknown + 1] = k
    end
  end
  table.sort(unknown)
  return unknown
end

local function fail(ctx, key, fmt, ...)
  error(string.format("%s: config key '%s'%s " .. fmt, ctx.what, key,
    ctx.source and (" in " .. ctx.source) or "", ...), 4)
end

--- integer(ctx, cfg, key, min): cfg[key] as a Lua integer (JSON 1000 and 1000.0 both accepted).
function M.integer(ctx, cfg, key, min)
  local v = cfg[key]
  local i = type(v) == "number" and math.tointeger(v) or nil
  if i == nil or (min and i < min) then
    fail(ctx, key, "must be an integer%s, got %s", min and (" >= " .. min) or "", tostring(v))
  end
  return i
end

function M.number(ctx, cfg, key)
  local v = cfg[key]
  if type(v) ~= "number" or v ~= v then fail(ctx, key, "must be a number, got %s", tostring(v)) end
  return v + 0.0
end

function M.boolean(ctx, cfg, key)
  local v = cfg[key]
  if type(v) ~= "boolean" then fail(ctx, key, "must be true or false, got %s", tostring(v)) end
  return v
end

--- one_of(ctx, cfg, key, {"a", "b"}): a string among the allowed values.
function M.one_of(ctx, cfg, key, allowed)
  local v = cfg[key]
  for _, a in ipairs(allowed) do
    if v == a then return v end
  end
  fail(ctx, key, "is %s; supported: %s", type(v) == "string" and ("'" .. v .. "'") or tostring(v),
    table.concat(allowed, ", "))
end

--- list_of_integers(ctx, cfg, key, min): a JSON array of integers (>= min), as a Lua list.
function M.list_of_integers(ctx, cfg, key, min, v)
  v = v or cfg[key]
  if type(v) ~= "table" or #v == 0 then fail(ctx, key, "must be a non-empty list of integers") end
  local out = {}
  for i, x in ipairs(v) do
    local n = type(x) == "number" and math.tointeger(x) or nil
    if n == nil or (min and n < min) then
      fail(ctx, key, "entry %d must be an integer%s, got %s", i, min and (" >= " .. min) or "", tostring(x))
    end
    out[i] = n
  end
  return out
end

return M
