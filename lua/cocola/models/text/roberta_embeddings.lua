-- cocola.models.text.roberta_embeddings — the embeddings of transformers' ClapTextModel (RoBERTa,
-- ClapTextEmbeddings in modeling_clap.py, transformers 4.38.2). State-dict names: word_embeddings
-- (vocab, hidden), position_embeddings (max_position_embeddings, hidden), token_type_embeddings
-- (type_vocab_size, hidden), LayerNorm. The reference's position_ids / token_type_ids buffers are not kept.
-- forward(input_ids int64 (B, L), position_ids int64 (B, L)) -> (B, L, hidden): word + token type 0 +
-- position, then LayerNorm (dropout is not applied: inference). RoBERTa's position ids are built by the
-- caller (roberta_model.lua): they start at padding_idx + 1 and padding tokens get padding_idx.
local Module = require "cocola.nn.Module"
local nn = require "cocola.nn"

local RobertaEmbeddings = Module:extend("RobertaEmbeddings")

--- RobertaEmbeddings(vocab_size, hidden, {max_positions, type_vocab_size = 1, pad_token_id = 1, eps = 1e-12})
function RobertaEmbeddings:init(vocab_size, hidden, opts)
  opts = opts or {}
  self.padding_idx = opts.pad_token_id or 1
  self.word_embeddings = nn.Embedding(vocab_size, hidden, { padding_idx = self.padding_idx })
  self.position_embeddings = nn.Embedding(opts.max_positions, hidden, { padding_idx = self.padding_idx })
  self.token_type_embeddings = nn.Embedding(opts.type_vocab_size or 1, hidden)
  self.LayerNorm = nn.LayerNorm(hidden, { eps = opts.eps or 1e-12 })
end

function RobertaEmbeddings:forward(input_ids, position_ids)
  -- token_type_ids are all zeros (the reference's default): row 0 of token_type_embeddings everywhere
  local e = self.word_embeddings(input_ids) + self.token_type_embeddings.weight:narrow(1, 1, 1)
  e = e + self.position_embeddings(position_ids)
  return self.LayerNorm(e)
end

return RobertaEmbeddings
