-- cocola.models.text.bpe — byte-level BPE as GPT-2 and RoBERTa use it (vocab.json + merges.txt, or the
-- "BPE" model of tokenizer.json with the ByteLevel pre-tokenizer):
--   * pre-tokenization: GPT-2's pattern
--       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
--     as a hand-written scanner over code points, with the letter / number / whitespace ranges of
--     unicode_ranges.lua (Lua patterns have neither \p{..} nor look-ahead);
--   * byte-to-unicode: each UTF-8 byte of a pre-token becomes one printable character (GPT-2's table:
--     the printable Latin-1 bytes map to themselves, the other 68 to U+0100 upwards);
--   * merges by rank: the adjacent pair of lowest rank merges, every non-overlapping occurrence left to
--     right, until no pair has a rank; results are cached per pre-token;
--   * add_prefix_space: `prefix_space = "always"` puts a space before the text (the slow tokenizers of
--     transformers), "if_missing" only when the text does not start with one (tokenizers' ByteLevel).
-- Decoding maps the characters back to bytes; invalid UTF-8 in the result becomes U+FFFD.
local ranges = require "cocola.models.text.unicode_ranges"

local M = {}

-- ---- Unicode categories ------------------------------------------------------------------------
local in_ranges = ranges.contains

local class_cache = {}
--- class(cp): "L" (letter), "N" (number), "S" (whitespace) or "O" (anything else)
local function class(cp)
  local c = class_cache[cp]
  if c then return c end
  if in_ranges(ranges.letter, cp) then c = "L"
  elseif in_ranges(ranges.number, cp) then c = "N"
  elseif in_ranges(ranges.space, cp) then c = "S"
  else c = "O" end
  class_cache[cp] = c
  return c
end
M.class = class

--- pretokenize(text) -> list of strings: GPT-2's regex, applied to valid UTF-8 text
function M.pretokenize(text)
  local cps, starts = {}, {}
  for p, cp in utf8.codes(text) do
    cps[#cps + 1] = cp
    starts[#starts + 1] = p
  end
  local n = #cps
  starts[n + 1] = #text + 1
  local cls = {}
  for i = 1, n do cls[i] = class(cps[i]) end
  local out = {}
  local function emit(i, j) out[#out + 1] = text:sub(starts[i], starts[j + 1] - 1) end
  local function run(i, k) -- last index of the run of class k starting at i
    while i + 1 <= n and cls[i + 1] == k do i = i + 1 end
    return i
  end
  local function run_other(i)
    while i + 1 <= n and cls[i + 1] == "O" do i = i + 1 end
    return i
  end
  local i = 1
  while i <= n do
    local cp, k = cps[i], cls[i]
    local nx = cps[i + 1]
    -- contractions (case-sensitive, as in the pattern)
    if cp == 39 and nx then
      local c2 = utf8.char(nx)
      local c3 = cps[i + 2] and (c2 .. utf8.char(cps[i + 2]))
      if c3 == "re" or c3 == "ve" or c3 == "ll" then
        emit(i, i + 2); i = i + 3; goto continue
      elseif c2 == "s" or c2 == "t" or c2 == "m" or c2 == "d" then
        emit(i, i + 1); i = i + 2; goto continue
      end
    end
    if k == "L" or k == "N" then
      local j = run(i, k); emit(i, j); i = j + 1; goto continue
    end
    if k == "O" then
      local j = run_other(i); emit(i, j); i = j + 1; goto continue
    end
    -- whitespace
    if cp == 32 and nx then
      local k2 = cls[i + 1]
      if k2 == "L" or k2 == "N" then
        local j = run(i + 1, k2); emit(i, j); i = j + 1; goto continue
      elseif k2 == "O" then
        local j = run_other(i + 1); emit(i, j); i = j + 1; goto continue
      end
    end
    do
      local j = run(i, "S")
      if j < n and j > i then j = j - 1 end -- \s+(?!\S): leave the last space to the next token
      emit(i, j); i = j + 1
    end
    ::continue::
  end
  return out
end

-- ---- byte <-> unicode ---------------------------------------------------------------------------
local byte_to_char, char_to_byte = {}, {}
do
  local n = 0
  for b = 0, 255 do
    local keep = (b >= 33 and b <= 126) or (b >= 161 and b <= 172) or (b >= 174 and b <= 255)
    local cp = b
    if not keep then cp = 256 + n; n = n + 1 end
    byte_to_char[b] = utf8.char(cp)
    char_to_byte[utf8.char(cp)] = string.char(b)
  end
end
M.byte_to_char = byte_to_char

-- ---- the model ----------------------------------------------------------------------------------
local BPE = {}
BPE.__index = BPE

--- M.new{vocab = {token = id}, merges = {"a b", ...}, prefix_space = "never" | "always" | "if_missing"}
function M.new(opts)
  local self = setmetatable({}, BPE)
  self.vocab = opts.vocab
  self.id_to_token = {}
  for tok, id in pairs(opts.vocab) do self.id_to_token[id] = tok end
  self.ranks = {}
  for r, m in ipairs(opts.merges) do
    if self.ranks[m] == nil then self.ranks[m] = r end
  end
  self.prefix_space = opts.prefix_space or "never"
  self.cache = {}
  self.cache_size = 0
  return self
end

local function merge_word(ranks, syms)
  while #syms > 1 do
    local best, best_rank = nil, math.huge
    for i = 1, #syms - 1 do
      local r = ranks[syms[i] .. " " .. syms[i + 1]]
      if r and r < best_rank then best, best_rank = i, r end
    end
    if not best then break end
    local a, b = syms[best], syms[best + 1]
    local out, i = {}, 1
    while i <= #syms do
      if i < #syms and syms[i] == a and syms[i + 1] == b then
        out[#out + 1] = a .. b; i = i + 2
      else
        out[#out + 1] = syms[i]; i = i + 1
      end
    end
    syms = out
  end
  return syms
end

--- ids of one pre-token (raw UTF-8 bytes)
function BPE:word_ids(word)
  local hit = self.cache[word]
  if hit then return hit end
  local syms = {}
  for k = 1, #word do syms[k] = byte_to_char[word:byte(k)] end
  local whole = table.concat(syms)
  local ids
  if self.vocab[whole] then
    ids = { self.vocab[whole] }
  else
    syms = merge_word(self.ranks, syms)
    ids = {}
    for k, s in ipairs(syms) do
      local id = self.vocab[s]
      if id == nil then
        error(string.format("bpe: the symbol '%s' is not in the vocabulary (a byte-level vocabulary holds all 256 bytes)", s), 0)
      end
      ids[k] = id
    end
  end
  if self.cache_size > 100000 then self.cache, self.cache_size = {}, 0 end
  self.cache[word] = ids
  self.cache_size = self.cache_size + 1
  return ids
end

--- encode(text) -> ids of a text holding no added tokens (already valid UTF-8)
function BPE:encode(text, first)
  if text == "" then return {} end
  if self.prefix_space == "always" and first then text = " " .. text
  elseif self.prefix_space == "if_missing" and text:byte(1) ~= 32 then text = " " .. text end
  local ids = {}
  for _, w in ipairs(M.pretokenize(text)) do
    for _, id in ipairs(self:word_ids(w)) do ids[#ids + 1] = id end
  end
  return ids
end

--- decode_tokens(tokens) -> string: byte-level characters back to bytes (others kept as they are)
function BPE:decode_tokens(tokens)
  local parts = {}
  for _, tok in ipairs(tokens) do
    for _, cp in utf8.codes(tok) do
      local ch = utf8.char(cp)
      parts[#parts + 1] = char_to_byte[ch] or ch
    end
  end
  return table.concat(parts)
end

return M
