-- cocola.nn — neural-network layers (one class per file in this folder), the functional ops
-- (nn.functional) and weight initialisations (nn.init).
local nn = {}

nn.Module = require "cocola.nn.Module"
nn.functional = require "cocola.nn.functional"
nn.init = require "cocola.nn.init_weights"
nn.checkpoint = require "cocola.nn.checkpoint"

for _, name in ipairs({
  "Sequential", "ModuleList", "Linear", "Conv2d", "BatchNorm2d", "LayerNorm", "Dropout", "SiLU", "ReLU",
  "Sigmoid", "Tanh", "GELU", "Identity", "Flatten", "AdaptiveAvgPool2d", "ZeroPad2d", "GroupNorm", "Conv1d",
  "ConvTranspose1d", "ConvTranspose2d", "LeakyReLU", "ELU", "Upsample", "Embedding", "MaxPool2d",
}) do
  nn[name] = require("cocola.nn." .. name)
end

return nn
