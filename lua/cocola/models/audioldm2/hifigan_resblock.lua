-- cocola.models.audioldm2.hifigan_resblock — HifiGanResidualBlock of transformers' modeling_speecht5.py
-- (the HiFi-GAN "ResBlock1"): for each dilation d of the list,
--   h = h + convs2[i](leaky_relu(convs1[i](leaky_relu(h, slope)), slope))
-- convs1[i]: Conv1d(C, C, k, dilation d, padding (k*d - d)//2); convs2[i]: Conv1d(C, C, k, dilation 1,
-- padding (k-1)//2). Shapes: (B, C, L) -> (B, C, L). State-dict names: convs1.{i}.{weight,bias},
-- convs2.{i}.{weight,bias} (plain weights; weight-norm checkpoints are not read).
local Module = require "cocola.nn.Module"
local ModuleList = require "cocola.nn.ModuleList"
local Conv1d = require "cocola.nn.Conv1d"

local HifiGanResidualBlock = Module:extend("HifiGanResidualBlock")

local function get_padding(kernel_size, dilation) return (kernel_size * dilation - dilation) // 2 end

--- HifiGanResidualBlock(channels, kernel_size = 3, dilation = {1, 3, 5}, leaky_relu_slope = 0.1)
function HifiGanResidualBlock:init(channels, kernel_size, dilation, leaky_relu_slope)
  kernel_size = kernel_size or 3
  dilation = dilation or { 1, 3, 5 }
  self.leaky_relu_slope = leaky_relu_slope or 0.1
  self.convs1 = ModuleList()
  self.convs2 = ModuleList()
  for _, d in ipairs(dilation) do
    self.convs1:append(Conv1d(channels, channels, kernel_size, { dilation = d, padding = get_padding(kernel_size, d) }))
  end
  for _ = 1, #dilation do
    self.convs2:append(Conv1d(channels, channels, kernel_size, { padding = get_padding(kernel_size, 1) }))
  end
end

function HifiGanResidualBlock:forward(h)
  local slope = self.leaky_relu_slope
  for i = 1, #self.convs1 do
    local residual = h
    h = self.convs1[i](h:leaky_relu(slope))
    h = self.convs2[i](h:leaky_relu(slope))
    h = h + residual
  end
  return h
end

return HifiGanResidualBlock
