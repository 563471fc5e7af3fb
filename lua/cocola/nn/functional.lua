-- cocola.nn.functional — layer ops and losses with torch.nn.functional's names and argument order;
-- options go in a trailing table. Dims are 1-based (dim 2 of an NCHW tensor is C).
local core = require "cocola.core"
local cocola = require "cocola"

local F = {}

F.conv2d = core.conv2d                           -- (x, w, b, {stride, padding, dilation, groups})
F.conv1d = core.conv1d                           -- (x (N,C,L), w (O,C/g,k), b, {stride, padding, dilation, groups})
F.conv_transpose1d = core.conv_transpose1d       -- (x, w (C,O/g,k), b, {stride, padding, output_padding, dilation, groups})
F.conv_transpose2d = core.conv_transpose2d       -- (x, w (C,O/g,kh,kw), b, {stride, padding, output_padding, dilation, groups})
F.group_norm = core.group_norm                   -- (x, num_groups, weight, bias, eps)
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
function F.gelu(x, approximate) return x:gelu(approximate) end -- approximate: "none" | "tanh"
function F.leaky_relu(x, negative_slope) return x:leaky_relu(negative_slope) end
function F.elu(x, alpha) return x:elu(alpha) end
function F.softmax(x, dim) return x:softmax(dim) end
function F.log_softmax(x, dim) return x:log_softmax(dim) end
function F.logsumexp(x, dim, keepdim) return x:logsumexp(dim, keepdim) end

-- ---- resampling ----

-- float32 rounding of a double (torch computes the nearest source index in float)
local f32 = cocola.to_f32

