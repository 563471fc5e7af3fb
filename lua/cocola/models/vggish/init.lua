-- cocola.models.vggish — VGGish as torchvggish defines it, the FAD libraries' default embedding:
--   VGGish (vggish.lua): the network, VGGish.from_file(path, {pca_path =, activation = false, pca = false}),
--     model:embed(wave, sr) -> (examples, 128)
--   features (vggish_features.lua): the log-mel examples front end (mono 16 kHz wave -> (N, 1, 96, 64))
local VGGish = require "cocola.models.vggish.vggish"
local features = require "cocola.models.vggish.vggish_features"

return {
  VGGish = VGGish,
  features = features,
  from_file = VGGish.from_file,
}
