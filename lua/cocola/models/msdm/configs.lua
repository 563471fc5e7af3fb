-- cocola.models.msdm.configs — MSDM's settings (multi-source-diffusion-models exp/train_msdm.yaml, on
-- audio-diffusion-pytorch 0.0.43): configs.msdm() the U-Net's arguments (UNet1d.from_config), configs.diffusion()
-- the EDM preconditioning and noise distribution of its Diffusion, configs.data() the audio it was trained on
-- (22.05 kHz, 262144 samples, one channel per stem, stems in this order).
local M = {}

--- the UNet1d arguments of MSDM (4 stems in, 256 channels, patch 16, 7 levels): 405,497,700 parameters
function M.msdm()
  return { in_channels = 4, channels = 256, patch_factor = 16, patch_blocks = 1, resnet_groups = 8,
    kernel_multiplier_downsample = 2, kernel_sizes_init = { 1, 3, 7 }, multipliers = { 1, 2, 4, 4, 4, 4, 4 },
    factors = { 4, 4, 4, 2, 2, 2 }, num_blocks = { 2, 2, 2, 2, 2, 2 },
    attentions = { false, false, false, true, true, true }, attention_heads = 8, attention_features = 128,
    attention_multiplier = 2, use_nearest_upsample = false, use_skip_scale = true, use_attention_bottleneck = true,
    use_context_time = true }
end

--- Diffusion(sigma_data, dynamic_threshold) and LogNormalDistribution(mean, std) of the training sigmas
function M.diffusion()
  return { sigma_data = 0.2, dynamic_threshold = 0.0, sigma_distribution = { mean = -3.0, std = 1.0 } }
end

function M.data()
  return { sample_rate = 22050, length = 262144, stems = { "bass", "drums", "guitar", "piano" } }
end

return M
