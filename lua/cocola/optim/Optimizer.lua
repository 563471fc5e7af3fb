-- cocola.optim.Optimizer — the base class of the optimisers: parameter groups (lr and other
-- settings adjustable per group, e.g. opt.param_groups[1].lr = x for schedulers), per-parameter
-- state, zero_grad, state_dict/load_state_dict (torch's layout, tensors cloned) and a flat form
-- of the state for safetensors files (save/load).
local cocola = require "cocola"
local core = require "cocola.core"
local cjson = require "cjson"

local is_tensor = core.is_tensor

local Optimizer = {}
Optimizer.__index = Optimizer
Optimizer.__name = "Optimizer"

local function class_call(cls, ...) return cls:new(...) end

--- Creates a subclass: local Adam = Optimizer:extend("Adam", {lr = 1e-3, ...defaults}).
function Optimizer:extend(name, defaults)
  local cls = { __name = name, super = self, defaults = defaults or {} }
  cls.__index = cls
  cls.__tostring = self.__tostring
  return setmetatable(cls, { __index = self, __call = class_call })
end

local function is_module(v)
  return type(v) == "table" and type(v.parameters) == "function" and rawget(v, "__modules") ~= nil
end

-- A list of tensors, a list of {name, tensor} pairs, a Module, or a list of groups
-- {params = <one of those>, lr = ..., ...} -> list of groups {params = {tensors}, names = {...}|nil}
local function tensor_list(params, what)
  if is_module(params) then params = params:named_parameters() end
  if type(params) ~= "table" then error(what .. ": expected a list of tensors, of {name, tensor} pairs, or a Module", 4) end
  local out, names = {}, nil
  for i, p in ipairs(params) do
    if is_tensor(p) then
      out[i] = p
    elseif type(p) == "table" and type(p[1]) == "string" and is_tensor(p[2]) then
      out[i] = p[2]
      names = names or {}
      names[i] = p[1]
    else
      error(string.format("%s: parameter %d is not a tensor (nor a {name, tensor} pair)", what, i), 4)
    end
  end
  return out, names
end

--- Optimizer(params, opts): params as above; opts override the class defaults.
function Optimizer:new(params, opts)
  local obj = setmetatable({ param_groups = {}, state = {} }, self)
  obj.defaults = {}
  for k, v in pairs(self.defaults) do obj.defaults[k] = v end
  for k, v in pairs(opts or {}) do obj.defaults[k] = v end
  if obj.validate then obj:validate(obj.defaults) end
  if type(params) == "table" and not is_module(params) and type(params[1]) == "table" and params[1].params ~= nil then
    for _, g in ipairs(params) do obj:add_param_group(g) end
  else
    obj:add_param_group({ params = params })
  end
  if #obj.param_groups == 0 then error(self.__name .. ": got an empty parameter list", 2) end
  return obj
end

--- Adds a group {params = ..., lr = ..., ...}; missing settings come from the defaults.
function Optimizer:add_param_group(group)
  local ps, names = tensor_list(group.params, self.__name)
  if #ps == 0 then error(self.__name .. ": a parameter group is empty", 3) end
  local seen = {}
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do seen[p] = true end
  end
  for _, p in ipairs(ps) do
    if seen[p] then error(self.__name .. ": a parameter appears in more than one group", 3) end
    seen[p] = true
  end
  local g = { params = ps, names = names }
  local function copy(v) return type(v) == "table" and table.move(v, 1, #v, 1, {}) or v end
  for k, v in pairs(self.defaults) do g[k] = copy(v) end
  for k, v in pairs(group) do
    if k ~= "params" then g[k] = copy(v) end
  end
  if g.lr == nil then error(self.__name .. ": no learning rate given (lr)", 3) end
  if self.validate then self:validate(g) end
  self.param_groups[#self.param_groups + 1] = g
end

--- Drops every parameter's gradient (grad = nil).
function Optimizer:zero_grad()
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do p.grad = nil end
  end
end

--- Runs one update of every parameter that has a gradient. closure (optional) is called first
-- with gradient recording on and its result is returned (torch's step(closure)).
function Optimizer:step(closure)
  local loss
  if closure then loss = cocola.enable_grad(closure) end
  cocola.no_grad(function()
    for _, g in ipairs(self.param_groups) do
      for _, p in ipairs(g.params) do
        local grad = p.grad
        if grad ~= nil then
          local st = self.state[p]
          if not st then
            st = {}
            self.state[p] = st
          end
          self:update(p, grad, st, g)
        end
      end
    end
  end)
  return loss
end

function Optimizer:update() error(self.__name .. ": update is not implemented", 2) end

local function clone(t) return t:detach():clone() end

--- {state = {[i] = {step = n, <name> = tensor, ...}}, param_groups = {{params = {i, ...}, lr = ...}}}
-- with parameters numbered 1.. across the groups in order (torch's layout); tensors are clones.
function Optimizer:state_dict()
  local sd, index = { state = {}, param_groups = {} }, 0
  for _, g in ipairs(self.param_groups) do
    local pg = { params = {} }
    for k, v in pairs(g) do
      if k ~= "params" and k ~= "names" then pg[k] = type(v) == "table" and table.move(v, 1, #v, 1, {}) or v end
    end
    for _, p in ipairs(g.params) do
      index = index + 1
      pg.params[#pg.params + 1] = index
      local st = self.state[p]
      if st then
        local copy = {}
        for k, v in pairs(st) do copy[k] = is_tensor(v) and clone(v) or v end
        sd.state[index] = copy
      end
    end
    sd.param_groups[#sd.param_groups + 1] = pg
  end
  return sd
end

--- Restores what state_dict returned (for the same parameters in the same order): group settings
-- and per-parameter state (tensors cloned, converted to each parameter's dtype and device).
function Optimizer:load_state_dict(sd)
  if type(sd) ~= "table" or type(sd.param_groups) ~= "table" or type(sd.state) ~= "table" then
    error(self.__name .. ":load_state_dict: expected {state = ..., param_groups = ...}", 2)
  end
  if #sd.param_groups ~= #self.param_groups then
    error(string.format("%s:load_state_dict: the state has %d parameter groups, the optimizer %d", self.__name,
      #sd.param_groups, #self.param_groups), 2)
  end
  local by_index = {}
  for gi, g in ipairs(self.param_groups) do
    local pg = sd.param_groups[gi]
    if type(pg.params) ~= "table" or #pg.params ~= #g.params then
      error(string.format("%s:load_state_dict: group %d has %d parameters in the state, %d in the optimizer",
        self.__name, gi, type(pg.params) == "table" and #pg.params or 0, #g.params), 2)
    end
    for i, p in ipairs(g.params) do by_index[pg.params[i]] = p end
  end
  local state = {}
  for idx, st in pairs(sd.state) do
    local p = by_index[idx]
    if not p then error(string.format("%s:load_state_dict: state for unknown parameter %s", self.__name, tostring(idx)), 2) end
    local copy = {}
    for k, v in pairs(st) do
      if is_tensor(v) then
        local c = clone(v)
        if c:device() ~= p:device() then c = c:to(p:device()) end
        if c:dtype() ~= p:dtype() and c:dtype() ~= "int64" then c = c:to(p:dtype()) end
        copy[k] = c
      else
        copy[k] = v
      end
    end
    state[p] = copy
  end
  self.state = state
  for gi, g in ipairs(self.param_groups) do
    for k, v in pairs(sd.param_groups[gi]) do
      if k ~= "params" then g[k] = type(v) == "table" and table.move(v, 1, #v, 1, {}) or v end
    end
  end
end

-- JSON of group settings with numbers written exactly (%.17g; cjson stops at 14 digits)
local function encode(v)
  local ty = type(v)
  if ty == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    if v ~= v or v == math.huge or v == -math.huge then error("cannot store a non-finite setting", 3) end
    return string.format("%.17g", v)
  elseif ty == "boolean" then
    return tostring(v)
  elseif ty == "string" then
    return cjson.encode(v)
  elseif ty == "table" then
    local n = #v
    local parts = {}
    if n > 0 or next(v) == nil then
      for i = 1, n do parts[i] = encode(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for i, k in ipairs(keys) do parts[i] = cjson.encode(k) .. ":" .. encode(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("cannot store a setting of type " .. ty, 3)
end

--- The state as {name = tensor} plus a metadata table of strings, for cocola.save:
-- "state.<i>.<key>" tensors (integer steps as int64 scalars); group settings as JSON metadata.
function Optimizer.flatten_state_dict(sd)
  local tensors, ints = {}, {}
  for idx, st in pairs(sd.state) do
    for k, v in pairs(st) do
      local name = string.format("state.%d.%s", idx, k)
      if is_tensor(v) then
        tensors[name] = v
      elseif math.type(v) == "integer" then
        tensors[name] = cocola.tensor(v, { dtype = "int64" })
        ints[name] = true
      elseif type(v) == "number" then
        tensors[name] = cocola.tensor(v, { dtype = "float64" })
      else
        error("flatten_state_dict: cannot store state value " .. name .. " of type " .. type(v), 2)
      end
    end
  end
  local names = {}
  for name in pairs(ints) do names[#names + 1] = name end
  table.sort(names)
  return tensors, {
    param_groups = encode(sd.param_groups),
    scalar_state = encode(names),
  }
end

--- Inverse of flatten_state_dict (what cocola.load returns).
function Optimizer.unflatten_state_dict(tensors, metadata)
  if type(metadata) ~= "table" or type(metadata.param_groups) ~= "string" then
    error("unflatten_state_dict: the metadata holds no param_groups (not an optimizer state file?)", 2)
  end
  local ints = {}
  if metadata.scalar_state then
    for _, n in ipairs(cjson.decode(metadata.scalar_state)) do ints[n] = true end
  end
  local sd = { state = {}, param_groups = cjson.decode(metadata.param_groups) }
  for name, t in pairs(tensors) do
    local idx, key = name:match("^state%.(%d+)%.(.+)$")
    if not idx then error("unflatten_state_dict: unexpected entry '" .. name .. "'", 2) end
    idx = math.tointeger(tonumber(idx))
    local st = sd.state[idx] or {}
    sd.state[idx] = st
    if ints[name] then
      st[key] = math.tointeger(t:item())
    elseif t:dim() == 0 and t:dtype() == "float64" then
      st[key] = t:item()
    else
      st[key] = t
    end
  end
  return sd
end

--- Writes the state to a safetensors file.
function Optimizer:save(path)
  local tensors, metadata = Optimizer.flatten_state_dict(self:state_dict())
  cocola.save(path, tensors, { metadata = metadata })
end

--- Restores the state from a file written by save.
function Optimizer:load(path)
  local tensors, metadata = cocola.load(path)
  self:load_state_dict(Optimizer.unflatten_state_dict(tensors, metadata))
end

function Optimizer:__tostring()
  local lines = { self.__name .. " (" }
  for i, g in ipairs(self.param_groups) do
    lines[#lines + 1] = string.format("Parameter Group %d", i - 1)
    local keys = {}
    for k in pairs(g) do
      if k ~= "params" and k ~= "names" then keys[#keys + 1] = k end
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = g[k]
      if type(v) == "table" then v = "(" .. table.concat(v, ", ") .. ")" end
      lines[#lines + 1] = string.format("    %s: %s", k, tostring(v))
    end
  end
  lines[#lines + 1] = ")"
  return table.concat(lines, "\n")
end

setmetatable(Optimizer, { __call = class_call })

return Optimizer
