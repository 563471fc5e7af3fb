-- ops_parity_spec.lua — every op of the engine against PyTorch: for each case in
-- spec/fixtures/ops.safetensors (made by spec/fixtures/gen_ops.py) the same computation is built here
-- in float32, and its outputs and input gradients (for the stored upstream gradient) must match the
-- reference within 1e-4 norm-wise relative error. Fixture keys: "<case>.in<k>", "<case>.out<k>",
-- "<case>.grad_out<k>", "<case>.grad_in<k>" (k 1-based). A final test checks that the fixture's
-- cases and this file's cases are the same set and that every case ran, so the two cannot drift.
-- PARITY_VERBOSE=1 prints each case's worst relative error.
local cocola = require "cocola"
local F = require "cocola.nn.functional"
local compare = require "helpers.compare"

local TOL = 1e-4

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local FIXTURE = here .. "fixtures/ops.safetensors"

-- case name -> function(inputs) returning a tensor or a list of tensors (the outputs, in order)
local CASES = {}

-- ---- elementwise binary, with broadcasting and scalars ----
CASES.add_bcast = function(x) return x[1] + x[2] end
CASES.add_same = function(x) return x[1]:add(x[2]) end
CASES.add_scalar = function(x) return x[1] + 2.5 end
CASES.radd_scalar = function(x) return 2.5 + x[1] end
CASES.sub_bcast = function(x) return x[1] - x[2] end
CASES.sub_scalar = function(x) return x[1]:sub(1.25) end
CASES.rsub_scalar = function(x) return 1.5 - x[1] end
CASES.mul_bcast = function(x) return x[1] * x[2] end
CASES.mul_scalar = function(x) return x[1]:mul(3.0) end
CASES.div_bcast = function(x) return x[1]:div(x[2]) end
CASES.div_scalar = function(x) return x[1] / 4.0 end
CASES.rdiv_scalar = function(x) return 2.0 / x[1] end
CASES.pow_tensor_bcast = function(x) return x[1]:pow(x[2]) end
CASES.pow_scalar_int = function(x) return x[1] ^ 3 end
CASES.pow_scalar_half = function(x) return x[1]:pow(0.5) end
CASES.pow_scalar_neg = function(x) return x[1] ^ -1.5 end

-- ---- elementwise unary ----
CASES.neg = function(x) return -x[1] end
CASES.neg_method = function(x) return x[1]:neg() end
CASES.exp = function(x) return x[1]:exp() end
CASES.log = function(x) return x[1]:log() end
CASES.sqrt = function(x) return x[1]:sqrt() end
CASES.abs = function(x) return x[1]:abs() end
CASES.relu = function(x) return F.relu(x[1]) end
CASES.sigmoid = function(x) return x[1]:sigmoid() end
CASES.silu = function(x) return x[1]:silu() end
CASES.tanh = function(x) return x[1]:tanh() end
CASES.gelu = function(x) return x[1]:gelu() end
CASES.clamp = function(x) return x[1]:clamp(-0.5, 0.7) end
CASES.clamp_min = function(x) return x[1]:clamp(0.1) end
CASES.clamp_max = function(x) return x[1]:clamp(nil, -0.2) end

-- ---- reductions ----
CASES.sum_all = function(x) return x[1]:sum() end
CASES.sum_dim = function(x) return x[1]:sum(2) end
CASES.sum_dims_keepdim = function(x) return x[1]:sum({ 1, 3 }, true) end
CASES.sum_last = function(x) return x[1]:sum(-1) end
CASES.mean_all = function(x) return x[1]:mean() end
CASES.mean_dim_keepdim = function(x) return x[1]:mean(2, true) end
CASES.mean_dims = function(x) return x[1]:mean({ 1, 2 }) end
CASES.max_dim = function(x) return { x[1]:max(2) } end
CASES.max_dim_keepdim = function(x) return { x[1]:max(1, true) } end
CASES.max_all = function(x) return x[1]:max() end
CASES.argmax_dim = function(x) return x[1]:argmax(2) end
CASES.argmax_dim_keepdim = function(x) return x[1]:argmax(2, true) end
CASES.argmax_all = function(x) return x[1]:argmax() end

