-- cocola.nn.BatchNorm2d — batch normalisation over the channels of NCHW input with PyTorch's
-- buffers (running_mean, running_var, num_batches_tracked) and semantics: batch statistics and
-- running-average updates in training, running statistics in eval; momentum = nil uses the
-- cumulative average 1/num_batches_tracked.
-- Synchronised across data-parallel ranks when `sync_group` is set (a cocola.distributed group with
-- more than one rank, e.g. by the trainer's sync_batchnorm=true): in training, the per-channel mean and
-- variance are those of the union of every rank's batch (an all-reduce of the sums, then of the squared
-- deviations, with their gradients all-reduced in the backward), so that N ranks of B/N rows normalise
-- as one process with B rows; the running statistics are updated with those global moments.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local F = require "cocola.nn.functional"

local BatchNorm2d = Module:extend("BatchNorm2d")

--- BatchNorm2d(num_features, {eps = 1e-5, momentum = 0.1, affine = true,
--- track_running_stats = true, dtype = "float32"}); pass momentum = false for torch's None.
function BatchNorm2d:init(num_features, opts)
  opts = opts or {}
  assert(math.type(num_features) == "integer" and num_features > 0, "BatchNorm2d: num_features must be a positive integer")
  self.num_features = num_features
  self.eps = opts.eps or 1e-5
  local momentum = opts.momentum
  if momentum == nil then momentum = 0.1 end
  if momentum == false then momentum = nil end
  self.momentum = momentum
  self.affine = opts.affine ~= false
  self.track_running_stats = opts.track_running_stats ~= false
  local dtype = opts.dtype or "float32"
  if self.affine then
    self:register_parameter("weight", cocola.ones({ num_features }, { dtype = dtype }):requires_grad(true))
    self:register_parameter("bias", cocola.zeros({ num_features }, { dtype = dtype }):requires_grad(true))
  else
    self:register_parameter("weight", nil)
    self:register_parameter("bias", nil)
  end
  if self.track_running_stats then
    self:register_buffer("running_mean", cocola.zeros({ num_features }, { dtype = dtype }))
    self:register_buffer("running_var", cocola.ones({ num_features }, { dtype = dtype }))
    self:register_buffer("num_batches_tracked", cocola.zeros({}, { dtype = "int64" }))
  else
    self:register_buffer("running_mean", nil)
    self:register_buffer("running_var", nil)
    self:register_buffer("num_batches_tracked", nil)
  end
end

--- Running statistics back to mean 0, variance 1, no batch seen.
function BatchNorm2d:reset_running_stats()
  if not self.track_running_stats then return end
  cocola.no_grad(function()
    self.running_mean:fill_(0)
    self.running_var:fill_(1)
    self.num_batches_tracked:fill_(0)
  end)
end

-- training-mode batch normalisation over every rank's batch (see the header); factor as F.batch_norm's momentum
local function synced_batch_norm(self, x, factor, group)
  local n, c, h, w = x:size(1), x:size(2), x:size(3), x:size(4)
  local rows = x:transpose(1, 2):reshape({ c, n * h * w }) -- (C, N H W)
  local count = cocola.no_grad(function() return group.all_reduce(cocola.tensor({ n * h * w + 0.0 }), "sum"):item() end)
  local mean = group.all_reduce_with_grad(rows:sum(2, true)) / count -- (C, 1)
  local centred = rows - mean
  local var = group.all_reduce_with_grad((centred * centred):sum(2, true)) / count
  local y = centred / (var + self.eps):sqrt()
  y = y:reshape({ c, n, h, w }):transpose(1, 2)
  if self.weight ~= nil then y = y * self.weight:reshape({ 1, c, 1, 1 }) + self.bias:reshape({ 1, c, 1, 1 }) end
  if self.track_running_stats and self.running_mean ~= nil then
    cocola.no_grad(function()
      local m, v = mean:detach():reshape({ c }), var:detach():reshape({ c }) * (count / math.max(count - 1, 1))
      self.running_mean:copy_(self.running_mean * (1 - factor) + m * factor)
      self.running_var:copy_(self.running_var * (1 - factor) + v * factor)
    end)
  end
  return y:contiguous()
end

function BatchNorm2d:forward(x)
  if x:dim() ~= 4 then error(string.format("BatchNorm2d: expected 4D input (got %dD input)", x:dim()), 2) end
  local group = self.sync_group
  if group and group.world_size > 1 and self.training then
    local factor = self.momentum or 0.0
    if self.track_running_stats and self.num_batches_tracked ~= nil then
      local nbt = self.num_batches_tracked
      cocola.no_grad(function() nbt:copy_(nbt + 1) end)
      if self.momentum == nil then factor = 1.0 / nbt:item() end
    end
    return synced_batch_norm(self, x, factor, group)
  end
  local factor = self.momentum or 0.0
  if self.training and self.track_running_stats and self.num_batches_tracked ~= nil then
    local nbt = self.num_batches_tracked
    cocola.no_grad(function() nbt:copy_(nbt + 1) end)
    if self.momentum == nil then factor = 1.0 / nbt:item() end
  end
  local bn_training = self.training or (self.running_mean == nil and self.running_var == nil)
  local use_running = not self.training or self.track_running_stats
  return F.batch_norm(x, use_running and self.running_mean or nil, use_running and self.running_var or nil,
    self.weight, self.bias, bn_training, factor, self.eps)
end

function BatchNorm2d:extra_repr()
  local r = Module.pyrepr
  return string.format("%d, eps=%s, momentum=%s, affine=%s, track_running_stats=%s", self.num_features,
    r(self.eps + 0.0), r(self.momentum and self.momentum + 0.0), r(self.affine), r(self.track_running_stats))
end

return BatchNorm2d
