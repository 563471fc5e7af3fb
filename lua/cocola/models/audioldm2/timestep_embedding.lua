-- cocola.models.audioldm2.timestep_embedding — diffusers' sinusoidal Timesteps and TimestepEmbedding:
-- sinusoids(t (B), dim) = [cos(t f_k), sin(t f_k)] (flip_sin_to_cos) or [sin, cos], f_k = exp(-ln(10000) k /
-- (dim/2 - shift)), k < dim/2, computed in float32 as diffusers does; TimestepEmbedding: linear_1 -> SiLU ->
-- linear_2. (B) -> (B, dim) -> (B, time_embed_dim).
local cocola = require "cocola"
local nn = require "cocola.nn"

local TimestepEmbedding = nn.Module:extend("TimestepEmbedding")

--- TimestepEmbedding(in_channels, time_embed_dim)
function TimestepEmbedding:init(in_channels, time_embed_dim)
  self.linear_1 = nn.Linear(in_channels, time_embed_dim)
  self.linear_2 = nn.Linear(time_embed_dim, time_embed_dim)
end

function TimestepEmbedding:forward(x)
  return self.linear_2(self.linear_1(x):silu())
end

--- TimestepEmbedding.sinusoids(t (B) float tensor, dim, {flip_sin_to_cos = true, shift = 0}) -> (B, dim)
function TimestepEmbedding.sinusoids(t, dim, opts)
  opts = opts or {}
  local half = dim // 2
  local shift = opts.shift or 0
  local k = cocola.arange(0, half, 1, { dtype = "float32" })
  -- (-ln(10000) k) / (half - shift) with a true float32 division, as torch rounds it
  local exponent = (k * -math.log(10000)) / cocola.full({ 1 }, half - shift, { dtype = "float32" })
  local freqs = exponent:exp():to(t:device())
  local args = t:to("float32"):reshape({ t:size(1), 1 }) * freqs:reshape({ 1, half })
  local sin, cos = args:sin(), args:cos()
  local emb = opts.flip_sin_to_cos == false and cocola.cat({ sin, cos }, 2) or cocola.cat({ cos, sin }, 2)
  if dim % 2 == 1 then emb = require("cocola.nn.functional").pad(emb, { 0, 1 }) end
  return emb
end

return TimestepEmbedding
