-- cocola.nn.checkpoint — activation checkpointing: y = checkpoint(fn, ...) runs fn(...) without keeping
-- its intermediate activations; during backward fn runs again (with the random state it had, so dropout
-- masks repeat) and its gradient flows to the tensor arguments and to the parameters fn uses. Memory of
-- a block drops from all its activations to its inputs and output, for one extra forward per backward.
-- fn must return one tensor; its tensor arguments (at most 7) may require grad or not; non-tensor
-- arguments pass through. Parameters used inside fn must not also be used outside it in the same graph.
local cocola = require "cocola"
local core = require "cocola.core"

local ANCHOR = cocola.zeros({}):requires_grad(true)

local function checkpoint(fn, ...)
  if type(fn) ~= "function" and not (type(fn) == "table" and getmetatable(fn) and getmetatable(fn).__call) then
    error("checkpoint: expected a function or a module, got " .. type(fn), 2)
  end
  local args = table.pack(...)
  if not core.is_grad_enabled() then return fn(...) end
  local tensors, positions = {}, {}
  for i = 1, args.n do
    if core.is_tensor(args[i]) then
      tensors[#tensors + 1] = args[i]
      positions[#positions + 1] = i
    end
  end
  if #tensors > 7 then error("checkpoint: at most 7 tensor arguments, got " .. #tensors, 2) end
  -- parameters inside fn are not arguments: a leaf that requires grad keeps the node even when no
  -- argument does, so their gradients are not lost (it gets none itself)
  local any = false
  for _, t in ipairs(tensors) do any = any or t:requires_grad() end
  local node_inputs = tensors
  if not any then
    node_inputs = { table.unpack(tensors) }
    node_inputs[#node_inputs + 1] = ANCHOR
  end
  local seed, offset = core.get_rng_state()
  local out = cocola.no_grad(fn, ...)
  if not core.is_tensor(out) then error("checkpoint: the function must return one tensor", 2) end
  return core.function_node(out, node_inputs, function(grad_out)
    local replay = table.pack(table.unpack(args, 1, args.n))
    local leaves = {}
    for k, i in ipairs(positions) do
      local a = args[i]
      leaves[k] = a:detach()
      if a:requires_grad() then leaves[k]:requires_grad(true) end
      replay[i] = leaves[k]
    end
    local now_seed, now_offset = core.get_rng_state()
    core.set_rng_state(seed, offset)
    local y = cocola.enable_grad(fn, table.unpack(replay, 1, replay.n))
    core.set_rng_state(now_seed, now_offset)
    if y:requires_grad() then y:backward(grad_out) end
    local grads = {}
    for k = 1, #leaves do grads[k] = leaves[k].grad end
    return table.unpack(grads, 1, #leaves)
  end, "CheckpointBackward")
end

return checkpoint
