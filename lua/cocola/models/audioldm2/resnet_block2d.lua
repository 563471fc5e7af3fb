-- cocola.models.audioldm2.resnet_block2d — diffusers' ResnetBlock2D (the "default" time-scale-shift
-- form): GroupNorm -> SiLU -> conv3x3 [+ time_emb_proj(SiLU(temb)) per channel] -> GroupNorm -> SiLU ->
-- conv3x3, plus the input (through a 1x1 conv_shortcut when the channel count changes), divided by
-- output_scale_factor. x (B, in, H, W), temb (B, temb_channels) or nil -> (B, out, H, W).
local nn = require "cocola.nn"

local ResnetBlock2D = nn.Module:extend("ResnetBlock2D")

--- ResnetBlock2D(in_channels, out_channels, {temb_channels = n | nil, groups = 32, eps = 1e-6,
--- output_scale_factor = 1})
function ResnetBlock2D:init(in_channels, out_channels, opts)
  opts = opts or {}
  local groups, eps = opts.groups or 32, opts.eps or 1e-6
  self.in_channels, self.out_channels = in_channels, out_channels
  self.output_scale_factor = opts.output_scale_factor or 1
  self.norm1 = nn.GroupNorm(groups, in_channels, { eps = eps })
  self.conv1 = nn.Conv2d(in_channels, out_channels, 3, { padding = 1 })
  if opts.temb_channels then self.time_emb_proj = nn.Linear(opts.temb_channels, out_channels) end
  self.norm2 = nn.GroupNorm(groups, out_channels, { eps = eps })
  self.conv2 = nn.Conv2d(out_channels, out_channels, 3, { padding = 1 })
  if in_channels ~= out_channels then self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) end
end

function ResnetBlock2D:forward(x, temb)
  local h = self.conv1(self.norm1(x):silu())
  if self.time_emb_proj then
    if temb == nil then error("ResnetBlock2D: this block needs a time embedding (temb)", 2) end
    local t = self.time_emb_proj(temb:silu())
    h = h + t:reshape({ t:size(1), t:size(2), 1, 1 })
  end
  h = self.conv2(self.norm2(h):silu())
  local shortcut = self.conv_shortcut and self.conv_shortcut(x) or x
  local out = shortcut + h
  if self.output_scale_factor ~= 1 then out = out * (1 / self.output_scale_factor) end
  return out
end

return ResnetBlock2D
