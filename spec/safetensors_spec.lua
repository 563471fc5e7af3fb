-- safetensors_spec.lua — cocola.save / cocola.load: exact round trips of float32, float64 and
-- int64 (including 0-d and non-contiguous tensors), float16 storage within half precision,
-- metadata, and a clear error for every kind of malformed file (bytes written by hand here).
local cocola = require "cocola"

local tmpfiles = {}
local function tmp()
  local p = os.tmpname()
  tmpfiles[#tmpfiles + 1] = p
  return p
end

local function write_bytes(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function read_bytes(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- a safetensors file from a header string and a data string
local function st_file(header, data)
  return string.pack("<I8", #header) .. header .. (data or "")
end

local flat = require("helpers.files").flat

--- asserts load(path) fails with a message matching every pattern
local function load_fails(path, ...)
  local ok, err = pcall(cocola.load, path)
  assert(not ok, "load succeeded on a malformed file")
  err = tostring(err)
  for _, pat in ipairs({ ... }) do
    assert(err:find(pat), string.format("error message %q does not match %q", err, pat))
  end
  return err
end

describe("safetensors", function()
  teardown(function()
    for _, p in ipairs(tmpfiles) do
      os.remove(p)
      os.remove(p .. ".tmp")
    end
  end)

  it("round-trips float32, float64 and int64 exactly", function()
    cocola.manual_seed(5)
    local tensors = {
      f32 = cocola.randn({ 3, 4 }),
      f64 = cocola.randn({ 2, 3, 2 }, { dtype = "float64" }),
      i64 = cocola.tensor({ 9007199254740993, -9223372036854775807, 0, 42 }, { dtype = "int64" }),
      scalar = cocola.tensor(3.25, { dtype = "float64" }),
      ["name with spaces.and.dots"] = cocola.ones({ 1 }),
    }
    local path = tmp()
    cocola.save(path, tensors)
    local back = cocola.load(path)
    local n = 0
    for name, t in pairs(tensors) do
      n = n + 1
      local b = back[name]
      assert.is_not_nil(b, name)
      assert.are.equal(t:dtype(), b:dtype(), name)
      assert.are.same(t.shape, b.shape, name)
      assert.are.same(t:totable(), b:totable(), name)
    end
    local m = 0
    for _ in pairs(back) do m = m + 1 end
    assert.are.equal(n, m)
    assert.is_nil(io.open(path .. ".tmp", "rb")) -- the temporary file was renamed away
  end)

  it("saves the logical values of non-contiguous tensors", function()
    local base = cocola.arange(0, 12, { dtype = "float64" }):reshape(3, 4)
    local path = tmp()
    cocola.save(path, { t = base:t(), n = base:narrow(2, 2, 2) })
    local back = cocola.load(path)
    assert.are.same(base:t():totable(), back.t:totable())
    assert.are.same({ 4, 3 }, back.t.shape)
    assert.are.same({ { 1, 2 }, { 5, 6 }, { 9, 10 } }, back.n:totable())
  end)

  it("stores float16 when asked, loading within half precision as float32", function()
    cocola.manual_seed(9)
    local x = cocola.randn({ 50 }, { dtype = "float64" }) * 10
    local small = cocola.tensor({ 1e-3, -2.5e-5, 65504, 0 }) -- includes a subnormal and the largest half
    local ids = cocola.tensor({ 1, 2, 3 }, { dtype = "int64" })
    local path = tmp()
    cocola.save(path, { x = x, small = small, ids = ids }, { dtype = "float16" })
    -- the data section holds 2 bytes per float element and 8 per int64
    local raw = read_bytes(path)
    local hlen = string.unpack("<I8", raw)
    assert.are.equal(50 * 2 + 4 * 2 + 3 * 8, #raw - 8 - hlen)
    assert.is_truthy(raw:sub(9, 8 + hlen):find('"F16"', 1, true))
    local back = cocola.load(path)
    assert.are.equal("float32", back.x:dtype())
    assert.are.equal("int64", back.ids:dtype())
    assert.are.same({ 1, 2, 3 }, back.ids:totable())
    local want, got = flat(x:totable()), flat(back.x:totable())
    for i = 1, #want do
      assert.is_true(math.abs(got[i] - want[i]) <= math.abs(want[i]) * 2 ^ -11 + 1e-7,
        string.format("element %d: %.8g vs %.8g", i, got[i], want[i]))
    end
    local s = back.small:totable()
    assert.is_true(math.abs(s[1] - 1e-3) <= 1e-3 * 2 ^ -11)
    assert.is_true(math.abs(s[2] + 2.5e-5) <= 6e-8) -- subnormal spacing 2^-24
    assert.are.equal(65504, s[3])
    assert.are.equal(0, s[4])
  end)

  it("round-trips metadata", function()
    local path = tmp()
    cocola.save(path, { w = cocola.zeros({ 2 }) }, { metadata = { format = "pt", note = "hello, \"world\"" } })
    local tensors, meta = cocola.load(path)
    assert.are.same({ format = "pt", note = "hello, \"world\"" }, meta)
    assert.are.same({ 0, 0 }, tensors.w:totable())
    local _, none = cocola.load(path)
    assert.is_table(none)
    local p2 = tmp()
    cocola.save(p2, { w = cocola.zeros({ 2 }) })
    local _, empty = cocola.load(p2)
    assert.are.same({}, empty)
  end)

  it("reads a file written by hand (F32, little-endian, 8-byte aligned header)", function()
    local path = tmp()
    local header = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}}'
    write_bytes(path, st_file(header, string.pack("<ff", 1.5, -2) .. string.pack("<i8", -7)))
    local t = cocola.load(path)
    assert.are.same({ 1.5, -2 }, t.a:totable())
    assert.are.same({ -7 }, t.b:totable())
  end)

  describe("malformed files", function()
    local good = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    local data8 = string.pack("<ff", 1, 2)

    it("missing file", function()
      load_fails("/nonexistent/dir/nothing.safetensors", "cannot open", "nothing.safetensors")
    end)

    it("truncated before the header length", function()
      local p = tmp()
      write_bytes(p, "\1\0\0")
      load_fails(p, "truncated")
    end)

    it("empty file", function()
      local p = tmp()
      write_bytes(p, "")
      load_fails(p, "truncated")
    end)

    it("header length larger than the file", function()
      local p = tmp()
      write_bytes(p, string.pack("<I8", 1000) .. good .. data8)
      load_fails(p, "header length 1000", "does not fit")
    end)

    it("a valid file cut short", function()
      local p = tmp()
      cocola.save(p, { a = cocola.zeros({ 100 }) })
      local raw = read_bytes(p)
      write_bytes(p, raw:sub(1, #raw - 10))
      load_fails(p, "out of range")
    end)

    it("invalid JSON", function()
      local p = tmp()
      write_bytes(p, st_file('{"a":{"dtype":"F32",', data8))
      load_fails(p, "not valid JSON")
      write_bytes(p, st_file('[1, 2]', data8))
      load_fails(p) -- an array is not a header of tensors
    end)

    it("data_offsets out of range", function()
      local p = tmp()
      write_bytes(p, st_file('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', data8))
      load_fails(p, "'a'", "out of range")
      write_bytes(p, st_file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}', data8))
      load_fails(p, "'a'", "data_offsets")
      write_bytes(p, st_file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}', data8))
      load_fails(p, "'a'", "data_offsets")
    end)

    it("offsets with a gap", function()
      local p = tmp()
      local h = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}'
      write_bytes(p, st_file(h, string.rep("\0", 12)))
      load_fails(p, "'b'", "gap or overlap")
    end)

    it("offsets that overlap", function()
      local p = tmp()
      local h = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'
      write_bytes(p, st_file(h, string.rep("\0", 8)))
      load_fails(p, "gap or overlap")
    end)

    it("trailing bytes after the last tensor", function()
      local p = tmp()
      write_bytes(p, st_file(good, data8 .. "\0\0\0\0"))
      load_fails(p, "trailing")
    end)

    it("byte count not matching the shape", function()
      local p = tmp()
      write_bytes(p, st_file('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', data8))
      load_fails(p, "'a'", "8 bytes", "need 12")
      write_bytes(p, st_file('{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}}', data8))
      load_fails(p, "'a'", "need 16")
    end)

    it("unknown dtype", function()
      local p = tmp()
      write_bytes(p, st_file('{"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}}', data8))
      load_fails(p, "'a'", "dtype", "Q7")
    end)

    it("invalid shapes", function()
      local p = tmp()
      write_bytes(p, st_file('{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', data8))
      load_fails(p, "'a'", "invalid size")
      write_bytes(p, st_file('{"a":{"dtype":"F32","data_offsets":[0,8]}}', data8))
      load_fails(p, "'a'", "shape")
    end)
  end)

  it("save rejects bad arguments", function()
    local p = tmp()
    assert.is_false(pcall(cocola.save, p, { a = 1 }))
    assert.is_false(pcall(cocola.save, p, { cocola.zeros({ 1 }) }))
    assert.is_false(pcall(cocola.save, p, { a = cocola.zeros({ 1 }) }, { dtype = "int8" }))
  end)
end)
