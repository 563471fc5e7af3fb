-- cocola.data.fs — the few filesystem helpers the dataset readers need (on LuaFileSystem):
-- sorted directory listings, type tests and path joins.
local lfs = require "lfs"

local fs = {}

function fs.join(...) return (table.concat({ ... }, "/"):gsub("//+", "/")) end

function fs.is_dir(path) return lfs.attributes(path, "mode") == "directory" end

function fs.is_file(path) return lfs.attributes(path, "mode") == "file" end

--- entries of a directory (no dot files), sorted; filter(name, full_path) -> bool optional
function fs.list(path, filter)
  if not fs.is_dir(path) then return {} end
  local out = {}
  for name in lfs.dir(path) do
    if name:sub(1, 1) ~= "." then
      local full = fs.join(path, name)
      if not filter or filter(name, full) then out[#out + 1] = name end
    end
  end
  table.sort(out)
  return out
end

function fs.dirs(path) return fs.list(path, function(_, full) return fs.is_dir(full) end) end

--- files whose name ends with one of the extensions (lower case, without the dot)
function fs.files(path, extensions)
  local want = {}
  for _, e in ipairs(extensions) do want[e] = true end
  return fs.list(path, function(name, full)
    local ext = name:match("%.([^.]+)$")
    return fs.is_file(full) and ext ~= nil and want[ext:lower()] == true
  end)
end

function fs.read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

function fs.mkdir_p(path)
  local so_far = path:sub(1, 1) == "/" and "/" or ""
  for part in path:gmatch("[^/]+") do
    so_far = so_far .. part .. "/"
    if not fs.is_dir(so_far) then
      local ok, err = lfs.mkdir(so_far)
      if not ok and not fs.is_dir(so_far) then error("cannot create directory " .. so_far .. ": " .. tostring(err), 2) end
    end
  end
end

return fs
