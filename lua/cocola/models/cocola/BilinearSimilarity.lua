-- cocola.models.cocola.BilinearSimilarity — the COCOLA similarity sim(x, y) = x^T W y with one
-- parameter `w` (D x D, initialised N(0, 0.05) as the reference's). Batch form: (K, D) anchors x
-- and (K', D) positives y -> the K x K' matrix x W y^T (rows anchors, columns positives), computed
-- as the reference does, x (W y^T).
-- The CoCola model registers it as its submodule `similarity`, so `model:similarity(a, b)` reaches
-- this module with the parent model as first argument: forward skips a leading Module argument.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local init = require "cocola.nn.init_weights"

local BilinearSimilarity = Module:extend("BilinearSimilarity")

--- BilinearSimilarity(dim, {std = 0.05, dtype = "float32"})
function BilinearSimilarity:init(dim, opts)
  opts = opts or {}
  assert(math.type(dim) == "integer" and dim > 0, "BilinearSimilarity: dim must be a positive integer")
  self.dim = dim
  local w = cocola.zeros({ dim, dim }, { dtype = opts.dtype or "float32" })
  init.normal_(w, 0, opts.std or 0.05)
  self:register_parameter("w", w:requires_grad(true))
end

local function check(t, what, dim)
  if not cocola.is_tensor(t) then error("similarity: " .. what .. " must be a tensor", 4) end
  if t:dim() ~= 2 or t:size(2) ~= dim then
    error(string.format("similarity: %s must be (K, %d), got %s", what, dim, t:shape_string()), 4)
  end
end

--- (x (K, D), y (K', D)) -> (K, K') with entry (i, j) = x_i^T W y_j
function BilinearSimilarity:forward(x, y, z)
  if Module.is_module(x) then x, y = y, z end
  check(x, "anchors", self.dim)
  check(y, "positives", self.dim)
  return x:matmul(self.w:matmul(y:t()))
end

--- (x (B, D), y (B, D)) -> (B): the pairwise similarities x_i^T W y_i (the diagonal, not the matrix)
function BilinearSimilarity:pairwise(x, y)
  check(x, "x", self.dim)
  check(y, "y", self.dim)
  return (x:matmul(self.w) * y):sum(2)
end

function BilinearSimilarity:extra_repr() return "dim=" .. self.dim end

return BilinearSimilarity
