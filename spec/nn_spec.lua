-- nn_spec.lua — cocola.nn: module registration and naming (PyTorch's dotted names), state_dict
-- round trips and strict loading errors, train/eval behaviour of BatchNorm2d and Dropout,
-- default initialisations (statistical checks), conversions, printing, and a small MLP that learns.
local cocola = require "cocola"
local nn = require "cocola.nn"

local function names_of(list)
  local out = {}
  for i, e in ipairs(list) do out[i] = e[1] end
  return out
end

local function maxdiff(a, b) return (a:double() - b:double()):abs():max():item() end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

local function stats(t)
  local d = t:double()
  local mean = d:mean():item()
  local std = ((d - mean) ^ 2):mean():sqrt():item()
  return mean, std, d:abs():max():item()
end

-- a module with own parameters, a buffer, nested containers and BatchNorm
local Net = nn.Module:extend("Net")
function Net:init()
  self.features = nn.Sequential(nn.Conv2d(2, 4, 3, { padding = 1 }), nn.BatchNorm2d(4), nn.SiLU())
  self.blocks = nn.ModuleList({ nn.Linear(4, 4), nn.Linear(4, 4, { bias = false }) })
  self.w = cocola.randn({ 4, 4 }):requires_grad(true) -- a leaf requiring grad: a parameter
  self:register_buffer("scale", cocola.ones({ 1 }))
  self.note = "plain field"
end
function Net:forward(x)
  local h = self.features(x):mean({ 3, 4 })
  for _, b in ipairs(self.blocks) do h = b(h) end
  return h:matmul(self.w) * self.scale
end

local NET_PARAMS = {
  "w", "features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias",
  "blocks.0.weight", "blocks.0.bias", "blocks.1.weight",
}
local NET_STATE = {
  "w", "scale", "features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias",
  "features.1.running_mean", "features.1.running_var", "features.1.num_batches_tracked",
  "blocks.0.weight", "blocks.0.bias", "blocks.1.weight",
}

describe("nn.Module registration", function()
  it("names parameters with PyTorch's dotted names, own members first, in registration order", function()
    local net = Net()
    assert.same(NET_PARAMS, names_of(net:named_parameters()))
    assert.same({ "scale", "features.1.running_mean", "features.1.running_var", "features.1.num_batches_tracked" },
      names_of(net:named_buffers()))
    assert.same(NET_STATE, net:state_dict_keys())
    assert.equal("plain field", net.note)
    assert.equal(8, #net:parameters())
  end)

  it("returns the registered tensors themselves and reaches children through fields and indices", function()
    local net = Net()
    local params = net:parameters()
    assert.is_true(rawequal(params[1], net.w))
    assert.is_true(rawequal(params[2], net.features[1].weight))
    assert.is_true(rawequal(net.blocks[2], net.blocks:named_children()[2][2]))
    assert.equal("1", net.blocks:named_children()[2][1])
    assert.equal(3, #net.features)
    assert.equal(2, #net.blocks)
    assert.is_nil(net.blocks[3])
    local n = 0
    for i, m in ipairs(net.features) do
      n = n + 1
      assert.is_true(rawequal(m, net.features:children()[i]))
    end
    assert.equal(3, n)
  end)

  it("containers append, replace by 1-based index and accept named children", function()
    local list = nn.ModuleList()
    list:append(nn.Linear(2, 2)):append(nn.ReLU())
    list[3] = nn.Linear(2, 1)
    assert.same({ "0.weight", "0.bias", "2.weight", "2.bias" }, names_of(list:named_parameters()))
    local replacement = nn.Tanh()
    list[2] = replacement
    assert.is_true(rawequal(replacement, list[2]))
    assert.is_true(rawequal(list[3], list[-1]))
    assert.has_error(function() list[5] = nn.ReLU() end)
    local seq = nn.Sequential({ { "fc", nn.Linear(3, 2) }, { "act", nn.Sigmoid() } })
    assert.same({ "fc.weight", "fc.bias" }, names_of(seq:named_parameters()))
    assert.is_true(rawequal(seq.fc, seq[1]))
    local y = seq(cocola.zeros({ 1, 3 }))
    assert.is_true(y:min():item() > 0 and y:max():item() < 1)
  end)

  it("leaves non-persistent buffers out of state_dict", function()
    local m = nn.Module()
    m:register_buffer("kept", cocola.zeros({ 2 }))
    m:register_buffer("scratch", cocola.zeros({ 2 }), false)
    assert.same({ "kept", "scratch" }, names_of(m:named_buffers()))
    assert.same({ "kept" }, m:state_dict_keys())
  end)

  it("lists a shared parameter once and counts parameters", function()
    local a = nn.Linear(3, 2)
    local seq = nn.Sequential(a, nn.ReLU(), a)
    assert.same({ "0.weight", "0.bias" }, names_of(seq:named_parameters()))
    assert.equal(8, seq:num_parameters())
    local net = Net()
    assert.equal(16 + 4 * 2 * 9 + 4 + 4 + 4 + 16 + 4 + 16, net:num_parameters())
  end)

  it("replaces and removes members by assignment", function()
    local lin = nn.Linear(3, 2)
    local w = cocola.zeros({ 2, 3 }):requires_grad(true)
    lin.weight = w
    assert.is_true(rawequal(w, lin.weight))
    lin.bias = nil
    assert.same({ "weight" }, names_of(lin:named_parameters()))
    assert.same({ "weight" }, lin:state_dict_keys())
    assert.has_error(function() lin.weight = 3 end)
    local nobias = nn.Linear(3, 2, { bias = false })
    assert.is_nil(nobias.bias)
    assert.same({ "weight" }, names_of(nobias:named_parameters()))
    local y = nobias(cocola.ones({ 4, 3 }))
    assert.same({ 4, 2 }, y.shape)
  end)

  it("refuses names with dots and one name registered as two kinds", function()
    local m = nn.Module()
    assert.has_error(function() m:register_parameter("a.b", cocola.zeros({ 1 })) end)
    m:register_buffer("x", cocola.zeros({ 1 }))
    assert.has_error(function() m:register_parameter("x", cocola.zeros({ 1 })) end)
  end)

  it("supports subclasses of subclasses and reports the class", function()
    local Wide = nn.Linear:extend("Wide")
    function Wide:init(n) nn.Linear.init(self, n, 2 * n) end
    local m = Wide(3)
    assert.same({ 6, 3 }, m.weight.shape)
    assert.equal("Wide", m:type_name())
    assert.is_true(m:is_instance_of(nn.Linear))
    assert.is_false(m:is_instance_of(nn.Conv2d))
    assert.same({ 5, 6 }, m(cocola.ones({ 5, 3 })).shape)
  end)
end)

describe("nn state_dict", function()
  it("round-trips through cocola.save / cocola.load with equal values", function()
    cocola.manual_seed(1)
    local a, b = Net(), Net()
    -- give the buffers non-default values
    a:train()
    a(cocola.randn({ 3, 2, 5, 5 }))
    local path = os.tmpname()
    cocola.save(path, a:state_dict())
    local loaded = cocola.load(path)
    os.remove(path)
    assert.same(sorted_keys(a:state_dict()), sorted_keys(loaded))
    assert.is_true(maxdiff(a.w, b.w) > 0)
    local w_before = b.w
    local result = b:load_state_dict(loaded)
    assert.same({}, result.missing_keys)
    assert.same({}, result.unexpected_keys)
    assert.is_true(rawequal(w_before, b.w)) -- copied in place
    assert.is_true(b.w:requires_grad())
    local sa, sb = a:state_dict(), b:state_dict()
    for _, k in ipairs(NET_STATE) do
      assert.equal(sa[k]:dtype(), sb[k]:dtype())
      assert.equal(0, maxdiff(sa[k], sb[k]), k)
    end
    assert.equal(1, b.features[2].num_batches_tracked:item())
    a:eval()
    b:eval()
    local x = cocola.randn({ 2, 2, 5, 5 })
    assert.equal(0, maxdiff(a(x), b(x)))
  end)

  it("state_dict tensors share storage with the module but carry no graph", function()
    local lin = nn.Linear(2, 2)
    local sd = lin:state_dict()
    assert.is_false(sd.weight:requires_grad())
    assert.equal(lin.weight:storage_ptr(), sd.weight:storage_ptr())
  end)

  it("strict loading names missing keys", function()
    local net = Net()
    local sd = net:state_dict()
    sd["features.1.running_var"] = nil
    local ok, err = pcall(net.load_state_dict, net, sd)
    assert.is_false(ok)
    assert.matches('Missing key%(s%) in state_dict: "features%.1%.running_var"', err)
    local res = net:load_state_dict(sd, { strict = false })
    assert.same({ "features.1.running_var" }, res.missing_keys)
  end)

  it("strict loading names unexpected keys", function()
    local net = Net()
    local sd = net:state_dict()
    sd["blocks.1.bias"] = cocola.zeros({ 4 })
    local ok, err = pcall(net.load_state_dict, net, sd)
    assert.is_false(ok)
    assert.matches('Unexpected key%(s%) in state_dict: "blocks%.1%.bias"', err)
    local res = net:load_state_dict(sd, { strict = false })
    assert.same({ "blocks.1.bias" }, res.unexpected_keys)
  end)

  it("refuses a wrong shape even when not strict, naming the key and both shapes", function()
    local net = Net()
    local sd = net:state_dict()
    sd["blocks.0.weight"] = cocola.zeros({ 4, 5 })
    for _, strict in ipairs({ true, false }) do
      local ok, err = pcall(net.load_state_dict, net, sd, { strict = strict })
      assert.is_false(ok)
      assert.matches("size mismatch for blocks%.0%.weight", err)
      assert.matches("{4, 5}", err, 1, true)
      assert.matches("{4, 4}", err, 1, true)
    end
  end)

  it("a failed load leaves the module unchanged", function()
    local lin = nn.Linear(3, 2)
    local before = lin.weight:clone()
    pcall(lin.load_state_dict, lin, { weight = cocola.zeros({ 2, 3 }), bias = cocola.zeros({ 3 }) })
    assert.equal(0, maxdiff(before, lin.weight))
  end)
end)

describe("nn train/eval", function()
  it("switches every submodule's training flag", function()
    local net = Net()
    assert.is_true(net.training and net.features[2].training and net.blocks[1].training)
    assert.equal(net, net:eval())
    assert.is_false(net.training or net.features[2].training or net.blocks[1].training)
    net:train()
    assert.is_true(net.features[2].training)
  end)

  it("BatchNorm2d uses batch statistics and updates running ones in training", function()
    cocola.manual_seed(7)
    local bn = nn.BatchNorm2d(3)
    local x = cocola.randn({ 4, 3, 5, 5 }) * 2 + 1
    local y = bn(x)
    local ymean = y:mean({ 1, 3, 4 })
    assert.is_true(ymean:abs():max():item() < 1e-5)
    local yvar = (y ^ 2):mean({ 1, 3, 4 })
    assert.is_true((yvar - 1):abs():max():item() < 1e-3)
    local bmean = x:mean({ 1, 3, 4 })
    local n = 4 * 5 * 5
    local bvar_unbiased = ((x - bmean:reshape({ 1, 3, 1, 1 })) ^ 2):sum({ 1, 3, 4 }) / (n - 1)
    assert.is_true(maxdiff(bn.running_mean, bmean * 0.1) < 1e-5)
    assert.is_true(maxdiff(bn.running_var, bvar_unbiased * 0.1 + 0.9) < 1e-5)
    assert.equal(1, bn.num_batches_tracked:item())
    assert.equal("int64", bn.num_batches_tracked:dtype())
  end)

  it("BatchNorm2d uses the running statistics in eval and leaves them alone", function()
    local bn = nn.BatchNorm2d(2, { eps = 1e-3, momentum = 0.01 })
    cocola.no_grad(function()
      bn.running_mean:copy_(cocola.tensor({ 1, -2 }))
      bn.running_var:copy_(cocola.tensor({ 4, 0.25 }))
      bn.weight:copy_(cocola.tensor({ 2, 3 }))
      bn.bias:copy_(cocola.tensor({ 0.5, -1 }))
    end)
    bn:eval()
    local x = cocola.randn({ 3, 2, 4, 4 })
    local y = bn(x)
    local rm = cocola.tensor({ 1, -2 }):reshape({ 1, 2, 1, 1 })
    local rv = cocola.tensor({ 4, 0.25 }):reshape({ 1, 2, 1, 1 })
    local w = cocola.tensor({ 2, 3 }):reshape({ 1, 2, 1, 1 })
    local b = cocola.tensor({ 0.5, -1 }):reshape({ 1, 2, 1, 1 })
    local expected = (x - rm) / (rv + 1e-3):sqrt() * w + b
    assert.is_true(maxdiff(y, expected) < 1e-5)
    assert.equal(0, bn.num_batches_tracked:item())
    assert.equal(0, maxdiff(bn.running_mean, cocola.tensor({ 1, -2 })))
    assert.matches("BatchNorm2d%(2, eps=0%.001, momentum=0%.01, affine=True, track_running_stats=True%)", tostring(bn))
  end)

  it("BatchNorm2d with momentum = false keeps a cumulative average", function()
    local bn = nn.BatchNorm2d(2, { momentum = false })
    local x1, x2 = cocola.randn({ 2, 2, 3, 3 }) + 3, cocola.randn({ 2, 2, 3, 3 }) - 1
    bn(x1)
    bn(x2)
    local expected = (x1:mean({ 1, 3, 4 }) + x2:mean({ 1, 3, 4 })) / 2
    assert.is_true(maxdiff(bn.running_mean, expected) < 1e-5)
    assert.equal(2, bn.num_batches_tracked:item())
    assert.matches("momentum=None", tostring(bn))
  end)

  it("BatchNorm2d without running statistics has no buffers and always normalises by the batch", function()
    local bn = nn.BatchNorm2d(2, { track_running_stats = false, affine = false })
    assert.same({}, bn:state_dict_keys())
    bn:eval()
    local y = bn(cocola.randn({ 4, 2, 3, 3 }) * 3 + 2)
    assert.is_true(y:mean({ 1, 3, 4 }):abs():max():item() < 1e-5)
  end)

  it("Dropout drops and rescales in training and is the identity in eval", function()
    cocola.manual_seed(3)
    local d = nn.Dropout(0.25)
    local x = cocola.ones({ 4000 })
    local y = d(x)
    local zeros = y:eq(0):sum():item()
    local kept = (y - 1 / 0.75):abs():lt(1e-6):sum():item()
    assert.equal(4000, zeros + kept)
    assert.is_true(zeros > 850 and zeros < 1150, "dropped " .. zeros)
    d:eval()
    assert.equal(0, maxdiff(d(x), x))
    assert.equal("Dropout(p=0.25, inplace=False)", tostring(d))
  end)
end)

describe("nn default initialisation", function()
  it("Linear: weight and bias uniform in +-1/sqrt(fan_in)", function()
    cocola.manual_seed(11)
    local lin = nn.Linear(400, 300)
    local bound = 1 / math.sqrt(400)
    local mean, std, maxabs = stats(lin.weight)
    assert.is_true(maxabs <= bound)
    assert.is_true(maxabs > 0.99 * bound)
    assert.is_true(math.abs(mean) < 0.01 * bound)
    assert.is_true(math.abs(std / (bound / math.sqrt(3)) - 1) < 0.02, "std " .. std)
    local _, bstd, bmax = stats(lin.bias)
    assert.is_true(bmax <= bound)
    assert.is_true(math.abs(bstd / (bound / math.sqrt(3)) - 1) < 0.15)
    assert.is_true(lin.weight:requires_grad() and lin.bias:requires_grad())
  end)

  it("Conv2d: fan_in counts in_channels/groups and the kernel", function()
    cocola.manual_seed(12)
    local conv = nn.Conv2d(32, 64, 3, { groups = 2 })
    assert.same({ 64, 16, 3, 3 }, conv.weight.shape)
    local bound = 1 / math.sqrt(16 * 9)
    local _, std, maxabs = stats(conv.weight)
    assert.is_true(maxabs <= bound and maxabs > 0.99 * bound)
    assert.is_true(math.abs(std / (bound / math.sqrt(3)) - 1) < 0.03, "std " .. std)
    local _, _, bmax = stats(conv.bias)
    assert.is_true(bmax <= bound)
  end)

  it("ConvTranspose1d/2d: weight (in, out/groups, k...), bias (out), fan_in from the weight's dim 2 as torch", function()
    cocola.manual_seed(13)
    local up = nn.ConvTranspose1d(64, 32, 16, { stride = 8, padding = 4 })
    assert.same({ 64, 32, 16 }, up.weight.shape)
    assert.same({ 32 }, up.bias.shape)
    local bound = 1 / math.sqrt(32 * 16)
    local _, std, maxabs = stats(up.weight)
    assert.is_true(maxabs <= bound and maxabs > 0.99 * bound)
    assert.is_true(math.abs(std / (bound / math.sqrt(3)) - 1) < 0.03, "std " .. std)
    assert.same({ 3, 32, 16 }, up(cocola.randn({ 3, 64, 2 })).shape) -- (2 - 1) 8 - 2 * 4 + (16 - 1) + 1
    local up2 = nn.ConvTranspose2d(8, 6, 3, { stride = 2, padding = 1, output_padding = 1, groups = 2, bias = false })
    assert.same({ 8, 3, 3, 3 }, up2.weight.shape)
    assert.is_nil(up2.bias)
    assert.same({ 2, 6, 10, 8 }, up2(cocola.randn({ 2, 8, 5, 4 })).shape)
    assert.equal("ConvTranspose2d(8, 6, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), output_padding=(1, 1), "
      .. "groups=2, bias=False)", tostring(up2))
  end)

  it("Conv1d, GroupNorm, Upsample and the activations: shapes, defaults and torch's repr", function()
    local conv = nn.Conv1d(4, 6, 5, { padding = "same", dilation = 2 })
    assert.same({ 6, 4, 5 }, conv.weight.shape)
    assert.same({ 2, 6, 11 }, conv(cocola.randn({ 2, 4, 11 })).shape)
    assert.equal("Conv1d(4, 6, kernel_size=(5,), stride=(1,), padding=same, dilation=(2,))", tostring(conv))
    local gn = nn.GroupNorm(2, 6, { eps = 1e-6 })
    assert.same({ 1, 1, 1, 1, 1, 1 }, gn.weight:totable())
    assert.same({ 0, 0, 0, 0, 0, 0 }, gn.bias:totable())
    local sd = gn:state_dict()
    assert.is_truthy(sd.weight and sd.bias)
    assert.equal("GroupNorm(2, 6, eps=1e-06, affine=True)", tostring(gn))
    local y = gn(cocola.randn({ 3, 6, 4, 5 }) * 3 + 2)
    local g1 = y:narrow(2, 1, 3)
    assert.is_true(math.abs(g1:mean():item()) < 1e-5)
    local up = nn.Upsample { scale_factor = 2 }
    assert.same({ 1, 2, 6, 8 }, up(cocola.randn({ 1, 2, 3, 4 })).shape)
    assert.equal("Upsample(scale_factor=2.0, mode='nearest')", tostring(up))
    assert.equal("LeakyReLU(negative_slope=0.1)", tostring(nn.LeakyReLU(0.1)))
    assert.equal("ELU(alpha=1.0)", tostring(nn.ELU()))
    assert.equal("GELU(approximate='tanh')", tostring(nn.GELU { approximate = "tanh" }))
    local x = cocola.tensor({ -2, -0.5, 0.5, 2 })
    local lr = nn.LeakyReLU(0.1)(x):totable()
    assert.is_true(math.abs(lr[1] + 0.2) < 1e-7 and lr[4] == 2)
    local e = nn.ELU(0.5)(x):totable()
    assert.is_true(math.abs(e[1] - 0.5 * (math.exp(-2) - 1)) < 1e-7 and e[3] == 0.5)
  end)

  it("BatchNorm2d and LayerNorm start at weight 1, bias 0, running stats 0/1", function()
    local bn = nn.BatchNorm2d(5)
    assert.equal(0, maxdiff(bn.weight, cocola.ones({ 5 })))
    assert.equal(0, maxdiff(bn.bias, cocola.zeros({ 5 })))
    assert.equal(0, maxdiff(bn.running_mean, cocola.zeros({ 5 })))
    assert.equal(0, maxdiff(bn.running_var, cocola.ones({ 5 })))
    assert.same({}, bn.num_batches_tracked.shape)
    assert.equal(0, bn.num_batches_tracked:item())
    local ln = nn.LayerNorm(6)
    assert.equal(0, maxdiff(ln.weight, cocola.ones({ 6 })))
    assert.equal(0, maxdiff(ln.bias, cocola.zeros({ 6 })))
    assert.same({ "weight", "bias" }, ln:state_dict_keys())
  end)

  it("nn.init functions follow torch's formulas", function()
    cocola.manual_seed(13)
    local t = cocola.zeros({ 200, 300 })
    nn.init.xavier_uniform_(t)
    local a = math.sqrt(6 / 500)
    local _, std, maxabs = stats(t)
    assert.is_true(maxabs <= a and maxabs > 0.99 * a)
    assert.is_true(math.abs(std / (a / math.sqrt(3)) - 1) < 0.02)
    nn.init.normal_(t, 0, 0.05)
    local mean
    mean, std = stats(t)
    assert.is_true(math.abs(std / 0.05 - 1) < 0.02 and math.abs(mean) < 0.002)
    nn.init.kaiming_uniform_(t, 0, "fan_in", "relu")
    _, _, maxabs = stats(t)
    local bound = math.sqrt(2) * math.sqrt(3 / 300)
    assert.is_true(maxabs <= bound and maxabs > 0.99 * bound)
    nn.init.ones_(t)
    assert.equal(60000, t:sum():item())
    nn.init.zeros_(t)
    assert.equal(0, t:abs():sum():item())
    -- works on a parameter that requires grad
    local p = cocola.zeros({ 3, 4 }):requires_grad(true)
    nn.init.uniform_(p, 1, 2)
    assert.is_true(p:min():item() >= 1)
    assert.is_nil(p:grad_fn())
  end)
end)

describe("nn layers", function()
  it("LayerNorm normalises the trailing dims", function()
    local ln = nn.LayerNorm(8)
    local y = ln(cocola.randn({ 3, 8 }) * 5 + 2)
    assert.is_true(y:mean(2):abs():max():item() < 1e-5)
    assert.is_true(((y ^ 2):mean(2) - 1):abs():max():item() < 1e-3)
    assert.equal("LayerNorm((8,), eps=1e-05, elementwise_affine=True)", tostring(ln))
  end)

  it("Conv2d, padding and pooling layers give the expected shapes", function()
    local x = cocola.randn({ 2, 3, 9, 10 })
    assert.same({ 2, 8, 5, 5 }, nn.Conv2d(3, 8, 3, { stride = 2, padding = 1 })(x).shape)
    assert.same({ 2, 8, 9, 10 }, nn.Conv2d(3, 8, 4, { padding = "same" })(x).shape)
    assert.same({ 2, 3, 12, 13 }, nn.ZeroPad2d({ 1, 2, 0, 3 })(x).shape)
    assert.same({ 2, 3, 1, 1 }, nn.AdaptiveAvgPool2d(1)(x).shape)
    assert.same({ 2, 270 }, nn.Flatten()(x).shape)
    assert.equal(0, maxdiff(nn.Identity()(x), x))
  end)

  it("activation modules match the tensor methods", function()
    local x = cocola.randn({ 20 })
    assert.equal(0, maxdiff(nn.ReLU()(x), x:relu()))
    assert.is_true(maxdiff(nn.SiLU()(x), x * x:sigmoid()) < 1e-6)
    assert.equal(0, maxdiff(nn.Sigmoid()(x), x:sigmoid()))
    assert.equal(0, maxdiff(nn.Tanh()(x), x:tanh()))
    assert.equal(0, maxdiff(nn.GELU()(x), x:gelu()))
  end)
end)

describe("nn printing", function()
  it("prints like torch, nesting submodules", function()
    local seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1, { bias = false }))
    assert.equal("Sequential(\n"
      .. "  (0): Linear(in_features=3, out_features=4, bias=True)\n"
      .. "  (1): ReLU()\n"
      .. "  (2): Linear(in_features=4, out_features=1, bias=False)\n"
      .. ")", tostring(seq))
    local s = tostring(Net())
    assert.matches("^Net%(\n  %(features%): Sequential%(\n    %(0%): Conv2d%(2, 4, kernel_size=%(3, 3%), stride=%(1, 1%), padding=%(1, 1%)%)", s)
    assert.matches("\n  %(blocks%): ModuleList%(\n    %(0%): Linear", s)
    assert.matches("\n%)$", s)
  end)
end)

describe("nn conversions and gradients", function()
  it("to('float64') converts parameters and float buffers, keeping requires_grad", function()
    local net = Net()
    assert.equal(net, net:to("float64"))
    for _, np in ipairs(net:named_parameters()) do
      assert.equal("float64", np[2]:dtype(), np[1])
      assert.is_true(np[2]:requires_grad(), np[1])
    end
    assert.equal("float64", net.features[2].running_var:dtype())
    assert.equal("float64", net.scale:dtype())
    assert.equal("int64", net.features[2].num_batches_tracked:dtype())
    local y = net(cocola.randn({ 2, 2, 4, 4 }, { dtype = "float64" }))
    assert.equal("float64", y:dtype())
    y:sum():backward()
    assert.equal("float64", net.w.grad:dtype())
    net:float()
    assert.equal("float32", net.features[1].weight:dtype())
    assert.has_error(function() net:to("int64") end)
  end)

  it("zero_grad drops gradients; requires_grad_(false) freezes", function()
    local lin = nn.Linear(3, 2)
    lin(cocola.ones({ 1, 3 })):sum():backward()
    assert.is_not_nil(lin.weight.grad)
    lin:zero_grad()
    assert.is_nil(lin.weight.grad)
    assert.is_nil(lin.bias.grad)
    lin:requires_grad_(false)
    assert.is_false(lin.weight:requires_grad())
    assert.equal(0, lin:num_parameters(true))
  end)

  it("a small MLP learns a regression with Adam", function()
    cocola.manual_seed(42)
    local mlp = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 1))
    local x = cocola.randn({ 64, 4 })
    local target = (x:narrow(2, 1, 1) * 2 - x:narrow(2, 3, 1)):tanh()
    local opt = cocola.optim.Adam(mlp:parameters(), { lr = 1e-2 })
    local first, last
    for step = 1, 150 do
      opt:zero_grad()
      local loss = ((mlp(x) - target) ^ 2):mean()
      loss:backward()
      opt:step()
      if step == 1 then first = loss:item() end
      last = loss:item()
    end
    assert.is_true(last < 0.1 * first, string.format("loss %.4f -> %.4f", first, last))
  end)
end)

