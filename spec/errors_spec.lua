-- errors_spec.lua — misuse raises a Lua error whose message names the problem (never a crash,
-- never a silent wrong result). Each case runs under pcall and matches the message against a
-- pattern; a final check confirms the library still works after all of them.
local cocola = require "cocola"
local F = require "cocola.nn.functional"

--- asserts fn() raises an error whose message matches every given (Lua) pattern
local function raises(fn, ...)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error, but the call succeeded")
  err = tostring(err)
  for _, pat in ipairs({ ... }) do
    assert(err:find(pat), string.format("error message %q does not match %q", err, pat))
  end
  return err
end

describe("errors", function()
  local a23 = cocola.zeros({ 2, 3 })
  local a32 = cocola.zeros({ 3, 2 })
  local a24 = cocola.zeros({ 2, 4 })

  it("shape mismatch in add", function()
    raises(function() return a23 + a24 end, "shape mismatch", "broadcast", "{2,3}", "{2,4}")
    raises(function() return a23:add(cocola.zeros({ 2 })) end, "shape mismatch")
  end)

  it("shape mismatch in matmul", function()
    raises(function() return a23:matmul(a24) end, "matmul", "shape mismatch", "inner sizes 3 and 2")
    raises(function() return cocola.matmul(cocola.zeros({ 2, 2, 3 }), cocola.zeros({ 3, 3, 2 })) end, "matmul", "batch")
    raises(function() return cocola.bmm(cocola.zeros({ 2, 2, 3 }), cocola.zeros({ 3, 3, 2 })) end, "bmm", "batch")
    raises(function() return F.linear(a23, cocola.zeros({ 4, 2 })) end, "linear", "in_features")
  end)

  it("wrong dtype: float32 + float64", function()
    raises(function() return a23 + cocola.zeros({ 2, 3 }, { dtype = "float64" }) end, "dtype mismatch", "float32", "float64")
  end)

  it("wrong dtype: exp of int64", function()
    raises(function() return cocola.zeros({ 2 }, { dtype = "int64" }):exp() end, "exp", "floating", "int64")
  end)

  it("wrong dtype: cross_entropy with float targets", function()
    raises(function() return F.cross_entropy(cocola.zeros({ 2, 3 }), cocola.zeros({ 2 })) end, "cross_entropy", "int64")
  end)

  it("wrong dtype: the new math and statistics on int64", function()
    local i = cocola.zeros({ 2, 3 }, { dtype = "int64" })
    raises(function() return i:sin() end, "sin", "floating", "int64")
    raises(function() return i:cos() end, "cos", "floating", "int64")
    raises(function() return i:var() end, "var", "floating", "int64")
    raises(function() return i:std(1) end, "std", "floating", "int64")
    raises(function() return i:norm() end, "norm", "floating", "int64")
    raises(function() return i:logsumexp(1) end, "logsumexp", "floating", "int64")
    raises(function() return F.mse_loss(a23, a23:double()) end, "dtype mismatch")
  end)

  it("sort, topk, cumsum: bad dims and k", function()
    raises(function() return a23:sort(3) end, "sort", "out of range")
    raises(function() return a23:topk(2, -3) end, "topk", "out of range")
    raises(function() return a23:topk(4) end, "topk", "k %(4%)", "size 3")
    raises(function() return a23:topk(3, 1) end, "topk", "size 2")
    raises(function() return a23:cumsum(5) end, "cumsum", "out of range")
    raises(function() return a23:cumsum() end, "cumsum needs a dim")
  end)

  it("losses: bad reduction, shapes, probabilities", function()
    raises(function() return F.l1_loss(a23, a23, "average") end, "l1_loss", "reduction")
    raises(function() return F.mse_loss(a23, a32) end, "mse_loss", "{3,2}", "{2,3}")
    raises(function() return F.binary_cross_entropy(a23 + 2, a23) end, "binary_cross_entropy", "between 0 and 1")
    raises(function() return F.binary_cross_entropy_with_logits(a23, a24) end, "with_logits", "target shape")
  end)

  it("t[i] out of range names the index and the size", function()
    raises(function() return a23[3] end, "index 3", "dimension 1 of size 2")
    raises(function() return a23[1][4] end, "index 4", "size 3")
  end)

  it("unknown dtype name", function()
    raises(function() return cocola.zeros({ 2 }, { dtype = "float17" }) end, "unknown dtype", "float17")
  end)

  it("out-of-range dim", function()
    raises(function() return a23:sum(3) end, "out of range")
    raises(function() return a23:softmax(-3) end, "out of range")
    raises(function() return a23:transpose(1, 5) end, "out of range")
    raises(function() return a23:size(0) end, "1%-based")
    raises(function() return cocola.cat({ a23, a23 }, 3) end, "out of range")
  end)

  it("narrow beyond the end, select out of range", function()
    raises(function() return a23:narrow(2, 2, 3) end, "narrow", "outside", "size 3")
    raises(function() return a23:narrow(1, 0, 1) end, "1%-based")
    raises(function() return a23:select(1, 3) end, "select", "out of range")
  end)

  it("bad conv groups", function()
    local x = cocola.zeros({ 1, 4, 5, 5 })
    raises(function() return F.conv2d(x, cocola.zeros({ 6, 2, 3, 3 }), nil, { groups = 3 }) end, "conv2d", "groups=3 does not divide")
    raises(function() return F.conv2d(x, cocola.zeros({ 6, 2, 3, 3 }), nil, { groups = 0 }) end, "conv2d", "groups must be positive")
    raises(function() return F.conv2d(x, cocola.zeros({ 5, 2, 3, 3 }), nil, { groups = 2 }) end, "conv2d", "out_channels")
  end)

  it("conv channel mismatch and other conv misuse", function()
    local x = cocola.zeros({ 1, 3, 5, 5 })
    raises(function() return F.conv2d(x, cocola.zeros({ 4, 2, 3, 3 })) end, "conv2d", "input channels")
    raises(function() return F.conv2d(x, cocola.zeros({ 4, 3, 3, 3 }), cocola.zeros({ 3 })) end, "conv2d", "bias")
    raises(function() return F.conv2d(x, cocola.zeros({ 4, 3, 7, 7 })) end, "conv2d", "larger than")
    raises(function() return F.conv2d(x, cocola.zeros({ 4, 3, 3, 3 }), nil, { stride = 0 }) end, "conv2d", "stride")
    raises(function() return F.conv2d(cocola.zeros({ 5, 5 }), cocola.zeros({ 4, 3, 3, 3 })) end, "conv2d", "input")
  end)

  it("conv1d, the transposed convolutions and their options", function()
    local x1 = cocola.zeros({ 2, 3, 8 })
    raises(function() return F.conv1d(x1, cocola.zeros({ 4, 2, 3 })) end, "conv1d", "expects 2 input channels", "has 3")
    raises(function() return F.conv1d(x1, cocola.zeros({ 4, 3, 3, 3 })) end, "conv1d", "3%-D weight")
    raises(function() return F.conv1d(cocola.zeros({ 2, 3, 8, 1 }), cocola.zeros({ 4, 3, 3 })) end, "conv1d", "2%-D %(C,L%) or 3%-D")
    raises(function() return F.conv1d(x1, cocola.zeros({ 4, 3, 3 }), nil, { stride = 0 }) end, "conv1d", "stride")
    raises(function() return F.conv1d(x1, cocola.zeros({ 4, 3, 11 })) end, "conv1d", "larger than")
    raises(function() return F.conv_transpose1d(x1, cocola.zeros({ 4, 2, 3 })) end, "conv_transpose1d", "input channels")
    local x2 = cocola.zeros({ 1, 4, 5, 5 })
    raises(function() return F.conv_transpose2d(x2, cocola.zeros({ 3, 2, 3, 3 })) end, "conv_transpose2d", "input channels")
    raises(function() return F.conv_transpose2d(x2, cocola.zeros({ 4, 2, 3, 3 }), nil, { stride = 2, output_padding = 2 }) end,
      "conv_transpose2d", "output_padding %(2%) must be smaller than either stride %(2%) or dilation %(1%)")
    raises(function() return F.conv_transpose2d(x2, cocola.zeros({ 4, 2, 3, 3 }), cocola.zeros({ 3 })) end,
      "conv_transpose2d", "bias must have shape %(2%)")
    raises(function() return F.conv_transpose2d(x2, cocola.zeros({ 4, 2, 3, 3 }), nil, { padding = 4 }) end,
      "conv_transpose2d", "must be positive")
    raises(function() return F.conv_transpose2d(x2, cocola.zeros({ 4, 2, 3, 3 }), nil, { groups = 3 }) end,
      "conv_transpose2d", "groups=3")
  end)

  it("group_norm, interpolate and attention misuse", function()
    local x = cocola.zeros({ 2, 6, 4, 4 })
    raises(function() return F.group_norm(x, 4) end, "group_norm", "4 groups do not divide the 6 channels")
    raises(function() return F.group_norm(x, 3, cocola.ones({ 5 })) end, "group_norm", "weight must have shape %(6%)")
    raises(function() return F.group_norm(cocola.zeros({ 6 }), 3) end, "group_norm", "at least 2 dims")
    raises(function() return F.group_norm(x:to("int64"), 3) end, "group_norm", "floating")
    raises(function() return F.interpolate(x, { scale_factor = 2, mode = "bilinear" }) end, "interpolate", "nearest")
    raises(function() return F.interpolate(x, {}) end, "interpolate", "exactly one of size and scale_factor")
    raises(function() return F.interpolate(x, { size = { 2, 3, 4 } }) end, "interpolate", "needs 2 values")
    raises(function() return F.interpolate(cocola.zeros({ 4, 4 }), { scale_factor = 2 }) end, "interpolate", "3%-D")
    local q, k, v = cocola.zeros({ 2, 3, 8 }), cocola.zeros({ 2, 5, 8 }), cocola.zeros({ 2, 5, 4 })
    raises(function() return F.scaled_dot_product_attention(q, cocola.zeros({ 2, 5, 7 }), v) end,
      "scaled_dot_product_attention", "feature size")
    raises(function() return F.scaled_dot_product_attention(q, k, cocola.zeros({ 2, 4, 4 })) end,
      "scaled_dot_product_attention", "key count")
    raises(function() return F.scaled_dot_product_attention(q, k, v, { key_mask = cocola.ones({ 2, 4 }) }) end,
      "key_mask must have shape %(2, 5%)")
    raises(function() return F.scaled_dot_product_attention(q, k, v, { key_mask = cocola.tensor({ { 1, 1, 0, 0, 0 }, { 0, 0, 0, 0, 0 } }) }) end,
      "key_mask masks every key")
    raises(function() return F.scaled_dot_product_attention(q, k, v, { attn_mask = cocola.zeros({ 3, 4 }) }) end, "shape mismatch")
    raises(function() return F.gelu(q, "fast") end, "approximate must be \"none\" or \"tanh\"")
    raises(function() return q:leaky_relu(0 / 0) end, "leaky_relu", "finite")
  end)

  it("cross_entropy target out of range", function()
    local logits = cocola.zeros({ 2, 3 })
    raises(function() return F.cross_entropy(logits, cocola.tensor({ 0, 3 }, { dtype = "int64" })) end, "out of bounds", "3")
    raises(function() return F.cross_entropy(logits, cocola.tensor({ -1, 0 }, { dtype = "int64" })) end, "out of bounds")
    raises(function() return F.cross_entropy(logits, cocola.tensor({ 0, 1, 2 }, { dtype = "int64" })) end, "cross_entropy")
  end)

  it("tensor from a ragged table", function()
    raises(function() return cocola.tensor({ { 1, 2 }, { 3 } }) end, "ragged")
    raises(function() return cocola.tensor({ { 1, 2 }, 3 }) end, "ragged")
    raises(function() return cocola.tensor({ 1, { 2 } }) end, "expected numbers")
    raises(function() return cocola.tensor({ 1, "x" }) end, "expected numbers")
  end)

  it("view incompatible with strides, and bad view/reshape/expand/permute shapes", function()
    raises(function() return a23:t():view(6) end, "view", "strides")
    raises(function() return a23:view(4) end, "view", "invalid")
    raises(function() return a23:reshape(-1, -1) end, "only one dimension")
    raises(function() return a23:expand(2, 4) end, "expand")
    raises(function() return a23:permute(1, 1) end, "permute")
  end)

  it("requires_grad on int64", function()
    raises(function() return cocola.zeros({ 2 }, { dtype = "int64" }):requires_grad(true) end, "requires_grad", "floating", "int64")
  end)

  it("use of a closed tensor", function()
    local t = cocola.zeros({ 2 })
    t:close()
    raises(function() return t + 1 end, "closed")
    raises(function() return t:sum() end, "closed")
    raises(function() return t.shape end, "closed")
    raises(function() return tostring(t) end, "closed")
    t:close() -- closing twice is harmless
  end)

  it("other misuse: item of many, pad, layer_norm shape, batch_norm eval without stats, dropout p", function()
    raises(function() return a23:item() end, "one element")
    raises(function() return F.pad(a23, { 1 }) end, "even")
    raises(function() return F.layer_norm(a23, { 2 }) end, "layer_norm", "normalized_shape")
    raises(function() return F.batch_norm(cocola.zeros({ 2, 3 }), nil, nil, nil, nil, false) end, "batch_norm", "running")
    raises(function() return F.dropout(a23, 1.5) end, "dropout", "probability")
    raises(function() return cocola.cat({ a23, a32 }, 1) end, "cat", "sizes")
    raises(function() return cocola.stack({ a23, a32 }) end, "stack")
    raises(function() return a23:clamp(1, 0) end, "clamp")
    raises(function() return cocola.randint(3, 3, { 2 }) end, "randint")
  end)

  it("leaves the library usable afterwards", function()
    assert.is_true(cocola.is_grad_enabled())
    local x = cocola.tensor({ 1, 2 }, { dtype = "float64" }):requires_grad(true)
    ;(x * x):sum():backward()
    assert.are.same({ 2, 4 }, x.grad:totable())
  end)
end)
