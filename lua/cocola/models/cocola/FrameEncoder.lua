-- cocola.models.cocola.FrameEncoder — the encoder of the chroma-onset COCOLA model: a stack of
-- dilated temporal convolutions over per-frame features that keeps the time axis, then a per-frame
-- LayerNorm and tanh. (N, in_channels, 1, T) -> (N, T * dim): the frame embeddings e_1 .. e_T
-- (each of size dim) laid out one after the other, as FrameBilinearSimilarity reads them.
--
-- Layers: `input` Conv2d(in_channels -> width, 1 x 5), then `blocks` residual units
-- x + Conv2d(width -> width, 1 x 5, dilation 2^i) after GELU, then GELU and `output`
-- Conv2d(width -> dim, 1 x 1), `norm` LayerNorm(dim) over each frame, tanh.
-- The receptive field is 1 + 4 (1 + 2 + 4 + ... + 2^blocks) frames (125 frames, 4 s, for 4 blocks).
local Module = require "cocola.nn.Module"
local ModuleList = require "cocola.nn.ModuleList"
local Conv2d = require "cocola.nn.Conv2d"
local LayerNorm = require "cocola.nn.LayerNorm"

local FrameEncoder = Module:extend("FrameEncoder")

local function positive_integer(v, what)
  if math.type(v) ~= "integer" or v < 1 then error("FrameEncoder: " .. what .. " must be a positive integer", 4) end
  return v
end

--- FrameEncoder{in_channels = 16, width = 64, dim = 32, blocks = 4}
function FrameEncoder:init(opts)
  opts = opts or {}
  self.in_channels = positive_integer(opts.in_channels or 16, "in_channels")
  self.width = positive_integer(opts.width or 64, "width")
  self.dim = positive_integer(opts.dim or 32, "dim")
  local blocks = opts.blocks or 4
  if math.type(blocks) ~= "integer" or blocks < 0 then error("FrameEncoder: blocks must be a non-negative integer", 3) end
  self.input = Conv2d(self.in_channels, self.width, { 1, 5 }, { padding = { 0, 2 } })
  local list = {}
  for i = 1, blocks do
    local dilation = 1 << i
    list[i] = Conv2d(self.width, self.width, { 1, 5 }, { padding = { 0, 2 * dilation }, dilation = { 1, dilation } })
  end
  self.blocks = ModuleList(list)
  self.output = Conv2d(self.width, self.dim, 1)
  self.norm = LayerNorm(self.dim)
end

--- (N, in_channels, 1, T) features -> (N, T * dim) frame embeddings in [-1, 1]
function FrameEncoder:forward(x)
  if x:dim() ~= 4 or x:size(2) ~= self.in_channels or x:size(3) ~= 1 then
    error(string.format("FrameEncoder: expected features (N, %d, 1, frames), got %s", self.in_channels, x:shape_string()), 3)
  end
  local h = self.input(x)
  for _, conv in ipairs(self.blocks) do h = h + conv(h:gelu()) end
  local e = self.output(h:gelu())                           -- (N, dim, 1, T)
  local n, t = e:size(1), e:size(4)
  e = e:reshape({ n, self.dim, t }):transpose(2, 3)          -- (N, T, dim)
  return self.norm(e):tanh():contiguous():reshape({ n, t * self.dim })
end

function FrameEncoder:extra_repr()
  return string.format("in_channels=%d, width=%d, dim=%d, blocks=%d", self.in_channels, self.width, self.dim, #self.blocks)
end

return FrameEncoder