-- ---- linear algebra ----
CASES.matmul_2d = function(x) return x[1]:matmul(x[2]) end
CASES.matmul_batched_bcast = function(x) return cocola.matmul(x[1], x[2]) end
CASES.matmul_mat_vec = function(x) return x[1]:matmul(x[2]) end
CASES.matmul_fn_transposed = function(x) return cocola.matmul(x[1]:t(), x[2]) end
CASES.matmul_batched_transposed = function(x) return x[1]:transpose(2, 3):matmul(x[2]) end
CASES.bmm = function(x) return cocola.bmm(x[1], x[2]) end
CASES.linear = function(x) return F.linear(x[1], x[2], x[3]) end
CASES.linear_nobias = function(x) return F.linear(x[1], x[2]) end

-- ---- convolution ----
CASES.conv2d_basic = function(x) return F.conv2d(x[1], x[2], x[3]) end
CASES.conv2d_stride_pad = function(x) return F.conv2d(x[1], x[2], x[3], { stride = 2, padding = 1 }) end
CASES.conv2d_dilation = function(x) return F.conv2d(x[1], x[2], x[3], { padding = 2, dilation = 2 }) end
CASES.conv2d_groups = function(x) return F.conv2d(x[1], x[2], x[3], { padding = 1, groups = 2 }) end
CASES.conv2d_depthwise = function(x) return F.conv2d(x[1], x[2], x[3], { stride = 2, padding = 1, groups = 4 }) end
CASES.conv2d_pairs = function(x)
  return F.conv2d(x[1], x[2], x[3], { stride = { 2, 1 }, padding = { 1, 0 }, dilation = { 1, 2 } })
end
CASES.conv2d_1x1_nobias = function(x) return F.conv2d(x[1], x[2]) end
CASES.conv2d_noncontig = function(x) return F.conv2d(x[1]:permute(1, 4, 2, 3), x[2], x[3], { padding = 1 }) end

-- ---- padding, pooling ----
CASES.pad_same_0101 = function(x) return F.pad(x[1], { 0, 1, 0, 1 }) end
CASES.pad_same_1212 = function(x) return F.pad(x[1], { 1, 2, 1, 2 }) end
CASES.pad_value = function(x) return F.pad(x[1], { 2, 0, 1, 3 }, -1.5) end
CASES.pad_last_dim = function(x) return F.pad(x[1], { 1, 2 }) end
CASES.adaptive_pool_1 = function(x) return F.adaptive_avg_pool2d(x[1], 1) end
CASES.adaptive_pool_nondiv = function(x) return F.adaptive_avg_pool2d(x[1], { 4, 3 }) end
CASES.adaptive_pool_3 = function(x) return F.adaptive_avg_pool2d(x[1], 3) end

-- ---- normalisation, dropout (batch-norm training also returns the updated running stats) ----
CASES.batch_norm_train = function(x)
  return { F.batch_norm(x[1], x[2], x[3], x[4], x[5], true, 0.1, 1e-5), x[2], x[3] }
end
CASES.batch_norm_train_noaffine = function(x)
  return { F.batch_norm(x[1], x[2], x[3], nil, nil, true, 0.3, 1e-3), x[2], x[3] }
end
CASES.batch_norm_train_2d = function(x)
  return { F.batch_norm(x[1], x[2], x[3], x[4], x[5], true, 0.1, 1e-5), x[2], x[3] }
end
CASES.batch_norm_eval = function(x) return F.batch_norm(x[1], x[2], x[3], x[4], x[5], false, 0.1, 1e-5) end
CASES.layer_norm = function(x) return F.layer_norm(x[1], { 8 }, x[2], x[3], 1e-5) end
CASES.layer_norm_2d = function(x) return F.layer_norm(x[1], { 3, 4 }, x[2], x[3], 1e-5) end
CASES.layer_norm_noaffine = function(x) return F.layer_norm(x[1], 6, nil, nil, 1e-6) end
CASES.layer_norm_noncontig = function(x) return F.layer_norm(x[1]:t(), { 5 }, x[2], x[3], 1e-5) end
CASES.dropout_p0 = function(x) return F.dropout(x[1], 0, true) end
CASES.dropout_eval = function(x) return F.dropout(x[1], 0.5, false) end

