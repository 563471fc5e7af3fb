-- cocola.models.text.unigram — SentencePiece Unigram as T5 uses it, from either source of a folder:
--   * spiece.model (sentencepiece_model.lua): SentencePiece's own normaliser (the precompiled charsmap,
--     then remove_extra_whitespaces: leading / trailing spaces dropped and runs folded to one;
--     add_dummy_prefix; spaces escaped as U+2581), then Viterbi over the whole string. CONTROL, UNKNOWN,
--     UNUSED and BYTE pieces are not candidates of the lattice.
--   * tokenizer.json: the normalizer sequence tokenizers writes for T5 (Precompiled, Strip, Replace),
--     the Metaspace pre-tokenizer (spaces to U+2581, a U+2581 prepended per prepend_scheme, split before
--     each U+2581), optionally after WhitespaceSplit (the older T5 files on the Hub), then Viterbi per piece.
-- The charsmap is SentencePiece's blob: a little-endian uint32 byte size of a double-array trie
-- (darts-clone units), the trie, then NUL-terminated replacement strings. SentencePiece replaces the
-- longest match at each position (a position with no match keeps its character); tokenizers' Precompiled
-- walks extended grapheme clusters (graphemes.lua) and replaces a cluster under 6 bytes by its shortest
-- matching prefix, so "Ⅻ" + U+0301 gives "XII" there and "XII" + U+0301 in SentencePiece.
-- Viterbi runs over byte positions: best[j] = max over pieces s[i..j) of best[i] + score, ties kept by
-- the first candidate (strict >); a character no piece of one character covers may be reached as the
-- unknown token with score min_score - 10; consecutive unknowns fuse into one; with byte_fallback an
-- unknown character becomes its <0xXX> byte pieces instead.
local ranges = require "cocola.models.text.unicode_ranges"

local M = {}

local SPACE_MARK = "\u{2581}"

-- ---- precompiled charsmap ------------------------------------------------------------------------
local Charsmap = {}
Charsmap.__index = Charsmap

