-- cocola.models.msdm.learned_positional_embedding — audio-diffusion-pytorch 0.0.43 LearnedPositionalEmbedding
-- (continuous time): t (B) -> [t, sin(2 pi t w), cos(2 pi t w)] (B, dim + 1), w the learned `weights` (dim / 2),
-- drawn from N(0, 1) at construction.
local cocola = require "cocola"
local nn = require "cocola.nn"

local LearnedPositionalEmbedding = nn.Module:extend("LearnedPositionalEmbedding")

--- LearnedPositionalEmbedding(dim), dim even
function LearnedPositionalEmbedding:init(dim)
  if math.type(dim) ~= "integer" or dim < 2 or dim % 2 ~= 0 then
    error(string.format("LearnedPositionalEmbedding: dim must be a positive even integer, got %s", tostring(dim)), 3)
  end
  self.dim = dim
  self.weights = cocola.randn({ dim // 2 }):requires_grad(true)
end

function LearnedPositionalEmbedding:forward(t)
  local x = t:reshape({ t:size(1), 1 })
  local freqs = x * self.weights:reshape({ 1, self.dim // 2 }) * (2 * math.pi)
  return cocola.cat({ x, freqs:sin(), freqs:cos() }, 2)
end

function LearnedPositionalEmbedding:extra_repr() return tostring(self.dim) end

return LearnedPositionalEmbedding
