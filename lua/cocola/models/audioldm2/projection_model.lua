-- cocola.models.audioldm2.projection_model — diffusers' AudioLDM2ProjectionModel
-- (pipelines/audioldm2/modeling_audioldm2.py, diffusers 0.27.2): projects the two text encoders' states
-- (CLAP, T5) to the language model's width and wraps each in learned start/end embeddings.
-- State-dict names: projection (Linear text_encoder_dim -> langauge_model_dim), projection_1 (Linear
-- text_encoder_1_dim -> langauge_model_dim), sos_embed, eos_embed, sos_embed_1, eos_embed_1 (each (lm_dim,),
-- ones at start). Config keys are the reference's __init__ arguments, misspelling included:
-- text_encoder_dim, text_encoder_1_dim, langauge_model_dim.
-- forward(hidden_states (B, S, d0), hidden_states_1 (B, S1, d1), attention_mask (B, S), attention_mask_1 (B, S1))
--   -> hidden_states (B, 1 + S + 1 + 1 + S1 + 1, lm_dim) = [sos, projection(h), eos, sos_1, projection_1(h1), eos_1],
--      attention_mask (B, S + S1 + 4) = [1, mask, 1, 1, mask_1, 1], or nil when both masks are nil.
--   When only one mask is given the other stream counts as all ones (the reference means this, but its
--   `new_ones(hidden_states[:2])` fails on that path; the pipeline always passes both).
local cocola = require "cocola"
local nn = require "cocola.nn"
local pretrained = require "cocola.models.audioldm2.pretrained"

local ProjectionModel = nn.Module:extend("AudioLDM2ProjectionModel")

local positive_integer = pretrained.positive_integer
ProjectionModel.CONFIG_KEYS = {
  text_encoder_dim = positive_integer, text_encoder_1_dim = positive_integer, langauge_model_dim = positive_integer,
}

--- AudioLDM2ProjectionModel(cfg): cfg is config.json as parsed; all three dims are required
function ProjectionModel:init(cfg)
  if type(cfg) ~= "table" then error("AudioLDM2ProjectionModel: expected a config table", 3) end
  pretrained.check_keys(cfg, ProjectionModel.CONFIG_KEYS, "AudioLDM2ProjectionModel")
  for _, k in ipairs({ "text_encoder_dim", "text_encoder_1_dim", "langauge_model_dim" }) do
    if cfg[k] == nil then
      error(string.format("%s: config key '%s' is required", cfg._path or "AudioLDM2ProjectionModel config", k), 3)
    end
  end
  local d = cfg.langauge_model_dim
  self.text_encoder_dim, self.text_encoder_1_dim, self.langauge_model_dim = cfg.text_encoder_dim,
    cfg.text_encoder_1_dim, d
  self.projection = nn.Linear(cfg.text_encoder_dim, d)
  self.projection_1 = nn.Linear(cfg.text_encoder_1_dim, d)
  for _, name in ipairs({ "sos_embed", "eos_embed", "sos_embed_1", "eos_embed_1" }) do
    self:register_parameter(name, cocola.ones({ d }):requires_grad(true))
  end
end

ProjectionModel.from_config = ProjectionModel

--- AudioLDM2ProjectionModel.from_pretrained(dir): the component folder or a pipeline folder holding
--- projection_model/; strict loading, eval mode
function ProjectionModel.from_pretrained(dir)
  return pretrained.from_pretrained(ProjectionModel, dir, "projection_model")
end

local function check_states(name, t, dim, B)
  if not cocola.is_tensor(t) or t:dim() ~= 3 or t:size(3) ~= dim or (B and t:size(1) ~= B) then
    error(string.format("AudioLDM2ProjectionModel: %s must be (%s, S, %d), got %s", name, B and tostring(B) or "B",
      dim, cocola.is_tensor(t) and t:shape_string() or type(t)), 3)
  end
end

local function check_mask(name, m, B, S)
  if m ~= nil and (not cocola.is_tensor(m) or m:dim() ~= 2 or m:size(1) ~= B or m:size(2) ~= S) then
    error(string.format("AudioLDM2ProjectionModel: %s must be (%d, %d), got %s", name, B, S,
      cocola.is_tensor(m) and m:shape_string() or type(m)), 3)
  end
end

-- [sos, h, eos] along the sequence; the mask (if any) gains a 1 at both ends
local function add_special_tokens(h, mask, sos, eos)
  local B, d = h:size(1), h:size(3)
  local s = sos:reshape({ 1, 1, d }):expand({ B, 1, d })
  local e = eos:reshape({ 1, 1, d }):expand({ B, 1, d })
  h = cocola.cat({ s, h, e }, 2)
  if mask ~= nil then
    local one = cocola.ones({ B, 1 }, { dtype = mask:dtype() }):to(mask:device())
    mask = cocola.cat({ one, mask, one }, 2)
  end
  return h, mask
end

function ProjectionModel:forward(hidden_states, hidden_states_1, attention_mask, attention_mask_1)
  check_states("hidden_states", hidden_states, self.text_encoder_dim)
  local B = hidden_states:size(1)
  check_states("hidden_states_1", hidden_states_1, self.text_encoder_1_dim, B)
  check_mask("attention_mask", attention_mask, B, hidden_states:size(2))
  check_mask("attention_mask_1", attention_mask_1, B, hidden_states_1:size(2))
  if attention_mask == nil and attention_mask_1 ~= nil then
    attention_mask = cocola.ones({ B, hidden_states:size(2) }, { dtype = attention_mask_1:dtype() })
      :to(attention_mask_1:device())
  elseif attention_mask ~= nil and attention_mask_1 == nil then
    attention_mask_1 = cocola.ones({ B, hidden_states_1:size(2) }, { dtype = attention_mask:dtype() })
      :to(attention_mask:device())
  end
  local h, m = add_special_tokens(self.projection(hidden_states), attention_mask, self.sos_embed, self.eos_embed)
  local h1, m1 = add_special_tokens(self.projection_1(hidden_states_1), attention_mask_1, self.sos_embed_1,
    self.eos_embed_1)
  local mask = m ~= nil and cocola.cat({ m, m1 }, 2) or nil
  return cocola.cat({ h, h1 }, 2), mask
end

function ProjectionModel:extra_repr()
  return string.format("text_encoder_dim=%d, text_encoder_1_dim=%d, langauge_model_dim=%d", self.text_encoder_dim,
    self.text_encoder_1_dim, self.langauge_model_dim)
end

return ProjectionModel