--- F.interpolate(x (N,C,H,W) or (N,C,L), {size = n | {h, w} | scale_factor = s | {sh, sw}, mode = "nearest"})
--- as torch's (legacy) nearest mode: source index floor(dst * in / out) in float32, clamped. An integer
--- scale repeats every element and is exact; other sizes pick rows and columns with index_select.
function F.interpolate(x, opts)
  if not core.is_tensor(x) then error("interpolate: expected a tensor input", 2) end
  opts = opts or {}
  local mode = opts.mode or "nearest"
  if mode ~= "nearest" then error('interpolate: only mode = "nearest" is supported, got ' .. tostring(mode), 2) end
  local nd = x:dim()
  if nd ~= 3 and nd ~= 4 then
    error("interpolate: expected a 3-D (N,C,L) or 4-D (N,C,H,W) input, got shape " .. x:shape_string(), 2)
  end
  local nsp = nd - 2
  local function per_dim(v, what)
    if type(v) == "number" then v = { v } end
    if type(v) ~= "table" then error("interpolate: " .. what .. " must be a number or a table", 3) end
    if #v == 1 and nsp == 2 then v = { v[1], v[1] } end
    if #v ~= nsp then error(string.format("interpolate: %s needs %d values for a %d-D input", what, nsp, nd), 3) end
    return v
  end
  if (opts.size == nil) == (opts.scale_factor == nil) then
    error("interpolate: give exactly one of size and scale_factor", 2)
  end
  local sizes, scales = {}, {}
  if opts.size ~= nil then
    local size = per_dim(opts.size, "size")
    for d = 1, nsp do
      if math.type(size[d]) ~= "integer" or size[d] < 1 then error("interpolate: size must be positive integers", 2) end
      sizes[d] = size[d]
      scales[d] = f32(f32(x:size(2 + d)) / sizes[d]) -- in / out, as torch without a scale factor
    end
  else
    local sf = per_dim(opts.scale_factor, "scale_factor")
    for d = 1, nsp do
      if type(sf[d]) ~= "number" or not (sf[d] > 0) or sf[d] == math.huge then
        error("interpolate: scale_factor must be positive and finite", 2)
      end
      sizes[d] = math.floor(x:size(2 + d) * sf[d])
      if sizes[d] < 1 then error("interpolate: scale_factor gives an empty output", 2) end
      scales[d] = f32(1 / sf[d])
    end
  end
  for d = 1, nsp do
    local n_in, n_out = x:size(2 + d), sizes[d]
    if n_in < 1 then error("interpolate: the input " .. x:shape_string() .. " is empty", 2) end
    local dim = 2 + d
    if n_out % n_in == 0 and (opts.size ~= nil or scales[d] == f32(n_in / n_out)) then
      -- every element repeated r times: (.., n, 1, ..) expanded to (.., n, r, ..) and merged
      local r = n_out // n_in
      if r > 1 then
        local shape, big, merged = x.shape, {}, {}
        for i = 1, nd do
          big[#big + 1] = shape[i]
          if i == dim then big[#big + 1] = r end
          merged[i] = i == dim and n_out or shape[i]
        end
        x = x:unsqueeze(dim + 1):expand(big):reshape(merged)
      end
    else
      local idx = {}
      for j = 0, n_out - 1 do idx[j + 1] = math.min(math.floor(f32(j * scales[d])), n_in - 1) end
      x = x:index_select(dim, core.tensor(idx, { dtype = "int64", device = x:device() }))
    end
  end
  return x
end

-- ---- attention ----

--- F.scaled_dot_product_attention(q (..., L, E), k (..., S, E), v (..., S, Ev), {attn_mask =, key_mask =,
--- scale = 1/sqrt(E)}) -> (..., L, Ev): softmax(q k^T scale + attn_mask) v. attn_mask: a float tensor
--- added to the scores (broadcast to (..., L, S)); key_mask: (B, S) with 1 for keys to attend and 0 for
--- padding (every row must keep a key). Memory O(L x S) per batch and head while recording a graph; without
--- one, at most F.ATTENTION_BLOCK scores at a time (queries in blocks).
function F.scaled_dot_product_attention(q, k, v, opts)
  opts = opts or {}
  for i, t in ipairs({ q, k, v }) do
    if not core.is_tensor(t) or t:dim() < 2 then
      error(string.format("scaled_dot_product_attention: %s must be a tensor of at least 2 dims", ({ "q", "k", "v" })[i]), 2)
    end
  end
  local nd = q:dim()
  if k:dim() ~= nd or v:dim() ~= nd then
    error(string.format("scaled_dot_product_attention: q %s, k %s and v %s must have the same number of dims",
      q:shape_string(), k:shape_string(), v:shape_string()), 2)
  end
  if q:size(nd) ~= k:size(nd) or k:size(nd - 1) ~= v:size(nd - 1) then
    error(string.format("scaled_dot_product_attention: q %s and k %s must share the feature size, k and v %s the "
      .. "key count", q:shape_string(), k:shape_string(), v:shape_string()), 2)
  end
  local scale = opts.scale or 1 / math.sqrt(q:size(nd))
  local attn_mask = opts.attn_mask
  if attn_mask ~= nil and not core.is_tensor(attn_mask) then
    error("scaled_dot_product_attention: attn_mask must be a tensor", 2)
  end
  local L, S = q:size(nd - 1), k:size(nd - 1)
  local drop -- (B, 1, .., 1, S): 1 where a key is padding
  local key_mask = opts.key_mask
  if key_mask ~= nil then
    local B = q:size(1)
    if not core.is_tensor(key_mask) or key_mask:dim() ~= 2 or key_mask:size(1) ~= B or key_mask:size(2) ~= S then
      error(string.format("scaled_dot_product_attention: key_mask must have shape (%d, %d) (batch, keys), got %s", B,
        S, core.is_tensor(key_mask) and key_mask:shape_string() or type(key_mask)), 2)
    end
    local keep = key_mask:ne(0):to(q:dtype())
    if keep:sum(2):min():item() < 1 then
      error("scaled_dot_product_attention: key_mask masks every key of a batch row", 2)
    end
    local shape = { B }
    for _ = 2, nd - 1 do shape[#shape + 1] = 1 end
    shape[#shape + 1] = S
    drop = keep:reshape(shape):eq(0)
  end
  local kt = k:transpose(nd - 1, nd)
  -- the queries row0 .. row0 + rows - 1 against every key
  local function attend(qb, row0, rows)
    local scores = qb:matmul(kt) * scale
    if attn_mask ~= nil then
      local m, md = attn_mask, attn_mask:dim()
      if rows ~= L and md >= 2 and m:size(md - 1) == L then m = m:narrow(md - 1, row0, rows) end
      scores = scores + m
    end
    if drop then scores = scores:masked_fill(drop, -math.huge) end
    return scores:softmax(nd):matmul(v)
  end
  -- without a graph to keep, long sequences run in blocks of queries, so the scores never take more than
  -- F.ATTENTION_BLOCK elements at once (each row's softmax is the same, so is the result)
  local recording = core.is_grad_enabled() and (q:requires_grad() or k:requires_grad() or v:requires_grad()
    or (attn_mask ~= nil and attn_mask:requires_grad()))
  local batch = math.max(q:numel() // (L * q:size(nd)), k:numel() // (S * k:size(nd)))
  if recording or batch * L * S <= F.ATTENTION_BLOCK or L == 1 then return attend(q, 1, L) end
  local rows = math.max(1, F.ATTENTION_BLOCK // (batch * S))
  local parts = {}
  for r0 = 1, L, rows do
    local n = math.min(rows, L - r0 + 1)
    parts[#parts + 1] = attend(q:narrow(nd - 1, r0, n), r0, n)
  end
  return core.cat(parts, nd - 1)
end

--- the most attention scores F.scaled_dot_product_attention holds at once when it records no graph
F.ATTENTION_BLOCK = 1 << 24

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
