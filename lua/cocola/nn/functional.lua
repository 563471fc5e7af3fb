-- cocola.nn.functional — layer ops with torch.nn.functional's names and argument order; options
-- go in a trailing table. Dims are 1-based (dim 2 of an NCHW tensor is C).
local core = require "cocola.core"

local F = {}

F.conv2d = core.conv2d                           -- (x, w, b, {stride, padding, dilation, groups})
F.batch_norm = core.batch_norm                   -- (x, running_mean, running_var, weight, bias, training, momentum, eps)
F.layer_norm = core.layer_norm                   -- (x, normalized_shape, weight, bias, eps)
F.linear = core.linear                           -- (x, weight, bias)
F.pad = core.pad                                 -- (x, {left, right, top, bottom}, value)
F.adaptive_avg_pool2d = core.adaptive_avg_pool2d -- (x, size | {h, w})
F.cross_entropy = core.cross_entropy             -- (logits (N,C), targets int64 (N), 0-based classes)

function F.dropout(x, p, training)
  if training == nil then training = true end
  return core.dropout(x, p or 0.5, training)
end

function F.relu(x) return x:relu() end
function F.silu(x) return x:silu() end
function F.sigmoid(x) return x:sigmoid() end
function F.tanh(x) return x:tanh() end
function F.gelu(x) return x:gelu() end
function F.softmax(x, dim) return x:softmax(dim) end
function F.log_softmax(x, dim) return x:log_softmax(dim) end

return F
