-- recipes/audioldm2_random_pipeline.lua — writes a complete AudioLDM 2 pipeline folder in the diffusers
-- layout (model_index.json; unet/, vae/, vocoder/, text_encoder/ (ClapModel, both towers), text_encoder_2/
-- (T5 encoder), projection_model/, language_model/ (GPT-2), scheduler/) with the real configurations of
-- cvssp/audioldm2 (or -large) and random weights, for benchmarks and smoke tests at full size where the
-- real files are not at hand. The tokenizers and the feature extractor's settings are copied from a
-- pipeline folder (the tiny one of the specs by default: small vocabularies, whose ids the full-size
-- embeddings accept). About 4.4 GB (base) or 5.9 GB (large) of float32 weights, written one network at a
-- time (peak memory about one network). diffusers' AudioLDM2Pipeline.from_pretrained loads the result.
-- Usage: lua5.4 recipes/audioldm2_random_pipeline.lua out=DIR [large=false] [seed=0]
--        [tokenizers=spec/fixtures/audioldm2/pipeline_tiny]
local cocola = require "cocola"
local cjson = require "cjson"
local recipe = require "cocola.recipe"
local configs = require "cocola.models.audioldm2.configs"
local audioldm2 = require "cocola.models.audioldm2"

local config = recipe.config({ out = "", large = false, seed = 0, threads = 2,
  tokenizers = "spec/fixtures/audioldm2/pipeline_tiny" }, arg)
if config.out == "" then error("audioldm2_random_pipeline: out=DIR is required", 0) end
recipe.log_config(config)
cocola.set_num_threads(config.threads)
cocola.manual_seed(config.seed)

local function run(cmd)
  if not os.execute(cmd) then error("audioldm2_random_pipeline: failed: " .. cmd, 0) end
end
local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function write_json(path, t)
  local f = assert(io.open(path, "w"))
  f:write(cjson.encode(t))
  f:close()
end

local out = config.out
run("mkdir -p " .. quote(out))
-- transformers refuses safetensors files without the "format" metadata
local META = { metadata = { format = "pt" } }

-- name, folder, weight file, library/class for model_index.json, config, builder
local function clap_config()
  local c = configs.clap_text()
  c.audio_config = configs.clap_audio().audio_config
  c.model_type = "clap"
  return c
end
local components = {
  { "unet", "diffusion_pytorch_model.safetensors", { "audioldm2", "AudioLDM2UNet2DConditionModel" },
    configs.unet(config.large), function(c) return audioldm2.UNet(c) end },
  { "vae", "diffusion_pytorch_model.safetensors", { "diffusers", "AutoencoderKL" }, configs.vae(),
    function(c) return audioldm2.AutoencoderKL(c) end },
  { "vocoder", "model.safetensors", { "transformers", "SpeechT5HifiGan" }, configs.vocoder(),
    function(c) return audioldm2.HifiGan(c) end },
  { "text_encoder", "model.safetensors", { "transformers", "ClapModel" }, clap_config(),
    function(c) return require("cocola.models.text.clap_model")(c) end },
  { "text_encoder_2", "model.safetensors", { "transformers", "T5EncoderModel" }, configs.t5(),
    function(c) return require("cocola.models.text.t5").from_config(c) end },
  { "projection_model", "diffusion_pytorch_model.safetensors", { "audioldm2", "AudioLDM2ProjectionModel" },
    configs.projection(), function(c) return audioldm2.ProjectionModel(c) end },
  { "language_model", "model.safetensors", { "transformers", "GPT2Model" }, configs.gpt2(),
    function(c) return require("cocola.models.text.gpt2")(c) end },
}

local index = { _class_name = "AudioLDM2Pipeline", _diffusers_version = "0.27.2",
  scheduler = { "diffusers", "DDIMScheduler" }, tokenizer = { "transformers", "RobertaTokenizerFast" },
  tokenizer_2 = { "transformers", "T5TokenizerFast" }, feature_extractor = { "transformers", "ClapFeatureExtractor" } }
for k, c in ipairs(components) do
  local name, file, class, cfg, build = c[1], c[2], c[3], c[4], c[5]
  recipe.progress("writing " .. name, k - 1, #components)
  run("mkdir -p " .. quote(out .. "/" .. name))
  write_json(out .. "/" .. name .. "/config.json", cfg)
  local model = build(cfg)
  cocola.save(out .. "/" .. name .. "/" .. file, model:state_dict(), META)
  index[name] = class
  model = nil
  collectgarbage()
end
recipe.progress("writing", #components, #components)
recipe.end_progress()

run("mkdir -p " .. quote(out .. "/scheduler"))
write_json(out .. "/scheduler/scheduler_config.json", { _class_name = "DDIMScheduler", num_train_timesteps = 1000,
  beta_schedule = "scaled_linear", beta_start = 0.0015, beta_end = 0.0195, set_alpha_to_one = false, steps_offset = 1,
  timestep_spacing = "leading", prediction_type = "epsilon", clip_sample = false })
for _, sub in ipairs({ "tokenizer", "tokenizer_2", "feature_extractor" }) do
  run(string.format("rm -rf %s && cp -r %s %s", quote(out .. "/" .. sub), quote(config.tokenizers .. "/" .. sub),
    quote(out .. "/" .. sub)))
end
write_json(out .. "/model_index.json", index)
print("wrote " .. out)
