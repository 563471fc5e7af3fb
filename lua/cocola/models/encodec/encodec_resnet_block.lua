-- cocola.models.encodec.encodec_resnet_block — transformers 4.38.2's EncodecResnetBlock (SEANet's residual
-- block): block = [ELU, EncodecConv1d(dim -> dim // compress, residual_kernel_size, dilation d),
-- ELU, EncodecConv1d(dim // compress -> dim, 1)], and y = shortcut(x) + block(x) with shortcut a 1x1
-- EncodecConv1d when use_conv_shortcut, else the identity (true skip).
-- State-dict names: block.1.conv.*, block.3.conv.* (and block.{1,3}.norm.* for time_group_norm),
--   shortcut.conv.* (shortcut.norm.*) when use_conv_shortcut.
-- forward(x (N, dim, L)) -> (N, dim, L).
local nn = require "cocola.nn"
local EncodecConv1d = require "cocola.models.encodec.encodec_conv1d"

local EncodecResnetBlock = nn.Module:extend("EncodecResnetBlock")

--- EncodecResnetBlock(c, dim, dilations = {d, 1})
function EncodecResnetBlock:init(c, dim, dilations)
  local hidden = dim // c.compress
  self.block = nn.ModuleList({
    nn.ELU(), EncodecConv1d(c, dim, hidden, c.residual_kernel_size, 1, dilations[1]),
    nn.ELU(), EncodecConv1d(c, hidden, dim, 1, 1, dilations[2]),
  })
  if c.use_conv_shortcut then
    self.shortcut = EncodecConv1d(c, dim, dim, 1)
  else
    self.shortcut = nn.Identity()
  end
end

function EncodecResnetBlock:forward(x)
  local h = x
  for i = 1, #self.block do h = self.block[i](h) end
  return self.shortcut(x) + h
end

return EncodecResnetBlock
