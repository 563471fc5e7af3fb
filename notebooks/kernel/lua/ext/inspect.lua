-- How the notebook kernel shows a cell's returned values: ILua renders them with its bundled
-- ext.inspect, which prints a tensor as "<userdata 1>". This module comes first on the kernel's
-- LUA_PATH, so ILua loads it instead: values whose metatable has __tostring (tensors, modules ...)
-- are shown as tostring gives them (print's layout); everything else goes to ILua's own inspect.
local here = debug.getinfo(1, "S").source:match("^@(.*)$")
local path = {}
for entry in package.path:gmatch("[^;]+") do
  if not (here and package.searchpath("ext.inspect", entry) == here) then path[#path + 1] = entry end
end
local original = assert(package.searchpath("ext.inspect", table.concat(path, ";")), "ILua's ext.inspect not found")
local inspect = dofile(original)

local function has_tostring(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__tostring ~= nil
end

return setmetatable({}, {
  __index = inspect,
  __call = function(_, value, opts)
    if has_tostring(value) then return tostring(value) end
    return inspect(value, opts)
  end,
})