-- ---- softmax, losses ----
CASES.softmax_last = function(x) return x[1]:softmax(-1) end
CASES.softmax_dim1 = function(x) return x[1]:softmax(1) end
CASES.softmax_noncontig = function(x) return x[1]:t():softmax(2) end
CASES.log_softmax = function(x) return x[1]:log_softmax(2) end
CASES.log_softmax_dim1 = function(x) return F.log_softmax(x[1], 2) end
CASES.softmax_functional = function(x) return F.softmax(x[1], 2) end
CASES.cross_entropy = function(x) return F.cross_entropy(x[1], x[2]) end

-- ---- joining, selection ----
CASES.cat_dim1 = function(x) return cocola.cat({ x[1], x[2] }, 1) end
CASES.cat_dim2_three = function(x) return cocola.cat({ x[1], x[2], x[3] }, 2) end
CASES.cat_last_noncontig = function(x) return cocola.cat({ x[1]:t(), x[2] }, -1) end
CASES.stack_dim2 = function(x) return cocola.stack({ x[1], x[2], x[3] }, 2) end
CASES.stack_dim1 = function(x) return cocola.stack({ x[1], x[2] }, 1) end
CASES.split_size = function(x) return x[1]:split(3, 1) end
CASES.split_sizes = function(x) return cocola.split(x[1], { 1, 3 }, 2) end
CASES.chunk = function(x) return x[1]:chunk(3, 2) end
CASES.where_bcast = function(x) return cocola.where(x[1], x[2], x[3]) end
CASES.where_scalar = function(x) return cocola.where(x[1], x[2], 0.0) end
CASES.masked_fill_bcast = function(x) return x[1]:masked_fill(x[2], -2.0) end

-- ---- views composed with ops (non-contiguous inputs) ----
CASES.permute_mul = function(x) return x[1]:permute(3, 1, 2) * x[2] end
CASES.transpose_add = function(x) return x[1]:transpose(1, 2) + x[2] end
CASES.transpose_sigmoid = function(x) return x[1]:transpose(1, 2):sigmoid() end
CASES.narrow_exp = function(x) return x[1]:narrow(1, 2, 3):exp() end
CASES.narrow_last = function(x) return x[1]:narrow(2, 3, 4) * 2.0 end
CASES.select_mul = function(x) return x[1]:select(2, 3) * x[2] end
CASES.select_last = function(x) return x[1]:select(-1, -1):tanh() end
CASES.expand_mul = function(x) return x[1]:expand(3, 4) * x[2] end
CASES.reshape_sum = function(x) return x[1]:reshape(3, 4):sum(1) end
CASES.reshape_noncontig = function(x) return x[1]:t():reshape({ 12 }) * x[2] end
CASES.view_matmul = function(x) return x[1]:view(6, 4):matmul(x[2]) end
CASES.unsqueeze_add = function(x) return x[1]:unsqueeze(2) + x[2] end
CASES.squeeze_mul = function(x) return x[1]:squeeze(2) * x[2] end
CASES.flatten_linear = function(x) return F.linear(x[1]:flatten(2), x[2]) end
CASES.contiguous_exp = function(x) return x[1]:t():contiguous():exp() end
CASES.permute_sum = function(x) return x[1]:permute(3, 1, 2):sum(2) end
CASES.double_roundtrip = function(x) return (x[1]:double() * 2):float() end

-- ---- moderately large shapes: threaded / blocked / BLAS code paths ----
CASES.add_bcast_large = function(x) return x[1] + x[2] end
CASES.gelu_large_noncontig = function(x) return F.gelu(x[1]:t()) end
CASES.sum_large = function(x) return x[1]:sum(1) end
CASES.mean_large_all = function(x) return x[1]:mean() end
CASES.matmul_large = function(x) return x[1]:matmul(x[2]) end
CASES.conv2d_large = function(x) return F.conv2d(x[1], x[2], x[3], { padding = 1 }) end
CASES.conv2d_large_depthwise = function(x) return F.conv2d(x[1], x[2], x[3], { padding = 1, groups = 32 }) end
CASES.batch_norm_train_large = function(x)
  return { F.batch_norm(x[1], x[2], x[3], x[4], x[5], true, 0.1, 1e-5), x[2], x[3] }