function M.charsmap(blob, what)
  if blob == nil or blob == "" then return nil end
  if #blob < 4 then error(what .. ": precompiled_charsmap is too short", 0) end
  local size = string.unpack("<I4", blob, 1)
  if size % 4 ~= 0 or 4 + size > #blob then error(what .. ": precompiled_charsmap has a bad trie size", 0) end
  local units = {}
  for k = 0, size // 4 - 1 do units[k] = string.unpack("<I4", blob, 5 + 4 * k) end
  return setmetatable({ units = units, n = size // 4, strings = blob:sub(5 + size), cache = {} }, Charsmap)
end

local function offset(u) return (u >> 10) << ((u & (1 << 9)) >> 6) end

--- longest(s, pos, last) -> replacement, matched byte length (nil when nothing matches at pos);
--- with shortest = true the first (shortest) match instead; matches end at or before byte `last`
function Charsmap:longest(s, pos, last, shortest)
  local units, n = self.units, self.n
  local node = offset(units[0])
  local best, best_len
  for i = pos, last or #s do
    local c = s:byte(i)
    node = node ~ c
    if node >= n then break end
    local u = units[node]
    if (u & ((1 << 31) | 0xFF)) ~= c then break end
    node = node ~ offset(u)
    if (u >> 8) & 1 == 1 then
      if node >= n then break end
      best, best_len = units[node] & 0x7FFFFFFF, i - pos + 1
      if shortest then break end
    end
  end
  if not best then return nil end
  local hit = self.cache[best]
  if not hit then
    local stop = self.strings:find("\0", best + 1, true) or (#self.strings + 1)
    hit = self.strings:sub(best + 1, stop - 1)
    self.cache[best] = hit
  end
  return hit, best_len
end

local function char_len(s, pos)
  local b = s:byte(pos)
  if b < 0x80 then return 1 elseif b >= 0xF0 then return 4 elseif b >= 0xE0 then return 3 else return 2 end
end

--- apply_graphemes(s): the Precompiled normalizer of tokenizers: per extended grapheme cluster, a cluster
--- shorter than 6 bytes whose bytes start with a key is replaced whole by the shortest key's string
--- (combining marks after it are dropped, as there); otherwise each character is replaced on its own
function Charsmap:apply_graphemes(s)
  local graphemes = require "cocola.models.text.graphemes"
  local out = {}
  for _, g in ipairs(graphemes.split(s)) do
    local rep = #g < 6 and self:longest(g, 1, #g, true)
    if rep then
      out[#out + 1] = rep
    else
      for _, cp in utf8.codes(g) do
        local ch = utf8.char(cp)
        out[#out + 1] = self:longest(ch, 1, #ch, true) or ch
      end
    end
  end
  return table.concat(out)
end

--- apply(s) -> s with every longest match replaced (valid UTF-8 in, valid UTF-8 out)
function Charsmap:apply(s)
  local out, pos = {}, 1
  while pos <= #s do
    local rep, len = self:longest(s, pos)
    if rep then
      out[#out + 1] = rep
      pos = pos + len
    else
      local l = char_len(s, pos)
      out[#out + 1] = s:sub(pos, pos + l - 1)
      pos = pos + l
    end
  end
  return table.concat(out)
end

-- ---- normalisers -----------------------------------------------------------------------------
--- SentencePiece's Normalizer::Normalize for the spec of a spiece.model
function M.spm_normalize(spec, charsmap, s)
  local function prefix(pos)
    if charsmap then
      local rep, len = charsmap:longest(s, pos)
      if rep then return rep, len end
    end
    local l = char_len(s, pos)
    return s:sub(pos, pos + l - 1), l
  end
  local pos = 1
  if spec.remove_extra_whitespaces then
    while pos <= #s do
      local p, l = prefix(pos)
      if p ~= " " then break end
      pos = pos + l
    end
  end
  if pos > #s then return "" end
  local ws = spec.escape_whitespaces and SPACE_MARK or " "
  local out = {}
  if spec.add_dummy_prefix then out[1] = ws end
  local prev_space = spec.remove_extra_whitespaces
  while pos <= #s do
    local p, l = prefix(pos)
    pos = pos + l
    if prev_space then p = p:gsub("^ +", "") end
    if p ~= "" then
      out[#out + 1] = spec.escape_whitespaces and p:gsub(" ", SPACE_MARK) or p
      prev_space = spec.remove_extra_whitespaces and p:sub(-1) == " "
    end
  end
  local r = table.concat(out)
  if spec.remove_extra_whitespaces then
    while r:sub(-#ws) == ws do r = r:sub(1, -#ws - 1) end
  end
  return r
end

local function is_space(cp)
  local t = ranges.space
  for k = 1, #t, 2 do
    if cp >= t[k] and cp <= t[k + 1] then return true end
  end
  return false
end

--- one tokenizers normalizer (tokenizer.json "normalizer") as a function string -> string
function M.hf_normalizer(cfg, what)
  if cfg == nil then return function(s) return s end end
  local ty = cfg.type
  if ty == "Sequence" then
    local fs = {}
    for k, c in ipairs(cfg.normalizers or {}) do fs[k] = M.hf_normalizer(c, what) end
    return function(s)
      for _, f in ipairs(fs) do s = f(s) end
      return s
    end
  elseif ty == "Precompiled" then
    local base64 = require "cocola.models.text.base64"
    local cm = M.charsmap(base64.decode(cfg.precompiled_charsmap or ""), what)
    return function(s) return cm and cm:apply_graphemes(s) or s end
  elseif ty == "Strip" then
    return function(s)
      local first, last = 1, #s -- byte range kept
      if cfg.strip_left then
        for p, cp in utf8.codes(s) do
          if not is_space(cp) then break end
          first = p + #utf8.char(cp)
        end
      end
      if cfg.strip_right then
        local stop = first
        for p, cp in utf8.codes(s) do
          if p >= first and not is_space(cp) then stop = p + #utf8.char(cp) end
        end
        last = stop - 1
      end
      return s:sub(first, last)
    end
  elseif ty == "Replace" then
    local pat, content = cfg.pattern or {}, cfg.content or ""
    if pat.String then
      local plain = pat.String:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
      local rep = content:gsub("%%", "%%%%")
      return function(s) return (s:gsub(plain, rep)) end
    end
    local rx = pat.Regex
    local ch, min
    if rx then ch, min = rx:match("^(.){(%d+),}$") end
    if not ch and rx then ch, min = rx:match("^(.)%+$"), 1 end
    if ch and not ch:match("[%w]") then
      min = tonumber(min)
      local rep = content:gsub("%%", "%%%%")
      local esc = "%" .. ch
      return function(s)
        return (s:gsub(esc .. "+", function(run) if #run >= min then return content end end))
      end
    end
    error(string.format("%s: the Replace normalizer pattern %s is not supported (only plain strings and " ..
      "'<char> {n,}' / '<char>+' runs)", what, rx and ("regex '" .. rx .. "'") or "(none)"), 0)
  end
  error(string.format("%s: the normalizer type '%s' is not supported (Sequence, Precompiled, Strip, Replace)",
    what, tostring(ty)), 0)
end

--- tokenizers' Metaspace pre-tokenizer: spaces become the marker, then splits before each marker
function M.metaspace(cfg, s, first)
  local mark = cfg.replacement or SPACE_MARK
  s = s:gsub(" ", mark)
  local scheme = cfg.prepend_scheme
  if scheme == nil then scheme = (cfg.add_prefix_space == false) and "never" or "always" end
  if s ~= "" and (scheme == "always" or (scheme == "first" and first)) and s:sub(1, #mark) ~= mark then
    s = mark .. s
  end
  if cfg.split == false then return { s } end
  local out, start = {}, 1
  local pos = s:find(mark, 2, true)
  while pos do
    out[#out + 1] = s:sub(start, pos - 1)
    start = pos
    pos = s:find(mark, pos + #mark, true)
  end
  if start <= #s then out[#out + 1] = s:sub(start) end
  return out
end

--- pre_tokenize(steps, s, first): tokenizers' pre-tokenizer list (WhitespaceSplit, Metaspace) over s
function M.pre_tokenize(steps, s, first)
  local pieces = { s }
  for _, st in ipairs(steps) do
    local out = {}
    for k, piece in ipairs(pieces) do
      if st.type == "WhitespaceSplit" then
        local cur = {}
        for _, cp in utf8.codes(piece) do
          if is_space(cp) then
            if #cur > 0 then out[#out + 1] = utf8.char(table.unpack(cur)); cur = {} end
          else
            cur[#cur + 1] = cp
          end
        end
        if #cur > 0 then out[#out + 1] = utf8.char(table.unpack(cur)) end
      else
        for _, q in ipairs(M.metaspace(st, piece, first and k == 1)) do out[#out + 1] = q end
      end
    end
    pieces = out
  end
  return pieces
end

-- ---- the model -------------------------------------------------------------------------------
local Unigram = {}
Unigram.__index = Unigram

--- M.new{pieces = {{piece, score, type}}, unk_id = (0-based), byte_fallback = bool}
--- type follows sentencepiece_model.proto (1 NORMAL ... 6 BYTE); tokenizer.json pieces are all NORMAL
function M.new(opts)
  local self = setmetatable({}, Unigram)
  self.pieces = opts.pieces
  self.unk_id = opts.unk_id
  self.byte_fallback = opts.byte_fallback
  self.lookup, self.id_to_token, self.byte_ids = {}, {}, {}
  local min_score, max_len = math.huge, 1
  for i, p in ipairs(self.pieces) do
    local id = i - 1
    self.id_to_token[id] = p.piece
    local ty = p.type or 1
    if ty == 1 or ty == 4 then
      if self.lookup[p.piece] == nil then self.lookup[p.piece] = id end
      if #p.piece > max_len then max_len = #p.piece end
      if p.score < min_score then min_score = p.score end
    elseif ty == 6 then
      local hex = p.piece:match("^<0x(%x%x)>$")
      if hex then self.byte_ids[tonumber(hex, 16)] = id end
    end
  end
  if min_score == math.huge then min_score = 0 end
  self.unk_score = min_score - 10.0
  self.max_len = max_len
  self.cache = {}
  return self
end

--- viterbi(s) -> ids of one normalised string
function Unigram:viterbi(s)
  local n = #s
  if n == 0 then return {} end
  local lookup, pieces = self.lookup, self.pieces
  local best, from, via = { [1] = 0.0 }, {}, {}
  local pos = 1
  while pos <= n do
    local here = best[pos]
    local l1 = char_len(s, pos)
    if here ~= nil then
      local single = false
      for len = 1, math.min(self.max_len, n - pos + 1) do
        local id = lookup[s:sub(pos, pos + len - 1)]
        if id then
          if len == l1 then single = true end
          local e = pos + len
          local sc = here + pieces[id + 1].score
          if best[e] == nil or sc > best[e] then best[e], from[e], via[e] = sc, pos, id end
        end
      end
      if not single then
        local e = pos + l1
        local sc = here + self.unk_score
        if best[e] == nil or sc > best[e] then best[e], from[e], via[e] = sc, pos, -1 end
      end
    end
    pos = pos + l1
  end
  local rev, e = {}, n + 1
  while e > 1 do
    rev[#rev + 1] = { via[e], from[e], e }
    e = from[e]
  end
  local ids, prev_unk = {}, false
  for k = #rev, 1, -1 do
    local id, a, b = rev[k][1], rev[k][2], rev[k][3]
    if id == -1 then
      if self.byte_fallback then
        for q = a, b - 1 do ids[#ids + 1] = self.byte_ids[s:byte(q)] or self.unk_id end
      elseif not prev_unk then
        ids[#ids + 1] = self.unk_id
      end
      prev_unk = true
    else
      ids[#ids + 1] = id
      prev_unk = false
    end
  end
  return ids
end

function Unigram:piece_ids(s)
  local hit = self.cache[s]
  if hit then return hit end
  local ids = self:viterbi(s)
  if #s < 64 then self.cache[s] = ids end
  return ids
end

return M
