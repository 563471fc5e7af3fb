-- cocola.models.text.htsat_model — transformers' ClapAudioModel: the HTSAT encoder (htsat_encoder.lua) under
-- the name audio_encoder (modeling_clap.py, transformers 4.38.2).
-- State-dict names: audio_encoder.*. forward(input_features (B, 1, T, num_mel_bins)) -> last_hidden_state
--   (B, C, c_freq_bin, n), pooler_output (B, C).
local Module = require "cocola.nn.Module"
local HtsatEncoder = require "cocola.models.text.htsat_encoder"

local HtsatModel = Module:extend("HtsatModel")

function HtsatModel:init(c)
  self.audio_encoder = HtsatEncoder(c)
end

function HtsatModel:forward(input_features)
  return self.audio_encoder(input_features)
end

return HtsatModel
