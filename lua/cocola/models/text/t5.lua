-- cocola.models.text.t5 — transformers' T5EncoderModel (modeling_t5.py, transformers 4.38.2), AudioLDM 2's
-- second text encoder (text_encoder_2/, FLAN-T5-large: d_model 1024, d_ff 2816, 24 layers, 16 heads,
-- feed_forward_proj "gated-gelu"), with the transformers state-dict names:
--   shared                   Embedding(vocab_size, d_model)
--   encoder                  T5Stack: encoder.embed_tokens (the same module as shared), encoder.block.{i}
--                            (T5Block), encoder.final_layer_norm (T5LayerNorm)
-- Keys: shared.weight, encoder.block.{i}.layer.0.SelfAttention.{q,k,v,o}.weight,
--   encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight, encoder.block.{i}.layer.0.layer_norm.weight,
--   encoder.block.{i}.layer.1.DenseReluDense.{wi_0,wi_1,wo}.weight (gated; {wi,wo} otherwise),
--   encoder.block.{i}.layer.1.layer_norm.weight, encoder.final_layer_norm.weight. The tied
--   encoder.embed_tokens.weight is the same tensor as shared.weight and is listed once (as shared.weight).
-- forward(input_ids int64 (B, L), {attention_mask = (B, L) of 0/1}) -> last_hidden_state (B, L, d_model).
-- Quirks kept: no 1/sqrt(d_kv) in the attention, one relative position bias (block 0's) shared by all
-- blocks, masked keys get torch.finfo(float32).min added (not -inf), RMS norms in float32, and config.json's
-- dense_act_fn / is_gated_act, when present, override what feed_forward_proj implies (as PretrainedConfig
-- sets leftover kwargs after T5Config.__init__ derived them).
-- Config: T5EncoderModel(cfg) / T5EncoderModel.from_config(cfg) take config.json as parsed (T5Config's
-- arguments, defaults in T5EncoderModel.DEFAULTS; unknown keys are an error); T5EncoderModel.from_pretrained(dir)
-- reads dir/config.json and dir/model.safetensors (dir may be a pipeline folder holding text_encoder_2/).
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local Embedding = require "cocola.nn.Embedding"
local T5Stack = require "cocola.models.text.t5_stack"
local T5DenseActDense = require "cocola.models.text.t5_dense_act_dense"
local pretrained = require "cocola.models.audioldm2.pretrained"

local T5EncoderModel = Module:extend("T5EncoderModel")

-- T5Config's arguments that shape the encoder, with their defaults (transformers 4.38.2)
T5EncoderModel.DEFAULTS = {
  vocab_size = 32128, d_model = 512, d_kv = 64, d_ff = 2048, num_layers = 6, num_heads = 8,
  relative_attention_num_buckets = 32, relative_attention_max_distance = 128, layer_norm_epsilon = 1e-6,
  feed_forward_proj = "relu",
}

local positive_integer = pretrained.positive_integer
local positive_number = pretrained.positive_number
local function supported_act(v)
  if not T5DenseActDense.activation(v) then
    local names = {}
    for k in pairs(T5DenseActDense.ACTIVATIONS) do names[#names + 1] = k end
    table.sort(names)
    return "expected one of " .. table.concat(names, ", ")
  end
end
local function any() return nil end

-- config keys: a rule per key (see pretrained.check_keys); keys that do not change the encoder's output
-- in eval mode (dropout rates, decoder-only and generation settings, metadata) take any value
T5EncoderModel.CONFIG_KEYS = {
  vocab_size = positive_integer, d_model = positive_integer, d_kv = positive_integer, d_ff = positive_integer,
  num_layers = positive_integer, num_heads = positive_integer,
  relative_attention_num_buckets = function(v)
    if math.type(v) ~= "integer" or v < 4 then return "expected an integer >= 4" end
  end,
  relative_attention_max_distance = positive_integer, layer_norm_epsilon = positive_number,
  feed_forward_proj = function(v)
    if type(v) ~= "string" then return "expected a string such as \"relu\" or \"gated-gelu\"" end
    local parts = {}
    for p in v:gmatch("[^-]+") do parts[#parts + 1] = p end
    if #parts == 0 or #parts > 2 or (#parts == 2 and parts[1] ~= "gated") then
      return "expected \"gated-ACT\" or \"ACT\""
    end
    local act = v == "gated-gelu" and "gelu_new" or parts[#parts]
    return supported_act(act)
  end,
  dense_act_fn = supported_act,
  is_gated_act = function(v) if type(v) ~= "boolean" then return "expected true or false" end end,
  is_decoder = function(v) if v ~= false then return "T5EncoderModel is an encoder: only false" end end,
  -- no effect on the encoder in eval mode
  dropout_rate = any, classifier_dropout = any, initializer_factor = any, num_decoder_layers = any,
  is_encoder_decoder = any, use_cache = any, pad_token_id = any, eos_token_id = any, bos_token_id = any,
  decoder_start_token_id = any, tie_word_embeddings = any, n_positions = any, output_past = any,
  task_specific_params = any, gradient_checkpointing = any, architectures = any, model_type = any,
  torch_dtype = any, transformers_version = any, id2label = any, label2id = any,
}

--- what the config's feed-forward is: gated (boolean) and the activation name, as T5Config derives them
function T5EncoderModel.feed_forward(cfg)
  local proj = cfg.feed_forward_proj or T5EncoderModel.DEFAULTS.feed_forward_proj
  local parts = {}
  for p in proj:gmatch("[^-]+") do parts[#parts + 1] = p end
  local act, gated = parts[#parts], parts[1] == "gated"
  if proj == "gated-gelu" then act = "gelu_new" end
  if not pretrained.is_null(cfg.dense_act_fn) then act = cfg.dense_act_fn end
  if not pretrained.is_null(cfg.is_gated_act) then gated = cfg.is_gated_act end
  return gated, act
end

--- T5EncoderModel.from_config(cfg): checks every key (errors name the file and the key), then builds
function T5EncoderModel.from_config(cfg)
  if type(cfg) ~= "table" then error("T5EncoderModel.from_config: expected a config table", 2) end
  pretrained.check_keys(cfg, T5EncoderModel.CONFIG_KEYS, "T5EncoderModel")
  return T5EncoderModel(cfg)
end

--- T5EncoderModel(cfg): cfg as config.json (missing keys take T5EncoderModel.DEFAULTS)
function T5EncoderModel:init(cfg)
  cfg = cfg or {}
  local c = {}
  for k, v in pairs(T5EncoderModel.DEFAULTS) do c[k] = v end
  for k, v in pairs(cfg) do if T5EncoderModel.DEFAULTS[k] ~= nil and not pretrained.is_null(v) then c[k] = v end end
  for k in pairs(T5EncoderModel.DEFAULTS) do
    local rule = T5EncoderModel.CONFIG_KEYS[k]
    local problem = rule(c[k])
    if problem then
      error(string.format("T5EncoderModel: %s = %s is not supported (%s)", k, tostring(c[k]), problem), 3)
    end
  end
  local gated, act = T5EncoderModel.feed_forward(cfg)
  if not T5DenseActDense.activation(act) then
    error(string.format("T5EncoderModel: activation '%s' is not supported (%s)", tostring(act), supported_act(act)), 3)
  end
  self.config = c
  self.gated, self.act = gated, act
  self.shared = Embedding(c.vocab_size, c.d_model)
  self.encoder = T5Stack({
    num_layers = c.num_layers, d_model = c.d_model, d_ff = c.d_ff, d_kv = c.d_kv, num_heads = c.num_heads,
    relative_attention_num_buckets = c.relative_attention_num_buckets,
    relative_attention_max_distance = c.relative_attention_max_distance,
    gated = gated, act = act, eps = c.layer_norm_epsilon,
  }, self.shared)
end

local function shape_of(t) return cocola.is_tensor(t) and (t:dtype() .. " " .. t:shape_string()) or type(t) end

--- forward(input_ids int64 (B, L), {attention_mask = (B, L) 0/1, any dtype}) -> last_hidden_state (B, L, d_model)
function T5EncoderModel:forward(input_ids, opts)
  opts = opts or {}
  if type(opts) ~= "table" or cocola.is_tensor(opts) then
    error("T5EncoderModel: the second argument is an options table {attention_mask = ...}", 2)
  end
  if not cocola.is_tensor(input_ids) or input_ids:dtype() ~= "int64" or input_ids:dim() ~= 2 then
    error("T5EncoderModel: input_ids must be an int64 tensor (batch, length) of token ids, got " .. shape_of(input_ids), 2)
  end
  local B, L = input_ids:size(1), input_ids:size(2)
  if B < 1 or L < 1 then error("T5EncoderModel: input_ids is empty (" .. input_ids:shape_string() .. ")", 2) end
  local lo, hi = input_ids:min():item(), input_ids:max():item()
  if lo < 0 or hi >= self.config.vocab_size then
    error(string.format("T5EncoderModel: token ids must lie in [0, %d), got ids in [%d, %d]", self.config.vocab_size,
      lo, hi), 2)
  end
  local mask = opts.attention_mask
  if mask ~= nil then
    if not cocola.is_tensor(mask) or mask:dim() ~= 2 or mask:size(1) ~= B or mask:size(2) ~= L then
      error(string.format("T5EncoderModel: attention_mask must have the shape of input_ids (%d, %d), got %s", B, L,
        shape_of(mask)), 2)
    end
    local m = mask:to("float64")
    if (m * (1 - m)):abs():max():item() ~= 0 then
      error("T5EncoderModel: attention_mask must hold only 0 (padding) and 1 (token)", 2)
    end
  end
  return self.encoder(input_ids, mask)
end

local TIED = "encoder.embed_tokens.weight"

--- loads model.safetensors strictly by name, one tensor at a time. shared.weight and
--- encoder.embed_tokens.weight are one tied tensor: transformers' save_pretrained writes only shared.weight,
--- other writers may keep both or only the encoder's name. Either name is accepted for it; when both are
--- present, shared.weight is read and encoder.embed_tokens.weight must have the same shape (its data is not read).
function T5EncoderModel:load_weights(path)
  local file = cocola.open_safetensors(path)
  local shared, tied = file.entries["shared.weight"], file.entries[TIED]
  if shared and tied and table.concat(shared.shape, ",") ~= table.concat(tied.shape, ",") then
    error(string.format("%s does not match the T5EncoderModel built from its config: wrong shape: %s has shape {%s}, "
      .. "shared.weight {%s} (they are one tied tensor)", path, TIED, table.concat(tied.shape, ","),
      table.concat(shared.shape, ",")), 2)
  end
  return pretrained.load_safetensors(self, path, {
    source = function(name, entries)
      if name == "shared.weight" and not entries[name] and entries[TIED] then return TIED end
      return name
    end,
    ignore = function(name) return name == TIED end })
end

--- T5EncoderModel.from_pretrained(dir): dir holds config.json + model.safetensors, or is a pipeline folder
--- holding text_encoder_2/; returns the model in eval mode
function T5EncoderModel.from_pretrained(dir)
  local folder = pretrained.component_dir(dir, "text_encoder_2")
  local model = T5EncoderModel.from_config(pretrained.read_config(folder))
  local path = folder .. "/model.safetensors"
  local f = io.open(path, "rb")
  if not f then error(string.format("%s: no such file (T5EncoderModel weights)", path), 2) end
  f:close()
  model:load_weights(path)
  return model:eval()
end

function T5EncoderModel:extra_repr()
  local c = self.config
  return string.format("d_model=%d, d_ff=%d, num_layers=%d, num_heads=%d, gated=%s, act=%s", c.d_model, c.d_ff,
    c.num_layers, c.num_heads, Module.pyrepr(self.gated), self.act)
end

return T5EncoderModel
