-- cocola.nn.functional — layer ops and losses with torch.nn.functional's names and argument order;
-- options go in a trailing table. Dims are 1-based (dim 2 of an NCHW tensor is C).
local core = require "cocola.core"

local F = {}

F.conv2d = core.conv2d                           -- (x, w, b, {stride, padding, dilation, groups})
F.batch_norm = core.batch_norm                   -- (x, running_mean, running_var, weight, bias, training, momentum, eps)
F.layer_norm = core.layer_norm                   -- (x, normalized_shape, weight, bias, eps)
F.linear = core.linear                           -- (x, weight, bias)
F.pad = core.pad                                 -- (x, {left, right, top, bottom}, value)
F.adaptive_avg_pool2d = core.adaptive_avg_pool2d -- (x, size | {h, w})
F.cross_entropy = core.cross_entropy             -- (logits (N,C), targets int64 (N), 0-based classes)
F.embedding = core.embedding                     -- (indices int64 (...), weight (V,D), padding_idx | {padding_idx}) -> (..., D)
F.max_pool2d = core.max_pool2d                   -- (x, kernel, {stride = kernel, padding, dilation, return_indices})
F.index_select = core.index_select               -- (x, dim, index int64 1-D, 0-based)
F.gather = core.gather                           -- (x, dim, index int64 of x's rank, 0-based)

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
function F.logsumexp(x, dim, keepdim) return x:logsumexp(dim, keepdim) end

-- ---- losses: reduction = "mean" (default) | "sum" | "none", as torch's ----
-- Every loss takes (input, target[, opts]) with opts a table ({reduction =, weight =, pos_weight =})
-- or just the reduction as a string. Unlike torch, which broadcasts a target of another shape with a
-- warning, a target must have the input's shape: (N, 1) against (N) is an error, not an N x N loss.

local function loss_options(fname, opts)
  if opts == nil then return {} end
  if type(opts) == "string" then return { reduction = opts } end
  if type(opts) ~= "table" then error(fname .. ": options must be a table or a reduction string", 3) end
  return opts
end

local function same_shape(fname, input, target)
  if not core.is_tensor(input) or not core.is_tensor(target) then
    error(fname .. ": input and target must be tensors", 3)
  end
  local a, b = input.shape, target.shape
  local same = #a == #b
  for i = 1, #a do same = same and a[i] == b[i] end
  if not same then
    error(string.format("%s: target shape %s differs from input shape %s", fname, target:shape_string(),
                        input:shape_string()), 3)
  end
end

local function reduce_loss(fname, loss, reduction)
  reduction = reduction or "mean"
  if reduction == "mean" then return loss:mean() end
  if reduction == "sum" then return loss:sum() end
  if reduction == "none" then return loss end
  error(string.format('%s: reduction must be "mean", "sum" or "none", got %s', fname, tostring(reduction)), 3)
end

--- F.mse_loss(input, target, opts): (input - target)^2, reduced
function F.mse_loss(input, target, opts)
  opts = loss_options("mse_loss", opts)
  same_shape("mse_loss", input, target)
  local d = input - target
  return reduce_loss("mse_loss", d * d, opts.reduction)
end

--- F.l1_loss(input, target, opts): |input - target|, reduced
function F.l1_loss(input, target, opts)
  opts = loss_options("l1_loss", opts)
  same_shape("l1_loss", input, target)
  return reduce_loss("l1_loss", (input - target):abs(), opts.reduction)
end

--- F.binary_cross_entropy(input, target, opts): -w (t log(x) + (1 - t) log(1 - x)) for probabilities
-- x in [0, 1], each log clamped at -100 as torch does; opts.weight (broadcast to the input) rescales.
-- The gradients are torch's: w (x - t) / max(x (1 - x), 1e-12) for the input (finite where x is 0 or 1,
-- where the clamped logs have none), w (log(1 - x) - log(x)) for the target, the unweighted loss for
-- the weight. The loss is computed off the graph and those gradients attached as
-- value + (input - value_of_input) * slope, which adds exactly 0 to the value.
function F.binary_cross_entropy(input, target, opts)
  opts = loss_options("binary_cross_entropy", opts)
  same_shape("binary_cross_entropy", input, target)
  local inside = input:ge(0):mul(input:le(1)):sum():item()
  if inside ~= input:numel() then
    error("binary_cross_entropy: every input must be a probability between 0 and 1 (use " ..
          "binary_cross_entropy_with_logits for raw scores)", 2)
  end
  local w = opts.weight
  local x, t = input:detach(), target:detach()
  local log_x, log_1mx = x:log():clamp(-100), (1 - x):log():clamp(-100)
  local unweighted = -(t * log_x + (1 - t) * log_1mx)
  local wd = w and w:detach()
  local loss = wd and unweighted * wd or unweighted
  if core.is_grad_enabled() then
    if input:requires_grad() then
      local slope = (x - t) / (x * (1 - x)):clamp(1e-12)
      loss = loss + (input - x) * (wd and slope * wd or slope)
    end
    if target:requires_grad() then
      local slope = log_1mx - log_x
      loss = loss + (target - t) * (wd and slope * wd or slope)
    end
    if w and w:requires_grad() then loss = loss + (w - wd) * unweighted end
  end
  return reduce_loss("binary_cross_entropy", loss, opts.reduction)
end

--- F.binary_cross_entropy_with_logits(input, target, opts): binary cross entropy of sigmoid(input)
-- in the stable form (1 - t) x + l softplus(-x), softplus(-x) = m + log(exp(-m) + exp(-x - m)) with
-- m = max(-x, 0), l = 1 + (pos_weight - 1) t. opts: weight (broadcast to the input), pos_weight (the
-- weight of positives, broadcast along the last dim: one per class), reduction.
function F.binary_cross_entropy_with_logits(input, target, opts)
  opts = loss_options("binary_cross_entropy_with_logits", opts)
  same_shape("binary_cross_entropy_with_logits", input, target)
  local m = (-input):clamp(0):detach()
  local softplus_neg = ((-m):exp() + (-input - m):exp()):log() + m
  local pw = opts.pos_weight
  local loss = (1 - target) * input + (pw and ((pw - 1) * target + 1) * softplus_neg or softplus_neg)
  if opts.weight then loss = loss * opts.weight end
  return reduce_loss("binary_cross_entropy_with_logits", loss, opts.reduction)
end

return F
