-- cocola.models.cocola.FrameBilinearSimilarity — the similarity of the chroma-onset COCOLA model, over
-- frame embeddings x = (x_1 .. x_T), y = (y_1 .. y_T) (each of size dim, laid out as (N, T * dim)):
--     sim(x, y) = (1 / T) sum_t x_t^T W y_t  +  mean(x)^T V mean(y)
-- the first term compares the two windows frame by frame (what sounds at the same time: a shifted
-- or transposed accompaniment loses it), the second their averages (key and texture over the window).
-- Parameters `w` and `v` (dim x dim, N(0, 0.05) as the COCOLA bilinear W). Batch form: (K, T dim)
-- anchors and (K', T dim) positives -> K x K' (rows anchors, columns positives); pairwise -> (B).
-- Like BilinearSimilarity, forward skips a leading Module argument (model:similarity(a, b)).
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local init = require "cocola.nn.init_weights"

local FrameBilinearSimilarity = Module:extend("FrameBilinearSimilarity")

--- FrameBilinearSimilarity(dim, {std = 0.05, dtype = "float32"})
function FrameBilinearSimilarity:init(dim, opts)
  opts = opts or {}
  if math.type(dim) ~= "integer" or dim < 1 then error("FrameBilinearSimilarity: dim must be a positive integer", 3) end
  self.dim = dim
  for _, name in ipairs({ "w", "v" }) do
    local p = cocola.zeros({ dim, dim }, { dtype = opts.dtype or "float32" })
    init.normal_(p, 0, opts.std or 0.05)
    self:register_parameter(name, p:requires_grad(true))
  end
end

-- (N, T dim) -> number of frames T; errors name the problem
local function frames_of(self, t, what)
  if not cocola.is_tensor(t) then error("similarity: " .. what .. " must be a tensor", 4) end
  if t:dim() ~= 2 or t:size(2) % self.dim ~= 0 then
    error(string.format("similarity: %s must be frame embeddings (N, frames x %d), got %s", what, self.dim,
      t:shape_string()), 4)
  end
  return t:size(2) // self.dim
end

local function check_pair(self, x, y, wx, wy)
  local tx, ty = frames_of(self, x, wx), frames_of(self, y, wy)
  if tx ~= ty then
    error(string.format("similarity: %s and %s have different numbers of frames (%d and %d); use equal windows",
      wx, wy, tx, ty), 4)
  end
  return tx
end

-- (N, T dim) -> (N, dim) frame average
local function average(x, t, dim) return x:reshape({ x:size(1), t, dim }):mean(2) end

--- (x (K, T dim), y (K', T dim)) -> (K, K')
function FrameBilinearSimilarity:forward(x, y, z)
  if Module.is_module(x) then x, y = y, z end
  local t = check_pair(self, x, y, "anchors", "positives")
  local d = self.dim
  -- y_t W^T for every frame, so that x . (y W^T) sums x_t^T W y_t
  local yw = y:reshape({ y:size(1) * t, d }):matmul(self.w:t()):reshape({ y:size(1), t * d })
  local framewise = x:matmul(yw:t()) * (1 / t)
  local pooled = average(x, t, d):matmul(self.v:matmul(average(y, t, d):t()))
  return framewise + pooled
end

--- (x (B, T dim), y (B, T dim)) -> (B): the pairwise similarities (the diagonal, not the matrix)
function FrameBilinearSimilarity:pairwise(x, y)
  local t = check_pair(self, x, y, "x", "y")
  if x:size(1) ~= y:size(1) then
    error(string.format("similarity: expected as many rows in x and y, got %d and %d", x:size(1), y:size(1)), 2)
  end
  local d, b = self.dim, x:size(1)
  local framewise = (x:reshape({ b * t, d }):matmul(self.w) * y:reshape({ b * t, d })):reshape({ b, t * d }):sum(2) * (1 / t)
  local pooled = (average(x, t, d):matmul(self.v) * average(y, t, d)):sum(2)
  return framewise + pooled
end

function FrameBilinearSimilarity:extra_repr() return "dim=" .. self.dim end

return FrameBilinearSimilarity
