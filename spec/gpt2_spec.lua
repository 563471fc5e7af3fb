-- gpt2_spec.lua — cocola.models.text.gpt2 (transformers GPT2Model) and
-- cocola.models.audioldm2.projection_model (diffusers AudioLDM2ProjectionModel) against
-- spec/fixtures/text/gpt2_io.safetensors (gen_gpt2.py: transformers 4.38.2, diffusers 0.27.2): the tiny
-- gpt2_tiny/ and projection_tiny/ folders loaded strictly; last hidden states with and without a padding
-- mask, a cached second call, the 8 generated embeddings of generate_language_model, the projection's
-- states and mask and the projection -> generation chain, all rel. error < 1e-4; the cache path equals the
-- full recomputation; key names and order; config, loading and shape errors.
local cocola = require "cocola"
local compare = require "helpers.compare"
local files = require "helpers.files"
local read, write, copy = files.read, files.write, files.copy
local GPT2Model = require "cocola.models.text.gpt2"
local ProjectionModel = require "cocola.models.audioldm2.projection_model"

local DIR = "spec/fixtures/text/"
local fx = cocola.load(DIR .. "gpt2_io.safetensors")
local TOL = 1e-4


-- the error message of fn(...), which must fail
local function failure(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

-- a copy of gpt2_tiny/ whose config.json has `from` replaced by `to`
local function altered_gpt2(from, to)
  local dir = files.tmpdir()
  copy(DIR .. "gpt2_tiny/model.safetensors", dir .. "/model.safetensors")
  local cfg = read(DIR .. "gpt2_tiny/config.json")
  local new, n = cfg:gsub(from, to)
  assert(n == 1, "pattern not found in config.json: " .. from)
  write(dir .. "/config.json", new)
  return dir
end

describe("GPT2Model (transformers 4.38.2)", function()
  local model = GPT2Model.from_pretrained(DIR .. "gpt2_tiny")
  local x, mask = fx.x, fx.mask

  it("has transformers' parameter names, in order", function()
    local keys = model:state_dict_keys()
    assert.same({ "wte.weight", "wpe.weight", "h.0.ln_1.weight", "h.0.ln_1.bias", "h.0.attn.c_attn.weight",
      "h.0.attn.c_attn.bias", "h.0.attn.c_proj.weight", "h.0.attn.c_proj.bias", "h.0.ln_2.weight", "h.0.ln_2.bias",
      "h.0.mlp.c_fc.weight", "h.0.mlp.c_fc.bias", "h.0.mlp.c_proj.weight", "h.0.mlp.c_proj.bias" },
      { table.unpack(keys, 1, 14) })
    assert.same({ "ln_f.weight", "ln_f.bias" }, { keys[#keys - 1], keys[#keys] })
    assert.equal(2 + 2 * 12 + 2, #keys)
    assert.same({ 32, 96 }, model.h[1].attn.c_attn.weight.shape) -- Conv1D: (in, out)
  end)

  it("gives the last hidden state after ln_f, without and with a padding mask", function()
    cocola.no_grad(function()
      local h, cache = model(x)
      compare.assert_close(h, fx.out_plain, TOL, "plain")
      assert.equal(2, #cache)
      assert.same({ 2, 2, 7, 16 }, cache[1][1].shape)
      compare.assert_close(model(x, { attention_mask = mask }), fx.out_masked, TOL, "masked")
    end)
  end)

  it("continues from a KV cache, positions included, and equals the full recomputation", function()
    cocola.no_grad(function()
      local _, past = model(x:narrow(2, 1, 5), { attention_mask = mask:narrow(2, 1, 5) })
      local h2 = model(x:narrow(2, 6, 2), { attention_mask = mask, past = past })
      compare.assert_close(h2, fx.out_cached, TOL, "cached")
      local full = model(x, { attention_mask = mask })
      compare.assert_close(h2, full:narrow(2, 6, 2), 1e-5, "cached vs full")
      -- one token at a time, no mask
      local _, p = model(x:narrow(2, 1, 4))
      local outs = {}
      for t = 5, 7 do
        local ht
        ht, p = model(x:narrow(2, t, 1), { past = p })
        outs[#outs + 1] = ht
      end
      compare.assert_close(cocola.cat(outs, 2), model(x):narrow(2, 5, 3), 1e-5, "token by token vs full")
    end)
  end)

  it("generates the 8 embeddings of diffusers' generate_language_model", function()
    cocola.no_grad(function()
      local g = GPT2Model.generate_embeddings(model, x)
      assert.same({ 2, 8, 32 }, g.shape)
      compare.assert_close(g, fx.gen_plain, TOL, "generated, no mask")
      compare.assert_close(model:generate_embeddings(x, { attention_mask = mask, max_new_tokens = 8 }),
        fx.gen_masked, TOL, "generated, masked")
      -- the cached loop equals recomputing the whole sequence at every step
      local seq, m = x, mask
      for _ = 1, 8 do
        local h = model(seq, { attention_mask = m })
        seq = cocola.cat({ seq, h:narrow(2, h:size(2), 1) }, 2)
        m = cocola.cat({ m, cocola.ones({ 2, 1 }) }, 2)
      end
      compare.assert_close(model:generate_embeddings(x, { attention_mask = mask }), seq:narrow(2, 8, 8), 1e-5,
        "cached generation vs recomputation")
      assert.same({ 2, 3, 32 }, model:generate_embeddings(x, { max_new_tokens = 3 }).shape)
    end)
  end)

  it("refuses bad inputs with clear errors", function()
    assert.matches("inputs_embeds must be %(B, L, 32%), got {2,7,8}", failure(model.forward, model, cocola.zeros({ 2, 7, 8 })))
    assert.matches("inputs_embeds must be %(B, L, 32%)", failure(model.forward, model, cocola.zeros({ 7, 32 })))
    assert.matches("attention_mask must be %(2, 7%)", failure(model.forward, model, x, { attention_mask = cocola.ones({ 2, 6 }) }))
    assert.matches("exceed n_positions = 64", failure(model.forward, model, cocola.zeros({ 1, 65, 32 })))
    local _, past = cocola.no_grad(function() return model(x) end)
    assert.matches("past%[1%]%[1%] must be %(1, 2, P, 16%)", failure(model.forward, model, cocola.zeros({ 1, 1, 32 }), { past = past }))
    assert.matches("past must be the cache", failure(model.forward, model, x, { past = { 1 } }))
    assert.matches("max_new_tokens must be a positive integer",
      failure(GPT2Model.generate_embeddings, model, x, { max_new_tokens = 0 }))
  end)

  it("refuses unsupported config values, naming the file and key", function()
    local dir = altered_gpt2('"gelu_new"', '"relu"')
    local err = failure(GPT2Model.from_pretrained, dir)
    assert.matches(dir .. "/config.json: activation_function", err, 1, true)
    assert.matches("not supported", err, 1, true)
    err = failure(GPT2Model.from_pretrained, altered_gpt2('"scale_attn_weights": true', '"scale_attn_weights": false'))
    assert.matches("scale_attn_weights = false is not supported", err, 1, true)
    err = failure(GPT2Model.from_pretrained, altered_gpt2('"use_cache": true', '"use_cache": true, "rotary_dim": 4'))
    assert.matches("config key 'rotary_dim' is not supported", err, 1, true)
    assert.matches("n_embd %(32%) must be divisible by n_head %(3%)",
      failure(GPT2Model, { n_embd = 32, n_head = 3, n_layer = 1, vocab_size = 4, n_positions = 8 }))
  end)

  it("loads strictly: missing, unexpected and misshapen weights name the file and the keys", function()
    local dir = altered_gpt2('"n_layer": 2', '"n_layer": 3')
    local err = failure(GPT2Model.from_pretrained, dir)
    assert.matches(dir .. "/model.safetensors does not match the GPT2Model", err, 1, true)
    assert.matches("missing: h.2.", err, 1, true)
    err = failure(GPT2Model.from_pretrained, altered_gpt2('"n_layer": 2', '"n_layer": 1'))
    assert.matches("unexpected: h.1.", err, 1, true)
    err = failure(GPT2Model.from_pretrained, altered_gpt2('"n_positions": 64', '"n_positions": 32'))
    assert.matches("wrong shape: wpe.weight has shape {64,32} in the file, {32,32} in the model", err, 1, true)
    err = failure(GPT2Model.from_pretrained, files.tmpdir())
    assert.matches("no config.json here or in language_model/", err, 1, true)
  end)

  it("finds language_model/ in a pipeline folder", function()
    local root = files.tmpdir()
    os.execute("mkdir -p '" .. root .. "/language_model'")
    copy(DIR .. "gpt2_tiny/model.safetensors", root .. "/language_model/model.safetensors")
    copy(DIR .. "gpt2_tiny/config.json", root .. "/language_model/config.json")
    local m = GPT2Model.from_pretrained(root)
    cocola.no_grad(function() compare.assert_close(m(x), fx.out_plain, TOL, "pipeline folder") end)
  end)
end)

describe("AudioLDM2ProjectionModel (diffusers 0.27.2)", function()
  local proj = ProjectionModel.from_pretrained(DIR .. "projection_tiny")

  it("has diffusers' parameter names, in torch's state_dict order (own parameters first)", function()
    assert.same({ "sos_embed", "eos_embed", "sos_embed_1", "eos_embed_1", "projection.weight", "projection.bias",
      "projection_1.weight", "projection_1.bias" }, proj:state_dict_keys())
  end)

  it("projects, adds sos/eos and concatenates the masks", function()
    cocola.no_grad(function()
      local h, m = proj(fx.proj_h, fx.proj_h1, fx.proj_m, fx.proj_m1)
      compare.assert_close(h, fx.proj_out, TOL, "projection states")
      assert.same(fx.proj_mask:totable(), m:totable())
      local hn, mn = proj(fx.proj_h, fx.proj_h1)
      compare.assert_close(hn, fx.proj_out_nomask, TOL, "projection states, no masks")
      assert.is_nil(mn)
      -- one mask missing: the other stream counts as all ones
      local _, m1 = proj(fx.proj_h, fx.proj_h1, nil, fx.proj_m1)
      assert.same(fx.proj_mask:totable(), m1:totable())
    end)
  end)

  it("feeds GPT-2 as the pipeline does (projection -> 8 generated embeddings)", function()
    local gpt2 = GPT2Model.from_pretrained(DIR .. "gpt2_tiny")
    cocola.no_grad(function()
      local h, m = proj(fx.proj_h, fx.proj_h1, fx.proj_m, fx.proj_m1)
      compare.assert_close(gpt2:generate_embeddings(h, { attention_mask = m }), fx.chain_gen, TOL, "chain")
    end)
  end)

  it("refuses bad shapes and configs clearly", function()
    assert.matches("hidden_states must be %(B, S, 8%), got {2,1,9}", failure(proj.forward, proj, cocola.zeros({ 2, 1, 9 }), fx.proj_h1))
    assert.matches("hidden_states_1 must be %(2, S, 12%), got {1,5,12}", failure(proj.forward, proj, fx.proj_h, cocola.zeros({ 1, 5, 12 })))
    assert.matches("attention_mask_1 must be %(2, 5%), got {2,4}", failure(proj.forward, proj, fx.proj_h, fx.proj_h1, fx.proj_m, cocola.ones({ 2, 4 })))
    assert.matches("config key 'language_model_dim' is not supported",
      failure(ProjectionModel, { text_encoder_dim = 8, text_encoder_1_dim = 12, language_model_dim = 32 }), 1, true)
    assert.matches("config key 'langauge_model_dim' is required",
      failure(ProjectionModel, { text_encoder_dim = 8, text_encoder_1_dim = 12 }), 1, true)
  end)
end)
