-- cocola.models.encodec.encodec_lstm — transformers 4.38.2's EncodecLSTM: a num_lstm_layers LSTM over the
-- frames of a convolutional layout with a skip, y = lstm(x) + x.
-- State-dict names: lstm.weight_ih_l{l}, lstm.weight_hh_l{l}, lstm.bias_ih_l{l}, lstm.bias_hh_l{l}.
-- forward(x (N, dim, T)) -> (N, dim, T).
local nn = require "cocola.nn"
local LSTM = require "cocola.models.encodec.lstm"

local EncodecLSTM = nn.Module:extend("EncodecLSTM")

--- EncodecLSTM(c, dimension): c.num_lstm_layers layers of `dimension`
function EncodecLSTM:init(c, dimension)
  self.lstm = LSTM(dimension, dimension, c.num_lstm_layers)
end

function EncodecLSTM:forward(x)
  local t = x:permute({ 3, 1, 2 })      -- (T, N, dim)
  local y = self.lstm(t:contiguous()) + t
  return y:permute({ 2, 3, 1 })          -- (N, dim, T)
end

return EncodecLSTM
