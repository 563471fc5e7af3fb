-- spec/helpers/png.lua — a small PNG reader for the specs: the chunks (with their CRCs checked), the
-- IHDR header, and the pixels of 8-bit RGB / RGBA / gray images, non-interlaced, through a short inflate
-- (RFC 1951: stored, fixed and dynamic Huffman blocks) and PNG's five row filters. png.read(path) ->
-- {width, height, channels, pixel = function(x, y) -> r, g, b (x, y from 0, y down)}.
local M = {}

local crc_table = {}
for n = 0, 255 do
  local c = n
  for _ = 1, 8 do c = (c & 1) == 1 and (0xEDB88320 ~ (c >> 1)) or (c >> 1) end
  crc_table[n] = c
end
local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = crc_table[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end

-- Huffman decoding table from code lengths: {counts, symbols}
local function huffman(lengths, n)
  local counts, offs, symbols = {}, {}, {}
  for i = 0, 15 do counts[i] = 0 end
  for s = 0, n - 1 do counts[lengths[s] or 0] = counts[lengths[s] or 0] + 1 end
  counts[0] = 0
  offs[1] = 0
  for i = 1, 14 do offs[i + 1] = offs[i] + counts[i] end
  for s = 0, n - 1 do
    local l = lengths[s] or 0
    if l > 0 then
      symbols[offs[l]] = s
      offs[l] = offs[l] + 1
    end
  end
  return { counts = counts, symbols = symbols }
end

local LBASE = { 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258 }
local LEXTRA = { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0 }
local DBASE = { 1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
  4097, 6145, 8193, 12289, 16385, 24577 }
local DEXTRA = { 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13 }
local ORDER = { 16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15 }

--- the bytes of a zlib stream's inflated data, as a list of byte values
function M.inflate(data)
  local pos, bit, cur = 3, 0, 0 -- after the 2-byte zlib header
  local out, n = {}, 0
  local function bits(k)
    local v = 0
    for i = 0, k - 1 do
      if bit == 0 then
        cur = data:byte(pos) or error("inflate: data ends early")
        pos = pos + 1
      end
      v = v | (((cur >> bit) & 1) << i)
      bit = (bit + 1) % 8
    end
    return v
  end
  local function decode(h)
    local code, first, index = 0, 0, 0
    for len = 1, 15 do
      code = code | bits(1)
      local count = h.counts[len]
      if code - count < first then return h.symbols[index + code - first] end
      index, first = index + count, (first + count) << 1
      code = code << 1
    end
    error("inflate: bad Huffman code")
  end
  local fixed_l, fixed_d
  repeat
    local final, kind = bits(1), bits(2)
    if kind == 0 then
      bit = 0
      local len = data:byte(pos) | (data:byte(pos + 1) << 8)
      pos = pos + 4
      for i = 0, len - 1 do out[n + 1 + i] = data:byte(pos + i) end
      n, pos = n + len, pos + len
    else
      local lit, dist
      if kind == 1 then
        if not fixed_l then
          local l = {}
          for s = 0, 287 do l[s] = s < 144 and 8 or s < 256 and 9 or s < 280 and 7 or 8 end
          local d = {}
          for s = 0, 29 do d[s] = 5 end
          fixed_l, fixed_d = huffman(l, 288), huffman(d, 30)
        end
        lit, dist = fixed_l, fixed_d
      elseif kind == 2 then
        local hlit, hdist, hclen = bits(5) + 257, bits(5) + 1, bits(4) + 4
        local cl = {}
        for i = 1, hclen do cl[ORDER[i]] = bits(3) end
        local ch = huffman(cl, 19)
        local lengths, i = {}, 0
        while i < hlit + hdist do
          local sym = decode(ch)
          if sym < 16 then
            lengths[i], i = sym, i + 1
          else
            local rep, val = 0, 0
            if sym == 16 then rep, val = 3 + bits(2), lengths[i - 1]
            elseif sym == 17 then rep = 3 + bits(3)
            else rep = 11 + bits(7) end
            for _ = 1, rep do lengths[i], i = val, i + 1 end
          end
        end
        local l, d = {}, {}
        for s = 0, hlit - 1 do l[s] = lengths[s] end
        for s = 0, hdist - 1 do d[s] = lengths[hlit + s] end
        lit, dist = huffman(l, hlit), huffman(d, hdist)
      else
        error("inflate: bad block type")
      end
      while true do
        local sym = decode(lit)
        if sym < 256 then
          n = n + 1
          out[n] = sym
        elseif sym == 256 then
          break
        else
          local len = LBASE[sym - 256] + bits(LEXTRA[sym - 256])
          local ds = decode(dist)
          local back = DBASE[ds + 1] + bits(DEXTRA[ds + 1])
          for _ = 1, len do
            n = n + 1
            out[n] = out[n - back]
          end
        end
      end
    end
  until final == 1
  return out
end

--- reads a PNG file: its header, chunk names and (for 8-bit gray, RGB, gray+alpha and RGBA images) pixels
function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  assert(s:sub(1, 8) == "\137PNG\r\n\26\n", path .. " does not start with the PNG signature")
  local pos, chunks, idat = 9, {}, {}
  local img = {}
  while pos <= #s do
    local len, name = string.unpack(">I4c4", s, pos)
    local body = s:sub(pos + 8, pos + 7 + len)
    local crc = string.unpack(">I4", s, pos + 8 + len)
    assert(crc == crc32(name .. body), path .. ": bad CRC of chunk " .. name)
    chunks[#chunks + 1] = name
    if name == "IHDR" then
      img.width, img.height, img.depth, img.color, _, _, img.interlace = string.unpack(">I4I4BBBBB", body)
    elseif name == "IDAT" then
      idat[#idat + 1] = body
    end
    pos = pos + 12 + len
    if name == "IEND" then break end
  end
  img.chunks = chunks
  local channels = ({ [0] = 1, [2] = 3, [4] = 2, [6] = 4 })[img.color]
  if img.depth ~= 8 or not channels or img.interlace ~= 0 then return img end -- header only
  img.channels = channels
  local raw = M.inflate(table.concat(idat))
  local w, h, stride = img.width, img.height, img.width * channels
  assert(#raw == h * (stride + 1), path .. ": the pixel data has the wrong size")
  local px = {} -- unfiltered bytes, row-major, 1-based
  for y = 0, h - 1 do
    local filter, base, prev = raw[y * (stride + 1) + 1], y * (stride + 1) + 1, (y - 1) * stride
    for i = 1, stride do
      local x = raw[base + i]
      local a = i > channels and px[y * stride + i - channels] or 0
      local b = y > 0 and px[prev + i] or 0
      local c = (i > channels and y > 0) and px[prev + i - channels] or 0
      if filter == 1 then x = x + a
      elseif filter == 2 then x = x + b
      elseif filter == 3 then x = x + (a + b) // 2
      elseif filter == 4 then
        local p = a + b - c
        local pa, pb, pc = math.abs(p - a), math.abs(p - b), math.abs(p - c)
        x = x + ((pa <= pb and pa <= pc) and a or (pb <= pc and b or c))
      end
      px[y * stride + i] = x & 0xFF
    end
  end
  function img.pixel(x, y)
    local i = y * stride + x * channels
    if channels <= 2 then return px[i + 1], px[i + 1], px[i + 1] end
    return px[i + 1], px[i + 2], px[i + 3]
  end
  return img
end

return M
