-- t5_spec.lua — cocola.models.text.t5 (transformers T5EncoderModel) against spec/fixtures/text/t5_tiny.safetensors
-- (spec/fixtures/text/gen_t5.py, transformers 4.38.2): the tiny random t5_tiny/ folder (gated-gelu, 2 layers,
-- 4 heads) gives last_hidden_state with and without an attention mask within 1e-4 relative, and for L = 150 >
-- max_distance; block 0's position bias and the bucket rule (bidirectional and not) exactly; padding changes
-- nothing for the unmasked tokens; state-dict names and order; the tied embedding under either name; config,
-- loading and input errors.
local cocola = require "cocola"
local compare = require "helpers.compare"
local files = require "helpers.files"
local read, write = files.read, files.write
local T5EncoderModel = require "cocola.models.text.t5"
local T5Attention = require "cocola.models.text.t5_attention"

local DIR = "spec/fixtures/text/"
local fx = cocola.load(DIR .. "t5_tiny.safetensors")
local TOL = 1e-4

-- a copy of t5_tiny/ with config.json text replaced by cfg_fn(text) and the weights by weights_fn(state dict)
local function edited_copy(cfg_fn, weights_fn)
  local dir = files.tmpdir()
  local text = read(DIR .. "t5_tiny/config.json")
  write(dir .. "/config.json", cfg_fn and cfg_fn(text) or text)
  if weights_fn then
    local sd = cocola.load(DIR .. "t5_tiny/model.safetensors")
    cocola.save(dir .. "/model.safetensors", weights_fn(sd) or sd)
  else
    write(dir .. "/model.safetensors", read(DIR .. "t5_tiny/model.safetensors"))
  end
  return dir
end

local function error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return tostring(err)
end

