-- recipes/audioldm2_sizes.lua — builds every network of AudioLDM 2 (and CompoNet's ControlNet) at its
-- real size with random weights, one at a time, and prints its parameter count beside the count of the
-- upstream class (diffusers 0.27.2 / transformers 4.38.2, measured on the same configurations).
-- Needs about 3 GB of memory for the largest (the large U-Net); the U-Nets take a few seconds each.
-- Usage: lua5.4 recipes/audioldm2_sizes.lua [large=true]
local cocola = require "cocola"
local cjson = require "cjson"
local recipe = require "cocola.recipe"

local config = recipe.config({ large = true, threads = 2 }, arg)
cocola.set_num_threads(config.threads)

local function unet_config(large)
  local slots = large and { 0, 768, 1024, 0 } or { 0, 768, 1024 }
  local cad = {}
  for i = 1, 4 do
    cad[i] = {}
    for j, w in ipairs(slots) do cad[i][j] = w == 0 and cjson.null or w end
  end
  return { act_fn = "silu", attention_head_dim = 8, block_out_channels = { 128, 256, 384, 640 }, cross_attention_dim = cad,
    down_block_types = { "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D" },
    up_block_types = { "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D" },
    downsample_padding = 1, flip_sin_to_cos = true, freq_shift = 0, in_channels = 8, out_channels = 8,
    layers_per_block = 2, mid_block_scale_factor = 1, mid_block_type = "UNetMidBlock2DCrossAttn", norm_eps = 1e-5,
    norm_num_groups = 32, sample_size = 256, transformer_layers_per_block = large and 2 or 1,
    use_linear_projection = false }
end

local audioldm2 = require "cocola.models.audioldm2"
local rows = {
  { "U-Net, cvssp/audioldm2", 346943496, function() return audioldm2.UNet(unet_config(false)) end },
  { "AutoencoderKL", 55376873, function()
    return audioldm2.AutoencoderKL({ act_fn = "silu", block_out_channels = { 128, 256, 512 },
      down_block_types = { "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D" },
      up_block_types = { "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D" }, in_channels = 1, out_channels = 1,
      latent_channels = 8, layers_per_block = 2, norm_num_groups = 32, sample_size = 1024,
      scaling_factor = 0.4110932946205139 })
  end },
  { "SpeechT5HifiGan", 55264897, function()
    return audioldm2.HifiGan({ model_in_dim = 64, sampling_rate = 16000, upsample_initial_channel = 1024,
      upsample_rates = { 5, 4, 2, 2, 2 }, upsample_kernel_sizes = { 16, 16, 8, 4, 4 }, resblock_kernel_sizes = { 3, 7, 11 },
      resblock_dilation_sizes = { { 1, 3, 5 }, { 1, 3, 5 }, { 1, 3, 5 } }, leaky_relu_slope = 0.1, normalize_before = false })
  end },
  { "CLAP text tower + projection", 125302016, function()
    return require("cocola.models.text.clap_text")({ text_config = { vocab_size = 50265, hidden_size = 768,
      num_hidden_layers = 12, num_attention_heads = 12, intermediate_size = 3072, hidden_act = "gelu",
      max_position_embeddings = 514, type_vocab_size = 1, layer_norm_eps = 1e-12, pad_token_id = 1, bos_token_id = 0,
      eos_token_id = 2 }, projection_dim = 512, projection_hidden_act = "relu" })
  end },
  { "T5 encoder (Flan-T5-large)", 341231104, function()
    return require("cocola.models.text.t5").from_config({ vocab_size = 32128, d_model = 1024, d_kv = 64, d_ff = 2816,
      num_layers = 24, num_heads = 16, relative_attention_num_buckets = 32, relative_attention_max_distance = 128,
      layer_norm_epsilon = 1e-6, feed_forward_proj = "gated-gelu" })
  end },
  { "GPT-2", 124439808, function()
    return require("cocola.models.text.gpt2")({ vocab_size = 50257, n_embd = 768, n_layer = 12, n_head = 12,
      n_positions = 1024, layer_norm_epsilon = 1e-5, activation_function = "gelu_new" })
  end },
  { "projection model", 1184256, function()
    return audioldm2.ProjectionModel({ text_encoder_dim = 512, text_encoder_1_dim = 1024, langauge_model_dim = 768 })
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
