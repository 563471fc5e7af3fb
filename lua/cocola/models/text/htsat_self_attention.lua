-- cocola.models.text.htsat_self_attention — transformers' ClapAudioSelfAttention (Swin window self-attention
-- with a learned relative position bias; modeling_clap.py, transformers 4.38.2).
-- State-dict names: query, key, value (Linear dim -> dim, bias when qkv_bias), relative_position_bias_table
--   ((2 w - 1)^2, heads), relative_position_index (w^2, w^2) int64 (a persistent buffer of the reference,
--   0-based rows of the table for each pair of window positions; loaded from the file like the weights).
-- forward(x (B * nW, N, dim), mask (nW, N, N) additive or nil) -> (B * nW, N, dim), N = w^2 the tokens of a
--   window, windows of one batch row consecutive: softmax(q k^T / sqrt(head_dim) + bias[index] + mask) v,
--   heads concatenated. No dropout (inference).
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local nn = require "cocola.nn"
local F = require "cocola.nn.functional"

local HtsatSelfAttention = Module:extend("HtsatSelfAttention")

-- the reference's relative_position_index for a w x w window: for tokens i = (hi, wi), j = (hj, wj) in
-- row-major order, (hi - hj + w - 1) * (2 w - 1) + (wi - wj + w - 1)
local function relative_position_index(w)
  local rows = {}
  for i = 0, w * w - 1 do
    local row = {}
    local hi, wi = i // w, i % w
    for j = 0, w * w - 1 do
      local hj, wj = j // w, j % w
      row[j + 1] = (hi - hj + w - 1) * (2 * w - 1) + (wi - wj + w - 1)
    end
    rows[i + 1] = row
  end
  return cocola.tensor(rows, { dtype = "int64" })
end

--- HtsatSelfAttention(dim, heads, window_size, qkv_bias)
function HtsatSelfAttention:init(dim, heads, window_size, qkv_bias)
  if dim % heads ~= 0 then
    error(string.format("HtsatSelfAttention: the hidden size (%d) is not a multiple of the number of attention "
      .. "heads (%d)", dim, heads), 3)
  end
  self.dim, self.num_heads, self.head_dim, self.window_size = dim, heads, dim // heads, window_size
  local table_rows = (2 * window_size - 1) * (2 * window_size - 1)
  self.relative_position_bias_table = cocola.zeros({ table_rows, heads }):requires_grad(true)
  self:register_buffer("relative_position_index", relative_position_index(window_size))
  self.query = nn.Linear(dim, dim, { bias = qkv_bias })
  self.key = nn.Linear(dim, dim, { bias = qkv_bias })
  self.value = nn.Linear(dim, dim, { bias = qkv_bias })
end

-- (heads, N, N): the bias table's rows picked by the index, heads first
function HtsatSelfAttention:position_bias()
  local n = self.window_size * self.window_size
  local idx = self.relative_position_index:reshape({ n * n })
  return F.index_select(self.relative_position_bias_table, 1, idx):reshape({ n, n, self.num_heads })
    :permute({ 3, 1, 2 })
end

function HtsatSelfAttention:forward(x, mask)
  local BW, N = x:size(1), x:size(2)
  local heads, d = self.num_heads, self.head_dim
  if N ~= self.window_size * self.window_size then
    error(string.format("HtsatSelfAttention: windows of %d tokens, expected %d (window %d)", N,
      self.window_size * self.window_size, self.window_size), 2)
  end
  -- (B * nW, N, dim) -> (B * nW, heads, N, d)
  local function split(t) return t:reshape({ BW, N, heads, d }):transpose(2, 3) end
  local q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
  local bias = self:position_bias() -- (heads, N, N)
  if mask ~= nil then
    -- windows of a batch row share the mask: (B, nW, heads, N, d) against (nW, heads, N, N)
    local nW = mask:size(1)
    if BW % nW ~= 0 then
      error(string.format("HtsatSelfAttention: %d windows are not a whole number of %d-window rows", BW, nW), 2)
    end
    local B = BW // nW
    q, k, v = q:reshape({ B, nW, heads, N, d }), k:reshape({ B, nW, heads, N, d }), v:reshape({ B, nW, heads, N, d })
    bias = bias:unsqueeze(1) + mask:unsqueeze(2)
  end
  local o = F.scaled_dot_product_attention(q, k, v, { attn_mask = bias, scale = 1 / math.sqrt(d) })
  return o:reshape({ BW, heads, N, d }):transpose(2, 3):reshape({ BW, N, self.dim })
end

function HtsatSelfAttention:extra_repr()
  return string.format("dim=%d, num_heads=%d, window_size=%d", self.dim, self.num_heads, self.window_size)
end

return HtsatSelfAttention