end
CASES.layer_norm_large = function(x) return F.layer_norm(x[1], { 512 }, x[2], x[3], 1e-5) end
CASES.softmax_large = function(x) return x[1]:softmax(2) end
CASES.cross_entropy_large = function(x) return F.cross_entropy(x[1], x[2]) end

-- ---- tensor API: unary math, sort/topk/cumsum, statistics, norms, any/all, losses, t[i] ----
CASES.sin = function(x) return x[1]:sin() end
CASES.cos = function(x) return x[1]:cos() end
CASES.floor = function(x) return x[1]:floor() end
CASES.round_half_even = function(x) return x[1]:round() end
CASES.sort_last = function(x) return { x[1]:sort() } end
CASES.sort_dim1_descending = function(x) return { x[1]:sort(1, true) } end
CASES.sort_noncontig = function(x) return { x[1]:t():sort(2) } end
CASES.topk_last = function(x) return { x[1]:topk(3) } end
CASES.topk_smallest_dim1 = function(x) return { x[1]:topk(2, 1, false) } end
CASES.topk_1d = function(x) return { x[1]:topk(4) } end
CASES.cumsum_last = function(x) return x[1]:cumsum(-1) end
CASES.cumsum_dim1 = function(x) return x[1]:cumsum(1) end
CASES.cumsum_noncontig = function(x) return x[1]:t():cumsum(2) end
CASES.var_all = function(x) return x[1]:var() end
CASES.var_dim = function(x) return x[1]:var(2) end
CASES.var_dims_biased_keepdim = function(x) return x[1]:var({ 1, 3 }, { correction = 0, keepdim = true }) end
CASES.var_unbiased_false = function(x) return x[1]:var(2, false) end
CASES.std_all = function(x) return x[1]:std() end
CASES.std_dim_keepdim = function(x) return x[1]:std(-1, { keepdim = true }) end
CASES.norm_all = function(x) return x[1]:norm() end
CASES.norm_p1_dim = function(x) return x[1]:norm(1, 2) end
CASES.norm_inf_dim_keepdim = function(x) return x[1]:norm(math.huge, 1, true) end
CASES.norm_neg_inf = function(x) return x[1]:norm(-math.huge) end
CASES.norm_p3_last = function(x) return x[1]:norm(3, -1) end
CASES.norm_p2_dims = function(x) return x[1]:norm(2, { 1, 3 }) end
CASES.logsumexp_dim = function(x) return x[1]:logsumexp(2) end
CASES.logsumexp_dims_keepdim = function(x) return F.logsumexp(x[1], { 1, 3 }, true) end
CASES.logsumexp_large = function(x) return x[1]:logsumexp(1) end
CASES.any_all = function(x)
  local t = x[1]
  return { t:any(), t:any(2), t:all(1), t:ne(0):all(2, true) }
end
CASES.mse_loss = function(x) return F.mse_loss(x[1], x[2]) end
CASES.mse_loss_sum = function(x) return F.mse_loss(x[1], x[2], "sum") end
CASES.l1_loss = function(x) return F.l1_loss(x[1], x[2]) end
CASES.l1_loss_none = function(x) return F.l1_loss(x[1], x[2], { reduction = "none" }) end
CASES.bce = function(x) return F.binary_cross_entropy(x[1], x[2]) end
CASES.bce_weight_sum = function(x) return F.binary_cross_entropy(x[1], x[2], { weight = x[3], reduction = "sum" }) end
CASES.bce_logits = function(x) return F.binary_cross_entropy_with_logits(x[1], x[2]) end
CASES.bce_logits_weights_none = function(x)
  return F.binary_cross_entropy_with_logits(x[1], x[2], { weight = x[3], pos_weight = x[4], reduction = "none" })
end
CASES.index_row = function(x) return x[1][2] * 2 end
CASES.index_element = function(x) return { x[1][3][-1], x[1][1][2][2] } end

