-- cocola.models.encodec.encodec_conv1d — transformers 4.38.2's EncodecConv1d: a 1-d convolution with EnCodec's
-- own padding and normalisation.
--   Padding: with the effective kernel k' = (k - 1) * dilation + 1 and padding_total = k' - stride, the input
--   is padded by padding_total (causal: all on the left; non-causal: padding_total - padding_total // 2 on
--   the left, padding_total // 2 on the right) plus, on the right, the extra padding that completes the last
--   frame (_get_extra_padding_for_conv1d: ideal_length - length with
--   ideal_length = (ceil((length - k' + padding_total) / stride + 1) - 1) * stride + k' - padding_total),
--   so the output has ceil(length / stride) frames. pad_mode "reflect" mirrors the signal without
--   repeating the edge sample; a signal not longer than the largest pad is first extended with zeros on the
--   right and that extension cut off after the reflection (upstream's _pad1d). pad_mode "constant" pads
--   zeros.
--   Normalisation: norm_type "weight_norm" -> conv is a WeightNormConv1d (conv.weight_g, conv.weight_v,
--   conv.bias); "time_group_norm" -> conv is a plain Conv1d (conv.weight, conv.bias) followed by
--   norm = GroupNorm(1, out_channels) (norm.weight, norm.bias).
-- forward(x (N, in, L)) -> (N, out, ceil(L / stride)).
local cocola = require "cocola"
local nn = require "cocola.nn"
local F = nn.functional
local WeightNormConv1d = require "cocola.models.encodec.weight_norm_conv1d"

local EncodecConv1d = nn.Module:extend("EncodecConv1d")

--- EncodecConv1d(c, in_channels, out_channels, kernel_size, stride, dilation): c holds use_causal_conv,
--- pad_mode and norm_type (checked by the model's config rules)
function EncodecConv1d:init(c, in_channels, out_channels, kernel_size, stride, dilation)
  self.causal, self.pad_mode, self.norm_type = c.use_causal_conv, c.pad_mode, c.norm_type
  self.kernel_size, self.stride, self.dilation = kernel_size, stride or 1, dilation or 1
  if self.norm_type == "weight_norm" then
    self.conv = WeightNormConv1d(in_channels, out_channels, kernel_size,
      { stride = self.stride, dilation = self.dilation })
  elseif self.norm_type == "time_group_norm" then
    self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, { stride = self.stride, dilation = self.dilation })
    self.norm = nn.GroupNorm(1, out_channels)
  else
    error("EncodecConv1d: norm_type must be 'weight_norm' or 'time_group_norm', got " .. tostring(self.norm_type), 3)
  end
end

-- the samples of x (N, C, L) at the 0-based positions `from` down to `to` (step -1), along dim 3
local function reversed(x, from, to)
  local idx = {}
  for i = from, to, -1 do idx[#idx + 1] = i end
  return x:index_select(3, cocola.tensor(idx, { dtype = "int64", device = x:device() }))
end

--- pads the last dim of x (N, C, L) by left / right samples, mode "reflect" or "constant" (zeros)
function EncodecConv1d.pad1d(x, left, right, mode)
  if left == 0 and right == 0 then return x end
  if mode ~= "reflect" then return F.pad(x, { left, right }, 0) end
  local L = x:size(3)
  local extra = 0
  local max_pad = math.max(left, right)
  if L <= max_pad then
    extra = max_pad - L + 1
    x = F.pad(x, { 0, extra }, 0)
    L = L + extra
  end
  local parts = {}
  if left > 0 then parts[#parts + 1] = reversed(x, left, 1) end
  parts[#parts + 1] = x
  if right > 0 then parts[#parts + 1] = reversed(x, L - 2, L - 1 - right) end
  local y = #parts == 1 and x or cocola.cat(parts, 3)
  if extra > 0 then y = y:narrow(3, 1, y:size(3) - extra) end
  return y
end

--- the extra right padding that completes the last frame (upstream's _get_extra_padding_for_conv1d), in
--- integers: ceil((length - k' + padding_total) / stride) with padding_total = k' - stride
function EncodecConv1d.extra_padding(length, kernel, stride, padding_total)
  local a = length - kernel + padding_total
  local frames = -((-a) // stride) + 1
  local ideal = (frames - 1) * stride + (kernel - padding_total)
  return ideal - length
end

function EncodecConv1d:forward(x)
  local kernel = (self.kernel_size - 1) * self.dilation + 1
  local padding_total = kernel - self.stride
  local extra = EncodecConv1d.extra_padding(x:size(3), kernel, self.stride, padding_total)
  if self.causal then
    x = EncodecConv1d.pad1d(x, padding_total, extra, self.pad_mode)
  else
    local right = padding_total // 2
    x = EncodecConv1d.pad1d(x, padding_total - right, right + extra, self.pad_mode)
  end
  local y = self.conv(x)
  if self.norm then y = self.norm(y) end
  return y
end

function EncodecConv1d:extra_repr()
  return string.format("causal=%s, pad_mode=%s", tostring(self.causal), self.pad_mode)
end

return EncodecConv1d
