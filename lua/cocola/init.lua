-- cocola — tensors with autograd (C core), exposed to Lua 5.4. This file assembles the module:
-- the C functions of cocola.core, the Lua-side tensor methods, grad-mode helpers, safetensors
-- I/O, and lazily loaded submodules (nn, optim, models, baselines, plot, ...).
local core = require "cocola.core"

local cocola = {}
package.loaded["cocola"] = cocola -- submodules may require "cocola" while this file runs

for name, fn in pairs(core) do
  if type(name) == "string" and name:sub(1, 1) ~= "_" and name:sub(1, 6) ~= "audio_" then cocola[name] = fn end
end
cocola.Tensor = core.Tensor -- the methods table shared by every tensor
cocola.version = "scm"

--- Runs fn(...) with gradient recording off and returns its results (errors pass through).
function cocola.no_grad(fn, ...)
  local was = core.set_grad_enabled(false)
  local results = table.pack(pcall(fn, ...))
  core.set_grad_enabled(was)
  if not results[1] then error(results[2], 0) end
  return table.unpack(results, 2, results.n)
end

--- Like no_grad, with recording on.
function cocola.enable_grad(fn, ...)
  local was = core.set_grad_enabled(true)
  local results = table.pack(pcall(fn, ...))
  core.set_grad_enabled(was)
  if not results[1] then error(results[2], 0) end
  return table.unpack(results, 2, results.n)
end

require "cocola.tensor"

--- cocola.split(t, size_or_sizes, dim)
--- to_f32(x): the Lua number rounded to the nearest float32 (for arithmetic that must round as PyTorch's
-- float32 scalars do)
function cocola.to_f32(x) return (string.unpack("<f", string.pack("<f", x))) end

function cocola.split(t, size, dim) return t:split(size, dim) end

local serialize = require "cocola.serialize"
cocola.load = serialize.load
cocola.save = serialize.save
cocola.open_safetensors = serialize.open

-- submodules load on first use
local lazy = {
  nn = "cocola.nn", optim = "cocola.optim", cuda = "cocola.cuda", audio = "cocola.audio",
  data = "cocola.data", models = "cocola.models", metrics = "cocola.metrics",
  baselines = "cocola.baselines", schedulers = "cocola.schedulers", plot = "cocola.plot",
}
setmetatable(cocola, {
  __index = function(t, key)
    local name = lazy[key]
    if name then
      local m = require(name)
      rawset(t, key, m)
      return m
    end
  end,
})

return cocola
