-- cocola.models.text.htsat_patch_merging — transformers' ClapAudioPatchMerging (Swin patch merging;
-- modeling_clap.py, transformers 4.38.2): each 2 x 2 block of the H x W grid becomes one token of the
-- concatenated channels [x(0,0), x(1,0), x(0,1), x(1,1)] (row offset first), normalised and reduced.
-- State-dict names: reduction (Linear 4 dim -> 2 dim, no bias), norm (LayerNorm 4 dim, eps 1e-5).
-- forward(x (B, H * W, dim), H, W) -> (B, ceil(H / 2) * ceil(W / 2), 2 dim); an odd H or W is zero-padded
-- at the bottom / right first, as the reference's maybe_pad.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local nn = require "cocola.nn"

local HtsatPatchMerging = Module:extend("HtsatPatchMerging")

function HtsatPatchMerging:init(dim)
  self.dim = dim
  self.reduction = nn.Linear(4 * dim, 2 * dim, { bias = false })
  self.norm = nn.LayerNorm(4 * dim)
end

function HtsatPatchMerging:forward(x, H, W)
  local B, C = x:size(1), x:size(3)
  x = x:reshape({ B, H, W, C })
  local opts = { dtype = x:dtype(), device = x:device() }
  if W % 2 == 1 then x = cocola.cat({ x, cocola.zeros({ B, H, 1, C }, opts) }, 3) W = W + 1 end
  if H % 2 == 1 then x = cocola.cat({ x, cocola.zeros({ B, 1, W, C }, opts) }, 2) H = H + 1 end
  -- (B, H/2, row offset, W/2, column offset, C)
  local g = x:reshape({ B, H // 2, 2, W // 2, 2, C })
  local function part(r, c) return g:select(5, c):select(3, r) end
  x = cocola.cat({ part(1, 1), part(2, 1), part(1, 2), part(2, 2) }, 4):reshape({ B, (H // 2) * (W // 2), 4 * C })
  return self.reduction(self.norm(x))
end

function HtsatPatchMerging:extra_repr() return string.format("dim=%d", self.dim) end

return HtsatPatchMerging
