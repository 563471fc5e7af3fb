-- cocola.models.text.htsat_encoder — transformers' ClapAudioEncoder without feature fusion (the HTSAT audio
-- tower of ClapModel; modeling_clap.py, transformers 4.38.2).
-- State-dict names: batch_norm (BatchNorm2d over the num_mel_bins mel bins: weight, bias, running_mean,
--   running_var, num_batches_tracked), patch_embed.{proj,norm}, layers.{i}.blocks.{j}.*,
--   layers.{i}.downsample.* (htsat_stage.lua), norm (LayerNorm num_features, eps 1e-5).
-- forward(input_features (B, 1, T, num_mel_bins)) -> last_hidden_state (B, C, c_freq_bin, n), pooler_output
--   (B, C), C = num_features = patch_embeds_hidden_size * 2^(stages - 1):
--   1. batch norm per mel bin (running statistics: inference);
--   2. reshape_mel2img: T (<= spec_size * freq_ratio, freq_ratio = spec_size // num_mel_bins) is resized to
--      spec_size * freq_ratio frames by bicubic interpolation (align_corners, A = -0.75, as torch's
--      upsample_bicubic2d: 1001 frames -> 1024 at the real size), the mel axis likewise to
--      spec_size // freq_ratio when shorter (only with exactly spec_size * freq_ratio frames: the reference
--      fails when both axes need it, and so does this port, with an error); the (time, mel) image is then folded into a square
--      spec_size x spec_size image: the time axis cut into freq_ratio pieces stacked along the mel axis,
--      mel rows first;
--   3. patch embedding, the Swin stages, the final LayerNorm;
--   4. tokens back to (B, C, fh, fw) and regrouped as the reference does ((B, C, freq_ratio, fh /
--      freq_ratio, fw) -> (B, C, fh / freq_ratio, freq_ratio * fw)): that is last_hidden_state; its mean over
--      the last two axes is pooler_output (AdaptiveAvgPool1d(1)). transformers 4.38.2 has no tscam / head
--      convolution in this tower.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local nn = require "cocola.nn"
local HtsatPatchEmbed = require "cocola.models.text.htsat_patch_embed"
local HtsatStage = require "cocola.models.text.htsat_stage"

local HtsatEncoder = Module:extend("HtsatEncoder")

-- float32 rounding of a double (torch computes the bicubic source positions in float)
local function f32(v) return (string.unpack("<f", string.pack("<f", v))) end

-- torch's cubic convolution kernels (A = -0.75): for |x| <= 1 and 1 < |x| < 2
local A = -0.75
local function cc1(x) return ((A + 2) * x - (A + 3)) * x * x + 1 end
local function cc2(x) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A end

-- (n_out, n_in) matrix of 1-D bicubic interpolation with align_corners = true, borders clamped
local bicubic_cache = {}
local function bicubic_matrix(n_in, n_out)
  local key = n_in .. "," .. n_out
  if bicubic_cache[key] then return bicubic_cache[key] end
  local scale = n_out > 1 and f32((n_in - 1) / (n_out - 1)) or 0
  local rows = {}
  for i = 0, n_out - 1 do
    local row = {}
    for j = 1, n_in do row[j] = 0 end
    local real = f32(scale * i)
    local x0 = math.floor(real)
    local t = f32(real - x0)
    local w = { cc2(t + 1), cc1(t), cc1(1 - t), cc2(2 - t) }
    for k = 0, 3 do
      local j = math.max(0, math.min(n_in - 1, x0 - 1 + k))
      row[j + 1] = row[j + 1] + w[k + 1]
    end
    rows[i + 1] = row
  end
  bicubic_cache[key] = cocola.tensor(rows)
  return bicubic_cache[key]
end

--- HtsatEncoder(c): c the checked audio settings of clap_audio.lua (with freq_ratio, grid, num_features)
function HtsatEncoder:init(c)
  self.c = c
  self.patch_embed = HtsatPatchEmbed(c)
  self.layers = nn.ModuleList()
  local n = #c.depths
  for i = 1, n do
    self.layers:append(HtsatStage(c, c.patch_embeds_hidden_size << (i - 1), c.depths[i],
      c.num_attention_heads[i], i < n))
  end
  self.batch_norm = nn.BatchNorm2d(c.num_mel_bins)
  self.norm = nn.LayerNorm(c.num_features)
end

-- resizes axis `dim` (3 or 4) of x (B, 1, T, F) to n by bicubic interpolation
local function resize(x, dim, n)
  local m = bicubic_matrix(x:size(dim), n)
  if m:device() ~= x:device() then m = m:to(x:device()) end
  if dim == 4 then return x:matmul(m:t()) end
  return m:matmul(x)
end

--- the square spectrogram image (B, 1, spec_size, spec_size) of normalised features (B, 1, T, F)
function HtsatEncoder:mel2img(x)
  local c = self.c
  local r = c.freq_ratio
  local width, height = c.spec_size * r, c.spec_size // r
  local B, T, Fq = x:size(1), x:size(3), x:size(4)
  if T > width or Fq > height then
    error(string.format("HtsatEncoder: %d frames x %d mel bins do not fit the model's %d x %d input (spec_size %d)",
      T, Fq, width, height, c.spec_size), 3)
  end
  if T < width and Fq < height then
    -- the reference resizes the mel axis back to the original frame count, and then fails to fold the image
    error(string.format("HtsatEncoder: %d frames and %d mel bins would both need resizing (to %d x %d), which "
      .. "transformers 4.38.2's reshape_mel2img cannot do; give %d frames", T, Fq, width, height, width), 3)
  end
  if T < width then x = resize(x, 3, width) T = width end
  if Fq < height then x = resize(x, 4, height) Fq = height end
  -- (B, r, T / r, F) -> (B, r, F, T / r) -> (B, 1, F r, T / r)
  return x:reshape({ B, r, T // r, Fq }):permute({ 1, 2, 4, 3 }):reshape({ B, 1, Fq * r, T // r })
end

function HtsatEncoder:forward(input_features)
  local c = self.c
  local B = input_features:size(1)
  -- batch norm over the mel bins: (B, 1, T, F) -> (B, F, T, 1) and back
  local x = self.batch_norm(input_features:transpose(2, 4)):transpose(2, 4)
  x = self.patch_embed(self:mel2img(x))
  local H, W = c.grid[1], c.grid[2]
  for _, stage in ipairs(self.layers) do
    x = stage(x, H, W)
    if stage.downsample then H, W = (H + 1) // 2, (W + 1) // 2 end
  end
  x = self.norm(x)
  local C = x:size(3)
  local fh, fw = H, W
  local cfb = fh // c.freq_ratio
  local h = x:transpose(2, 3):reshape({ B, C, fh // cfb, cfb, fw }):permute({ 1, 2, 4, 3, 5 }):reshape({ B, C, cfb,
    (fh // cfb) * fw })
  local pooled = h:reshape({ B, C, cfb * (fh // cfb) * fw }):mean(3)
  return h, pooled
end

return HtsatEncoder
