-- cocola.models.text.tokenizer — the tokenizers of a Hugging Face folder, natively:
--   Tokenizer.from_pretrained(dir, {files = "fast" | "slow", subfolder = "tokenizer"}) picks the kind from the files present:
--     tokenizer.json (model BPE + ByteLevel pre-tokenizer, or Unigram + Metaspace) — the default when present;
--     vocab.json + merges.txt (byte-level BPE, RoBERTa / GPT-2, semantics of the slow tokenizers);
--     spiece.model (SentencePiece Unigram, T5, semantics of sentencepiece itself).
--   tokenizer_config.json and special_tokens_map.json give the special tokens, the added tokens
--   (added_tokens_decoder, added_tokens.json), model_max_length, padding_side, add_prefix_space and
--   clean_up_tokenization_spaces; tokenizer_class picks the post-processing of the slow files
--   (RoBERTa/BART/CLAP <s> ... </s>, T5 ... </s>, GPT-2 nothing).
--   tok:encode(text) -> ids (Lua list, 0-based ids, special tokens added)
--   tok(texts, {padding = "max_length" | "longest" | true | false, max_length =, truncation =,
--       add_special_tokens = true}) -> {input_ids = int64 (B, L), attention_mask = int64 (B, L)};
--       padding = false gives Lua lists (one list per text) instead, since the lengths may differ.
--   tok:decode(ids, {skip_special_tokens = false, clean_up_tokenization_spaces = <config>}) -> string
-- Pipeline: added tokens are split out first (lstrip / rstrip honoured), each remaining segment goes
-- through the model's normaliser / pre-tokeniser / model (bpe.lua, unigram.lua), then the post-processor.
-- Invalid UTF-8 is an error naming the byte position; nothing here can crash the process.
local bpe = require "cocola.models.text.bpe"
local unigram = require "cocola.models.text.unigram"
local spm_model = require "cocola.models.text.sentencepiece_model"
local cjson = require "cjson"
local json_config = require "cocola.json_config"

local Tokenizer = {}
Tokenizer.__index = Tokenizer

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function read_json(path) return json_config.decode_file(path, "tokenizer", 0) end

local function null(v) return v == nil or v == cjson.null end

local function token_content(v)
  if null(v) then return nil end
  if type(v) == "table" then return v.content end
  return v
end

