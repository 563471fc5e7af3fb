-- recipes/audioldm2_sizes.lua — builds every network of AudioLDM 2 (and CompoNet's ControlNet) at its
-- real size with random weights, one at a time, and prints its parameter count beside the count of the
-- upstream class (diffusers 0.27.2 / transformers 4.38.2, measured on the same configurations).
-- Needs about 3 GB of memory for the largest (the large U-Net); the U-Nets take a few seconds each.
-- Usage: lua5.4 recipes/audioldm2_sizes.lua [large=true]
local cocola = require "cocola"
local recipe = require "cocola.recipe"

local config = recipe.config({ large = true, threads = 2 }, arg)
cocola.set_num_threads(config.threads)

local configs = require "cocola.models.audioldm2.configs"
local function unet_config(large) return configs.unet(large) end

local audioldm2 = require "cocola.models.audioldm2"
local rows = {
  { "U-Net, cvssp/audioldm2", 346943496, function() return audioldm2.UNet(unet_config(false)) end },
  { "AutoencoderKL", 55376873, function()
    return audioldm2.AutoencoderKL(configs.vae())
  end },
  { "SpeechT5HifiGan", 55264897, function()
    return audioldm2.HifiGan(configs.vocoder())
  end },
  { "CLAP text tower + projection", 125302016, function()
    return require("cocola.models.text.clap_text")(configs.clap_text())
  end },
  -- transformers' ClapAudioModelWithProjection(ClapConfig().audio_config): sum of its parameters' numel
  -- (spec/fixtures/text/gen_clap_audio.py stores the same count as real_audio_parameters)
  { "CLAP audio tower (HTSAT-tiny) + projection", 28190872, function()
    return require("cocola.models.text.clap_audio")(configs.clap_audio())
  end },
  { "T5 encoder (Flan-T5-large)", 341231104, function()
    return require("cocola.models.text.t5").from_config(configs.t5())
  end },
  { "GPT-2", 124439808, function()
    return require("cocola.models.text.gpt2")(configs.gpt2())
  end },
  { "projection model", 1184256, function()
    return audioldm2.ProjectionModel(configs.projection())
  end },
}
if config.large then
  rows[#rows + 1] = { "U-Net, cvssp/audioldm2-large", 718012296, function() return audioldm2.UNet(unet_config(true)) end }
  rows[#rows + 1] = { "CompoNet ControlNet on the large U-Net", 330579456, function()
    return audioldm2.ControlNet.from_unet(audioldm2.UNet(unet_config(true)))
  end }
end

print("| network | parameters | upstream class | same |")
print("|---|---:|---:|---|")
local bad = 0
for _, r in ipairs(rows) do
  local model = r[3]()
  local n = model:num_parameters()
  local same = r[2] == nil and "-" or (n == r[2] and "yes" or "NO")
  if same == "NO" then bad = bad + 1 end
  print(string.format("| %s | %d | %s | %s |", r[1], n, r[2] and tostring(r[2]) or "not measured", same))
  model = nil
  collectgarbage()
end
os.exit(bad == 0 and 0 or 1)
