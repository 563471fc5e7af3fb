-- cocola.models.audioldm2.transformer2d — diffusers' Transformer2DModel on continuous inputs with conv
-- projections (use_linear_projection = false): GroupNorm (eps 1e-6) -> proj_in 1x1 -> tokens (B, HW, C)
-- -> num_layers BasicTransformerBlocks -> back to (B, C, H, W) -> proj_out 1x1 -> + input.
local nn = require "cocola.nn"
local BasicTransformerBlock = require "cocola.models.audioldm2.basic_transformer_block"

local Transformer2DModel = nn.Module:extend("Transformer2DModel")

--- Transformer2DModel(heads, dim_head, in_channels, {num_layers = 1, cross_attention_dim = n | nil,
--- norm_num_groups = 32})
function Transformer2DModel:init(heads, dim_head, in_channels, opts)
  opts = opts or {}
  local inner = heads * dim_head
  self.in_channels = in_channels
  self.cross_attention_dim = opts.cross_attention_dim
  self.norm = nn.GroupNorm(opts.norm_num_groups or 32, in_channels, { eps = 1e-6 })
  self.proj_in = nn.Conv2d(in_channels, inner, 1)
  local blocks = {}
  for i = 1, opts.num_layers or 1 do
    blocks[i] = BasicTransformerBlock(inner, heads, dim_head, { cross_attention_dim = opts.cross_attention_dim })
  end
  self.transformer_blocks = nn.ModuleList(blocks)
  self.proj_out = nn.Conv2d(inner, in_channels, 1)
end

--- forward(x (B, C, H, W), context (B, S, cross_attention_dim) or nil, mask (B, 1, S) bias or nil)
function Transformer2DModel:forward(x, context, mask)
  local B, H, W = x:size(1), x:size(3), x:size(4)
  local h = self.proj_in(self.norm(x))
  local inner = h:size(2)
  h = h:permute(1, 3, 4, 2):reshape({ B, H * W, inner })
  for _, block in ipairs(self.transformer_blocks) do h = block(h, context, mask) end
  h = h:reshape({ B, H, W, inner }):permute(1, 4, 2, 3)
  return self.proj_out(h) + x
end

return Transformer2DModel
