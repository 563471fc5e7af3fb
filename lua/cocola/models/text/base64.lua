-- cocola.models.text.base64 — standard base64 (RFC 4648, '+' '/' and '=' padding) decoding, for the
-- precompiled_charsmap that tokenizer.json stores as text. Whitespace is skipped; any other character
-- outside the alphabet is an error naming its position.
local M = {}

local value = {}
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
for i = 1, #alphabet do value[alphabet:byte(i)] = i - 1 end

function M.decode(s)
  local out, acc, bits = {}, 0, 0
  for i = 1, #s do
    local c = s:byte(i)
    if c == 61 then break end -- '='
    local v = value[c]
    if v then
      acc = (acc << 6) | v
      bits = bits + 6
      if bits >= 8 then
        bits = bits - 8
        out[#out + 1] = string.char((acc >> bits) & 0xFF)
      end
    elseif not (c == 32 or c == 10 or c == 13 or c == 9) then
      error(string.format("base64: invalid character at position %d", i), 2)
    end
  end
  return table.concat(out)
end

return M