describe("nn.checkpoint", function()
  local F = require "cocola.nn.functional"
  local function block(w1, w2)
    return function(x, scale) return F.linear(F.linear(x, w1):tanh(), w2) * scale end
  end

  it("gives the gradients of the plain computation to inputs and parameters", function()
    cocola.manual_seed(3)
    local w1 = cocola.randn({ 16, 8 }, { dtype = "float64" }):requires_grad(true)
    local w2 = cocola.randn({ 8, 16 }, { dtype = "float64" }):requires_grad(true)
    local x = cocola.randn({ 4, 8 }, { dtype = "float64" }):requires_grad(true)
    local f = block(w1, w2)
    local y1 = f(f(x, 0.5), 2.0)
    local l1 = y1:pow(2):sum()
    l1:backward()
    local gx, g1, g2 = x.grad:clone(), w1.grad:clone(), w2.grad:clone()
    x.grad, w1.grad, w2.grad = nil, nil, nil
    local y2 = nn.checkpoint(f, nn.checkpoint(f, x, 0.5), 2.0)
    assert.equal("CheckpointBackward", y2:grad_fn())
    assert.equal(0, (y2 - y1):abs():max():item())
    local l2 = y2:pow(2):sum()
    l2:backward()
    assert.is_true((x.grad - gx):abs():max():item() < 1e-12)
    assert.is_true((w1.grad - g1):abs():max():item() < 1e-12)
    assert.is_true((w2.grad - g2):abs():max():item() < 1e-12)
  end)

  it("replays the random state, so dropout masks match", function()
    cocola.manual_seed(5)
    local x = cocola.randn({ 64 }, { dtype = "float64" }):requires_grad(true)
    local y = nn.checkpoint(function(t) return F.dropout(t * 3, 0.5, true) end, x)
    y:sum():backward()
    local kept = y:ne(0):to("float64")
    assert.is_true((x.grad - kept * 6):abs():max():item() == 0)
  end)

  it("keeps less memory alive between forward and backward", function()
    local w = cocola.randn({ 256, 256 }):requires_grad(true)
    local function deep(x) for _ = 1, 8 do x = F.linear(x, w):tanh() end return x end
    local x = cocola.randn({ 256, 256 })
    collectgarbage()
    local base = cocola.live_bytes()
    local plain = deep(x):sum()
    collectgarbage()
    local plain_bytes = cocola.live_bytes() - base
    plain = nil
    collectgarbage()
    base = cocola.live_bytes()
    local ck = nn.checkpoint(deep, x):sum()
    collectgarbage()
    local ck_bytes = cocola.live_bytes() - base
    assert.is_true(ck_bytes * 4 < plain_bytes, string.format("%d vs %d bytes", ck_bytes, plain_bytes))
    ck:backward()
    assert.is_truthy(w.grad)
  end)

  it("refuses a function that returns no tensor and more than 7 tensor arguments", function()
    local x = cocola.randn({ 2 }):requires_grad(true)
    assert.has_error(function() nn.checkpoint(function() return 1 end, x) end, "checkpoint: the function must return one tensor")
    local many = {}
    for i = 1, 8 do many[i] = x end
    local ok, err = pcall(nn.checkpoint, function(...) return (...) end, table.unpack(many))
    assert.is_false(ok)
    assert.matches("at most 7 tensor arguments", err)
    -- an error inside the replayed block surfaces from backward with its message
    local calls = 0
    local z = nn.checkpoint(function(t)
      calls = calls + 1
      if calls > 1 then error("inside the block") end
      return t * 2
    end, x)
    local ok2, err2 = pcall(function() z:sum():backward() end)
    assert.is_false(ok2)
    assert.matches("inside the block", err2)
  end)
end)

