-- cocola.models.audioldm2.configs — the configurations of cvssp/audioldm2 and cvssp/audioldm2-large as
-- config tables (what their config.json files hold, ../GENERATION.md sections 2.2-2.9), for building the
-- networks at their real sizes without the files: configs.unet(large), vae(), vocoder(), clap_text(),
-- clap_audio(), t5(), gpt2(), projection(). JSON null is cjson.null, as pretrained.read_config gives it.
local cjson = require "cjson"

local M = {}

--- the U-Net: base ([None, 768, 1024] slots, 1 transformer layer) or large ([None, 768, 1024, None], 2)
function M.unet(large)
  local slots = large and { 0, 768, 1024, 0 } or { 0, 768, 1024 }
  local cad = {}
  for i = 1, 4 do
    cad[i] = {}
    for j, w in ipairs(slots) do cad[i][j] = w == 0 and cjson.null or w end
  end
  return { _class_name = "AudioLDM2UNet2DConditionModel", act_fn = "silu", attention_head_dim = 8,
    block_out_channels = { 128, 256, 384, 640 }, cross_attention_dim = cad,
    down_block_types = { "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D" },
    up_block_types = { "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D" },
    downsample_padding = 1, flip_sin_to_cos = true, freq_shift = 0, in_channels = 8, out_channels = 8,
    layers_per_block = 2, mid_block_scale_factor = 1, mid_block_type = "UNetMidBlock2DCrossAttn", norm_eps = 1e-5,
    norm_num_groups = 32, sample_size = 256, transformer_layers_per_block = large and 2 or 1,
    use_linear_projection = false }
end

function M.vae()
  return { act_fn = "silu", block_out_channels = { 128, 256, 512 },
    down_block_types = { "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D" },
    up_block_types = { "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D" }, in_channels = 1, out_channels = 1,
    latent_channels = 8, layers_per_block = 2, norm_num_groups = 32, sample_size = 1024,
    scaling_factor = 0.4110932946205139 }
end

function M.vocoder()
  return { model_in_dim = 64, sampling_rate = 16000, upsample_initial_channel = 1024, upsample_rates = { 5, 4, 2, 2, 2 },
    upsample_kernel_sizes = { 16, 16, 8, 4, 4 }, resblock_kernel_sizes = { 3, 7, 11 },
    resblock_dilation_sizes = { { 1, 3, 5 }, { 1, 3, 5 }, { 1, 3, 5 } }, leaky_relu_slope = 0.1, normalize_before = false }
end

function M.clap_text()
  return { text_config = { vocab_size = 50265, hidden_size = 768, num_hidden_layers = 12, num_attention_heads = 12,
    intermediate_size = 3072, hidden_act = "gelu", max_position_embeddings = 514, type_vocab_size = 1,
    layer_norm_eps = 1e-12, pad_token_id = 1, bos_token_id = 0, eos_token_id = 2 }, projection_dim = 512,
    projection_hidden_act = "relu" }
end

--- the audio side of the same ClapModel (text_encoder/config.json's audio_config: ClapAudioConfig's defaults,
--- the HTSAT-tiny tower without fusion)
function M.clap_audio()
  return { audio_config = { window_size = 8, num_mel_bins = 64, spec_size = 256, hidden_act = "gelu", patch_size = 4,
    patch_stride = { 4, 4 }, num_classes = 527, hidden_size = 768, depths = { 2, 2, 6, 2 },
    num_attention_heads = { 4, 8, 16, 32 }, enable_fusion = false, patch_embeds_hidden_size = 96,
    enable_patch_layer_norm = true, mlp_ratio = 4.0, layer_norm_eps = 1e-5 }, projection_dim = 512,
    projection_hidden_act = "relu" }
end

--- Flan-T5-large's encoder
function M.t5()
  return { vocab_size = 32128, d_model = 1024, d_kv = 64, d_ff = 2816, num_layers = 24, num_heads = 16,
    relative_attention_num_buckets = 32, relative_attention_max_distance = 128, layer_norm_epsilon = 1e-6,
    feed_forward_proj = "gated-gelu" }
end

function M.gpt2()
  return { vocab_size = 50257, n_embd = 768, n_layer = 12, n_head = 12, n_positions = 1024, layer_norm_epsilon = 1e-5,
    activation_function = "gelu_new", max_new_tokens = 8 }
end

function M.projection()
  return { text_encoder_dim = 512, text_encoder_1_dim = 1024, langauge_model_dim = 768 }
end

return M
