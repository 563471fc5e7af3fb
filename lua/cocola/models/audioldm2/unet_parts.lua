-- cocola.models.audioldm2.unet_parts — what the AudioLDM 2 U-Net and the CompoNet ControlNet share: their
-- input half (conv_in, the time embedding, the down blocks and the middle block) built from settings of
-- unet_config, the checks of the conditioning inputs, and the run of that half, which returns the hidden
-- state after the middle block, the skip tensors and the time embedding.
local cocola = require "cocola"
local nn = require "cocola.nn"
local DownBlock2D = require "cocola.models.audioldm2.down_block2d"
local MidBlock2D = require "cocola.models.audioldm2.mid_block2d"
local TimestepEmbedding = require "cocola.models.audioldm2.timestep_embedding"

local M = {}

--- turns activation checkpointing of every ResNet and transformer of the model's blocks on or off
function M.set_gradient_checkpointing(model, on)
  for _, nm in ipairs(model:named_modules()) do
    local name = nm[2]:type_name()
    if name == "DownBlock2D" or name == "UpBlock2D" or name == "MidBlock2D" then
      nm[2].gradient_checkpointing = on ~= false
    end
  end
  return model
end

--- adds conv_in, time_embedding, down_blocks and mid_block to `model` from settings `s`
function M.build_input_half(model, s)
  local c0 = s.block_out_channels[1]
  model.conv_in = nn.Conv2d(s.in_channels, c0, s.conv_in_kernel, { padding = (s.conv_in_kernel - 1) // 2 })
  model.time_embedding = TimestepEmbedding(c0, s.time_embed_dim)
  local blocks, out = {}, c0
  local n = #s.block_out_channels
  for i = 1, n do
    local input = out
    out = s.block_out_channels[i]
    local cross = s.down_block_types[i] == "CrossAttnDownBlock2D"
    blocks[i] = DownBlock2D({ in_channels = input, out_channels = out, temb_channels = s.time_embed_dim,
      num_layers = s.layers_per_block, eps = s.eps, groups = s.groups, add_downsample = i < n,
      downsample_padding = s.downsample_padding, cross_attention = cross and s.slots[i] or nil,
      heads = s.heads[i], transformer_layers = s.transformer_layers[i] })
  end
  model.down_blocks = nn.ModuleList(blocks)
  model.mid_block = MidBlock2D({ channels = s.block_out_channels[n], temb_channels = s.time_embed_dim,
    eps = s.eps, groups = s.groups, output_scale_factor = s.mid_block_scale_factor, cross_attention = s.slots[n],
    heads = s.heads[n], transformer_layers = s.transformer_layers[n] })
end

local function mask_bias(mask, states, name, B)
  if mask == nil then return nil end
  if not cocola.is_tensor(mask) or mask:dim() ~= 2 or mask:size(1) ~= B or mask:size(2) ~= states:size(2) then
    error(string.format("%s must be (%d, %d) (batch, tokens of its states), got %s", name, B, states:size(2),
      cocola.is_tensor(mask) and mask:shape_string() or type(mask)), 4)
  end
  local m = mask:to(states:dtype())
  return ((m * -1 + 1) * -10000.0):unsqueeze(2) -- (B, 1, S): 0 keep, -10000 drop
end

--- checks the inputs and builds the context the attention slots read; opts as the models' forward
function M.context(s, sample, opts, what)
  if not cocola.is_tensor(sample) or sample:dim() ~= 4 or sample:size(2) ~= s.in_channels then
    error(string.format("%s: expected a latent (B, %d, H, W), got %s", what, s.in_channels,
      cocola.is_tensor(sample) and sample:shape_string() or type(sample)), 3)
  end
  local B = sample:size(1)
  local states, states_1 = opts.encoder_hidden_states, opts.encoder_hidden_states_1
  -- the widths each stream must have (slots 1-2 read states, slots 3-4 states_1; states_1 falls back to states)
  local need, need_1 = {}, {}
  for i, slots in ipairs(s.slots) do
    if s.down_block_types[i] == "CrossAttnDownBlock2D" or i == #s.slots then
      for j, w in ipairs(slots) do
        if w then
          if j <= 2 then need[w] = true else need_1[w] = true end
        end
      end
    end
  end
  local function check(t, name, widths)
    if next(widths) == nil then return end
    if t == nil then
      local list = {}
      for w in pairs(widths) do list[#list + 1] = w end
      table.sort(list)
      error(string.format("%s: %s (B, tokens, %s) is required by the cross-attention slots", what, name,
        table.concat(list, " or ")), 4)
    end
    if not cocola.is_tensor(t) or t:dim() ~= 3 or t:size(1) ~= B or not widths[t:size(3)] then
      local list = {}
      for w in pairs(widths) do list[#list + 1] = w end
      table.sort(list)
      error(string.format("%s: %s must be (%d, tokens, %s), got %s", what, name, B, table.concat(list, " or "),
        cocola.is_tensor(t) and t:shape_string() or type(t)), 4)
    end
  end
  check(states, "encoder_hidden_states", need)
  local ctx = { states = states, mask = states and mask_bias(opts.encoder_attention_mask, states, what ..
    ": encoder_attention_mask", B) }
  if states_1 ~= nil then
    check(states_1, "encoder_hidden_states_1", need_1)
    ctx.states_1 = states_1
    ctx.mask_1 = mask_bias(opts.encoder_attention_mask_1, states_1, what .. ": encoder_attention_mask_1", B)
  else -- diffusers: the second stream falls back to the first, without a mask
    check(states, "encoder_hidden_states (standing in for encoder_hidden_states_1)", need_1)
    ctx.states_1 = states
  end
  return ctx
end

--- the timesteps as a (B) float tensor: a number, a 0-d tensor or a (B) / (1) tensor
function M.timesteps(timestep, B, device, what)
  local t
  if type(timestep) == "number" then
    t = cocola.full({ B }, timestep, { dtype = "float32" })
  elseif cocola.is_tensor(timestep) and (timestep:dim() == 0 or (timestep:dim() == 1 and
      (timestep:size(1) == B or timestep:size(1) == 1))) then
    t = timestep:to("float32"):reshape({ timestep:dim() == 0 and 1 or timestep:size(1) }):expand({ B }):contiguous()
  else
    error(string.format("%s: timestep must be a number or a tensor of %d (or 1) values", what, B), 3)
  end
  return t:to(device)
end

--- conv_in (+ extra, the ControlNet's conditioning) and the down blocks -> h, skips, temb (the middle block is the caller's)
function M.run_input_half(model, s, sample, timestep, ctx, extra, what)
  local t = M.timesteps(timestep, sample:size(1), sample:device(), what)
  local sinus = TimestepEmbedding.sinusoids(t, s.block_out_channels[1],
    { flip_sin_to_cos = s.flip_sin_to_cos, shift = s.freq_shift })
  local temb = model.time_embedding(sinus:to(sample:dtype()))
  local h = model.conv_in(sample)
  if extra then h = h + extra end
  local skips = { h }
  for _, block in ipairs(model.down_blocks) do
    local outs
    h, outs = block(h, temb, ctx)
    for _, o in ipairs(outs) do skips[#skips + 1] = o end
  end
  return h, skips, temb
end

return M