describe("scaled_dot_product_attention in query blocks", function()
  local F = require "cocola.nn.functional"
  it("gives the same result in blocks as whole when no graph is recorded, masks included", function()
    cocola.manual_seed(11)
    local q, k, v = cocola.randn({ 2, 3, 37, 8 }), cocola.randn({ 2, 3, 29, 8 }), cocola.randn({ 2, 3, 29, 5 })
    local mask = cocola.randn({ 37, 29 })
    local keep = cocola.ones({ 2, 29 })
    keep[2]:narrow(1, 20, 10):fill_(0)
    local whole = F.scaled_dot_product_attention(q, k, v, { attn_mask = mask, key_mask = keep })
    local saved = F.ATTENTION_BLOCK
    F.ATTENTION_BLOCK = 6 * 29 * 5 -- 5 query rows a block, the last block shorter
    local ok, blocked = pcall(cocola.no_grad, F.scaled_dot_product_attention, q, k, v, { attn_mask = mask, key_mask = keep })
    local ok2, row_mask = pcall(cocola.no_grad, F.scaled_dot_product_attention, q, k, v, { attn_mask = mask:narrow(1, 1, 1) })
    F.ATTENTION_BLOCK = saved
    assert(ok, blocked)
    assert(ok2, row_mask)
    assert.is_true((blocked - whole):abs():max():item() < 1e-6)
    local ref = F.scaled_dot_product_attention(q, k, v, { attn_mask = mask:narrow(1, 1, 1) })
    assert.is_true((row_mask - ref):abs():max():item() < 1e-6)
  end)
end)