describe("T5EncoderModel", function()
  local model = T5EncoderModel.from_pretrained(DIR .. "t5_tiny")

  it("has the transformers state-dict names in order (the tied embedding once, as shared.weight)", function()
    local keys = model:state_dict_keys()
    local want = { "shared.weight" }
    for i = 0, 1 do
      local p = "encoder.block." .. i .. ".layer."
      for _, n in ipairs({ "q", "k", "v", "o" }) do want[#want + 1] = p .. "0.SelfAttention." .. n .. ".weight" end
      if i == 0 then want[#want + 1] = p .. "0.SelfAttention.relative_attention_bias.weight" end
      want[#want + 1] = p .. "0.layer_norm.weight"
      for _, n in ipairs({ "wi_0", "wi_1", "wo" }) do want[#want + 1] = p .. "1.DenseReluDense." .. n .. ".weight" end
      want[#want + 1] = p .. "1.layer_norm.weight"
    end
    want[#want + 1] = "encoder.final_layer_norm.weight"
    assert.are.same(want, keys)
    assert.equals(model.shared, model.encoder.embed_tokens)
  end)

  it("computes the relative position buckets exactly (bidirectional and one-directional)", function()
    local rel, want, want_uni = fx.rel_positions:totable(), fx.buckets:totable(), fx.buckets_uni:totable()
    for i, r in ipairs(rel) do
      assert.equals(want[i], T5Attention.relative_position_bucket(r, true, 32, 128), "rel " .. r)
      assert.equals(want_uni[i], T5Attention.relative_position_bucket(r, false, 32, 128), "uni rel " .. r)
    end
  end)

  it("gives block 0's relative position bias", function()
    local bias = model.encoder.block[1].layer[1].SelfAttention:compute_bias(12, 12)
    compare.assert_close(bias, fx.position_bias, 1e-7, "position_bias")
  end)

  it("matches last_hidden_state with and without the attention mask", function()
    local got = model(fx.input_ids, { attention_mask = fx.attention_mask })
    compare.assert_close(got, fx.hidden_masked, TOL, "hidden (mask)")
    compare.assert_close(model(fx.input_ids), fx.hidden_nomask, TOL, "hidden (no mask)")
    -- a float mask of ones is the same as none
    local ones = cocola.ones({ 2, 12 })
    compare.assert_close(model(fx.input_ids, { attention_mask = ones }), fx.hidden_nomask, TOL, "hidden (ones)")
  end)

  it("matches last_hidden_state for L = 150 > max_distance (log-spaced and clamped buckets)", function()
    compare.assert_close(model(fx.long_ids), fx.long_hidden, TOL, "hidden (L 150)")
  end)

  it("leaves the unmasked tokens unchanged whatever the padding holds", function()
    local mask = fx.attention_mask
    local ref = model(fx.input_ids, { attention_mask = mask }):select(1, 2):narrow(1, 1, 7)
    local ids = fx.input_ids:clone()
    local row = ids:select(1, 2)
    row:narrow(1, 8, 5):copy_(cocola.tensor({ 5, 17, 42, 99, 3 }, { dtype = "int64" }))
    local got = model(ids, { attention_mask = mask }):select(1, 2):narrow(1, 1, 7)
    assert.is_true(compare.rel_err(got, ref) < 1e-6)
    -- and the row alone, unpadded, gives the same states
    local alone = model(fx.input_ids:narrow(1, 2, 1):narrow(2, 1, 7)):select(1, 1)
    compare.assert_close(alone, ref, TOL, "unpadded row")
  end)

  it("accepts the tied embedding under either name, or both", function()
    local only_encoder = edited_copy(nil, function(sd)
      sd["encoder.embed_tokens.weight"] = sd["shared.weight"]
      sd["shared.weight"] = nil
    end)
    local both = edited_copy(nil, function(sd) sd["encoder.embed_tokens.weight"] = sd["shared.weight"] end)
    for _, dir in ipairs({ only_encoder, both }) do
      local m = T5EncoderModel.from_pretrained(dir)
      compare.assert_close(m(fx.input_ids, { attention_mask = fx.attention_mask }), fx.hidden_masked, TOL, dir)
    end
  end)

  it("finds text_encoder_2/ in a pipeline folder", function()
    local root = files.tmpdir()
    assert.is_true((files.sh(string.format("cp -r %st5_tiny %s/text_encoder_2", DIR, root))))
    local m = T5EncoderModel.from_pretrained(root)
    compare.assert_close(m(fx.input_ids), fx.hidden_nomask, TOL, "pipeline folder")
  end)

  it("supports the non-gated relu feed-forward (wi, wo) and gelu_new without the gate", function()
    local m = T5EncoderModel.from_config({ vocab_size = 10, d_model = 8, d_ff = 6, d_kv = 4, num_heads = 2,
      num_layers = 1, feed_forward_proj = "relu" })
    local keys = table.concat(m:state_dict_keys(), " ")
    assert.truthy(keys:find("DenseReluDense.wi.weight", 1, true))
    assert.falsy(keys:find("wi_0", 1, true))
    local ids = cocola.tensor({ { 1, 2, 3 } }, { dtype = "int64" })
    local dense = m.encoder.block[1].layer[2].DenseReluDense
    assert.equals("T5DenseActDense", dense:type_name())
    local x = cocola.randn({ 1, 3, 8 })
    compare.assert_close(dense(x), dense.wo(dense.wi(x):relu()), 1e-6, "relu dense")
    assert.are.same({ 1, 3, 8 }, m(ids).shape)
    local g = T5EncoderModel.from_config({ vocab_size = 10, d_model = 8, d_ff = 6, d_kv = 4, num_heads = 2,
      num_layers = 1, feed_forward_proj = "gated-gelu", is_gated_act = false })
    assert.equals("T5DenseActDense", g.encoder.block[1].layer[2].DenseReluDense:type_name())
    assert.equals("gelu_new", g.act)
  end)

  it("refuses unsupported config values, naming the file and the key", function()
    local dir = edited_copy(function(t) return t:gsub('"gated%-gelu"', '"gated-gelu-x"') end)
    local err = error_of(T5EncoderModel.from_pretrained, dir)
    assert.truthy(err:find(dir .. "/config.json", 1, true), err)
    assert.truthy(err:find("feed_forward_proj", 1, true), err)
    dir = edited_copy(function(t) return t:gsub('"dense_act_fn": "gelu_new"', '"dense_act_fn": "mish"') end)
    err = error_of(T5EncoderModel.from_pretrained, dir)
    assert.truthy(err:find("dense_act_fn", 1, true) and err:find("mish", 1, true), err)
    dir = edited_copy(function(t) return t:gsub('"d_ff": 37', '"d_ff": 37, "rope_theta": 10000') end)
    err = error_of(T5EncoderModel.from_pretrained, dir)
    assert.truthy(err:find("rope_theta", 1, true) and err:find("not supported", 1, true), err)
  end)

  it("loads strictly: errors name the file and the key", function()
    local dir = edited_copy(nil, function(sd) sd["encoder.block.1.layer.1.DenseReluDense.wo.weight"] = nil end)
    local err = error_of(T5EncoderModel.from_pretrained, dir)
    assert.truthy(err:find(dir .. "/model.safetensors", 1, true), err)
    assert.truthy(err:find("missing: encoder.block.1.layer.1.DenseReluDense.wo.weight", 1, true), err)
    dir = edited_copy(nil, function(sd) sd["encoder.block.2.layer.0.layer_norm.weight"] = cocola.ones({ 32 }) end)
    err = error_of(T5EncoderModel.from_pretrained, dir)
    assert.truthy(err:find("unexpected: encoder.block.2.layer.0.layer_norm.weight", 1, true), err)
    dir = edited_copy(function(t) return t:gsub('"d_ff": 37', '"d_ff": 36') end)
    err = error_of(T5EncoderModel.from_pretrained, dir)
    assert.truthy(err:find("wrong shape", 1, true) and err:find("wi_0.weight", 1, true), err)
    dir = edited_copy(nil, function(sd)
      sd["encoder.embed_tokens.weight"] = cocola.zeros({ 99, 32 })
    end)
    err = error_of(T5EncoderModel.from_pretrained, dir)
    assert.truthy(err:find("encoder.embed_tokens.weight", 1, true) and err:find("tied", 1, true), err)
    local empty = files.tmpdir()
    err = error_of(T5EncoderModel.from_pretrained, empty)
    assert.truthy(err:find("config.json", 1, true) and err:find("text_encoder_2", 1, true), err)
  end)

  it("gives clear errors for bad input", function()
    local err = error_of(model.forward, model, fx.input_ids:to("float32"))
    assert.truthy(err:find("input_ids must be an int64 tensor", 1, true) and err:find("float32", 1, true), err)
    err = error_of(model.forward, model, fx.input_ids:select(1, 1))
    assert.truthy(err:find("(batch, length)", 1, true), err)
    err = error_of(model.forward, model, fx.input_ids, { attention_mask = cocola.ones({ 2, 11 }) })
    assert.truthy(err:find("attention_mask must have the shape of input_ids (2, 12)", 1, true), err)
    err = error_of(model.forward, model, fx.input_ids, { attention_mask = cocola.ones({ 12 }) })
    assert.truthy(err:find("attention_mask must have the shape", 1, true), err)
    err = error_of(model.forward, model, fx.input_ids, { attention_mask = cocola.full({ 2, 12 }, 2) })
    assert.truthy(err:find("only 0 (padding) and 1", 1, true), err)
    err = error_of(model.forward, model, cocola.tensor({ { 1, 100 } }, { dtype = "int64" }))
    assert.truthy(err:find("[0, 100)", 1, true), err)
    err = error_of(model.forward, model, fx.input_ids, fx.attention_mask)
    assert.truthy(err:find("options table", 1, true), err)
  end)
end)