-- ---- index_select, gather, embedding, max_pool2d (indices int64, 0-based; dims 1-based) ----
CASES.index_select_dim1 = function(x) return x[1]:index_select(1, x[2]) end
CASES.index_select_noncontig = function(x) return x[1]:t():index_select(2, x[2]) end
CASES.index_select_3d_middle = function(x) return cocola.index_select(x[1], 2, x[2]) end
CASES.gather_dim2 = function(x) return x[1]:gather(2, x[2]) end
CASES.gather_dim1_smaller = function(x) return F.gather(x[1], 1, x[2]) end
CASES.embedding = function(x) return F.embedding(x[2], x[1]) end
CASES.embedding_padding = function(x) return F.embedding(x[2], x[1], { padding_idx = 2 }) end
CASES.max_pool2d_2x2 = function(x) return F.max_pool2d(x[1], 2) end
CASES.max_pool2d_k3_s2_p1_indices = function(x)
  return { F.max_pool2d(x[1], 3, { stride = 2, padding = 1, return_indices = true }) }
end
CASES.max_pool2d_dilation_3d = function(x)
  return F.max_pool2d(x[1], { 2, 3 }, { stride = { 1, 2 }, padding = 1, dilation = 2 })
end
CASES.max_pool2d_overlapping = function(x) return cocola.nn.MaxPool2d(3, { stride = 1 })(x[1]) end

-- ---- the runner ----
local fx = cocola.load(FIXTURE)

local fixture_cases = {} -- case name -> set of its fixture keys
for key in pairs(fx) do
  local name = key:match("^([^.]+)%.")
  assert(name, "fixture key without a case prefix: " .. key)
  fixture_cases[name] = fixture_cases[name] or {}
  fixture_cases[name][key] = true
end

local exercised = {}

