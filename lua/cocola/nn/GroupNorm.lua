-- cocola.nn.GroupNorm — normalisation of (N, C, *) over groups of C/num_groups channels and all
-- positions, with a per-channel affine (weight 1, bias 0 at start), as torch.nn.GroupNorm.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local F = require "cocola.nn.functional"

local GroupNorm = Module:extend("GroupNorm")

--- GroupNorm(num_groups, num_channels, {eps = 1e-5, affine = true, dtype = "float32"})
function GroupNorm:init(num_groups, num_channels, opts)
  opts = opts or {}
  if math.type(num_groups) ~= "integer" or num_groups < 1 then error("GroupNorm: num_groups must be a positive integer", 3) end
  if math.type(num_channels) ~= "integer" or num_channels < 1 then error("GroupNorm: num_channels must be a positive integer", 3) end
  if num_channels % num_groups ~= 0 then
    error(string.format("GroupNorm: num_channels (%d) must be divisible by num_groups (%d)", num_channels, num_groups), 3)
  end
  self.num_groups, self.num_channels = num_groups, num_channels
  self.eps = opts.eps or 1e-5
  self.affine = opts.affine ~= false
  local dtype = opts.dtype or "float32"
  if self.affine then
    self:register_parameter("weight", cocola.ones({ num_channels }, { dtype = dtype }):requires_grad(true))
    self:register_parameter("bias", cocola.zeros({ num_channels }, { dtype = dtype }):requires_grad(true))
  else
    self:register_parameter("weight", nil)
    self:register_parameter("bias", nil)
  end
end

function GroupNorm:forward(x)
  return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
end

function GroupNorm:extra_repr()
  local r = Module.pyrepr
  return string.format("%d, %d, eps=%s, affine=%s", self.num_groups, self.num_channels, r(self.eps + 0.0), r(self.affine))
end

return GroupNorm
