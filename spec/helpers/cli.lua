-- spec/helpers/cli.lua — running the `cocola` command as a user does, for the specs: the checkout's
-- root and the environment that puts its lua/ and build/ on the paths, a file reader, and the
-- checks of the one-line error the command promises.
local assert = require "luassert"

local M = {}

M.ROOT = io.popen("pwd"):read("l")
-- the build folder under test: build/, or COCOLA_BUILD_DIR's (a sanitizer build; bin/cocola reads it too)
M.BUILD = os.getenv("COCOLA_BUILD_DIR") or "build"
M.ENV = string.format("LUA_PATH='%s/lua/?.lua;%s/lua/?/init.lua;;' LUA_CPATH='%s/%s/?.so;;'", M.ROOT, M.ROOT, M.ROOT,
  M.BUILD)

--- the bytes of a file, or nil when it cannot be read
function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- runs `lua5.4 <root>/bin/cocola <args>` in `cwd` (default the root), stderr kept in tmp/stderr.txt,
-- with `env` (extra VAR=value words) before it; returns status, stdout, stderr
function M.cocola(args, tmp, env, cwd)
  local err_path = tmp .. "/stderr.txt"
  local p = io.popen(string.format("cd '%s' && %s %s lua5.4 '%s/bin/cocola' %s 2>'%s'", cwd or M.ROOT, M.ENV, env or "",
    M.ROOT, args, err_path))
  local out = p:read("a")
  local _, _, status = p:close()
  return status, out, M.read(err_path) or ""
end

--- asserts status 1 and one line "cocola: <message>" on stderr without a traceback, holding pattern
function M.one_line_error(status, err, pattern)
  assert.are.equal(1, status, err)
  assert.truthy(err:match("^cocola: [^\n]*\n$"), "expected one line 'cocola: ...', got: " .. err)
  assert.is_nil(err:find("traceback", 1, true), err)
  if pattern then assert.truthy(err:find(pattern, 1, true), "expected '" .. pattern .. "' in: " .. err) end
end

return M
