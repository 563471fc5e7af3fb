-- cocola.nn.Embedding — a lookup table: int64 indices (...) (0-based) -> rows of weight (num_embeddings,
-- embedding_dim), giving (..., embedding_dim), as torch.nn.Embedding. weight starts N(0, 1) with the
-- padding_idx row (when given; negative counts from the end) zeroed, and that row gets no gradient.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local F = require "cocola.nn.functional"
local init = require "cocola.nn.init_weights"

local Embedding = Module:extend("Embedding")

--- Embedding(num_embeddings, embedding_dim, {padding_idx = nil, dtype = "float32"})
function Embedding:init(num_embeddings, embedding_dim, opts)
  opts = opts or {}
  if math.type(num_embeddings) ~= "integer" or num_embeddings < 0 then
    error("Embedding: num_embeddings must be a non-negative integer", 3)
  end
  if math.type(embedding_dim) ~= "integer" or embedding_dim < 0 then
    error("Embedding: embedding_dim must be a non-negative integer", 3)
  end
  local pad = opts.padding_idx
  if pad ~= nil then
    if math.type(pad) ~= "integer" or pad >= num_embeddings or pad < -num_embeddings then
      error(string.format("Embedding: padding_idx must be an integer in [-%d, %d)", num_embeddings, num_embeddings), 3)
    end
    if pad < 0 then pad = pad + num_embeddings end
  end
  self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, pad
  local w = cocola.zeros({ num_embeddings, embedding_dim }, { dtype = opts.dtype or "float32" })
  self:register_parameter("weight", w:requires_grad(true))
  self:reset_parameters()
end

function Embedding:reset_parameters()
  init.normal_(self.weight, 0, 1)
  if self.padding_idx then
    cocola.no_grad(function() self.weight:select(1, self.padding_idx + 1):fill_(0) end)
  end
end

function Embedding:forward(indices)
  if self.padding_idx then return F.embedding(indices, self.weight, { padding_idx = self.padding_idx }) end
  return F.embedding(indices, self.weight)
end

function Embedding:extra_repr()
  local s = string.format("%d, %d", self.num_embeddings, self.embedding_dim)
  if self.padding_idx then s = s .. ", padding_idx=" .. self.padding_idx end
  return s
end

return Embedding
