-- cocola.models.cocola.FrameEncoder — the encoder of the chroma-onset COCOLA model: a stack of
-- dilated temporal convolutions over per-frame features that keeps the time axis, then a per-frame
-- LayerNorm and tanh. (N, in_channels, 1, T) -> (N, T * dim): the frame embeddings e_1 .. e_T
-- (each of size dim) laid out one after the other, as FrameBilinearSimilarity reads them.
--
-- Layers: `input` Conv2d(in_channels -> width, 1 x 5), then `blocks` residual units
-- x + Conv2d(width -> width, 1 x 5, dilation 2^i) after GELU, then GELU and `output`
-- Conv2d(width -> dim, 1 x 1), `norm` LayerNorm(dim) over each frame, tanh.
-- The receptive field is 1 + 4 (1 + 2 + 4 + ... + 2^blocks) frames (125 frames, 4 s, for 4 blocks).
--
-- prior = true appends to each frame's learned embedding the input frame itself, scaled per window
-- (no parameters): the first 12 channels (chroma) divided by the norm of their window average, the
-- other 4 (onset envelopes) centred over the window and divided by their root mean square over the
-- window's frames. A bilinear form on these prior channels can then state the chroma-onset baseline
-- (cosine of average chroma, correlation of onset envelopes); the frame size becomes dim + 16.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local ModuleList = require "cocola.nn.ModuleList"
local chroma_onset = require "cocola.baselines.chroma_onset"
local Conv2d = require "cocola.nn.Conv2d"
local LayerNorm = require "cocola.nn.LayerNorm"

local FrameEncoder = Module:extend("FrameEncoder")

local function positive_integer(v, what)
  if math.type(v) ~= "integer" or v < 1 then error("FrameEncoder: " .. what .. " must be a positive integer", 4) end
  return v
end

FrameEncoder.PRIOR_CHROMA = 12 -- prior channels: 12 chroma, the rest onset envelopes
FrameEncoder.PRIOR_EPS = 1e-4   -- window norms below this: a zero prior (silent or flat), never NaN

--- FrameEncoder{in_channels = 16, width = 64, dim = 32, blocks = 4, prior = false}
function FrameEncoder:init(opts)
  opts = opts or {}
  self.prior = opts.prior == true
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
  self.frame_size = self.dim + (self.prior and self.in_channels or 0)
  if self.prior and self.in_channels <= FrameEncoder.PRIOR_CHROMA then
    error("FrameEncoder: prior needs 12 chroma channels and at least one onset channel", 3)
  end
end

-- x scaled by 1 / norm (per row of `norm`), rows with a norm below PRIOR_EPS zeroed
local function scaled(x, norm) return x * chroma_onset.inverse_or_zero(norm, FrameEncoder.PRIOR_EPS) end

-- (N, C, 1, T) input frames -> (N, T, C) prior channels, scaled per window as described at the top
local function prior_frames(x)
  local n, c, t = x:size(1), x:size(2), x:size(4)
  local k = FrameEncoder.PRIOR_CHROMA
  local f = x:reshape({ n, c, t })
  local chroma = f:narrow(2, 1, k)
  local avg = chroma:mean(3, true)                                     -- (N, 12, 1)
  chroma = scaled(chroma, (avg * avg):sum(2, true):sqrt())
  local onset = f:narrow(2, k + 1, c - k)
  onset = onset - onset:mean(3, true)
  onset = scaled(onset, (onset * onset):sum(2, true):mean(3, true):sqrt())
  return cocola.cat({ chroma, onset }, 2):transpose(2, 3)
end

--- (N, in_channels, 1, T) features -> (N, T * frame_size) frame embeddings (learned part in [-1, 1])
function FrameEncoder:forward(x)
  if x:dim() ~= 4 or x:size(2) ~= self.in_channels or x:size(3) ~= 1 then
    error(string.format("FrameEncoder: expected features (N, %d, 1, frames), got %s", self.in_channels, x:shape_string()), 3)
  end
  local h = self.input(x)
  for _, conv in ipairs(self.blocks) do h = h + conv(h:gelu()) end
  local e = self.output(h:gelu())                           -- (N, dim, 1, T)
  local n, t = e:size(1), e:size(4)
  e = self.norm(e:reshape({ n, self.dim, t }):transpose(2, 3)):tanh() -- (N, T, dim)
  if self.prior then e = cocola.cat({ e, prior_frames(x) }, 3) end
  return e:contiguous():reshape({ n, t * self.frame_size })
end

function FrameEncoder:extra_repr()
  return string.format("in_channels=%d, width=%d, dim=%d, blocks=%d%s", self.in_channels, self.width, self.dim,
    #self.blocks, self.prior and ", prior=true" or "")
end

return FrameEncoder
