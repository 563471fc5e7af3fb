-- cocola.models.text.htsat_layer — transformers' ClapAudioLayer, a Swin transformer block of the HTSAT audio
-- tower (modeling_clap.py, transformers 4.38.2): LayerNorm, (shifted) window attention, residual, LayerNorm,
-- MLP (Linear dim -> mlp_ratio * dim, hidden_act, Linear back), residual.
-- State-dict names: layernorm_before, attention.self.*, attention.output.dense, layernorm_after,
--   intermediate.dense, output.dense.
-- forward(x (B, H * W, dim), H, W) -> (B, H * W, dim). Tokens are row-major over the H x W grid. When
--   min(H, W) <= window_size the window is the whole min(H, W) and there is no shift (the reference's
--   set_shift_and_window_size); otherwise the grid is zero-padded right / bottom to multiples of the window,
--   rolled by -shift on both axes when shift > 0, cut into windows, attended (tokens of different regions of
--   the rolled grid masked with -100, the reference's get_attn_mask), and put back. No dropout / drop path.
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local nn = require "cocola.nn"
local HtsatAttention = require "cocola.models.text.htsat_attention"
local HtsatDense = require "cocola.models.text.htsat_dense"

local HtsatLayer = Module:extend("HtsatLayer")

--- HtsatLayer(c, dim, heads, shift_size): c the audio settings (window_size, mlp_ratio, hidden_act,
--- layer_norm_eps, qkv_bias)
function HtsatLayer:init(c, dim, heads, shift_size)
  self.dim, self.window_size, self.shift_size = dim, c.window_size, shift_size
  self.layernorm_before = nn.LayerNorm(dim, { eps = c.layer_norm_eps })
  self.attention = HtsatAttention(dim, heads, c.window_size, c.qkv_bias)
  self.layernorm_after = nn.LayerNorm(dim, { eps = c.layer_norm_eps })
  -- int(mlp_ratio * dim), as the reference
  local hidden = math.floor(c.mlp_ratio * dim)
  self.intermediate = HtsatDense(dim, hidden, c.hidden_act)
  self.output = HtsatDense(hidden, dim)
end

-- roll(x, shift, dim) as torch.roll: out[i] = x[(i - shift) mod n]
local function roll(x, shift, dim)
  local n = x:size(dim)
  shift = shift % n
  if shift == 0 then return x end
  return cocola.cat({ x:narrow(dim, n - shift + 1, shift), x:narrow(dim, 1, n - shift) }, dim)
end

-- (B, H, W, C) -> (B * nW, ws * ws, C), windows row-major, each row-major inside
local function partition(x, ws)
  local B, H, W, C = x:size(1), x:size(2), x:size(3), x:size(4)
  return x:reshape({ B, H // ws, ws, W // ws, ws, C }):permute({ 1, 2, 4, 3, 5, 6 }):reshape({ B * (H // ws) * (W // ws),
    ws * ws, C })
end

-- (B * nW, ws * ws, C) -> (B, H, W, C)
local function merge(windows, ws, B, H, W)
  local C = windows:size(3)
  return windows:reshape({ B, H // ws, W // ws, ws, ws, C }):permute({ 1, 2, 4, 3, 5, 6 }):reshape({ B, H, W, C })
end

-- zero-pads (B, H, W, C) to (B, Hp, Wp, C) on the bottom and the right
local function pad_grid(x, Hp, Wp)
  local B, H, W, C = x:size(1), x:size(2), x:size(3), x:size(4)
  if Wp > W then x = cocola.cat({ x, cocola.zeros({ B, H, Wp - W, C }, { dtype = x:dtype(), device = x:device() }) }, 3) end
  if Hp > H then x = cocola.cat({ x, cocola.zeros({ B, Hp - H, Wp, C }, { dtype = x:dtype(), device = x:device() }) }, 2) end
  return x
end

-- the shifted-window mask (nW, ws^2, ws^2): 0 between tokens of the same region of the rolled grid, -100
-- between regions; regions split each axis at size - ws and size - shift (the reference's img_mask)
local masks = {}
local function shift_mask(Hp, Wp, ws, shift)
  local key = table.concat({ Hp, Wp, ws, shift }, ",")
  if masks[key] then return masks[key] end
  local function region(i, n)
    if i < n - ws then return 0 elseif i < n - shift then return 1 else return 2 end
  end
  local rows = {}
  for wh = 0, Hp // ws - 1 do
    for ww = 0, Wp // ws - 1 do
      local ids = {}
      for a = 0, ws - 1 do
        for b = 0, ws - 1 do
          ids[#ids + 1] = 3 * region(wh * ws + a, Hp) + region(ww * ws + b, Wp)
        end
      end
      local m = {}
      for p = 1, #ids do
        local row = {}
        for q = 1, #ids do row[q] = ids[p] == ids[q] and 0 or -100 end
        m[p] = row
      end
      rows[#rows + 1] = m
    end
  end
  masks[key] = cocola.tensor(rows)
  return masks[key]
end

function HtsatLayer:forward(x, H, W)
  local B, C = x:size(1), x:size(3)
  local ws, shift = self.window_size, self.shift_size
  if math.min(H, W) <= ws then ws, shift = math.min(H, W), 0 end
  local h = self.layernorm_before(x):reshape({ B, H, W, C })
  local Hp, Wp = (H + ws - 1) // ws * ws, (W + ws - 1) // ws * ws
  h = pad_grid(h, Hp, Wp)
  if shift > 0 then h = roll(roll(h, -shift, 2), -shift, 3) end
  local mask
  if shift > 0 then
    mask = shift_mask(Hp, Wp, ws, shift)
    if mask:device() ~= h:device() then mask = mask:to(h:device()) end
  end
  local a = merge(self.attention(partition(h, ws), mask), ws, B, Hp, Wp)
  if shift > 0 then a = roll(roll(a, shift, 2), shift, 3) end
  if Hp > H or Wp > W then a = a:narrow(2, 1, H):narrow(3, 1, W) end
  x = x + a:reshape({ B, H * W, C })
  return x + self.output(self.intermediate(self.layernorm_after(x)))
end

function HtsatLayer:extra_repr()
  return string.format("dim=%d, window_size=%d, shift_size=%d", self.dim, self.window_size, self.shift_size)
end

return HtsatLayer
