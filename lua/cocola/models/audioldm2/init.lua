-- cocola.models.audioldm2 — AudioLDM 2's audio path and CompoNet's ControlNet, with diffusers' and
-- transformers' parameter names: UNet (AudioLDM2UNet2DConditionModel), ControlNet
-- (ControlNetAudioLDM2Model), AutoencoderKL, HifiGan (SpeechT5HifiGan), GriffinLim (the vocoder without
-- weights, its fallback), ProjectionModel (AudioLDM2ProjectionModel), the mel front end (mel), and
-- from_pretrained(folder) for each (a component folder or a pipeline folder holding unet/, vae/, ...).
-- The DDIM scheduler is cocola.schedulers.ddim; the text stack (tokenizers, CLAP text tower, T5 encoder,
-- GPT-2) is in cocola.models.text; Pipeline puts them together, prompt -> audio; CompoNet is the
-- ControlNet's training step; componet_checkpoint reads CompoNet's released Lightning checkpoints.
return {
  UNet = require "cocola.models.audioldm2.unet",
  ControlNet = require "cocola.models.audioldm2.controlnet",
  AutoencoderKL = require "cocola.models.audioldm2.autoencoder_kl",
  HifiGan = require "cocola.models.audioldm2.hifigan",
  GriffinLim = require "cocola.models.audioldm2.griffin_lim",
  ProjectionModel = require "cocola.models.audioldm2.projection_model",
  mel = require "cocola.models.audioldm2.mel",
  ProjectionModel = require "cocola.models.audioldm2.projection_model",
  Pipeline = require "cocola.models.audioldm2.pipeline",
  CompoNet = require "cocola.models.audioldm2.componet",
  componet_checkpoint = require "cocola.models.audioldm2.componet_checkpoint",
  configs = require "cocola.models.audioldm2.configs",
}
