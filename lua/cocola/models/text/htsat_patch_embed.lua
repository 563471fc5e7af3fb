-- cocola.models.text.htsat_patch_embed — transformers' ClapAudioPatchEmbed without feature fusion
-- (modeling_clap.py, transformers 4.38.2): a Conv2d from the 1-channel spectrogram image to
-- patch_embeds_hidden_size channels (kernel patch_size, stride patch_stride, padding
-- (patch_size - patch_stride) // 2), flattened to tokens (row-major) and layer-normalised (eps 1e-5) when
-- enable_patch_layer_norm.
-- State-dict names: proj.weight (D, 1, ph, pw), proj.bias (D), norm.weight / norm.bias (D) (no norm
--   entries when enable_patch_layer_norm is false).
-- forward(img (B, 1, spec_size, spec_size)) -> (B, gh * gw, D), gh = spec_size // stride_h.
local Module = require "cocola.nn.Module"
local nn = require "cocola.nn"

local HtsatPatchEmbed = Module:extend("HtsatPatchEmbed")

--- HtsatPatchEmbed(c): c the audio settings (spec_size, patch_size and patch_stride as {h, w} pairs,
--- patch_embeds_hidden_size, enable_patch_layer_norm)
function HtsatPatchEmbed:init(c)
  local p, s = c.patch_size, c.patch_stride
  self.img_size = c.spec_size
  self.proj = nn.Conv2d(1, c.patch_embeds_hidden_size, { p[1], p[2] }, { stride = { s[1], s[2] },
    padding = { (p[1] - s[1]) // 2, (p[2] - s[2]) // 2 } })
  if c.enable_patch_layer_norm then self.norm = nn.LayerNorm(c.patch_embeds_hidden_size) end
end

function HtsatPatchEmbed:forward(img)
  local h, w = img:size(3), img:size(4)
  if h ~= self.img_size or w ~= self.img_size then
    error(string.format("HtsatPatchEmbed: input audio size (%d*%d) doesn't match the model (%d*%d)", h, w,
      self.img_size, self.img_size), 2)
  end
  local x = self.proj(img)
  x = x:flatten(3):transpose(2, 3)
  if self.norm then x = self.norm(x) end
  return x
end

return HtsatPatchEmbed
