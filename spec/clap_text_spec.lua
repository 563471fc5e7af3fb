-- clap_text_spec.lua — cocola.models.text.clap_text (the text side of transformers ClapModel: RoBERTa text
-- tower with its pooler, text projection, L2 normalisation) against spec/fixtures/text/clap_io.safetensors
-- (gen_clap.py: transformers 4.38.2): the tiny clap_tiny/ folder loaded strictly on its text side (its audio
-- tower ignored); last hidden state, pooler output and get_text_features with a padded row, and without a
-- mask, all rel. error < 1e-4; padding changes nothing for the real tokens; key names; config, loading and
-- input errors.
local cocola = require "cocola"
local compare = require "helpers.compare"
local files = require "helpers.files"
local read, write = files.read, files.write
local ClapText = require "cocola.models.text.clap_text"

local DIR = "spec/fixtures/text/"
local fx = cocola.load(DIR .. "clap_io.safetensors")
local TOL = 1e-4

local function failure(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

-- a copy of clap_tiny/ whose config.json has `from` replaced by `to` (config unchanged when from is nil)
local function altered_clap(from, to)
  local dir = files.tmpdir()
  write(dir .. "/model.safetensors", read(DIR .. "clap_tiny/model.safetensors"))
  local cfg = read(DIR .. "clap_tiny/config.json")
  if from then
    local n
    cfg, n = cfg:gsub(from, to)
    assert(n == 1, "pattern not found in config.json: " .. from)
  end
  write(dir .. "/config.json", cfg)
  return dir
end

-- a copy of clap_tiny/ whose weights are those of the file, changed by edit(name -> tensor table)
local function altered_weights(edit)
  local dir = altered_clap()
  local sd = cocola.load(DIR .. "clap_tiny/model.safetensors")
  edit(sd)
  os.remove(dir .. "/model.safetensors")
  cocola.save(dir .. "/model.safetensors", sd)
  return dir
end

describe("ClapText (transformers 4.38.2 ClapModel, text side)", function()
  local model = ClapText.from_pretrained(DIR .. "clap_tiny")
  local ids, mask = fx.input_ids, fx.attention_mask

  it("reads the nested text_config and the top-level projection settings", function()
    assert.equal(32, model.config.hidden_size)
    assert.equal(2, model.config.num_hidden_layers)
    assert.equal(37, model.config.intermediate_size)
    assert.equal(40, model.config.max_position_embeddings)
    assert.equal(1, model.config.pad_token_id)
    assert.equal(1e-12, model.config.layer_norm_eps)
    assert.equal(8, model.config.projection_dim)
    assert.equal("relu", model.config.projection_hidden_act)
  end)

  it("has ClapModel's text-side parameter names", function()
    local keys = model:state_dict_keys()
    local set = {}
    for _, k in ipairs(keys) do set[k] = true end
    for _, k in ipairs({ "text_model.embeddings.word_embeddings.weight",
      "text_model.embeddings.position_embeddings.weight", "text_model.embeddings.token_type_embeddings.weight",
      "text_model.embeddings.LayerNorm.weight", "text_model.encoder.layer.1.attention.self.query.weight",
      "text_model.encoder.layer.0.attention.output.LayerNorm.bias", "text_model.encoder.layer.1.intermediate.dense.weight",
      "text_model.encoder.layer.0.output.dense.weight", "text_model.pooler.dense.bias",
      "text_projection.linear1.weight", "text_projection.linear2.bias" }) do
      assert.is_true(set[k] == true, k)
    end
    -- embeddings 4 LayerNorm+3 tables = 5, each layer 16, pooler 2, projection 4
    assert.equal(5 + 2 * 16 + 2 + 4, #keys)
  end)

  it("matches last_hidden_state, pooler_output and get_text_features with a padded row", function()
    cocola.no_grad(function()
      local out = model(ids, { attention_mask = mask })
      compare.assert_close(out.last_hidden_state, fx.last_hidden_state, TOL, "last_hidden_state")
      compare.assert_close(out.pooler_output, fx.pooler_output, TOL, "pooler_output")
      compare.assert_close(out.text_embeds, fx.text_embeds, TOL, "text_embeds")
      compare.assert_close(model:get_text_features(ids, { attention_mask = mask }), fx.text_embeds, TOL,
        "get_text_features")
      local norms = out.text_embeds:norm(2, 2):totable()
      for _, n in ipairs(norms) do assert.is_true(math.abs(n - 1) < 1e-5) end
    end)
  end)

  it("matches get_text_features without a mask", function()
    cocola.no_grad(function()
      compare.assert_close(model(ids).text_embeds, fx.text_embeds_nomask, TOL, "text_embeds, no mask")
    end)
  end)

  it("gives the same real-token states whatever padding follows them", function()
    cocola.no_grad(function()
      -- row 2 alone, cut to its 7 real tokens, without padding or mask
      local row = ids:narrow(1, 2, 1):narrow(2, 1, 7):contiguous()
      local short = model(row)
      local full = model(ids, { attention_mask = mask })
      compare.assert_close(short.last_hidden_state, full.last_hidden_state:narrow(1, 2, 1):narrow(2, 1, 7), 1e-5,
        "real tokens, padded vs not")
      compare.assert_close(short.text_embeds, full.text_embeds:narrow(1, 2, 1), 1e-5, "text_embeds, padded vs not")
      -- more padding still changes nothing
      local longer = cocola.cat({ row, cocola.ones({ 1, 5 }, { dtype = "int64" }) }, 2)
      local lmask = cocola.cat({ cocola.ones({ 1, 7 }), cocola.zeros({ 1, 5 }) }, 2)
      local l = model(longer, { attention_mask = lmask })
      compare.assert_close(l.last_hidden_state:narrow(2, 1, 7), short.last_hidden_state, 1e-5, "longer padding")
      compare.assert_close(l.pooler_output, short.pooler_output, 1e-5, "pooler, longer padding")
    end)
  end)

  it("refuses bad inputs with clear errors", function()
    assert.matches("input_ids must be an int64 tensor", failure(model.forward, model, cocola.zeros({ 2, 10 })))
    assert.matches("input_ids must be an int64 tensor", failure(model.forward, model,
      cocola.zeros({ 10 }, { dtype = "int64" })))
    assert.matches("token ids must lie in %[0, 100%)", failure(model.forward, model,
      cocola.tensor({ { 0, 100 } }, { dtype = "int64" })))
    assert.matches("attention_mask must have the shape of input_ids %(2, 10%)", failure(model.forward, model, ids,
      { attention_mask = cocola.ones({ 2, 9 }) }))
    assert.matches("attention_mask must hold only 0", failure(model.forward, model, ids,
      { attention_mask = cocola.ones({ 2, 10 }) * 2 }))
    assert.matches("options table", failure(model.forward, model, ids, mask))
    -- 39 tokens need position 40 (they start at pad + 1 = 2): beyond the 40-row table
    assert.matches("beyond max_position_embeddings = 40", failure(model.forward, model,
      cocola.zeros({ 1, 39 }, { dtype = "int64" })))
    cocola.no_grad(function() assert.same({ 1, 38, 32 }, model(cocola.zeros({ 1, 38 }, { dtype = "int64" }))
      .last_hidden_state.shape) end)
  end)

  it("also takes a flat ClapTextModelWithProjection config", function()
    local m = ClapText({ model_type = "clap_text_model", hidden_size = 16, num_hidden_layers = 1,
      num_attention_heads = 2, intermediate_size = 20, vocab_size = 50, max_position_embeddings = 20,
      projection_dim = 4 })
    assert.equal(4, m.config.projection_dim)
    cocola.no_grad(function()
      local out = m(cocola.tensor({ { 0, 5, 7, 2, 1 } }, { dtype = "int64" }))
      assert.same({ 1, 5, 16 }, out.last_hidden_state.shape)
      assert.same({ 1, 4 }, out.text_embeds.shape)
    end)
    assert.matches("projection_hidden_act", failure(ClapText, { model_type = "clap_text_model",
      projection_hidden_act = "tanh" }), 1, true)
  end)

  it("accepts a pipeline folder holding text_encoder/", function()
    local root = files.tmpdir()
    assert(files.sh("cp -r " .. DIR .. "clap_tiny " .. root .. "/text_encoder"))
    local m = ClapText.from_pretrained(root)
    cocola.no_grad(function()
      compare.assert_close(m(ids, { attention_mask = mask }).text_embeds, fx.text_embeds, TOL, "pipeline folder")
    end)
  end)

  it("refuses unsupported config values, naming the file and key", function()
    local dir = altered_clap('"intermediate_size": 37', '"intermediate_size": 37, "hidden_act": "gelu_new"')
    local err = failure(ClapText.from_pretrained, dir)
    assert.matches(dir .. "/config.json text_config: hidden_act", err, 1, true)
    assert.matches("not supported", err, 1, true)
    err = failure(ClapText.from_pretrained, altered_clap('"projection_hidden_act": "relu"',
      '"projection_hidden_act": "gelu"'))
    assert.matches("projection_hidden_act = \"gelu\" is not supported", err, 1, true)
    err = failure(ClapText.from_pretrained, altered_clap('"intermediate_size": 37',
      '"intermediate_size": 37, "position_embedding_type": "relative_key"'))
    assert.matches("position_embedding_type", err, 1, true)
    err = failure(ClapText.from_pretrained, altered_clap('"intermediate_size": 37',
      '"intermediate_size": 37, "made_up": 1'))
    assert.matches("config key 'made_up' is not supported", err, 1, true)
    err = failure(ClapText.from_pretrained, altered_clap('"num_attention_heads": 2', '"num_attention_heads": 3'))
    assert.matches("hidden_size (32) must be divisible by num_attention_heads (3)", err, 1, true)
    err = failure(ClapText.from_pretrained, altered_clap('"model_type": "clap"', '"model_type": "bert"'))
    assert.matches("model_type", err, 1, true)
    assert.matches("no config.json here or in text_encoder/", failure(ClapText.from_pretrained, files.tmpdir()), 1,
      true)
  end)

  it("loads the text side strictly, naming the file and the key", function()
    local dir = altered_weights(function(sd) sd["text_projection.linear2.bias"] = nil end)
    local err = failure(ClapText.from_pretrained, dir)
    assert.matches(dir .. "/model.safetensors", err, 1, true)
    assert.matches("missing: text_projection.linear2.bias", err, 1, true)
    dir = altered_weights(function(sd) sd["text_model.encoder.layer.2.output.dense.bias"] = cocola.zeros({ 32 }) end)
    err = failure(ClapText.from_pretrained, dir)
    assert.matches("unexpected: text_model.encoder.layer.2.output.dense.bias", err, 1, true)
    dir = altered_weights(function(sd) sd["text_model.pooler.dense.weight"] = cocola.zeros({ 32, 16 }) end)
    err = failure(ClapText.from_pretrained, dir)
    assert.matches("text_model.pooler.dense.weight has shape {32,16} in the file, {32,32} in the model", err, 1, true)
    -- the audio side is not read: dropping or changing it changes nothing
    dir = altered_weights(function(sd)
      for k in pairs(sd) do if k:match("^audio") or k:match("^logit_scale") then sd[k] = nil end end
    end)
    local m = ClapText.from_pretrained(dir)
    cocola.no_grad(function()
      compare.assert_close(m(ids, { attention_mask = mask }).text_embeds, fx.text_embeds, TOL, "text side only")
    end)
    dir = altered_clap()
    os.remove(dir .. "/model.safetensors")
    assert.matches(dir .. "/model.safetensors: no such file", failure(ClapText.from_pretrained, dir), 1, true)
  end)
end)
