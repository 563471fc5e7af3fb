-- cocola.models.encodec.encodec_encoder — transformers 4.38.2's EncodecEncoder (the SEANet encoder of EnCodec):
--   layers = [EncodecConv1d(audio_channels -> num_filters, kernel_size)]
--     then for each ratio of reversed(upsampling_ratios), with dim = num_filters * 2^stage:
--       num_residual_layers EncodecResnetBlocks(dim, dilations {dilation_growth_rate^j, 1}),
--       ELU, EncodecConv1d(dim -> 2 dim, kernel 2 ratio, stride ratio)
--     then EncodecLSTM(D), ELU, EncodecConv1d(D -> hidden_size, last_kernel_size), D = num_filters * 2^#ratios.
-- The ELUs take list positions as upstream, so state-dict names match: layers.{i}.conv.weight_g ...,
--   layers.{i}.block.{1,3}.conv.*, layers.{i}.shortcut.conv.*, layers.{i}.lstm.weight_ih_l0 ...
-- forward(x (N, audio_channels, L)) -> (N, hidden_size, ceil(L / prod(upsampling_ratios))): the continuous
--   embeddings before quantisation (EncodecModel.encoder(x)). 24 kHz model: 128 dims at 75 frames a second.
-- The config `c` is the checked, completed EncodecConfig of init.lua (EncodecModel).
local cocola = require "cocola"
local nn = require "cocola.nn"
local EncodecConv1d = require "cocola.models.encodec.encodec_conv1d"
local EncodecResnetBlock = require "cocola.models.encodec.encodec_resnet_block"
local EncodecLSTM = require "cocola.models.encodec.encodec_lstm"

local EncodecEncoder = nn.Module:extend("EncodecEncoder")

function EncodecEncoder:init(c)
  self.audio_channels, self.hidden_size = c.audio_channels, c.hidden_size
  local hop = 1
  for _, r in ipairs(c.upsampling_ratios) do hop = hop * r end
  self.hop_length = hop
  local layers = { EncodecConv1d(c, c.audio_channels, c.num_filters, c.kernel_size) }
  local scaling = 1
  for k = #c.upsampling_ratios, 1, -1 do
    local ratio = c.upsampling_ratios[k]
    local dim = scaling * c.num_filters
    local dilation = 1 -- dilation_growth_rate ^ j
    for _ = 1, c.num_residual_layers do
      layers[#layers + 1] = EncodecResnetBlock(c, dim, { dilation, 1 })
      dilation = dilation * c.dilation_growth_rate
    end
    layers[#layers + 1] = nn.ELU()
    layers[#layers + 1] = EncodecConv1d(c, dim, dim * 2, ratio * 2, ratio)
    scaling = scaling * 2
  end
  layers[#layers + 1] = EncodecLSTM(c, scaling * c.num_filters)
  layers[#layers + 1] = nn.ELU()
  layers[#layers + 1] = EncodecConv1d(c, scaling * c.num_filters, c.hidden_size, c.last_kernel_size)
  self.layers = nn.ModuleList(layers)
end

--- frames of the output for `samples` input samples: ceil(samples / hop_length)
function EncodecEncoder:num_frames(samples) return -((-samples) // self.hop_length) end

local function shape_of(t)
  return cocola.is_tensor(t) and (t:dtype() .. " " .. t:shape_string()) or type(t)
end

function EncodecEncoder:forward(x)
  if not cocola.is_tensor(x) or x:dim() ~= 3 then
    error("EncodecEncoder: expected audio (batch, channels, samples), got " .. shape_of(x), 2)
  end
  if x:dtype() ~= "float32" and x:dtype() ~= "float64" then
    error("EncodecEncoder: expected a float tensor, got " .. shape_of(x), 2)
  end
  if x:size(2) ~= self.audio_channels then
    error(string.format("EncodecEncoder: the model takes %d audio channel%s, got %d (input %s)", self.audio_channels,
      self.audio_channels == 1 and "" or "s", x:size(2), x:shape_string()), 2)
  end
  if x:size(1) < 1 or x:size(3) < 1 then error("EncodecEncoder: empty input " .. x:shape_string(), 2) end
  local h = x
  for i = 1, #self.layers do h = self.layers[i](h) end
  return h
end

function EncodecEncoder:extra_repr()
  return string.format("audio_channels=%d, hidden_size=%d, hop_length=%d", self.audio_channels, self.hidden_size,
    self.hop_length)
end

return EncodecEncoder
