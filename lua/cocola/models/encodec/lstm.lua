-- cocola.models.encodec.lstm — torch.nn.LSTM(input_size, hidden_size, num_layers) for inference and training:
-- time-major input, zero initial states, no dropout, unidirectional, with bias. Per layer l and step t
--   gates = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh, split in order i, f, g, o;
--   c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g), h_t = sigmoid(o) tanh(c_t).
-- The input projections of all steps are one matmul; the recurrence is one (B, H) x (H, 4H) matmul a step.
-- State-dict names (torch's): weight_ih_l{l} (4H, in), weight_hh_l{l} (4H, H), bias_ih_l{l} (4H),
--   bias_hh_l{l} (4H), for l = 0 .. num_layers - 1.
-- forward(x (T, B, input_size)) -> (T, B, hidden_size), the last layer's h_t (torch's output[0]).
local cocola = require "cocola"
local nn = require "cocola.nn"
local F = nn.functional
local init = nn.init

local LSTM = nn.Module:extend("LSTM")

--- LSTM(input_size, hidden_size, num_layers)
function LSTM:init(input_size, hidden_size, num_layers)
  self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
  local k = 1 / math.sqrt(hidden_size)
  local H4 = 4 * hidden_size
  for l = 0, num_layers - 1 do
    local shapes = { { H4, l == 0 and input_size or hidden_size }, { H4, hidden_size }, { H4 }, { H4 } }
    for i, name in ipairs({ "weight_ih_l", "weight_hh_l", "bias_ih_l", "bias_hh_l" }) do
      local t = init.uniform_(cocola.zeros(shapes[i]), -k, k)
      self:register_parameter(name .. l, t:requires_grad_(true))
    end
  end
end

function LSTM:forward(x)
  if not cocola.is_tensor(x) or x:dim() ~= 3 or x:size(3) ~= self.input_size then
    error(string.format("LSTM: expected input (time, batch, %d), got %s", self.input_size,
      cocola.is_tensor(x) and x:shape_string() or type(x)), 2)
  end
  local T, B, H = x:size(1), x:size(2), self.hidden_size
  local seq = x
  for l = 0, self.num_layers - 1 do
    local wih, whh = self["weight_ih_l" .. l], self["weight_hh_l" .. l]
    local bias = self["bias_ih_l" .. l] + self["bias_hh_l" .. l]
    local xg = F.linear(seq:reshape({ T * B, seq:size(3) }), wih, bias):reshape({ T, B, 4 * H })
    local h, c
    local outs = {}
    for t = 1, T do
      local g = xg:select(1, t)
      if h then g = g + F.linear(h, whh) end
      local i = g:narrow(2, 1, H):sigmoid()
      local f = g:narrow(2, H + 1, H):sigmoid()
      local gg = g:narrow(2, 2 * H + 1, H):tanh()
      local o = g:narrow(2, 3 * H + 1, H):sigmoid()
      c = c and (f * c + i * gg) or (i * gg)
      h = o * c:tanh()
      outs[t] = h
    end
    seq = cocola.stack(outs, 1)
  end
  return seq
end

function LSTM:extra_repr()
  return string.format("%d, %d, num_layers=%d", self.input_size, self.hidden_size, self.num_layers)
end

return LSTM
