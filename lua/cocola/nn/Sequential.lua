-- cocola.nn.Sequential — runs its children in order, each one's output the next one's input.
-- Children are named "0", "1", ... (PyTorch's names) unless given as {name, module} pairs;
-- Lua access is 1-based (seq[1] is the first child), #seq counts them.
local Module = require "cocola.nn.Module"

local Sequential = Module:extend("Sequential")
Sequential.__integer_children = true

--- Sequential(m1, m2, ...) | Sequential({m1, m2, ...}) | Sequential({{"conv", m1}, {"bn", m2}})
function Sequential:init(first, ...)
  if first == nil then return end
  local list = Module.is_module(first) and { first, ... } or first
  if type(list) ~= "table" then error("Sequential: expected Modules or a list of them", 3) end
  for i, e in ipairs(list) do
    if Module.is_module(e) then
      self:append(e)
    elseif type(e) == "table" and type(e[1]) == "string" and Module.is_module(e[2]) then
      self:add_module(e[1], e[2])
    else
      error(string.format("Sequential: entry %d is neither a Module nor a {name, Module} pair", i), 3)
    end
  end
end

function Sequential:__len() return #rawget(self, "__modules").names end

--- Appends a module named by its 0-based position; returns self.
function Sequential:append(m)
  if not Module.is_module(m) then error("Sequential:append expects a Module", 2) end
  self:add_module(tostring(#self), m)
  return self
end
Sequential.add = Sequential.append

function Sequential:forward(x)
  for _, m in ipairs(self:children()) do x = m(x) end
  return x
end

return Sequential
