-- cocola.recipe — what every recipe shares: a config table from defaults, an optional config file
-- (a Lua file returning a table) and key=value overrides, validated against the defaults' types
-- (recipe.explicit(cfg) tells which settings were given); `--help` listing every setting with its
-- default and meaning; logging every setting; progress on stderr (a bar on a terminal, a plain line
-- every 30 s otherwise); atomic writes of text files; JSON lines; one-line error messages; a recipe's
-- pictures (recipe.plots: off with plots=false, and a missing gnuplot only logs a line).
local cjson = require "cjson"

local recipe = {}

-- cfg -> {key = true} of the settings given by the arguments or a config file
local explicit_keys = setmetatable({}, { __mode = "k" })

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
  local cfg, given = {}, {}
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
        given[fk] = true
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
  for _, kv in ipairs(overrides) do given[kv[1]] = true end
  explicit_keys[cfg] = given
  return cfg
end

--- recipe.explicit(cfg) -> {key = true} of the settings the arguments (or a config file) gave, or
-- nil for a table recipe.config did not build
function recipe.explicit(cfg) return explicit_keys[cfg] end

--- recipe.help(name, defaults, docs, usage) -> text: the usage line and every setting with its
-- default and one line of meaning (docs: {key = "meaning"})
function recipe.help(name, defaults, docs, usage)
  docs = docs or {}
  local keys = {}
  for k in pairs(defaults) do keys[#keys + 1] = k end
  table.sort(keys)
  local width = 0
  local shown = {}
  for _, k in ipairs(keys) do
    local v = defaults[k]
    shown[k] = k .. "=" .. ((type(v) == "string" and v == "") and '""' or tostring(v))
    width = math.max(width, #shown[k])
  end
  local lines = { usage or ("Usage: " .. name .. " key=value ... [config=file.lua]"), "", "Settings (default values):" }
  for _, k in ipairs(keys) do
    lines[#lines + 1] = string.format("  %-" .. width .. "s  %s", shown[k], docs[k] or "")
  end
  return table.concat(lines, "\n") .. "\n"
end

--- recipe.plots(enabled, log, fn) -> fn's result, or nil: draws a recipe's pictures with fn(plot) (plot:
-- cocola.plot) unless enabled is false. Pictures are a by-product: a missing gnuplot or a failed
-- picture logs one line "plots skipped: <why>" through log and the recipe goes on.
function recipe.plots(enabled, log, fn)
  if enabled == false then return nil end
  local plot = require "cocola.plot"
  local available, why = plot.available()
  if not available then
    recipe.end_progress()
    log("plots skipped: " .. why)
    return nil
  end
  local ok, result = pcall(fn, plot)
  if not ok then
    recipe.end_progress()
    log("plots skipped: " .. recipe.clean_error(result))
    return nil
  end
  return result
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

-- progress: a bar redrawn in place when stderr is a terminal; otherwise (a log file, a pipe) a plain
-- line at most every 30 s and at the end, so logs stay readable
local progress_state = { open = false, last = {} }

local function stderr_is_terminal()
  if progress_state.terminal == nil then
    local forced = os.getenv("COCOLA_PROGRESS")
    if forced == "bar" then progress_state.terminal = true
    elseif forced == "lines" then progress_state.terminal = false
    else progress_state.terminal = os.execute("[ -t 2 ]") == true end
  end
  return progress_state.terminal
end
recipe.stderr_is_terminal = stderr_is_terminal

--- progress(label, done, total, extra) draws one bar line on stderr (a terminal), or writes a plain
-- progress line at most every 30 s (anything else)
function recipe.progress(label, done, total, extra)
  if stderr_is_terminal() then
    local width = 30
    local filled = total > 0 and math.floor(width * done / total) or 0
    io.stderr:write(string.format("\r%s [%s%s] %d/%d %s", label, string.rep("#", filled),
      string.rep("-", width - filled), done, total, extra or ""))
    progress_state.open = done < total
    if done >= total then io.stderr:write("\n") end
  else
    local now = os.time()
    local last = progress_state.last[label]
    if done >= total or not last or now - last >= 30 then
      io.stderr:write(string.format("%s %d/%d %s\n", label, done, total, extra or ""))
      progress_state.last[label] = now
    end
    if done >= total then progress_state.last[label] = nil end
  end
  io.stderr:flush()
end

--- ends a progress bar left open (before an error or other output goes to stderr)
function recipe.end_progress()
  if progress_state.open then
    io.stderr:write("\n")
    io.stderr:flush()
    progress_state.open = false
  end
end

--- an error message without the "file:line: " prefixes Lua adds (all of them)
function recipe.strip_locations(msg)
  msg = tostring(msg)
  local prev
  repeat
    prev = msg
    msg = msg:gsub("^[^%s:]+:%d+: ", "", 1)
  until msg == prev
  return msg
end

--- an error message for the user: recipe.strip_locations, unless COCOLA_DEBUG is set
function recipe.clean_error(msg)
  if os.getenv("COCOLA_DEBUG") then return tostring(msg) end
  return recipe.strip_locations(msg)
end

--- writes text to path atomically: into "<path>.tmp", renamed over path once written and closed. A
-- failed write, close or rename (disk full, I/O error) removes the temporary file, leaves path as it
-- was and raises "cannot write '<path>': <cause>".
function recipe.write_atomic(path, text)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error(string.format("cannot write '%s': %s", path, tostring(err)), 0) end
  local ok, werr = f:write(text)
  local closed, cerr = f:close()
  if ok then ok, werr = closed, cerr end
  if ok then ok, werr = os.rename(tmp, path) end
  if not ok then
    os.remove(tmp)
    error(string.format("cannot write '%s': %s", path, tostring(werr)), 0)
  end
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- writes a folder atomically (a checkpoint): fill(tmp) writes the files into a fresh "<dir>.tmp",
-- which then replaces dir (the previous one is moved to "<dir>.old" for the swap and removed after).
-- When fill or the swap fails, the temporary folder is removed, dir is left as it was and the error
-- "cannot write checkpoint '<dir>': <cause>" is raised (the cause names the file that failed).
function recipe.write_dir_atomic(dir, fill)
  local lfs = require "lfs"
  local tmp, old = dir .. ".tmp", dir .. ".old"
  local function fail(cause)
    os.execute("rm -rf " .. shell_quote(tmp))
    error(string.format("cannot write checkpoint '%s': %s", dir, recipe.strip_locations(cause)), 0)
  end
  os.execute("rm -rf " .. shell_quote(tmp))
  local made, merr = lfs.mkdir(tmp)
  if not made then fail(string.format("cannot create '%s': %s", tmp, tostring(merr))) end
  local ok, err = pcall(fill, tmp)
  if not ok then fail(err) end
  os.execute("rm -rf " .. shell_quote(old))
  local had = lfs.attributes(dir, "mode") ~= nil
  if had then
    local moved, rerr = os.rename(dir, old)
    if not moved then fail(rerr) end
  end
  local swapped, serr = os.rename(tmp, dir)
  if not swapped then
    if had then os.rename(old, dir) end
    fail(serr)
  end
  os.execute("rm -rf " .. shell_quote(old))
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

--- drop_records_after(path, step) -> lines dropped: a JSONL log of a run resumed at `step` (0: started again)
--- keeps the records of steps up to it; those after it (logged by a process killed after its last checkpoint,
--- and run again now) and a line cut short by the kill go
function recipe.drop_records_after(path, step)
  local text = recipe.read(path)
  if not text then return 0 end
  local kept, dropped = {}, 0
  for line in text:gmatch("[^\n]+") do
    local ok, record = pcall(cjson.decode, line)
    if ok and type(record) == "table" and (tonumber(record.step) or 0) <= step then
      kept[#kept + 1] = line
    else
      dropped = dropped + 1
    end
  end
  if dropped > 0 then recipe.write_atomic(path, #kept > 0 and table.concat(kept, "\n") .. "\n" or "") end
  return dropped
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

--- recipe.fnv1a(s) -> the 64-bit FNV-1a hash of a string as 16 hex digits (file and settings identities)
function recipe.fnv1a(s)
  local h = -3750763034362895579 -- 0xcbf29ce484222325
  for i = 1, #s do
    h = h ~ s:byte(i)
    h = h * 1099511628211
  end
  return string.format("%016x", h)
end

--- recipe.main(name, defaults, run, args, docs) -> exit status: `--help` (or -h) prints
-- recipe.help and returns 0; otherwise builds the config from args (key=value strings), calls
-- run(cfg) and turns an error into one line "name: message" on stderr (no file names or line numbers
-- of the code; COCOLA_DEBUG=1 keeps them, with the traceback) and status 1.
function recipe.main(name, defaults, run, args, docs)
  args = args or {}
  for _, a in ipairs(args) do
    if a == "--help" or a == "-h" then
      io.write(recipe.help(name, defaults, docs))
      return 0
    end
  end
  local ok, err = xpcall(function() run(recipe.config(defaults, args)) end, function(msg)
    if os.getenv("COCOLA_DEBUG") then return debug.traceback(tostring(msg), 2) end
    return recipe.clean_error(msg)
  end)
  if not ok then
    recipe.end_progress()
    io.stdout:flush()
    io.stderr:write(name, ": ", tostring(err), "\n")
    return 1
  end
  return 0
end

return recipe
