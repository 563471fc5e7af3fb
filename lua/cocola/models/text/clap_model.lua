-- cocola.models.text.clap_model — transformers' ClapModel with both towers (modeling_clap.py, transformers
-- 4.38.2, non-fusion audio side): the text side of clap_text.lua, the audio side of clap_audio.lua and the
-- two logit scales.
-- State-dict names: text_model.*, text_projection.*, audio_model.*, audio_projection.*, logit_scale_a,
--   logit_scale_t (scalars: log of the scales).
-- forward(input_ids (B_t, L), input_features (B_a, 1, T, mels), {attention_mask}) ->
--   {text_embeds (B_t, P), audio_embeds (B_a, P) (both L2-normalised), logits_per_text (B_t, B_a) =
--    text_embeds audio_embeds^T exp(logit_scale_t), logits_per_audio (B_a, B_t) = audio_embeds text_embeds^T
--    exp(logit_scale_a)}.
-- ClapModel.from_pretrained(dir) loads one model.safetensors strictly into both sides at once (every tensor
--   of the file used); ClapText.from_pretrained / ClapAudio.from_pretrained load one side of the same folder
--   and leave the other. model.text / model.audio are those sides (sharing these weights), with their
--   get_text_features / get_audio_features, embed and embed_chunks.
local cocola = require "cocola"
local nn = require "cocola.nn"
local pretrained = require "cocola.models.audioldm2.pretrained"
local ClapText = require "cocola.models.text.clap_text"
local ClapAudio = require "cocola.models.text.clap_audio"

local ClapModel = nn.Module:extend("ClapModel")

-- ClapConfig's default logit_scale_init_value (1 / 0.07): the scales start at its log
local LOGIT_SCALE_INIT = 1 / 0.07

--- ClapModel(cfg, features_cfg): cfg a ClapModel config.json as parsed, features_cfg a
--- preprocessor_config.json as parsed or nil
function ClapModel:init(cfg, features_cfg)
  cfg = cfg or {}
  if type(cfg) ~= "table" then error("ClapModel: expected a config table", 3) end
  local ok, text = pcall(ClapText, cfg)
  if not ok then error(tostring(text):gsub("^.-%.lua:%d+: ", ""), 3) end
  local audio
  ok, audio = pcall(ClapAudio, cfg, features_cfg)
  if not ok then error(tostring(audio):gsub("^.-%.lua:%d+: ", ""), 3) end
  if text.projection_dim ~= audio.projection_dim then
    error(string.format("ClapModel: text projection_dim %d and audio projection_dim %d differ", text.projection_dim,
      audio.projection_dim), 3)
  end
  rawset(self, "text", text)
  rawset(self, "audio", audio)
  self.text_model, self.text_projection = text.text_model, text.text_projection
  self.audio_model, self.audio_projection = audio.audio_model, audio.audio_projection
  local init = math.log(type(cfg.logit_scale_init_value) == "number" and cfg.logit_scale_init_value or LOGIT_SCALE_INIT)
  self.logit_scale_a = cocola.full({}, init):requires_grad(true)
  self.logit_scale_t = cocola.full({}, init):requires_grad(true)
end

--- ClapModel.from_pretrained(dir): a ClapModel folder or a pipeline folder holding text_encoder/; every
--- tensor of model.safetensors loaded strictly, eval mode
function ClapModel.from_pretrained(dir)
  local ok, model = pcall(function()
    local folder = pretrained.component_dir(dir, "text_encoder")
    local fcfg
    for _, d in ipairs({ folder, (dir:gsub("/+$", "")) .. "/feature_extractor" }) do
      local f = io.open(d .. "/preprocessor_config.json", "rb")
      if f then
        f:close()
        fcfg = pretrained.read_config(d, "preprocessor_config.json")
        break
      end
    end
    local m = ClapModel(pretrained.read_config(folder), fcfg)
    local path = folder .. "/model.safetensors"
    local f = io.open(path, "rb")
    if not f then error(string.format("%s: no such file", path)) end
    f:close()
    pretrained.load_safetensors(m, path, { ignore = function(name) return ClapText.IGNORED_TEXT_KEYS[name] ~= nil end })
    return m
  end)
  if not ok then error(tostring(model):gsub("^.-%.lua:%d+: ", ""), 2) end
  model.text:eval()
  model.audio:eval()
  return model:eval()
end

function ClapModel:get_text_features(input_ids, opts)
  local ok, out = pcall(self.text.get_text_features, self.text, input_ids, opts)
  if not ok then error(tostring(out):gsub("^.-%.lua:%d+: ", ""), 2) end
  return out
end

function ClapModel:get_audio_features(input_features)
  local ok, out = pcall(self.audio.get_audio_features, self.audio, input_features)
  if not ok then error(tostring(out):gsub("^.-%.lua:%d+: ", ""), 2) end
  return out
end

function ClapModel:forward(input_ids, input_features, opts)
  local t = self:get_text_features(input_ids, opts)
  local a = self:get_audio_features(input_features)
  return {
    text_embeds = t, audio_embeds = a,
    logits_per_text = t:matmul(a:t()) * self.logit_scale_t:exp(),
    logits_per_audio = a:matmul(t:t()) * self.logit_scale_a:exp(),
  }
end

return ClapModel
