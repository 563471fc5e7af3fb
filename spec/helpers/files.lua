-- spec/helpers/files.lua — small helpers the specs share: a fresh temporary directory, reading, writing
-- and copying whole files (failing the spec when they cannot), flattening nested tables of values
-- (totable() results) into one list, and running a shell command.
local fs = require "cocola.data.fs"

local M = {}

-- every directory tmpdir() made, removed with its contents when the test process ends (busted closes
-- the Lua state on exit, which runs this finalizer), so that no spec has to remember its own
local made = {}
M._sweeper = setmetatable({}, { __gc = function()
  for i = #made, 1, -1 do os.execute("rm -rf '" .. made[i]:gsub("'", "'\\''") .. "'") end
end })

--- a new empty directory under the system's temporary folder (removed when the test process ends)
function M.tmpdir()
  local path = os.tmpname()
  os.remove(path)
  fs.mkdir_p(path)
  made[#made + 1] = path
  return path
end

--- the bytes of a file (the spec fails when it cannot be read)
function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- writes text (bytes) to a file, replacing it
function M.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

--- copies a file
function M.copy(src, dst) M.write(dst, M.read(src)) end

--- runs a shell command; returns whether it succeeded and its output (stdout and stderr)
function M.sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

--- the leaves of a nested table, in order
function M.flat(v, out)
  out = out or {}
  if type(v) == "table" then
    for i = 1, #v do M.flat(v[i], out) end
  else
    out[#out + 1] = v
  end
  return out
end

return M
