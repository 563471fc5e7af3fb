-- install_spec.lua — the rock installed by `make` into ./.rocks works as users use it: after
-- `eval "$(luarocks --lua-version=5.4 --tree .rocks path)"`, plain lua5.4 requires cocola from any
-- directory and computes with it.
local sh = require("helpers.files").sh

describe("the installed rock", function()
  local root = io.popen("pwd"):read("l")
  local tree = root .. "/.rocks"
  local have_tree = io.open(tree .. "/lib/lua/5.4/cocola/core.so", "rb")
  if have_tree then have_tree:close() end

  local run = have_tree and it or pending
  run("is required by plain lua5.4 from another directory", function()
    local ok, out = sh(string.format(
      [[cd /tmp && eval "$(luarocks --lua-version=5.4 --tree '%s' path)" && lua5.4 -e '
        local cocola = require "cocola"
        local F = require "cocola.nn.functional"
        local x = cocola.tensor({{1, 2}, {3, 4}}):requires_grad(true)
        local y = F.silu(x):sum()
        y:backward()
        io.write(string.format("%%.6f %%s", x.grad:sum():item(), package.searchpath("cocola.core", package.cpath)))']],
      tree))
    assert.is_true(ok, out)
    local gsum, path = out:match("^(%S+) (%S+)$")
    assert.is_not_nil(gsum, out)
    -- d/dx silu(x) = s(x)(1 + x(1 - s(x))), summed over 1..4
    local expected = 0
    for x = 1, 4 do
      local s = 1 / (1 + math.exp(-x))
      expected = expected + s * (1 + x * (1 - s))
    end
    assert.is_true(math.abs(tonumber(gsum) - expected) < 1e-5, out)
    assert.truthy(path:find(tree, 1, true), "loaded from " .. path)
  end)

  run("puts the cocola command on PATH, with its recipes and a clear error for a missing model", function()
    local ok, out = sh(string.format([[cd /tmp && eval "$(luarocks --lua-version=5.4 --tree '%s' path)" && export PATH="%s/bin:$PATH" && cocola --help]], tree, tree))
    assert.is_true(ok, out)
    for _, sub in ipairs({ "score", "embed", "train", "eval" }) do assert.truthy(out:find(sub, 1, true), out) end
    local cocola = require "cocola"
    local dir = require("helpers.files").tmpdir()
    cocola.audio.save(dir .. "/a.wav", cocola.randn({ 1, 16000 }) * 0.1, 16000)
    ok, out = sh(string.format([[cd /tmp && eval "$(luarocks --lua-version=5.4 --tree '%s' path)" && export PATH="%s/bin:$PATH" && cocola score --model /nonexistent/m.safetensors --cond '%s/a.wav' --gen '%s/a.wav']], tree, tree, dir, dir))
    assert.is_falsy(ok)
    assert.truthy(out:find("cocola: ", 1, true), out)
    assert.truthy(out:find("/nonexistent/m.safetensors", 1, true), out)
    ok, out = sh(string.format([[cd /tmp && eval "$(luarocks --lua-version=5.4 --tree '%s' path)" && export PATH="%s/bin:$PATH" && cocola eval bogus=1]], tree, tree))
    assert.is_falsy(ok)
    assert.truthy(out:find("unknown setting 'bogus'", 1, true), out)
  end)
end)
