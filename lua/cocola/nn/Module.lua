-- cocola.nn.Module — the base class of every layer: a small class system (Module:extend("Name")),
-- ordered registration of parameters, buffers and submodules (so names and state_dict keys are
-- deterministic and match PyTorch's), recursive train/eval, state_dict/load_state_dict with strict
-- checks, dtype/device conversion and a torch-like printed form.
--
-- Defining a layer:
--   local MyNet = nn.Module:extend("MyNet")
--   function MyNet:init(n)                -- called by MyNet(n) on a fresh instance
--     self.fc = nn.Linear(n, 2)           -- a Module assigned to a field becomes a submodule
--     self:register_parameter("w", t)     -- explicit; a leaf tensor that requires grad assigned
--     self:register_buffer("count", c)    -- to a new field is registered as a parameter too
--   end
--   function MyNet:forward(x) return self.fc(x) end
--   local net = MyNet(4); local y = net(x)   -- instances are callable: net(x) == net:forward(x)
-- Registered members live in ordered stores and are read through __index; reassigning one
-- (self.weight = t, self.bias = nil) replaces it in its store. Other values are plain fields.
local cocola = require "cocola"
local core = require "cocola.core"

local is_tensor = core.is_tensor

local Module = {}
Module.__name = "Module"
Module.__is_module = true

-- metamethods a class copies from its parent when it is created (Lua reads them raw)
local METAMETHODS = { "__index", "__newindex", "__call", "__tostring", "__len" }

local function is_module(v)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__is_module == true and rawget(v, "__modules") ~= nil
end
Module.is_module = is_module

-- ---- ordered stores ------------------------------------------------------------------------
local function new_store() return { names = {}, has = {}, values = {} } end

local function store_set(s, name, v)
  if not s.has[name] then
    s.has[name] = true
    s.names[#s.names + 1] = name
  end
  s.values[name] = v
end

local function store_remove(s, name)
  if not s.has[name] then return end
  s.has[name], s.values[name] = nil, nil
  for i, n in ipairs(s.names) do
    if n == name then
      table.remove(s.names, i)
      break
    end
  end
end

-- ---- class system -------------------------------------------------------------------------
local function class_call(cls, ...) return cls:new(...) end

--- Creates a subclass: local Linear = Module:extend("Linear"). Subclasses inherit methods and
-- metamethods; define :init(...) (constructor) and :forward(...).
function Module:extend(name)
  local cls = {}
  for _, mm in ipairs(METAMETHODS) do cls[mm] = rawget(self, mm) end
  cls.__name = name or "Module"
  cls.super = self
  return setmetatable(cls, {
    __index = self,
    __call = class_call,
    __tostring = function() return "class " .. cls.__name end,
  })
end

--- Creates an instance and runs the class's :init(...) on it.
function Module:new(...)
  local obj = {
    __params = new_store(),
    __buffers = new_store(),
    __modules = new_store(),
    __non_persistent = {},
    training = true,
  }
  setmetatable(obj, self)
  local init = self.init
  if init then init(obj, ...) end
  return obj
end

--- Constructor of a plain Module (no members): subclasses override it.
function Module:init() end

--- The class name (as printed).
function Module:type_name() return getmetatable(self).__name end

--- true when the instance's class is cls or inherits from it.
function Module:is_instance_of(cls)
  local c = getmetatable(self)
  while c do
    if c == cls then return true end
    c = rawget(c, "super")
  end
  return false
end

-- integer keys of containers (ModuleList, Sequential): 1-based positions of children "0", "1", ...
local function child_at(self, k)
  local mods = rawget(self, "__modules")
  local n = #mods.names
  if k < 0 then k = n + k + 1 end
  if k < 1 or k > n then return nil end
  return mods.values[mods.names[k]]
end

function Module.__index(self, k)
  local v = rawget(self, "__params").values[k]
  if v ~= nil then return v end
  v = rawget(self, "__buffers").values[k]
  if v ~= nil then return v end
  v = rawget(self, "__modules").values[k]
  if v ~= nil then return v end
  local cls = getmetatable(self)
  if math.type(k) == "integer" and cls.__integer_children then return child_at(self, k) end
  return cls[k]
end

local function check_name(name, what)
  if type(name) ~= "string" then error(what .. ": the name must be a string", 3) end
  if name == "" then error(what .. ": the name must not be empty", 3) end
  if name:find(".", 1, true) then error(what .. ": the name must not contain '.' ('" .. name .. "')", 3) end
end

local function assign_member(self, store_name, k, v)
  if store_name == "__modules" then
    if v ~= nil and not is_module(v) then
      error(string.format("cannot assign a %s to submodule '%s' (a Module or nil expected)", type(v), k), 3)
    end
  elseif v ~= nil and not is_tensor(v) then
    error(string.format("cannot assign a %s to %s '%s' (a tensor or nil expected)", type(v),
      store_name == "__params" and "parameter" or "buffer", k), 3)
  end
  rawget(self, store_name).values[k] = v
end

function Module.__newindex(self, k, v)
  if type(k) == "string" then
    for _, s in ipairs({ "__params", "__buffers", "__modules" }) do
      if rawget(self, s).has[k] then return assign_member(self, s, k, v) end
    end
    if is_module(v) then return self:add_module(k, v) end
    if is_tensor(v) and v:requires_grad() and v:is_leaf() then return self:register_parameter(k, v) end
  elseif math.type(k) == "integer" and getmetatable(self).__integer_children then
    local mods = rawget(self, "__modules")
    local n = #mods.names
    if k >= 1 and k <= n then
      if not is_module(v) then error("a container's entries must be Modules", 2) end
      mods.values[mods.names[k]] = v
      return
    elseif k == n + 1 then
      return self:add_module(tostring(n), v)
    end
    error(string.format("index %d out of range for a container of %d modules", k, n), 2)
  end
  rawset(self, k, v)
end

function Module:__call(...) return self:forward(...) end

function Module:forward()
  error(self:type_name() .. ": forward is not implemented", 2)
end

-- ---- registration -------------------------------------------------------------------------
local function check_free(self, name, store_name, what)
  for _, s in ipairs({ "__params", "__buffers", "__modules" }) do
    if s ~= store_name and rawget(self, s).has[name] then
      error(string.format("%s: '%s' is already registered as another kind of member", what, name), 3)
    end
  end
  if rawget(self, name) ~= nil then rawset(self, name, nil) end
end

--- Registers (or replaces) a parameter; t may be nil (the name stays reserved, like torch's None).
function Module:register_parameter(name, t)
  check_name(name, "register_parameter")
  if t ~= nil and not is_tensor(t) then error("register_parameter: '" .. name .. "' is not a tensor", 2) end
  check_free(self, name, "__params", "register_parameter")
  store_set(rawget(self, "__params"), name, t)
  return t
end

--- Registers a buffer (state that is not trained: running statistics, counters). A buffer with
-- persistent = false is left out of state_dict.
--- Registers `weight` (zeros of weight_shape) and, when with_bias, `bias` (zeros of the first size),
-- resets them with self:reset_parameters() and marks them as requiring grad (Linear, Conv2d ...).
function Module:register_weight_and_bias(weight_shape, with_bias, dtype)
  self:register_parameter("weight", cocola.zeros(weight_shape, { dtype = dtype }))
  self:register_parameter("bias", with_bias and cocola.zeros({ weight_shape[1] }, { dtype = dtype }) or nil)
  self:reset_parameters()
  self.weight:requires_grad(true)
  if self.bias then self.bias:requires_grad(true) end
end

function Module:register_buffer(name, t, persistent)
  check_name(name, "register_buffer")
  if t ~= nil and not is_tensor(t) then error("register_buffer: '" .. name .. "' is not a tensor", 2) end
  check_free(self, name, "__buffers", "register_buffer")
  store_set(rawget(self, "__buffers"), name, t)
  rawget(self, "__non_persistent")[name] = (persistent == false) or nil
  return t
end

--- Registers a submodule under name (may be nil).
function Module:add_module(name, m)
  check_name(name, "add_module")
  if m ~= nil and not is_module(m) then error("add_module: '" .. name .. "' is not a Module", 2) end
  check_free(self, name, "__modules", "add_module")
  store_set(rawget(self, "__modules"), name, m)
  return m
end
Module.register_module = Module.add_module

--- Removes a registered member of any kind.
function Module:delete(name)
  for _, s in ipairs({ "__params", "__buffers", "__modules" }) do store_remove(rawget(self, s), name) end
  rawget(self, "__non_persistent")[name] = nil
end

-- ---- traversal ----------------------------------------------------------------------------
--- {{name, module}, ...} of the direct children, in registration order.
function Module:named_children()
  local out, mods = {}, rawget(self, "__modules")
  for _, name in ipairs(mods.names) do
    local m = mods.values[name]
    if m then out[#out + 1] = { name, m } end
  end
  return out
end

function Module:children()
  local out = {}
  for _, nm in ipairs(self:named_children()) do out[#out + 1] = nm[2] end
  return out
end

--- {{dotted_name, module}, ...}: self ("" or prefix) first, then every descendant in pre-order;
-- a module reachable twice is listed once.
function Module:named_modules(prefix, memo)
  prefix = prefix or ""
  memo = memo or {}
  local out = {}
  local function walk(m, p)
    if memo[m] then return end
    memo[m] = true
    out[#out + 1] = { p, m }
    for _, nm in ipairs(m:named_children()) do
      walk(nm[2], p == "" and nm[1] or (p .. "." .. nm[1]))
    end
  end
  walk(self, prefix)
  return out
end

function Module:modules()
  local out = {}
  for _, nm in ipairs(self:named_modules()) do out[#out + 1] = nm[2] end
  return out
end

local function named_members(self, store_name, prefix, recurse)
  local out, seen = {}, {}
  local mods = recurse == false and { { prefix or "", self } } or self:named_modules(prefix)
  for _, nm in ipairs(mods) do
    local p, m = nm[1], nm[2]
    local s = rawget(m, store_name)
    for _, name in ipairs(s.names) do
      local t = s.values[name]
      if t ~= nil and not seen[t] then
        seen[t] = true
        out[#out + 1] = { p == "" and name or (p .. "." .. name), t }
      end
    end
  end
  return out
end

--- {{"features.0.weight", tensor}, ...}: own parameters, then each submodule's (pre-order, as
-- torch); a tensor shared by several modules is listed once.
function Module:named_parameters(prefix, recurse) return named_members(self, "__params", prefix, recurse) end

function Module:parameters(recurse)
  local out = {}
  for _, np in ipairs(self:named_parameters(nil, recurse)) do out[#out + 1] = np[2] end
  return out
end

function Module:named_buffers(prefix, recurse) return named_members(self, "__buffers", prefix, recurse) end

function Module:buffers(recurse)
  local out = {}
  for _, nb in ipairs(self:named_buffers(nil, recurse)) do out[#out + 1] = nb[2] end
  return out
end

--- Total number of elements of the (unique) parameters; only_trainable counts those requiring grad.
function Module:num_parameters(only_trainable)
  local n = 0
  for _, p in ipairs(self:parameters()) do
    if not only_trainable or p:requires_grad() then n = n + p:numel() end
  end
  return n
end

--- Calls fn(m) on every submodule (children first) and then on self; returns self.
function Module:apply(fn)
  for _, c in ipairs(self:children()) do c:apply(fn) end
  fn(self)
  return self
end

-- ---- modes and gradients ------------------------------------------------------------------
--- Sets training mode (default true) on self and every descendant; returns self.
function Module:train(mode)
  if mode == nil then mode = true end
  for _, nm in ipairs(self:named_modules()) do rawset(nm[2], "training", mode and true or false) end
  return self
end

function Module:eval() return self:train(false) end

--- Sets requires_grad on every parameter (freezing with false); returns self.
function Module:requires_grad_(flag)
  if flag == nil then flag = true end
  for _, p in ipairs(self:parameters()) do p:requires_grad(flag) end
  return self
end

--- Drops every parameter's gradient (grad = nil).
--- Freezes (requires_grad false) the parameters whose dotted names match any of the Lua patterns
--- (a string or a list; nil: every parameter) and drops their gradients; returns how many matched.
function Module:freeze(patterns) return self:set_trainable(patterns, false) end
--- Makes the matching parameters trainable again (see freeze); returns how many matched.
function Module:unfreeze(patterns) return self:set_trainable(patterns, true) end

function Module:set_trainable(patterns, flag)
  if type(patterns) == "string" then patterns = { patterns } end
  if patterns ~= nil and type(patterns) ~= "table" then error("freeze: patterns must be a string or a list of strings", 3) end
  local n = 0
  for _, np in ipairs(self:named_parameters()) do
    local hit = patterns == nil
    for _, p in ipairs(patterns or {}) do
      if np[1]:find(p) then hit = true break end
    end
    if hit then
      np[2]:requires_grad(flag)
      if not flag then np[2]:zero_grad() end
      n = n + 1
    end
  end
  return n
end

function Module:zero_grad()
  for _, p in ipairs(self:parameters()) do p.grad = nil end
end

-- ---- state dict ---------------------------------------------------------------------------
-- {{dotted_name, tensor}, ...} of what state_dict holds, in torch's order (per module: its
-- parameters, then its persistent buffers; then the children).
function Module:named_state(prefix)
  local out = {}
  for _, nm in ipairs(self:named_modules(prefix)) do
    local p, m = nm[1], nm[2]
    local pre = p == "" and "" or (p .. ".")
    local ps = rawget(m, "__params")
    for _, name in ipairs(ps.names) do
      local t = ps.values[name]
      if t ~= nil then out[#out + 1] = { pre .. name, t } end
    end
    local bs, np = rawget(m, "__buffers"), rawget(m, "__non_persistent")
    for _, name in ipairs(bs.names) do
      local t = bs.values[name]
      if t ~= nil and not np[name] then out[#out + 1] = { pre .. name, t } end
    end
  end
  return out
end

--- {dotted_name = tensor} of parameters and persistent buffers. The tensors are detached views
-- sharing storage with the module's (keep_vars = true returns the registered tensors themselves).
function Module:state_dict(keep_vars)
  local sd = {}
  for _, e in ipairs(self:named_state()) do sd[e[1]] = keep_vars and e[2] or e[2]:detach() end
  return sd
end

--- The ordered list of state_dict keys.
function Module:state_dict_keys()
  local keys = {}
  for _, e in ipairs(self:named_state()) do keys[#keys + 1] = e[1] end
  return keys
end

local function shape_str(t)
  local s = t.shape
  return "{" .. table.concat(s, ", ") .. "}"
end

local function same_shape(a, b)
  local sa, sb = a.shape, b.shape
  if #sa ~= #sb then return false end
  for i = 1, #sa do
    if sa[i] ~= sb[i] then return false end
  end
  return true
end

--- Copies the values of sd (dotted name -> tensor) into the registered tensors, in place.
-- opts.strict (default true): every key of the model must be present and no other key may be.
-- A shape mismatch is always an error. dtypes and devices are converted to the model's.
-- Returns {missing_keys = {...}, unexpected_keys = {...}}.
function Module:load_state_dict(sd, opts)
  if type(sd) ~= "table" then error("load_state_dict: expected a table of name -> tensor", 2) end
  local strict = true
  if type(opts) == "table" and opts.strict ~= nil then strict = opts.strict end
  if type(opts) == "boolean" then strict = opts end
  local entries = self:named_state()
  local expected = {}
  for _, e in ipairs(entries) do expected[e[1]] = e[2] end
  local missing, unexpected, mismatched, problems = {}, {}, {}, {}
  for _, e in ipairs(entries) do
    local src = sd[e[1]]
    if src == nil then
      missing[#missing + 1] = e[1]
    elseif not is_tensor(src) then
      mismatched[#mismatched + 1] = string.format("%s: the value is a %s, not a tensor", e[1], type(src))
    elseif not same_shape(src, e[2]) then
      mismatched[#mismatched + 1] = string.format(
        "size mismatch for %s: copying a param with shape %s from checkpoint, the shape in current model is %s.",
        e[1], shape_str(src), shape_str(e[2]))
    end
  end
  for k in pairs(sd) do
    if expected[k] == nil then unexpected[#unexpected + 1] = tostring(k) end
  end
  table.sort(unexpected)
  local function quoted(list)
    local q = {}
    for i, k in ipairs(list) do q[i] = '"' .. k .. '"' end
    return table.concat(q, ", ")
  end
  if strict then
    if #unexpected > 0 then problems[#problems + 1] = "Unexpected key(s) in state_dict: " .. quoted(unexpected) .. "." end
    if #missing > 0 then problems[#problems + 1] = "Missing key(s) in state_dict: " .. quoted(missing) .. "." end
  end
  for _, m in ipairs(mismatched) do problems[#problems + 1] = m end
  if #problems > 0 then
    error(string.format("Error(s) in loading state_dict for %s:\n\t%s", self:type_name(), table.concat(problems, "\n\t")), 2)
  end
  cocola.no_grad(function()
    for _, e in ipairs(entries) do
      local src, dst = sd[e[1]], e[2]
      if src ~= nil then
        if src:device() ~= dst:device() then src = src:to(dst:device()) end
        if src:dtype() ~= dst:dtype() then src = src:to(dst:dtype()) end
        dst:copy_(src)
      end
    end
  end)
  return { missing_keys = missing, unexpected_keys = unexpected }
end

-- ---- conversions --------------------------------------------------------------------------
local FLOAT = { float32 = true, float64 = true }

local function convert(t, fn)
  local n = fn(t)
  if n == nil or n == t then return t end
  if t:requires_grad() then n:requires_grad(true) end
  local g = t.grad
  if g ~= nil then n.grad = fn(g) or g end
  return n
end

-- replaces every parameter and buffer t of every module by fn(t) (or keeps t when fn returns nil)
function Module:_apply(fn)
  for _, m in ipairs(self:modules()) do
    for _, s in ipairs({ rawget(m, "__params"), rawget(m, "__buffers") }) do
      for _, name in ipairs(s.names) do
        local t = s.values[name]
        if t ~= nil then s.values[name] = convert(t, fn) end
      end
    end
  end
  return self
end

--- m:to("float64" | "float32" | "cpu" | "cuda"): converts floating parameters and buffers (int64
-- buffers such as num_batches_tracked keep their dtype; devices move everything). The module's
-- fields then hold the new tensors; create optimisers after converting. Returns self.
function Module:to(what)
  if FLOAT[what] then
    return self:_apply(function(t)
      if FLOAT[t:dtype()] and t:dtype() ~= what then return t:detach():to(what) end
    end)
  elseif what == "cpu" or (type(what) == "string" and what:sub(1, 4) == "cuda") then
    local dev = what == "cpu" and "cpu" or "cuda"
    return self:_apply(function(t)
      if t:device() ~= dev then return t:detach():to(dev) end
    end)
  end
  error("Module:to: expected a floating dtype (float32, float64) or a device (cpu, cuda), got " .. tostring(what), 2)
end

function Module:float() return self:to("float32") end
function Module:double() return self:to("float64") end
function Module:cuda() return self:to("cuda") end
function Module:cpu() return self:to("cpu") end

-- ---- printing -----------------------------------------------------------------------------
--- One-line description of the module's own settings (subclasses override).
function Module:extra_repr() return "" end

local function add_indent(s, n)
  local pad = string.rep(" ", n)
  return (s:gsub("\n", "\n" .. pad))
end

function Module:__tostring()
  local extra = self:extra_repr() or ""
  local extra_lines, child_lines = {}, {}
  if extra ~= "" then
    for line in (extra .. "\n"):gmatch("(.-)\n") do extra_lines[#extra_lines + 1] = line end
  end
  for _, nm in ipairs(self:named_children()) do
    child_lines[#child_lines + 1] = "(" .. nm[1] .. "): " .. add_indent(tostring(nm[2]), 2)
  end
  local main = self:type_name() .. "("
  if #extra_lines == 1 and #child_lines == 0 then
    main = main .. extra_lines[1]
  elseif #extra_lines + #child_lines > 0 then
    local lines = {}
    for _, l in ipairs(extra_lines) do lines[#lines + 1] = l end
    for _, l in ipairs(child_lines) do lines[#lines + 1] = l end
    main = main .. "\n  " .. table.concat(lines, "\n  ") .. "\n"
  end
  return main .. ")"
end

--- Python-style rendering of settings for extra_repr: booleans True/False, nil None, tables as tuples.
function Module.pyrepr(v)
  if v == nil then return "None" end
  if v == true then return "True" end
  if v == false then return "False" end
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = Module.pyrepr(x) end
    if #parts == 1 then return "(" .. parts[1] .. ",)" end
    return "(" .. table.concat(parts, ", ") .. ")"
  end
  if math.type(v) == "float" then
    if v == math.floor(v) and math.abs(v) < 1e16 then return string.format("%.1f", v) end
    return string.format("%.12g", v)
  end
  return tostring(v)
end

setmetatable(Module, { __call = class_call, __tostring = function() return "class Module" end })

return Module
