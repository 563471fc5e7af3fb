-- safetensors_mutation_spec.lua — randomized mutation of safetensors files (seeded, repeatable): the
-- header is parsed in Lua (lua-cjson), outside the libFuzzer harnesses of tests/fuzz, so this spec
-- feeds cocola.load a few hundred mutants of a small fixture (flipped bytes, truncations, a wrong
-- header length, hostile numbers in place of shapes and offsets, stray JSON) and requires each to load
-- or to end in an error that names the file or the format; plus the shapes whose element count wraps
-- around 2^64 (refused by name before anything is allocated).
local cocola = require "cocola"

local BASE = "spec/fixtures/audioldm2/vocoder.safetensors"
local TMP = os.tmpname()

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

-- a small LCG, independent of math.random's state
local state = 19
local function rand(n)
  state = (state * 6364136223846793005 + 1442695040888963407) & 0x7FFFFFFFFFFFFFFF
  return (state >> 20) % n + 1
end

local HOSTILE = { "-1", "0", "1", "9007199254740993", "9223372036854775807", "-9223372036854775808", "1e308",
  "4294967296", "1.5", "null", '"x"', "[]", "{}", "[[[[[[[[1]]]]]]]]" }

local function mutate(base, hlen)
  local kind = rand(5)
  if kind == 1 then -- flip a byte in the length or the header
    local i = rand(8 + hlen)
    return base:sub(1, i - 1) .. string.char(base:byte(i) ~ (1 << (rand(8) - 1))) .. base:sub(i + 1)
  elseif kind == 2 then -- truncate
    return base:sub(1, rand(#base) - 1)
  elseif kind == 3 then -- a wrong header length
    local lens = { 0, 1, hlen - 1, hlen + 1, #base, 100000001, 0x7FFFFFFFFFFFFFFF, -1 }
    return string.pack("<i8", lens[rand(#lens)]) .. base:sub(9)
  elseif kind == 4 then -- a hostile value in place of one number of the header
    local header = base:sub(9, 8 + hlen)
    local spots = {}
    for s, e in header:gmatch("()%-?%d+()") do spots[#spots + 1] = { s, e } end
    local p = spots[rand(#spots)]
    header = header:sub(1, p[1] - 1) .. HOSTILE[rand(#HOSTILE)] .. header:sub(p[2])
    return string.pack("<I8", #header) .. header .. base:sub(9 + hlen)
  else -- stray JSON somewhere in the header
    local header = base:sub(9, 8 + hlen)
    local i = rand(#header)
    local junk = ({ ",", "}", "{", '"', "\\", "\0", '"__metadata__":1,', "\255" })[rand(8)]
    header = header:sub(1, i - 1) .. junk .. header:sub(i)
    return string.pack("<I8", #header) .. header .. base:sub(9 + hlen)
  end
end

describe("cocola.load of mutated safetensors files", function()
  teardown(function() os.remove(TMP) end)

  it("loads or refuses each of 400 mutants with a clear error", function()
    local base = read(BASE)
    local hlen = string.unpack("<I8", base)
    local loaded, refused = 0, 0
    for n = 1, 400 do
      write(TMP, mutate(base, hlen))
      local ok, res = pcall(cocola.load, TMP)
      if ok then
        assert.are.equal("table", type(res), "mutant " .. n)
        for _, t in pairs(res) do assert.is_true(cocola.is_tensor(t), "mutant " .. n) end
        loaded = loaded + 1
      else
        local msg = tostring(res)
        assert.is_truthy(msg:find(TMP, 1, true) or msg:find("safetensors", 1, true),
          "mutant " .. n .. ": an error that names neither the file nor the format: " .. msg)
        refused = refused + 1
      end
    end
    assert.are.equal(400, loaded + refused)
    assert.is_true(refused > 200)
  end)

  it("refuses shapes whose element count wraps around 2^64", function()
    for _, shape in ipairs{ "[4294967296,4294967296]", "[4611686018427387904,4]", "[65536,65536,65536,65536]" } do
      local header = '{"w":{"dtype":"F32","shape":' .. shape .. ',"data_offsets":[0,0]}}'
      write(TMP, string.pack("<I8", #header) .. header)
      local ok, err = pcall(cocola.load, TMP)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("has a shape of more than 2^60 elements", 1, true), tostring(err))
    end
  end)
end)
