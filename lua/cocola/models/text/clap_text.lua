-- cocola.models.text.clap_text — the text side of transformers' ClapModel (modeling_clap.py, transformers
-- 4.38.2), AudioLDM 2's first text stream (the pipeline's `text_encoder/`): the RoBERTa text tower with its
-- pooler (roberta_model.lua), the text projection (Linear, ReLU, Linear: clap_projection.lua) and the L2
-- normalisation of get_text_features.
-- State-dict names are ClapModel's text side: text_model.embeddings.*, text_model.encoder.layer.{i}.*,
--   text_model.pooler.dense, text_projection.linear1, text_projection.linear2.
-- forward(input_ids int64 (B, L), {attention_mask = (B, L) 1 keep / 0 pad, any dtype}) ->
--   {last_hidden_state (B, L, hidden), pooler_output (B, hidden) = tanh(dense(h[:, 0])),
--    text_embeds (B, projection_dim) = normalize(text_projection(pooler_output)), ClapModel.get_text_features}
--   Positions come from the ids (padding tokens skipped, see roberta_model.lua), token types are all 0, no
--   dropout (inference).
-- Config: ClapText(cfg) takes a ClapModel config.json as parsed (text_config nested; projection_dim and
--   projection_hidden_act at the top override text_config's, as ClapConfig does) or a flat
--   ClapTextModelWithProjection config (model_type "clap_text_model"); missing keys take ClapText.DEFAULTS
--   (ClapTextConfig's / ClapConfig's defaults); unsupported values are refused with the key named.
--   ClapText.from_pretrained(dir) reads dir/config.json + dir/model.safetensors (or a pipeline folder's
--   text_encoder/), strictly by name on the text side (see load_weights).
local cocola = require "cocola"
local cjson = require "cjson"
local nn = require "cocola.nn"
local pretrained = require "cocola.models.audioldm2.pretrained"
local RobertaModel = require "cocola.models.text.roberta_model"
local ClapProjection = require "cocola.models.text.clap_projection"

local P = require "cocola.models.audioldm2.pretrained"

local ClapText = nn.Module:extend("ClapText")

-- ClapTextConfig's defaults (transformers 4.38.2) for the keys this port reads, and ClapConfig's
-- projection_dim / projection_hidden_act
ClapText.DEFAULTS = {
  vocab_size = 50265, hidden_size = 768, num_hidden_layers = 12, num_attention_heads = 12,
  intermediate_size = 3072, hidden_act = "gelu", max_position_embeddings = 514, type_vocab_size = 1,
  layer_norm_eps = 1e-12, pad_token_id = 1, position_embedding_type = "absolute",
  projection_dim = 512, projection_hidden_act = "relu",
}

local positive_integer = pretrained.positive_integer
local non_negative_integer = pretrained.non_negative_integer
local number = pretrained.number
local must_be = pretrained.must_be
local function empty_table(v)
  if type(v) ~= "table" or next(v) ~= nil then return "only {} (no pruned heads) is supported" end
end

-- ClapTextConfig's keys: a rule when the value matters here, true when accepted and unused
ClapText.TEXT_CONFIG_KEYS = {
  vocab_size = positive_integer, hidden_size = positive_integer, num_hidden_layers = positive_integer,
  num_attention_heads = positive_integer, intermediate_size = positive_integer,
  hidden_act = pretrained.one_of({ "gelu" }),
  max_position_embeddings = positive_integer, type_vocab_size = positive_integer, layer_norm_eps = number,
  pad_token_id = non_negative_integer, position_embedding_type = pretrained.one_of({ "absolute" }),
  projection_dim = positive_integer, projection_hidden_act = pretrained.one_of({ "relu" }),
  is_decoder = must_be(false), add_cross_attention = must_be(false), pruned_heads = empty_table,
  model_type = pretrained.one_of({ "clap_text_model" }),
}
-- ClapConfig's top-level keys. audio_config is accepted whatever it holds: the audio tower is clap_audio.lua's.
ClapText.CONFIG_KEYS = {
  text_config = function(v) if type(v) ~= "table" then return "expected an object" end end,
  audio_config = true, logit_scale_init_value = true, hidden_size = true, num_hidden_layers = true,
  projection_dim = positive_integer, projection_hidden_act = pretrained.one_of({ "relu" }),
  is_decoder = must_be(false), add_cross_attention = must_be(false), pruned_heads = true,
  model_type = pretrained.one_of({ "clap" }),
}
-- PretrainedConfig's own keys and the dropout rates (inference) are accepted, unused
local ACCEPTED = { "hidden_dropout_prob", "attention_probs_dropout_prob" }
pretrained.accept_pretrained_keys(ClapText.TEXT_CONFIG_KEYS, ACCEPTED)
pretrained.accept_pretrained_keys(ClapText.CONFIG_KEYS, ACCEPTED)

-- the text settings of a ClapModel (or flat ClapTextModelWithProjection) config, checked, with defaults
local function text_settings(cfg)
  local where = cfg._path or "ClapText config"
  local tc
  if cfg.model_type == "clap_text_model" then
    tc = cfg
  else
    pretrained.check_keys(cfg, ClapText.CONFIG_KEYS, "ClapText (ClapModel text side)")
    tc = cfg.text_config or {}
    tc._path = where .. " text_config"
  end
  pretrained.check_keys(tc, ClapText.TEXT_CONFIG_KEYS, "ClapText (ClapModel text side)")
  local c = {}
  for k, v in pairs(ClapText.DEFAULTS) do c[k] = v end
  for k, v in pairs(tc) do c[k] = v end
  if tc ~= cfg then
    -- ClapConfig overrides text_config's projection settings with its own (or its defaults)
    c.projection_dim = cfg.projection_dim or ClapText.DEFAULTS.projection_dim
    c.projection_hidden_act = cfg.projection_hidden_act or ClapText.DEFAULTS.projection_hidden_act
  end
  if c.hidden_size % c.num_attention_heads ~= 0 then
    error(string.format("%s: hidden_size (%d) must be divisible by num_attention_heads (%d)", where,
      c.hidden_size, c.num_attention_heads), 4)
  end
  if c.pad_token_id >= c.vocab_size or c.pad_token_id >= c.max_position_embeddings then
    error(string.format("%s: pad_token_id (%d) must be below vocab_size (%d) and max_position_embeddings (%d)",
      where, c.pad_token_id, c.vocab_size, c.max_position_embeddings), 4)
  end
  return c
end

--- ClapText(cfg): cfg is a ClapModel config.json as parsed (missing keys take ClapText.DEFAULTS)
function ClapText:init(cfg)
  cfg = cfg or {}
  if type(cfg) ~= "table" then error("ClapText: expected a config table", 3) end
  local c = text_settings(cfg)
  self.config = c
  self.hidden_size, self.projection_dim, self.vocab_size = c.hidden_size, c.projection_dim, c.vocab_size
  self.text_model = RobertaModel(c)
  self.text_projection = ClapProjection(c.hidden_size, c.projection_dim)
end

ClapText.from_config = ClapText

-- buffers of the reference's text embeddings that older transformers saved (constant aranges and zeros):
-- accepted in the file and not read
ClapText.IGNORED_TEXT_KEYS = {
  ["text_model.embeddings.position_ids"] = true,
  ["text_model.embeddings.token_type_ids"] = true,
}

local function is_text_key(name)
  return name:sub(1, 11) == "text_model." or name:sub(1, 16) == "text_projection."
end

--- loads the text-side weights of a ClapModel model.safetensors strictly: every text_model.* /
--- text_projection.* tensor of the model must be in the file with its shape, and the file may hold no other
--- text-side tensor. The audio side (audio_model.*, audio_projection.*, logit_scale_a, logit_scale_t) is
--- ignored on purpose: AudioLDM 2 only uses the text features; clap_audio.lua loads the audio side of the same
--- file and clap_model.lua both sides.
function ClapText.load_weights(model, path)
  local f = io.open(path, "rb")
  if not f then error(string.format("%s: no such file", path), 2) end
  f:close()
  return P.load_safetensors(model, path, {
    ignore = function(name) return not is_text_key(name) or ClapText.IGNORED_TEXT_KEYS[name] ~= nil end })
end

--- ClapText.from_pretrained(dir): a ClapModel folder (config.json + model.safetensors) or a pipeline folder
--- holding text_encoder/; text side loaded strictly, eval mode
function ClapText.from_pretrained(dir)
  local folder = pretrained.component_dir(dir, "text_encoder")
  local model = ClapText(pretrained.read_config(folder))
  local ok, err = pcall(ClapText.load_weights, model, folder .. "/model.safetensors")
  if not ok then error(tostring(err):gsub("^.-%.lua:%d+: ", ""), 2) end
  return model:eval()
end

local function shape_of(t)
  return cocola.is_tensor(t) and (t:dtype() .. " " .. t:shape_string()) or type(t)
end

function ClapText:forward(input_ids, opts)
  opts = opts or {}
  if type(opts) ~= "table" or cocola.is_tensor(opts) then
    error("ClapText: the second argument is an options table {attention_mask = ...}", 2)
  end
  if not cocola.is_tensor(input_ids) or input_ids:dtype() ~= "int64" or input_ids:dim() ~= 2 then
    error("ClapText: input_ids must be an int64 tensor (batch, length) of token ids, got " .. shape_of(input_ids), 2)
  end
  local B, L = input_ids:size(1), input_ids:size(2)
  if B < 1 or L < 1 then error("ClapText: input_ids is empty (" .. input_ids:shape_string() .. ")", 2) end
  local lo, hi = input_ids:min():item(), input_ids:max():item()
  if lo < 0 or hi >= self.vocab_size then
    error(string.format("ClapText: token ids must lie in [0, %d), got ids in [%d, %d]", self.vocab_size, lo, hi), 2)
  end
  local mask = opts.attention_mask
  if mask ~= nil then
    if not cocola.is_tensor(mask) or mask:dim() ~= 2 or mask:size(1) ~= B or mask:size(2) ~= L then
      error(string.format("ClapText: attention_mask must have the shape of input_ids (%d, %d), got %s", B, L,
        shape_of(mask)), 2)
    end
    local m = mask:to("float64")
    if (m * (1 - m)):abs():max():item() ~= 0 then
      error("ClapText: attention_mask must hold only 0 (padding) and 1 (token)", 2)
    end
  end
  local ok, h, pooled = pcall(self.text_model.forward, self.text_model, input_ids, mask)
  if not ok then error(tostring(h):gsub("^.-%.lua:%d+: ", ""), 2) end
  local proj = self.text_projection(pooled)
  -- F.normalize(p = 2, dim = -1, eps = 1e-12): x / max(||x||, eps)
  local text_embeds = proj / proj:norm(2, 2, true):clamp(1e-12, math.huge)
  return { last_hidden_state = h, pooler_output = pooled, text_embeds = text_embeds }
end

--- get_text_features(input_ids, opts) -> text_embeds (B, projection_dim), as ClapModel.get_text_features
function ClapText:get_text_features(input_ids, opts)
  local ok, out = pcall(self.forward, self, input_ids, opts)
  if not ok then error(tostring(out):gsub("^.-%.lua:%d+: ", ""), 2) end
  return out.text_embeds
end

function ClapText:extra_repr()
  local c = self.config
  return string.format("hidden_size=%d, num_hidden_layers=%d, num_attention_heads=%d, projection_dim=%d",
    c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.projection_dim)
end

return ClapText
