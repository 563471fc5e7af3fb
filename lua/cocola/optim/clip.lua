-- cocola.optim.clip — gradient clipping as torch.nn.utils.clip_grad_norm_ (norm_type 2): the total L2 norm
-- over every gradient of the list; when max_norm / (norm + 1e-6) < 1 every gradient is scaled by it.
local cocola = require "cocola"

local M = {}

--- clip_grad_norm(params (list of tensors or a Module), max_norm) -> total norm (before clipping; a number)
function M.clip_grad_norm(params, max_norm)
  if type(params) == "table" and type(params.parameters) == "function" then params = params:parameters() end
  if cocola.is_tensor(params) then params = { params } end
  if type(params) ~= "table" then error("clip_grad_norm: expected a list of tensors or a Module", 2) end
  if type(max_norm) ~= "number" or max_norm ~= max_norm or max_norm < 0 then
    error("clip_grad_norm: max_norm must be a non-negative number", 2)
  end
  local sq = 0.0
  for i, p in ipairs(params) do
    if not cocola.is_tensor(p) then error(string.format("clip_grad_norm: parameter %d is not a tensor", i), 2) end
    local g = p.grad
    if g ~= nil then
      local n = cocola.no_grad(function() return g:double():pow(2):sum():item() end)
      sq = sq + n
    end
  end
  local total = math.sqrt(sq)
  local scale = max_norm / (total + 1e-6)
  if scale < 1 then
    cocola.no_grad(function()
      for _, p in ipairs(params) do
        if p.grad ~= nil then p.grad = p.grad * scale end
      end
    end)
  end
  return total
end

return M
