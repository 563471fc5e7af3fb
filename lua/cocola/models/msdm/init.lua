-- cocola.models.msdm — MSDM's network: the 1-D U-Net of audio-diffusion-pytorch 0.0.43 (UNet1d, with the
-- reference's parameter names), its building blocks, the EDM preconditioning and loss (diffusion), MSDM's
-- settings (configs), the loader of its checkpoints (checkpoint), its samplers (sampling: Karras schedule,
-- ADPM2, the generation notebook's churn sampler), accompaniment by imputation (impute = sampling.impute) and
-- model folders (pretrained: from_pretrained(dir), save_pretrained(net, dir), load(folder or checkpoint file)).
local sampling = require "cocola.models.msdm.sampling"
local pretrained = require "cocola.models.msdm.pretrained"

return {
  UNet1d = require "cocola.models.msdm.unet1d",
  ResnetBlock1d = require "cocola.models.msdm.resnet_block1d",
  TransformerBlock1d = require "cocola.models.msdm.transformer_block1d",
  Attention = require "cocola.models.msdm.attention",
  Patcher = require "cocola.models.msdm.patcher",
  Unpatcher = require "cocola.models.msdm.unpatcher",
  diffusion = require "cocola.models.msdm.diffusion",
  configs = require "cocola.models.msdm.configs",
  checkpoint = require "cocola.models.msdm.checkpoint",
  sampling = sampling,
  impute = sampling.impute,
  pretrained = pretrained,
  from_pretrained = pretrained.from_pretrained,
  save_pretrained = pretrained.save_pretrained,
  load = pretrained.load,
}