local function read_lines(path)
  local f, why = io.open(path, "rb")
  if not f then error(string.format("tokenizer: cannot read '%s' (%s)", path, why), 0) end
  local lines = {}
  for line in f:lines() do lines[#lines + 1] = line:gsub("\r$", "") end
  f:close()
  return lines
end

--- check(text): errors on invalid UTF-8 with the 1-based byte position
local function check_utf8(text, what)
  if type(text) ~= "string" then
    error(string.format("tokenizer: %s must be a string, got %s", what, type(text)), 0)
  end
  local ok, len, bad = pcall(utf8.len, text)
  if not ok or len == nil then
    error(string.format("tokenizer: %s is not valid UTF-8 (invalid byte at position %d)", what, bad or 0), 0)
  end
end

local SPECIAL_NAMES = { "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token" }

-- ---- construction --------------------------------------------------------------------------------
local function new_tokenizer(dir, kind, files)
  local self = setmetatable({ dir = dir, kind = kind, files = files, added = {}, added_by_id = {} }, Tokenizer)
  local cfg = exists(dir .. "/tokenizer_config.json") and read_json(dir .. "/tokenizer_config.json") or {}
  local stm = exists(dir .. "/special_tokens_map.json") and read_json(dir .. "/special_tokens_map.json") or {}
  self.config = cfg
  self.special_map = stm
  local mml = cfg.model_max_length
  if type(mml) == "number" and mml < 1e15 then self.model_max_length = math.tointeger(mml) or math.floor(mml) end
  self.padding_side = null(cfg.padding_side) and "right" or cfg.padding_side
  if self.padding_side ~= "right" and self.padding_side ~= "left" then
    error(string.format("tokenizer: %s/tokenizer_config.json: padding_side '%s' must be 'right' or 'left'",
      dir, tostring(self.padding_side)), 0)
  end
  self.clean_up = cfg.clean_up_tokenization_spaces
  if null(self.clean_up) then self.clean_up = true end
  return self, cfg, stm
end

function Tokenizer:add_token(id, t)
  local entry = { id = id, content = t.content, lstrip = t.lstrip == true, rstrip = t.rstrip == true,
                  special = t.special ~= false }
  if self.added_by_id[id] == nil then self.added[#self.added + 1] = entry end
  self.added_by_id[id] = entry
end

function Tokenizer:finish(cfg, stm)
  -- special tokens: tokenizer_config first, special_tokens_map over it
  self.special = {}
  for _, name in ipairs(SPECIAL_NAMES) do
    local c = token_content(stm[name]) or token_content(cfg[name])
    if c then self.special[name] = c end
  end
  self.special_ids = {}
  for name, c in pairs(self.special) do
    local id = self:token_to_id(c)
    if id == nil then
      error(string.format("tokenizer: %s: the %s '%s' is not in the vocabulary", self.dir, name, c), 0)
    end
    self.special_ids[name] = id
  end
  for _, name in ipairs(SPECIAL_NAMES) do
    local id = self.special_ids[name]
    if id and not self.added_by_id[id] then
      self:add_token(id, { content = self.special[name], special = true })
    end
  end
  self.pad_token_id = self.special_ids.pad_token
  table.sort(self.added, function(a, b) return #a.content > #b.content end) -- longest first at a tie
  self.added_content = {}
  for _, a in ipairs(self.added) do self.added_content[a.content] = a end
  return self
end

function Tokenizer:token_to_id(tok)
  for _, a in ipairs(self.added) do if a.content == tok then return a.id end end
  if self.kind == "bpe" then return self.model.vocab[tok] end
  return self.model.lookup_all[tok]
end

function Tokenizer:id_to_token(id)
  local a = self.added_by_id[id]
  if a then return a.content end
  return self.model.id_to_token[id]
end

local function unigram_lookup_all(model)
  local t = {}
  for id = #model.pieces - 1, 0, -1 do t[model.pieces[id + 1].piece] = id end
  model.lookup_all = t
end

local function post_from_class(self, cfg)
  local cls = tostring(cfg.tokenizer_class or "")
  local bos, eos = self.special_ids.cls_token or self.special_ids.bos_token,
    self.special_ids.sep_token or self.special_ids.eos_token
  local function need(ok)
    if not ok then
      error(string.format("tokenizer: %s: %s needs its special tokens (bos/cls and eos/sep) in " ..
        "tokenizer_config.json or special_tokens_map.json", self.dir, cls), 0)
    end
  end
  if cls:match("^Roberta") or cls:match("^Bart") or cls:match("^Clap") or cls:match("^Longformer") then
    need(bos and eos)
    self.prefix_ids, self.suffix_ids = { bos }, { eos }
  elseif cls:match("^T5") then
    need(self.special_ids.eos_token)
    self.prefix_ids, self.suffix_ids = {}, { self.special_ids.eos_token }
  elseif cls:match("^GPT2") or cls == "" then
    self.prefix_ids, self.suffix_ids = {}, {}
    if cfg.add_bos_token == true then
      need(self.special_ids.bos_token)
      self.prefix_ids = { self.special_ids.bos_token }
    end
  else
    error(string.format("tokenizer: %s: tokenizer_class '%s' is not supported with the slow files " ..
      "(RobertaTokenizer, BartTokenizer, GPT2Tokenizer, T5Tokenizer)", self.dir, cls), 0)
  end
end

local function post_from_json(self, pp)
  self.prefix_ids, self.suffix_ids = {}, {}
  if null(pp) or pp.type == "ByteLevel" then return end
  if pp.type == "RobertaProcessing" or pp.type == "BertProcessing" then
    self.prefix_ids, self.suffix_ids = { math.tointeger(pp.cls[2]) }, { math.tointeger(pp.sep[2]) }
  elseif pp.type == "TemplateProcessing" then
    local seen_a = false
    for _, item in ipairs(pp.single or {}) do
      if item.Sequence then
        seen_a = true
      elseif item.SpecialToken then
        local st = pp.special_tokens and pp.special_tokens[item.SpecialToken.id]
        if not st then error(string.format("tokenizer: %s: template token '%s' is not defined", self.dir,
          tostring(item.SpecialToken.id)), 0) end
        local list = seen_a and self.suffix_ids or self.prefix_ids
        for _, id in ipairs(st.ids) do list[#list + 1] = math.tointeger(id) end
      end
    end
  elseif pp.type == "Sequence" then
    for _, p in ipairs(pp.processors or {}) do
      if p.type ~= "ByteLevel" then post_from_json(self, p) end
    end
  else
    error(string.format("tokenizer: %s/tokenizer.json: post_processor '%s' is not supported " ..
      "(RobertaProcessing, TemplateProcessing, ByteLevel)", self.dir, tostring(pp.type)), 0)
  end
end

local function load_tokenizer_json(dir)
  local path = dir .. "/tokenizer.json"
  local tj = read_json(path)
  local m = tj.model or {}
  local self, cfg, stm
  if m.type == "BPE" then
    self, cfg, stm = new_tokenizer(dir, "bpe", "tokenizer.json")
    for _, key in ipairs({ "dropout", "continuing_subword_prefix", "end_of_word_suffix" }) do
      if not null(m[key]) then error(string.format("tokenizer: %s: BPE option '%s' is not supported", path, key), 0) end
    end
    if m.byte_fallback == true then error(path .. ": BPE byte_fallback is not supported", 0) end
    local pre = tj.pre_tokenizer
    if null(pre) or pre.type ~= "ByteLevel" or pre.use_regex == false then
      error(string.format("tokenizer: %s: a BPE model needs the ByteLevel pre-tokenizer with use_regex " ..
        "(got %s)", path, null(pre) and "none" or tostring(pre.type)), 0)
    end
    if not null(tj.normalizer) then
      error(string.format("tokenizer: %s: normalizer '%s' is not supported for byte-level BPE", path,
        tostring(tj.normalizer.type)), 0)
    end
    local vocab = {}
    for k, v in pairs(m.vocab) do vocab[k] = math.tointeger(v) end
    local merges = {}
    for i, mm in ipairs(m.merges) do
      merges[i] = type(mm) == "table" and (mm[1] .. " " .. mm[2]) or mm
    end
    self.model = bpe.new { vocab = vocab, merges = merges,
                           prefix_space = pre.add_prefix_space and "if_missing" or "never" }
  elseif m.type == "Unigram" then
    self, cfg, stm = new_tokenizer(dir, "unigram", "tokenizer.json")
    local pieces = {}
    for i, p in ipairs(m.vocab) do pieces[i] = { piece = p[1], score = p[2], type = 1 } end
    self.model = unigram.new { pieces = pieces, unk_id = math.tointeger(m.unk_id), byte_fallback = m.byte_fallback == true }
    unigram_lookup_all(self.model)
    self.normalize = unigram.hf_normalizer(not null(tj.normalizer) and tj.normalizer or nil, path)
    local pre = tj.pre_tokenizer
    local steps = (not null(pre) and pre.type == "Sequence") and pre.pretokenizers or { pre }
    local meta
    for _, st in ipairs(steps) do
      if not null(st) and st.type == "Metaspace" then meta = st
      elseif null(st) or st.type ~= "WhitespaceSplit" then
        error(string.format("tokenizer: %s: pre-tokenizer '%s' is not supported for Unigram (Metaspace, " ..
          "optionally after WhitespaceSplit)", path, null(st) and "none" or tostring(st.type)), 0)
      end
    end
    if not meta then error(string.format("tokenizer: %s: a Unigram model needs the Metaspace pre-tokenizer", path), 0) end
    self.pre_steps = steps
    local dec = tj.decoder
    self.decoder = null(dec) and meta or dec
  else
    error(string.format("tokenizer: %s: model type '%s' is not supported (BPE, Unigram)", path, tostring(m.type)), 0)
  end
  for _, t in ipairs(tj.added_tokens or {}) do self:add_token(math.tointeger(t.id), t) end
  post_from_json(self, tj.post_processor)
  return self:finish(cfg, stm)
end

local function add_config_tokens(self, cfg)
  local dec = cfg.added_tokens_decoder
  if type(dec) == "table" then
    local ids = {}
    for k in pairs(dec) do ids[#ids + 1] = math.tointeger(tonumber(k)) end
    table.sort(ids)
    for _, id in ipairs(ids) do self:add_token(id, dec[tostring(id)]) end
  end
  if exists(self.dir .. "/added_tokens.json") then
    for content, id in pairs(read_json(self.dir .. "/added_tokens.json")) do
      id = math.tointeger(id)
      if not self.added_by_id[id] then self:add_token(id, { content = content, special = false }) end
    end
  end
end

local function load_vocab_merges(dir)
  local self, cfg, stm = new_tokenizer(dir, "bpe", "vocab.json+merges.txt")
  local vocab = {}
  for k, v in pairs(read_json(dir .. "/vocab.json")) do vocab[k] = math.tointeger(v) end
  local merges = {}
  for i, line in ipairs(read_lines(dir .. "/merges.txt")) do
    if not (i == 1 and line:match("^#version")) and line ~= "" then merges[#merges + 1] = line end
  end
  self.model = bpe.new { vocab = vocab, merges = merges, prefix_space = "never" }
  self.slow_prefix_space = cfg.add_prefix_space == true
  add_config_tokens(self, cfg)
  self:finish(cfg, stm)
  post_from_class(self, cfg)
  return self
end

local function load_spiece(dir)
  local self, cfg, stm = new_tokenizer(dir, "unigram", "spiece.model")
  local sp = spm_model.load(dir .. "/spiece.model")
  if sp.trainer.model_type ~= 1 then
    error(string.format("tokenizer: %s/spiece.model: model_type %d is not Unigram (1)", dir, sp.trainer.model_type), 0)
  end
  if sp.trainer.treat_whitespace_as_suffix then
    error(dir .. "/spiece.model: treat_whitespace_as_suffix is not supported", 0)
  end
  self.model = unigram.new { pieces = sp.pieces, unk_id = sp.trainer.unk_id, byte_fallback = sp.trainer.byte_fallback }
  unigram_lookup_all(self.model)
  self.spm_spec = sp.normalizer
  self.spm_charsmap = unigram.charsmap(sp.normalizer.precompiled_charsmap, dir .. "/spiece.model")
  self.decoder = { type = "Metaspace", replacement = "\u{2581}", prepend_scheme = "always" }
  -- pieces of type CONTROL / UNKNOWN count as added special tokens (they are never produced by Viterbi)
  for i, p in ipairs(sp.pieces) do
    if p.type == 2 or p.type == 3 then self:add_token(i - 1, { content = p.piece, special = true }) end
  end
  add_config_tokens(self, cfg)
  self:finish(cfg, stm)
  post_from_class(self, cfg)
  return self
end

--- from_pretrained(dir, {files = "fast" | "slow", subfolder = "tokenizer_2"}) -> Tokenizer
function Tokenizer.from_pretrained(dir, opts)
  opts = opts or {}
  if type(dir) ~= "string" then error("tokenizer: from_pretrained expects a folder path", 2) end
  if opts.subfolder then dir = dir .. "/" .. opts.subfolder end
  local has_json = exists(dir .. "/tokenizer.json")
  local has_bpe = exists(dir .. "/vocab.json") and exists(dir .. "/merges.txt")
  local has_spm = exists(dir .. "/spiece.model")
  local files = opts.files
  if files == nil then files = has_json and "fast" or "slow" end
  if files == "fast" then
    if not has_json then error(string.format("tokenizer: %s/tokenizer.json: no such file", dir), 2) end
    return load_tokenizer_json(dir)
  elseif files == "slow" then
    if has_bpe then return load_vocab_merges(dir) end
    if has_spm then return load_spiece(dir) end
    error(string.format("tokenizer: %s holds no tokenizer files (expected tokenizer.json, vocab.json + " ..
      "merges.txt, or spiece.model)", dir), 2)
  end
  error(string.format("tokenizer: files must be 'fast' or 'slow', got '%s'", tostring(files)), 2)
end

-- ---- encoding ------------------------------------------------------------------------------------
local function is_ws(b) return b == 32 or (b >= 9 and b <= 13) end

--- split(text) -> list of {text = s} | {id = n}
function Tokenizer:split_added(text)
  local segs, pos, n = {}, 1, #text
  local added = self.added
  if #added == 0 then return { { text = text } } end
  local firsts = self.added_firsts
  if not firsts then
    firsts = {}
    for _, a in ipairs(added) do if a.content ~= "" then firsts[a.content:byte(1)] = true end end
    self.added_firsts = firsts
  end
  local start = 1
  while pos <= n do
    local hit
    if not firsts[text:byte(pos)] then goto next end
    for _, a in ipairs(added) do
      local c = a.content
      if c ~= "" and text:sub(pos, pos + #c - 1) == c then hit = a break end
    end
    if hit then
      local left = text:sub(start, pos - 1)
      if hit.lstrip then left = left:gsub("%s+$", "") end
      if left ~= "" then segs[#segs + 1] = { text = left } end
      segs[#segs + 1] = { id = hit.id }
      pos = pos + #hit.content
      if hit.rstrip then while pos <= n and is_ws(text:byte(pos)) do pos = pos + 1 end end
      start = pos
      goto continue
    end
    ::next::
    pos = pos + 1
    ::continue::
  end
  if start <= n then segs[#segs + 1] = { text = text:sub(start) } end
  return segs
end

function Tokenizer:segment_ids(s, first)
  if self.kind == "bpe" then return self.model:encode(s) end
  if self.spm_spec then
    return self.model:viterbi(unigram.spm_normalize(self.spm_spec, self.spm_charsmap, s))
  end
  local ids = {}
  for _, piece in ipairs(unigram.pre_tokenize(self.pre_steps, self.normalize(s), first)) do
    for _, id in ipairs(self.model:piece_ids(piece)) do ids[#ids + 1] = id end
  end
  return ids
end

--- ids of text without special tokens around it
function Tokenizer:encode_plain(text)
  check_utf8(text, "the text")
  if self.slow_prefix_space then text = " " .. text end
  local ids = {}
  for k, seg in ipairs(self:split_added(text)) do
    if seg.id then
      ids[#ids + 1] = seg.id
    else
      for _, id in ipairs(self:segment_ids(seg.text, k == 1)) do ids[#ids + 1] = id end
    end
  end
  return ids
end

local function with_specials(self, ids, add)
  if add == false then return ids end
  local out = {}
  for _, id in ipairs(self.prefix_ids) do out[#out + 1] = id end
  for _, id in ipairs(ids) do out[#out + 1] = id end
  for _, id in ipairs(self.suffix_ids) do out[#out + 1] = id end
  return out
end

--- encode(text, {add_special_tokens = true}) -> list of ids
function Tokenizer:encode(text, opts)
  opts = opts or {}
  return with_specials(self, self:encode_plain(text), opts.add_special_tokens)
end

--- tok(texts, opts): batch encoding with padding, truncation and attention masks
function Tokenizer:__call(texts, opts)
  opts = opts or {}
  if type(texts) == "string" then texts = { texts } end
  if type(texts) ~= "table" or #texts == 0 then error("tokenizer: expected a string or a non-empty list of strings", 2) end
  local padding = opts.padding
  if padding == true then padding = "longest" end
  if padding == nil then padding = false end
  if padding ~= false and padding ~= "longest" and padding ~= "max_length" and padding ~= "do_not_pad" then
    error(string.format("tokenizer: padding must be 'max_length', 'longest', true or false, got '%s'", tostring(padding)), 2)
  end
  if padding == "do_not_pad" then padding = false end
  local max_length = opts.max_length
  if type(max_length) == "number" then max_length = math.tointeger(max_length) or max_length end
  if max_length ~= nil and (math.type(max_length) ~= "integer" or max_length < 1) then
    error("tokenizer: max_length must be a positive integer, got " .. tostring(max_length), 2)
  end
  if max_length == nil and (opts.truncation or padding == "max_length") then max_length = self.model_max_length end
  if padding == "max_length" and max_length == nil then
    error("tokenizer: padding = 'max_length' needs max_length (the tokenizer has no model_max_length)", 2)
  end
  local add = opts.add_special_tokens ~= false
  local n_special = add and (#self.prefix_ids + #self.suffix_ids) or 0
  local rows = {}
  for b, text in ipairs(texts) do
    local ok, ids = pcall(self.encode_plain, self, text)
    if not ok then error(string.format("%s (text %d of the batch)", tostring(ids):gsub("^.-tokenizer:", "tokenizer:"), b), 2) end
    if opts.truncation and max_length then
      local keep = math.max(max_length - n_special, 0)
      for k = #ids, keep + 1, -1 do ids[k] = nil end
    end
    rows[b] = with_specials(self, ids, add)
  end
  if padding == false then
    local masks = {}
    for b, r in ipairs(rows) do
      local m = {}
      for k = 1, #r do m[k] = 1 end
      masks[b] = m
    end
    return { input_ids = rows, attention_mask = masks }
  end
  local L = 0
  for _, r in ipairs(rows) do L = math.max(L, #r) end
  if padding == "max_length" then
    if L > max_length then
      error(string.format("tokenizer: a text has %d tokens, more than max_length %d (pass truncation = true)", L, max_length), 2)
    end
    L = max_length
  end
  if self.pad_token_id == nil then
    error("tokenizer: padding needs a pad token and this tokenizer defines none", 2)
  end
  local ids_t, mask_t = {}, {}
  for b, r in ipairs(rows) do
    local ids, mask = {}, {}
    local pad = L - #r
    if self.padding_side == "left" then
      for k = 1, pad do ids[k], mask[k] = self.pad_token_id, 0 end
      for k = 1, #r do ids[pad + k], mask[pad + k] = r[k], 1 end
    else
      for k = 1, #r do ids[k], mask[k] = r[k], 1 end
      for k = #r + 1, L do ids[k], mask[k] = self.pad_token_id, 0 end
    end
    ids_t[b], mask_t[b] = ids, mask
  end
  local cocola = require "cocola"
  if L == 0 then
    return { input_ids = cocola.zeros({ #rows, 0 }, { dtype = "int64" }),
             attention_mask = cocola.zeros({ #rows, 0 }, { dtype = "int64" }) }
  end
  return { input_ids = cocola.tensor(ids_t, { dtype = "int64" }),
           attention_mask = cocola.tensor(mask_t, { dtype = "int64" }) }
end

-- ---- decoding ------------------------------------------------------------------------------------
--- lossy(s): invalid UTF-8 sequences replaced by U+FFFD
local function lossy(s)
  if utf8.len(s) then return s end
  local out, pos, n = {}, 1, #s
  while pos <= n do
    local len, bad = utf8.len(s, pos)
    if len then out[#out + 1] = s:sub(pos) break end
    out[#out + 1] = s:sub(pos, bad - 1)
    local b = s:byte(bad)
    local need = (b >= 0xC2 and b <= 0xDF) and 1 or (b >= 0xE0 and b <= 0xEF) and 2 or (b >= 0xF0 and b <= 0xF4) and 3 or 0
    local q = bad + 1
    while need > 0 and q <= n and s:byte(q) >= 0x80 and s:byte(q) <= 0xBF do q, need = q + 1, need - 1 end
    out[#out + 1] = "\u{FFFD}"
    pos = q
  end
  return table.concat(out)
end

local function clean_up(s)
  local function rep(a, b) s = s:gsub(a:gsub("[%.%?%!]", "%%%0"), b) end
  rep(" .", "."); rep(" ?", "?"); rep(" !", "!"); rep(" ,", ","); rep(" ' ", "'"); rep(" n't", "n't")
  rep(" 'm", "'m"); rep(" 's", "'s"); rep(" 've", "'ve"); rep(" 're", "'re")
  return s
end

--- decode(ids, {skip_special_tokens = false, clean_up_tokenization_spaces = <config>}) -> string
function Tokenizer:decode(ids, opts)
  opts = opts or {}
  if type(ids) ~= "table" then error("tokenizer: decode expects a list of ids or an int64 tensor", 2) end
  if getmetatable(ids) and ids.totable then ids = ids:totable() end
  local tokens = {}
  for k, id in ipairs(ids) do
    id = math.tointeger(id)
    local a = id and self.added_by_id[id]
    if not (a and a.special and opts.skip_special_tokens) then
      local t = id and self:id_to_token(id)
      if t == nil then error(string.format("tokenizer: decode: id %s (position %d) is not in the vocabulary", tostring(ids[k]), k), 2) end
      tokens[#tokens + 1] = t
    end
  end
  local s
  if self.kind == "bpe" then
    s = lossy(self.model:decode_tokens(tokens))
  else
    local mark = self.decoder.replacement or "\u{2581}"
    local scheme = self.decoder.prepend_scheme
    if scheme == nil then scheme = (self.decoder.add_prefix_space == false) and "never" or "always" end
    local parts = {}
    for k, t in ipairs(tokens) do
      local hex = self.model.byte_fallback and t:match("^<0x(%x%x)>$")
      if hex then
        parts[#parts + 1] = string.char(tonumber(hex, 16))
      elseif k == 1 and scheme ~= "never" then
        parts[#parts + 1] = (t:gsub(mark, ""))
      else
        parts[#parts + 1] = (t:gsub(mark, " "))
      end
    end
    s = lossy(table.concat(parts))
  end
  local cu = opts.clean_up_tokenization_spaces
  if cu == nil then cu = self.clean_up end
  if cu then s = clean_up(s) end
  return s
end

--- batch_decode(list of id lists or a (B, L) tensor, opts) -> list of strings
function Tokenizer:batch_decode(rows, opts)
  if getmetatable(rows) and rows.totable then rows = rows:totable() end
  local out = {}
  for b, r in ipairs(rows) do out[b] = self:decode(r, opts) end
  return out
end

--- vocab_size (model vocabulary plus added tokens beyond it)
function Tokenizer:__len()
  local n = 0
  for _ in pairs(self.model.id_to_token) do n = n + 1 end
  for _, a in ipairs(self.added) do if self.model.id_to_token[a.id] == nil then n = n + 1 end end
  return n
end

return Tokenizer
