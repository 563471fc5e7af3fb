-- cocola.recipe — what every recipe shares: a config table from defaults, an optional config file
-- (a Lua file returning a table) and key=value overrides, validated against the defaults' types;
-- logging every setting; a progress bar on stderr; atomic writes of text files; JSON lines.
local cjson = require "cjson"

local recipe = {}

local function coerce(key, default, text)
  local kind = type(default)
  if kind == "number" then
    local v = tonumber(text)
    if not v then error(string.format("setting %s: '%s' is not a number", key, text), 0) end
    return math.tointeger(default) and math.tointeger(v) or v
  elseif kind == "boolean" then
    if text == "true" or text == "1" then return true end
    if text == "false" or text == "0" then return false end
    error(string.format("setting %s: '%s' is not true or false", key, text), 0)
  end
  return text
end

--- recipe.config(defaults, args) -> config. args: a list of "key=value" strings and optionally
-- "config=path.lua". Unknown keys are errors naming the known ones. Defaults given as the string
-- "" accept any string; false-y optional settings may use `false` as default for booleans.
function recipe.config(defaults, args)
  local cfg = {}
  for k, v in pairs(defaults) do cfg[k] = v end
  local overrides = {}
  for _, a in ipairs(args or {}) do
    local k, v = a:match("^([%w_]+)=(.*)$")
    if not k then error(string.format("arguments are key=value settings; got '%s'", a), 0) end
    if k == "config" then
      local chunk, err = loadfile(v, "t", {})
      if not chunk then error("config file: " .. err, 0) end
      local ok, t = pcall(chunk)
      if not ok or type(t) ~= "table" then error("config file " .. v .. " must return a table", 0) end
      for fk, fv in pairs(t) do
        if defaults[fk] == nil then error(string.format("config file %s: unknown setting '%s'", v, fk), 0) end
        cfg[fk] = fv
      end
    else
      overrides[#overrides + 1] = { k, v }
    end
  end
  for _, kv in ipairs(overrides) do
    local k, v = kv[1], kv[2]
    if defaults[k] == nil then
      local known = {}
      for name in pairs(defaults) do known[#known + 1] = name end
      table.sort(known)
      error(string.format("unknown setting '%s' (known: %s)", k, table.concat(known, ", ")), 0)
    end
    cfg[k] = coerce(k, defaults[k], v)
  end
  return cfg
end

--- logs every setting, sorted, one per line
function recipe.log_config(cfg, out)
  out = out or io.output()
  local keys = {}
  for k in pairs(cfg) do keys[#keys + 1] = k end
  table.sort(keys)
  out:write("settings:\n")
  for _, k in ipairs(keys) do out:write(string.format("  %-20s = %s\n", k, tostring(cfg[k]))) end
  out:flush()
end

--- progress(label, done, total, extra) draws one bar line on stderr
function recipe.progress(label, done, total, extra)
  local width = 30
  local filled = total > 0 and math.floor(width * done / total) or 0
  io.stderr:write(string.format("\r%s [%s%s] %d/%d %s", label, string.rep("#", filled),
    string.rep("-", width - filled), done, total, extra or ""))
  if done >= total then io.stderr:write("\n") end
  io.stderr:flush()
end

--- writes text to path atomically (a temporary file renamed into place)
function recipe.write_atomic(path, text)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  f:write(text)
  assert(f:close())
  assert(os.rename(tmp, path))
end

function recipe.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- appends one JSON object as a line
function recipe.append_jsonl(path, record)
  local f = assert(io.open(path, "ab"))
  f:write(cjson.encode(record), "\n")
  f:close()
end

--- prints a benchmark table: rows {{task, cocola_ms, pytorch_ms or nil}, ...}, with the ratio
-- PyTorch / cocola where PyTorch was measured
function recipe.print_ratio_table(rows)
  print("| task | cocola ms | PyTorch ms | PyTorch / cocola |")
  print("|---|---:|---:|---:|")
  for _, r in ipairs(rows) do
    local name, ours, theirs = r[1], r[2], r[3]
    if theirs then
      print(string.format("| %s | %.1f | %.1f | %.2f |", name, ours, theirs, theirs / ours))
    else
      print(string.format("| %s | %.1f | n/a | n/a |", name, ours))
    end
  end
end

--- recipe.main(name, defaults, run, args) -> exit status: builds the config from args (key=value
-- strings), calls run(cfg) and turns an error into one line "name: message" on stderr and status 1.
function recipe.main(name, defaults, run, args)
  local ok, err = pcall(function() run(recipe.config(defaults, args or {})) end)
  if not ok then
    io.stderr:write(name, ": ", tostring(err), "\n")
    return 1
  end
  return 0
end

return recipe
