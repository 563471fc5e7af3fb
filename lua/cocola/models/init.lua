-- cocola.models — the model constructors, loaded on first use:
--   models.cocola{input = "hpss" | "mel", embedding_dim = 512, dropout = 0.1, ...} (the COCOLA
--   coherence model, cocola.models.cocola), models.chroma_onset_cocola{dim = 32, width = 64, blocks = 4}
--   (the COCOLA objective on chroma and onset frames), models.EfficientNet{...} (the B0 feature extractor),
--   models.audioldm2 (AudioLDM 2's U-Net, CompoNet's ControlNet, the VAE, the vocoder, the mel front end),
--   models.vggish (VGGish as torchvggish defines it: the FAD libraries' default embedding),
--   models.msdm (MSDM's 1-D U-Net of audio-diffusion-pytorch 0.0.43, its EDM preconditioning and checkpoints).
local lazy = {
  cocola = "cocola.models.cocola",
  CoCola = "cocola.models.cocola",
  chroma_onset_cocola = "cocola.models.chroma_onset_cocola",
  ChromaOnsetCoCola = "cocola.models.chroma_onset_cocola",
  EfficientNet = "cocola.models.efficientnet.EfficientNet",
  audioldm2 = "cocola.models.audioldm2",
  vggish = "cocola.models.vggish",
  msdm = "cocola.models.msdm",
}

local models = {}

return setmetatable(models, {
  __index = function(t, key)
    local name = lazy[key]
    if name then
      local m = require(name)
      rawset(t, key, m)
      return m
    end
  end,
})
