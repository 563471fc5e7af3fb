-- cocola.models.text.sentencepiece_model — a minimal protobuf reader for SentencePiece's `spiece.model`
-- (sentencepiece_model.proto, ModelProto). Only the fields the Unigram tokenizer needs are decoded:
--   ModelProto      1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
--   SentencePiece   1 piece (string), 2 score (float), 3 type (NORMAL 1, UNKNOWN 2, CONTROL 3,
--                   USER_DEFINED 4, UNUSED 5, BYTE 6)
--   TrainerSpec     3 model_type (UNIGRAM 1, BPE 2, WORD 3, CHAR 4), 24 treat_whitespace_as_suffix,
--                   35 byte_fallback, 40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id
--   NormalizerSpec  1 name, 2 precompiled_charsmap (bytes), 3 add_dummy_prefix, 4 remove_extra_whitespaces,
--                   5 escape_whitespaces
-- Other fields are skipped by wire type. Defaults follow the proto (add_dummy_prefix, remove_extra_whitespaces
-- and escape_whitespaces true; unk 0, bos 1, eos 2, pad -1). Malformed input raises an error naming the
-- file and the byte offset.
local M = {}

M.TYPES = { "NORMAL", "UNKNOWN", "CONTROL", "USER_DEFINED", "UNUSED", "BYTE" }

local Reader = {}
Reader.__index = Reader

local function reader(buf, first, last, path)
  return setmetatable({ buf = buf, pos = first, last = last, path = path }, Reader)
end

function Reader:fail(what)
  error(string.format("%s: malformed SentencePiece model (%s at byte %d)", self.path, what, self.pos - 1), 0)
end

function Reader:varint()
  local v, shift = 0, 0
  while true do
    if self.pos > self.last then self:fail("truncated varint") end
    local b = self.buf:byte(self.pos)
    self.pos = self.pos + 1
    v = v | ((b & 0x7F) << shift)
    if b < 0x80 then return v end
    shift = shift + 7
    if shift > 63 then self:fail("varint too long") end
  end
end

--- next field: number, wire type, and value (integer for varint/fixed, {first, last} for bytes)
function Reader:field()
  local key = self:varint()
  local num, wt = key >> 3, key & 7
  if wt == 0 then
    return num, wt, self:varint()
  elseif wt == 1 then
    if self.pos + 7 > self.last then self:fail("truncated fixed64") end
    local v = string.unpack("<i8", self.buf, self.pos)
    self.pos = self.pos + 8
    return num, wt, v
  elseif wt == 2 then
    local len = self:varint()
    if len < 0 or self.pos + len - 1 > self.last then self:fail("length past the end") end
    local first = self.pos
    self.pos = self.pos + len
    return num, wt, { first, first + len - 1 }
  elseif wt == 5 then
    if self.pos + 3 > self.last then self:fail("truncated fixed32") end
    local p = self.pos
    self.pos = self.pos + 4
    return num, wt, p
  end
  self:fail("unsupported wire type " .. wt)
end

local function signed32(v)
  v = v & 0xFFFFFFFF
  if v >= 0x80000000 then v = v - 0x100000000 end
  return v
end

local function parse_piece(buf, span, path)
  local r = reader(buf, span[1], span[2], path)
  local p = { piece = "", score = 0.0, type = 1 }
  while r.pos <= r.last do
    local num, wt, v = r:field()
    if num == 1 and wt == 2 then p.piece = buf:sub(v[1], v[2])
    elseif num == 2 and wt == 5 then p.score = string.unpack("<f", buf, v)
    elseif num == 3 and wt == 0 then p.type = v end
  end
  return p
end

local function parse_trainer(buf, span, path)
  local r = reader(buf, span[1], span[2], path)
  local t = { model_type = 1, treat_whitespace_as_suffix = false, byte_fallback = false,
              unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1 }
  local ints = { [40] = "unk_id", [41] = "bos_id", [42] = "eos_id", [43] = "pad_id" }
  while r.pos <= r.last do
    local num, wt, v = r:field()
    if wt == 0 then
      if num == 3 then t.model_type = v
      elseif num == 24 then t.treat_whitespace_as_suffix = v ~= 0
      elseif num == 35 then t.byte_fallback = v ~= 0
      elseif ints[num] then t[ints[num]] = signed32(v) end
    end
  end
  return t
end

local function parse_normalizer(buf, span, path)
  local r = reader(buf, span[1], span[2], path)
  local n = { name = "", precompiled_charsmap = "", add_dummy_prefix = true, remove_extra_whitespaces = true,
              escape_whitespaces = true }
  while r.pos <= r.last do
    local num, wt, v = r:field()
    if num == 1 and wt == 2 then n.name = buf:sub(v[1], v[2])
    elseif num == 2 and wt == 2 then n.precompiled_charsmap = buf:sub(v[1], v[2])
    elseif num == 3 and wt == 0 then n.add_dummy_prefix = v ~= 0
    elseif num == 4 and wt == 0 then n.remove_extra_whitespaces = v ~= 0
    elseif num == 5 and wt == 0 then n.escape_whitespaces = v ~= 0 end
  end
  return n
end

--- parse(bytes, path) -> {pieces = {{piece, score, type}, ...} (0-based ids are index - 1),
---   trainer = {...}, normalizer = {...}}
function M.parse(buf, path)
  path = path or "spiece.model"
  local r = reader(buf, 1, #buf, path)
  local model = { pieces = {}, trainer = nil, normalizer = nil }
  while r.pos <= r.last do
    local num, wt, v = r:field()
    if num == 1 and wt == 2 then model.pieces[#model.pieces + 1] = parse_piece(buf, v, path)
    elseif num == 2 and wt == 2 then model.trainer = parse_trainer(buf, v, path)
    elseif num == 3 and wt == 2 then model.normalizer = parse_normalizer(buf, v, path) end
  end
  if #model.pieces == 0 then error(path .. ": malformed SentencePiece model (no pieces)", 0) end
  model.trainer = model.trainer or parse_trainer("", { 1, 0 }, path)
  model.normalizer = model.normalizer or parse_normalizer("", { 1, 0 }, path)
  return model
end

--- load(path) -> parsed model
function M.load(path)
  local f, why = io.open(path, "rb")
  if not f then error(string.format("%s: cannot read the SentencePiece model (%s)", path, why), 0) end
  local buf = f:read("a")
  f:close()
  return M.parse(buf, path)
end

return M
