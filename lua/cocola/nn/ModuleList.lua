-- cocola.nn.ModuleList — an ordered list of submodules named "0", "1", ... (PyTorch's names).
-- Lua access is 1-based: list[1] is child "0"; #list, ipairs(list), list[i] = m, list:append(m).
local Module = require "cocola.nn.Module"

local ModuleList = Module:extend("ModuleList")
ModuleList.__integer_children = true

--- ModuleList({m1, m2, ...}) (or ModuleList(m1, m2, ...))
function ModuleList:init(first, ...)
  if first == nil then return end
  if Module.is_module(first) then
    self:extend_list({ first, ... })
  else
    self:extend_list(first)
  end
end

function ModuleList:__len() return #rawget(self, "__modules").names end

--- Appends a module (named by its 0-based position); returns self.
function ModuleList:append(m)
  if not Module.is_module(m) then error(self:type_name() .. ":append expects a Module", 2) end
  self:add_module(tostring(#self), m)
  return self
end

--- Appends every module of a list; returns self.
function ModuleList:extend_list(list)
  if type(list) ~= "table" then error(self:type_name() .. ": expected a list of Modules", 3) end
  for i, m in ipairs(list) do
    if not Module.is_module(m) then error(string.format("%s: entry %d is not a Module", self:type_name(), i), 3) end
    self:append(m)
  end
  return self
end

function ModuleList:forward()
  error("ModuleList has no forward: iterate over it in the parent's forward", 2)
end

return ModuleList