local function run_case(name)
  local keys = fixture_cases[name]
  assert(keys, name .. ": no such case in " .. FIXTURE .. " (regenerate it with gen_ops.py)")
  exercised[name] = true
  local used = {}
  local function get(key)
    used[key] = true
    return fx[key]
  end
  local inputs, k = {}, 1
  while fx[name .. ".in" .. k] do
    local t = get(name .. ".in" .. k):clone()
    if fx[name .. ".grad_in" .. k] then t:requires_grad(true) end
    inputs[k] = t
    k = k + 1
  end
  assert(#inputs > 0, name .. ": the fixture has no inputs")

  local outs = CASES[name](inputs)
  if cocola.is_tensor(outs) then outs = { outs } end
  local n_ref = 0
  while fx[name .. ".out" .. (n_ref + 1)] do n_ref = n_ref + 1 end
  assert(#outs == n_ref, string.format("%s: %d outputs, the fixture has %d", name, #outs, n_ref))

  local worst = 0
  local diff, grads = {}, {}
  for i, o in ipairs(outs) do
    local err = compare.assert_close(o, get(name .. ".out" .. i), TOL, name .. ": output " .. i)
    worst = math.max(worst, err)
    local g = fx[name .. ".grad_out" .. i]
    if g then
      used[name .. ".grad_out" .. i] = true
      diff[#diff + 1], grads[#grads + 1] = o, g
    end
  end

  if #diff == 1 then
    diff[1]:backward(grads[1])
  elseif #diff > 1 then -- several differentiable outputs: one scalar whose gradient is sum_i <o_i, g_i>
    local loss = (diff[1] * grads[1]):sum()
    for i = 2, #diff do loss = loss + (diff[i] * grads[i]):sum() end
    loss:backward()
  end
  for i, t in ipairs(inputs) do
    local ref = fx[name .. ".grad_in" .. i]
    if ref then
      used[name .. ".grad_in" .. i] = true
      local g = t.grad
      assert(g, string.format("%s: input %d got no gradient", name, i))
      local err = compare.assert_close(g, ref, TOL, name .. ": gradient of input " .. i)
      worst = math.max(worst, err)
    end
  end

  for key in pairs(keys) do
    assert(used[key], string.format("%s: fixture entry '%s' was not checked", name, key))
  end
  return worst
end

-- ---- latent diffusion ops ----
CASES.leaky_relu_01 = function(x) return F.leaky_relu(x[1], 0.1) end
CASES.leaky_relu_default = function(x) return x[1]:leaky_relu() end
CASES.elu_default = function(x) return F.elu(x[1]) end
CASES.elu_alpha = function(x) return x[1]:elu(0.5) end
CASES.gelu_tanh = function(x) return x[1]:gelu("tanh") end
CASES.group_norm_affine = function(x) return F.group_norm(x[1], 4, x[2], x[3], 1e-6) end
CASES.group_norm_1d_eps = function(x) return F.group_norm(x[1], 2) end
CASES.group_norm_large = function(x) return F.group_norm(x[1], 32, x[2], x[3]) end
CASES.conv1d_basic = function(x) return F.conv1d(x[1], x[2], x[3], { padding = 1 }) end
CASES.conv1d_stride_dil_groups = function(x)
  return F.conv1d(x[1], x[2], x[3], { stride = 2, padding = 4, dilation = 2, groups = 2 })
end
CASES.conv_transpose1d_hifigan = function(x) return F.conv_transpose1d(x[1], x[2], x[3], { stride = 5, padding = 5 }) end
CASES.conv_transpose1d_outpad_groups = function(x)
  return F.conv_transpose1d(x[1], x[2], x[3], { stride = 2, padding = 1, output_padding = 1, groups = 2 })
end
CASES.conv_transpose2d_basic = function(x)
  return F.conv_transpose2d(x[1], x[2], x[3], { stride = 2, padding = 1, output_padding = 1 })
end
CASES.conv_transpose2d_dil_groups = function(x)
  return F.conv_transpose2d(x[1], x[2], nil, { stride = { 1, 2 }, padding = { 0, 1 }, dilation = 2, groups = 2 })
end
CASES.interpolate_x2 = function(x) return F.interpolate(x[1], { scale_factor = 2 }) end
CASES.interpolate_size = function(x) return F.interpolate(x[1], { size = { 8, 12 } }) end
CASES.interpolate_size_fraction = function(x) return F.interpolate(x[1], { size = { 8, 4 } }) end
CASES.interpolate_scale_fraction = function(x) return F.interpolate(x[1], { scale_factor = 1.7 }) end
CASES.interpolate_1d_x3 = function(x) return F.interpolate(x[1], { scale_factor = 3 }) end
CASES.sdpa_heads = function(x) return F.scaled_dot_product_attention(x[1], x[2], x[3]) end
CASES.sdpa_additive_mask = function(x) return F.scaled_dot_product_attention(x[1], x[2], x[3], { attn_mask = x[4] }) end
CASES.sdpa_key_mask = function(x) return F.scaled_dot_product_attention(x[1], x[2], x[3], { key_mask = x[4] }) end

describe("ops parity with PyTorch", function()
  local names = {}
  for name in pairs(CASES) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    it(name, function()
      local worst = run_case(name)
      if os.getenv("PARITY_VERBOSE") then io.stderr:write(string.format("%-28s %.2e\n", name, worst)) end
    end)
  end

  -- the convolution cases once more on each CPU convolution backend of this build: the built-in kernels
  -- and, where the build has it, oneDNN (which "auto" only takes for large float32 convolutions)
  local _, have_onednn = cocola.conv_backend()
  for _, backend in ipairs(have_onednn and { "native", "onednn" } or { "native" }) do
    for _, name in ipairs(names) do
      if name:find("conv") then
        it(name .. " on the " .. backend .. " convolution backend", function()
          local previous = cocola.set_conv_backend(backend)
          local ok, err = pcall(run_case, name)
          cocola.set_conv_backend(previous)
          assert(ok, err)
        end)
      end
    end
  end

  it("covers every fixture case, and every case ran", function()
    local missing, stale, not_run = {}, {}, {}
    for name in pairs(fixture_cases) do
      if not CASES[name] then missing[#missing + 1] = name end
    end
    for name in pairs(CASES) do
      if not fixture_cases[name] then stale[#stale + 1] = name end
      if not exercised[name] then not_run[#not_run + 1] = name end
    end
    table.sort(missing); table.sort(stale); table.sort(not_run)
    assert(#missing == 0, "fixture cases with no Lua case: " .. table.concat(missing, ", "))
    assert(#stale == 0, "Lua cases absent from the fixture: " .. table.concat(stale, ", "))
    assert(#not_run == 0, "cases that did not pass through the runner: " .. table.concat(not_run, ", "))
  end)
end)
