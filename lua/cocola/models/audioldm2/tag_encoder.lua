-- cocola.models.audioldm2.tag_encoder — the text side of the small AudioLDM 2 trained here: a learned
-- embedding of the words of CompoNet's prompts ("in: bass_1, drums_1; out: guitar_1", "out: piano_1",
-- "genre: pop; in: ...") in place of CLAP + T5 + GPT-2. Those prompts are built by a template from a closed
-- vocabulary (stem tags with an occurrence count, genres, "in:", "out:", "genre:", ";"), so a word
-- embedding carries all their information, while the text stack would need pre-training on text corpora
-- that cannot be had here. The U-Net keeps its two cross-attention streams: the encoder gives each its own
-- linear head.
--   words: lowercase; "," separates, ";" is a word of its own; any other word must be in the vocabulary
--   (an unknown stem tag is an error naming it and the known tags).
--   forward(prompts (B strings)) -> {encoder_hidden_states (B, L, dims[1]), encoder_hidden_states_1 (B, L, dims[2]),
--   encoder_attention_mask_1 (B, L) int64 ones}, L = max_length; prompts are padded with <pad> (a learned row)
--   and attend over all L positions, in training and in generation alike; longer prompts are cut at L words.
--   state: embedding.weight (V, D), position (L, D), norm.{weight,bias} (D), head.{weight,bias} (dims[1], D),
--   head_1.{weight,bias} (dims[2], D).
--   TagEncoder.vocabulary(tags, {genres, max_count = 4}) -> the word list for stem tags ("bass", "drums", ...)
--   TagEncoder{words, max_length = 24, embedding_dim = 64, output_dims = {d1, d2}}
local cocola = require "cocola"
local nn = require "cocola.nn"
local P = require "cocola.models.audioldm2.pretrained"

local TagEncoder = nn.Module:extend("TagEncoder")

local SPECIAL = { "<pad>", "in:", "out:", "genre:", ";" }

TagEncoder.KNOWN = {
  _class_name = P.one_of({ "TagEncoder" }), words = true, max_length = P.positive_integer,
  embedding_dim = P.positive_integer, output_dims = true,
}

--- TagEncoder.vocabulary(tags, {genres = {}, max_count = 4}) -> words: the special words, tag_1 .. tag_max_count
--- for every stem tag (lowercased, spaces to "_"), and the genres
function TagEncoder.vocabulary(tags, opts)
  opts = opts or {}
  local words, seen = {}, {}
  local function add(w)
    if not seen[w] then words[#words + 1], seen[w] = w, true end
  end
  for _, w in ipairs(SPECIAL) do add(w) end
  for _, tag in ipairs(tags) do
    local t = tostring(tag):lower():gsub("[%s%-]+", "_")
    for k = 1, opts.max_count or 4 do add(t .. "_" .. k) end
  end
  for _, g in ipairs(opts.genres or {}) do add(tostring(g):lower()) end
  return words
end

function TagEncoder:init(cfg)
  if type(cfg) ~= "table" then error("TagEncoder: expected a config table", 3) end
  P.check_keys(cfg, TagEncoder.KNOWN, "TagEncoder")
  if type(cfg.words) ~= "table" or #cfg.words < #SPECIAL then error("TagEncoder: config key 'words' must list the vocabulary", 3) end
  for i, w in ipairs(SPECIAL) do
    if cfg.words[i] ~= w then error(string.format("TagEncoder: word %d must be '%s'", i, w), 3) end
  end
  local dims = cfg.output_dims
  if type(dims) ~= "table" or #dims ~= 2 or P.positive_integer(dims[1]) or P.positive_integer(dims[2]) then
    error("TagEncoder: config key 'output_dims' must be two positive integers (the U-Net's two text widths)", 3)
  end
  self.config = cfg
  self.words = cfg.words
  self.index = {}
  for i, w in ipairs(cfg.words) do self.index[w] = i - 1 end
  self.max_length = cfg.max_length or 24
  local D = cfg.embedding_dim or 64
  self.embedding = nn.Embedding(#cfg.words, D)
  self:register_parameter("position", (cocola.randn({ self.max_length, D }) * 0.02):requires_grad(true))
  self.norm = nn.LayerNorm(D)
  self.head = nn.Linear(D, dims[1])
  self.head_1 = nn.Linear(D, dims[2])
end

-- the known stem tags (words with an occurrence count), for error messages
function TagEncoder:known_tags()
  local out = {}
  for _, w in ipairs(self.words) do
    local tag = w:match("^(.-)_1$")
    if tag then out[#out + 1] = tag end
  end
  return table.concat(out, ", ")
end

--- tokenize(prompt) -> list of 0-based ids (no padding)
function TagEncoder:tokenize(prompt)
  if type(prompt) ~= "string" then error("TagEncoder: a prompt must be a string", 3) end
  local ids = {}
  local text = prompt:lower():gsub(",", " "):gsub(";", " ; ")
  for word in text:gmatch("%S+") do
    local id = self.index[word]
    if not id then
      error(string.format("TagEncoder: unknown word '%s' in the prompt '%s' (known stem tags: %s, each as <tag>_<k>)",
        word, prompt, self:known_tags()), 3)
    end
    ids[#ids + 1] = id
  end
  -- longer prompts are cut at max_length words, as the text stacks' tokenizers truncate (a track with many
  -- stems can list more tags than max_length)
  for i = #ids, self.max_length + 1, -1 do ids[i] = nil end
  return ids
end

--- forward(prompts) -> {encoder_hidden_states, encoder_hidden_states_1, encoder_attention_mask_1}
function TagEncoder:forward(prompts)
  if type(prompts) == "string" then prompts = { prompts } end
  if type(prompts) ~= "table" or #prompts == 0 then error("TagEncoder: expected a non-empty list of prompts", 2) end
  local rows = {}
  for b, p in ipairs(prompts) do
    local ids = self:tokenize(p)
    for i = #ids + 1, self.max_length do ids[i] = 0 end
    rows[b] = ids
  end
  local dev = self.position:device()
  local ids = cocola.tensor(rows):long():to(dev)
  local h = self.norm(self.embedding(ids) + self.position)
  local B = #prompts
  return { encoder_hidden_states = self.head(h), encoder_hidden_states_1 = self.head_1(h),
    encoder_attention_mask_1 = cocola.ones({ B, self.max_length }):long():to(dev) }
end

--- TagEncoder.from_pretrained(dir): the tag_encoder/ folder or a model folder holding it
function TagEncoder.from_pretrained(dir) return P.from_pretrained(TagEncoder, dir, "tag_encoder") end

return TagEncoder
