-- tests/lib/test_shell.lua — what the process-level test drivers (tests/chaos/chaos.lua,
-- tests/faults/driver.lua) share: shell quoting, whole-file reads and fresh temporary folders.
-- Loaded with package.path = "./tests/lib/?.lua;" .. package.path (from the repository root).
local M = {}

--- s as one single-quoted shell word
function M.quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- the bytes of a file, or nil when it cannot be read
function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- a new empty folder under the system's temporary folder
function M.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p " .. M.quote(p)), "cannot create the folder " .. p)
  return p
end

return M
