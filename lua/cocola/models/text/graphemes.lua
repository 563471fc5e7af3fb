-- cocola.models.text.graphemes — extended grapheme clusters (UAX #29), as the Precompiled normalizer of
-- tokenizers walks a string: no break inside CR LF; breaks around other controls; Hangul syllable
-- sequences (L, V, T, LV, LVT) stay together; no break before Extend, ZWJ or SpacingMark nor after
-- Prepend; an Extended_Pictographic Extend* ZWJ sequence joins the next pictograph (emoji ZWJ
-- sequences); regional indicators pair up (flags). Class tables come from unicode_ranges.lua.
local ranges = require "cocola.models.text.unicode_ranges"

local M = {}

local in_ranges = ranges.contains

local cache = {}
--- class(cp): "CR", "LF", "Control", "Extend", "ZWJ", "SpacingMark", "Prepend", "RI", "L", "V", "T",
--- "LV", "LVT", "ExtPict" or "Other"
local function class(cp)
  local c = cache[cp]
  if c then return c end
  if cp == 13 then c = "CR"
  elseif cp == 10 then c = "LF"
  elseif cp == 0x200D then c = "ZWJ"
  elseif cp >= 0x1F1E6 and cp <= 0x1F1FF then c = "RI"
  elseif (cp >= 0x1100 and cp <= 0x115F) or (cp >= 0xA960 and cp <= 0xA97C) then c = "L"
  elseif (cp >= 0x1160 and cp <= 0x11A7) or (cp >= 0xD7B0 and cp <= 0xD7C6) then c = "V"
  elseif (cp >= 0x11A8 and cp <= 0x11FF) or (cp >= 0xD7CB and cp <= 0xD7FB) then c = "T"
  elseif cp >= 0xAC00 and cp <= 0xD7A3 then c = ((cp - 0xAC00) % 28 == 0) and "LV" or "LVT"
  elseif in_ranges(ranges.gcb_control, cp) then c = "Control"
  elseif in_ranges(ranges.gcb_extend, cp) then c = "Extend"
  elseif in_ranges(ranges.gcb_spacing_mark, cp) then c = "SpacingMark"
  elseif in_ranges(ranges.gcb_prepend, cp) then c = "Prepend"
  elseif in_ranges(ranges.ext_pict, cp) then c = "ExtPict"
  else c = "Other" end
  cache[cp] = c
  return c
end
M.class = class

--- split(s) -> list of grapheme strings of valid UTF-8 s
function M.split(s)
  local out = {}
  local start, prev, pict_zwj, ri_count = 1, nil, false, 0
  local in_pict = false -- inside ExtPict Extend*
  for p, cp in utf8.codes(s) do
    local c = class(cp)
    local brk = true
    if prev == nil then brk = false
    elseif prev == "CR" and c == "LF" then brk = false
    elseif prev == "CR" or prev == "LF" or prev == "Control" then brk = true
    elseif c == "CR" or c == "LF" or c == "Control" then brk = true
    elseif prev == "L" and (c == "L" or c == "V" or c == "LV" or c == "LVT") then brk = false
    elseif (prev == "LV" or prev == "V") and (c == "V" or c == "T") then brk = false
    elseif (prev == "LVT" or prev == "T") and c == "T" then brk = false
    elseif c == "Extend" or c == "ZWJ" or c == "SpacingMark" then brk = false
    elseif prev == "Prepend" then brk = false
    elseif prev == "ZWJ" and c == "ExtPict" and pict_zwj then brk = false
    elseif prev == "RI" and c == "RI" and ri_count % 2 == 1 then brk = false
    end
    if brk then
      out[#out + 1] = s:sub(start, p - 1)
      start = p
    end
    -- state for GB11 and GB12/13
    if c == "ExtPict" then in_pict = true
    elseif c ~= "Extend" and c ~= "ZWJ" then in_pict = false end
    pict_zwj = (c == "ZWJ") and in_pict or false
    if c == "ZWJ" then in_pict = false end
    ri_count = (c == "RI") and ri_count + 1 or 0
    prev = c
  end
  if start <= #s then out[#out + 1] = s:sub(start) end
  return out
end

return M
