-- torch_ckpt_spec.lua — cocola.load of PyTorch zip checkpoints (spec/fixtures/ckpt, written by
-- spec/fixtures/gen_ckpt.py with torch 1.13): a Lightning-shaped checkpoint round-trips exactly
-- (tensor values against expected.safetensors, shapes, strides and offsets of views, shared
-- storage, nested dicts/lists/tuples, strings, bytes, ints, floats, bools, None, placeholders for
-- unknown globals), float16/bfloat16/int32/uint8/bool storages widen, a ZIP64 archive reads the
-- same, and every malicious or corrupt file is refused with a clear message without running anything.
local cocola = require "cocola"

local DIR = "spec/fixtures/ckpt/"
local MARKER = "/tmp/cocola_ckpt_pwned" -- keep in sync with gen_ckpt.py

local function flat(v, out)
  out = out or {}
  if type(v) == "table" then
    for i = 1, #v do flat(v[i], out) end
  else
    out[#out + 1] = v
  end
  return out
end

local function assert_same_tensor(got, want, what)
  assert(cocola.is_tensor(got), what .. " is not a tensor")
  assert.are.equal(want:dtype(), got:dtype(), what .. " dtype")
  assert.are.same(want.shape, got.shape, what .. " shape")
  local a, b = flat(got:contiguous():totable()), flat(want:contiguous():totable())
  assert.are.equal(#b, #a, what .. " numel")
  for i = 1, #b do
    if a[i] ~= b[i] then error(string.format("%s: element %d is %s, expected %s", what, i, tostring(a[i]), tostring(b[i]))) end
  end
end

local expected = cocola.load(DIR .. "expected.safetensors")

local function check_lightning(ck)
  assert.are.equal(3, ck.epoch)
  assert.are.equal("integer", math.type(ck.epoch))
  assert.are.equal(1000, ck.global_step)
  assert.are.equal("1.9.0", ck["pytorch-lightning_version"])
  assert.are.same({}, ck.lr_schedulers)
  assert.are.same({}, ck.callbacks)
  -- state_dict: every tensor exact
  local n = 0
  for name, want in pairs(expected) do
    local key = name:match("^sd%.(.*)$")
    if key then
      n = n + 1
      assert_same_tensor(ck.state_dict[key], want, "state_dict." .. key)
    end
  end
  assert.are.equal(12, n)
  local count = 0
  for _ in pairs(ck.state_dict) do count = count + 1 end
  assert.are.equal(12, count)
  assert.are.equal("int64", ck.state_dict["1.num_batches_tracked"]:dtype())
  assert.are.equal(1, ck.state_dict["1.num_batches_tracked"]:item())
  assert.are.equal(2 ^ 40 // 1, ck.state_dict.ids:totable()[3])
end

describe("cocola.load of a torch checkpoint", function()
  local ck = cocola.load(DIR .. "lightning.ckpt")

  it("rebuilds the Lightning dict with exact tensors", function() check_lightning(ck) end)

  it("keeps views as views of one shared storage", function()
    local base, t, nr = ck.state_dict["views.base"], ck.state_dict["views.t"], ck.state_dict["views.narrow"]
    assert.are.equal(base:storage_ptr(), t:storage_ptr())
    assert.are.equal(base:storage_ptr(), nr:storage_ptr())
    assert.are.same({ 6, 1 }, base:stride())
    assert.are.same({ 1, 6 }, t:stride())
    assert.are.same({ 6, 1 }, nr:stride())
    assert.are.equal(0, t:storage_offset())
    assert.are.equal(8, nr:storage_offset())
    assert.is_false(t:is_contiguous())
    assert.are.same({ { 1.0, 1.125, 1.25 }, { 1.75, 1.875, 2.0 } }, nr:totable())
    -- writes through one view show in the others (one storage)
    base:fill_(0)
    assert.are.equal(0, nr:totable()[1][1])
  end)

  it("reads hyper_parameters: strings, numbers, bools, None, bytes, tuples, lists, sets", function()
    local hp = ck.hyper_parameters
    assert.are.equal("random", hp.embedding_mode)
    assert.are.equal("hpss", hp.input_type)
    assert.are.equal(0.1, hp.dropout)
    assert.are.equal(1e-3, hp.learning_rate)
    assert.are.equal(512, hp.embedding_dim)
    assert.are.equal("integer", math.type(hp.embedding_dim))
    assert.are.equal(-5, hp.negative)
    assert.are.equal(1 << 40, hp.big)
    assert.is_false(hp.frozen)
    assert.is_true(hp.use_bias)
    assert.are.equal(cocola.None, hp.nothing)
    assert.are.equal("\0\255ab", hp.blob)
    assert.are.same({ 0.9, 0.999 }, hp.betas)
    assert.are.equal(1, hp.layers[1])
    assert.are.same({ 2, 3 }, hp.layers[2])
    assert.are.equal(cocola.None, hp.layers[3].deep)
    assert.are.same({ "hpss" }, hp.tags)
  end)

  it("turns unknown globals into inert placeholders", function()
    local hp = ck.hyper_parameters
    assert.are.same({ __global = "__main__.EmbeddingMode.RANDOM" }, hp.mode_enum)
    assert.are.same({ __global = "torch.device", args = { "cpu" } }, hp.device)
  end)

  it("reads optimizer_states with integer keys", function()
    local os_ = ck.optimizer_states
    assert.are.equal(1, #os_)
    local st = os_[1].state
    for pid = 0, 3 do
      for _, k in ipairs { "exp_avg", "exp_avg_sq", "step" } do
        assert_same_tensor(st[pid][k], expected[string.format("opt.%d.%s", pid, k)], string.format("state[%d].%s", pid, k))
      end
    end
    assert.are.equal(1, st[0].step:item())
    local pg = os_[1].param_groups[1]
    assert.are.same({ 0, 1, 2, 3 }, pg.params)
    assert.are.equal(1e-3, pg.lr)
    assert.are.same({ 0.9, 0.999 }, pg.betas)
    assert.are.equal(1e-8, pg.eps)
    assert.is_false(pg.amsgrad)
    assert.are.equal(cocola.None, pg.foreach)
  end)

  it("reads the same data from a ZIP64 archive", function()
    check_lightning(cocola.load(DIR .. "zip64.pt"))
  end)

  it("widens float16/bfloat16 to float32 and int32/uint8/bool to int64", function()
    local h = cocola.load(DIR .. "half.pt")
    for _, k in ipairs { "f16", "bf16", "i32", "u8", "flags", "f64", "scalar" } do
      assert_same_tensor(h[k], expected["half." .. k], k)
    end
    assert.are.equal("float32", h.f16:dtype())
    assert.are.equal("int64", h.flags:dtype())
    assert.are.same({ 0, 3 }, h.empty.shape)
    assert.are.same({}, h.scalar.shape)
  end)

  it("reads a hand-made pickle in torch's layout", function()
    local m = cocola.load(DIR .. "handmade.pt")
    assert_same_tensor(m.w, expected["handmade.w"], "w")
  end)

  it("still loads safetensors files", function()
    assert.is_true(cocola.is_tensor(expected["sd.views.base"]))
  end)
end)

describe("cocola.load refuses", function()
  local function refuses(file, pattern)
    local ok, err = pcall(cocola.load, DIR .. file)
    assert.is_false(ok, file .. " was accepted")
    assert.is_string(err)
    assert.is_truthy(err:find("torch checkpoint", 1, true), err)
    if not err:find(pattern, 1, true) then error(string.format("%s: message %q lacks %q", file, err, pattern)) end
  end

  before_each(function() os.remove(MARKER) end)
  after_each(function()
    local f = io.open(MARKER, "r")
    if f then f:close() end
    assert.is_nil(f, "a malicious pickle ran a command")
  end)

  it("a REDUCE of os.system", function()
    refuses("evil_os.pt", "refusing the pickle global 'os.system'")
    refuses("evil_os.pt", "nothing was executed")
  end)
  it("posix.system after a tensor was rebuilt", function()
    refuses("evil_posix.pt", "refusing the pickle global 'posix.system'")
  end)
  it("builtins.eval via STACK_GLOBAL (protocol 4)", function()
    refuses("evil_eval.pt", "refusing the pickle global 'builtins.eval'")
  end)
  it("getattr other than an enum member", function()
    refuses("evil_getattr.pt", "refusing the pickle global '__builtin__.getattr'")
  end)
  it("a truncated file", function()
    refuses("truncated.ckpt", "corrupt or truncated zip")
  end)
  it("a corrupt central directory", function()
    refuses("corrupt_cd.ckpt", "corrupt zip: bad central directory entry")
  end)
  it("a corrupt storage (CRC)", function()
    refuses("crc.ckpt", "CRC-32 mismatch in entry")
  end)
  it("a zip bomb (a compressed entry)", function()
    refuses("bomb.pt", "is compressed (method 8")
    refuses("bomb.pt", "only stored entries are accepted")
  end)
  it("an entry claiming more bytes than the file holds", function()
    refuses("huge.pt", "lies outside the file's data")
  end)
  it("a file that is not a zip", function()
    local ok, err = pcall(require("cocola.core")._torch_load, DIR .. "expected.safetensors")
    assert.is_false(ok)
    assert.is_truthy(err:find("not a zip archive", 1, true), err)
    ok, err = pcall(require("cocola.core")._torch_load, DIR .. "no-such-file.pt")
    assert.is_false(ok)
    assert.is_truthy(err:find("cannot open", 1, true), err)
  end)
end)
