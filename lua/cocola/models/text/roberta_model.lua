-- cocola.models.text.roberta_model — transformers' ClapTextModel (RoBERTa with a pooler, modeling_clap.py,
-- transformers 4.38.2), the text tower of CLAP. State-dict names: embeddings.*, encoder.layer.{i}.*,
-- pooler.dense.
-- forward(input_ids int64 (B, L) checked by the caller, attention_mask (B, L) 0/1 or nil) ->
--   last_hidden_state (B, L, hidden), pooler_output (B, hidden).
-- Positions as the reference's create_position_ids_from_input_ids: from the ids, not the mask:
--   m = (input_ids != pad_token_id); position_ids = cumsum(m) * m + pad_token_id, so real tokens count from
--   pad_token_id + 1 and padding tokens sit at pad_token_id. Masking: (1 - mask) * finfo(float32).min added
--   to every query's scores for the padded keys (no bias at all without a mask, as the all-ones default).
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local RobertaEmbeddings = require "cocola.models.text.roberta_embeddings"
local RobertaEncoder = require "cocola.models.text.roberta_encoder"
local RobertaPooler = require "cocola.models.text.roberta_pooler"

local RobertaModel = Module:extend("RobertaModel")

RobertaModel.FMIN = -3.4028234663852886e38

--- RobertaModel(c): c holds vocab_size, hidden_size, num_hidden_layers, num_attention_heads,
--- intermediate_size, max_position_embeddings, type_vocab_size, layer_norm_eps, pad_token_id
function RobertaModel:init(c)
  self.pad_token_id, self.max_position_embeddings = c.pad_token_id, c.max_position_embeddings
  self.embeddings = RobertaEmbeddings(c.vocab_size, c.hidden_size, { max_positions = c.max_position_embeddings,
    type_vocab_size = c.type_vocab_size, pad_token_id = c.pad_token_id, eps = c.layer_norm_eps })
  self.encoder = RobertaEncoder(c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size,
    c.layer_norm_eps)
  self.pooler = RobertaPooler(c.hidden_size)
end

--- the position ids (B, L) int64 of input_ids and the largest one
function RobertaModel:position_ids(input_ids)
  local ids = input_ids:cpu():contiguous():totable()
  local pad, rows, top = self.pad_token_id, {}, 0
  for b, row in ipairs(ids) do
    local out, count = {}, 0
    for j, id in ipairs(row) do
      if id ~= pad then
        count = count + 1
        out[j] = count + pad
      else
        out[j] = pad
      end
      if out[j] > top then top = out[j] end
    end
    rows[b] = out
  end
  return cocola.tensor(rows, { dtype = "int64" }):to(input_ids:device()), top
end

function RobertaModel:forward(input_ids, attention_mask)
  local B, L = input_ids:size(1), input_ids:size(2)
  local position_ids, top = self:position_ids(input_ids)
  if top >= self.max_position_embeddings then
    error(string.format("ClapText: %d tokens need position %d, beyond max_position_embeddings = %d (positions "
      .. "start at pad_token_id + 1 = %d)", L, top, self.max_position_embeddings, self.pad_token_id + 1), 3)
  end
  local bias
  if attention_mask ~= nil then
    local keep = attention_mask:to("float32")
    bias = ((1 - keep) * RobertaModel.FMIN):reshape({ B, 1, 1, L })
  end
  local h = self.embeddings(input_ids, position_ids)
  h = self.encoder(h, bias)
  return h, self.pooler(h)
end

return RobertaModel
