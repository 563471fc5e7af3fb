-- readme_spec.lua — every ```lua block of README.md runs as written: each block in a fresh Lua 5.4
-- process, in a temporary folder that holds the files the blocks name (bass.flac, input.wav,
-- generated.wav: copies of the bundled example stems; audioldm2-tiny/: links to the tiny AudioLDM 2
-- fixture components) and a link to the repository's assets/, with
-- the checkout's lua/ and build/ on the paths. A block that fails names its line in README.md.
local files = require "helpers.files"

local cli = require "helpers.cli"
local ROOT, ENV = cli.ROOT, cli.ENV

local function lua_blocks(text)
  local blocks, line, current, start = {}, 0, nil, nil
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do
    line = line + 1
    if current then
      if l:match("^```%s*$") then
        blocks[#blocks + 1] = { line = start, code = table.concat(current, "\n") }
        current = nil
      else
        current[#current + 1] = l
      end
    elseif l:match("^```lua%s*$") then
      current, start = {}, line + 1
    end
  end
  return blocks
end

describe("README.md", function()
  local blocks = lua_blocks(assert(io.open(ROOT .. "/README.md", "rb")):read("a"))
  local tmp
  setup(function()
    tmp = files.tmpdir()
    assert(files.sh(string.format("ln -s '%s/assets' '%s/assets'", ROOT, tmp)))
    -- a tiny random AudioLDM 2 pipeline folder (the fixtures of spec/audioldm2_spec.lua)
    local fx = ROOT .. "/spec/fixtures/audioldm2"
    assert(files.sh(string.format("mkdir -p '%s/audioldm2-tiny' && cd '%s/audioldm2-tiny' && ln -s '%s/unet_base' unet && "
      .. "ln -s '%s/vae' vae && ln -s '%s/vocoder' vocoder && ln -s '%s/scheduler' scheduler", tmp, tmp, fx, fx, fx, fx)))
    -- the files the examples name, made from the example stems (20 s of bass: offsets up to 15 s)
    local cocola = require "cocola"
    local audio = cocola.audio
    local cond = audio.load(ROOT .. "/assets/examples/cond/coherent_1.flac")
    local gen = audio.load(ROOT .. "/assets/examples/gen/coherent_1.flac")
    audio.save(tmp .. "/bass.flac", cocola.cat({ cond, cond }, 2), 16000)
    audio.save(tmp .. "/input.wav", cond, 16000)
    audio.save(tmp .. "/generated.wav", gen, 16000)
  end)
  teardown(function() os.execute("rm -rf '" .. tmp .. "'") end)

  it("has Lua examples", function() assert.is_true(#blocks >= 5, #blocks .. " blocks") end)

  it("shows pictures that are committed, small PNGs with the sizes the recipes draw", function()
    local text = assert(io.open(ROOT .. "/README.md", "rb")):read("a")
    local n = 0
    for alt, path in text:gmatch("!%[([^%]]*)%]%(([^)]+)%)") do
      n = n + 1
      assert.is_true(#alt > 20, "a picture described in words: " .. path)
      local f = io.open(ROOT .. "/" .. path, "rb")
      assert.truthy(f, "README.md shows a missing file: " .. path)
      local bytes = f:read("a")
      f:close()
      assert.are.equal("\137PNG\r\n\26\n", bytes:sub(1, 8), path .. " is a PNG")
      local width, height = string.unpack(">I4I4", bytes, 17)
      assert.is_true(width >= 600 and width <= 1600 and height >= 300 and height <= 1000,
        string.format("%s: %d x %d pixels", path, width, height))
      assert.is_true(#bytes < 400 * 1024, path .. " is small")
      -- and the script that redraws them names it
      local script = assert(io.open(ROOT .. "/recipes/readme_pictures.sh", "rb")):read("a")
      assert.truthy(script:find(path:match("[^/]+$"), 1, true), path .. " is drawn by recipes/readme_pictures.sh")
    end
    assert.is_true(n >= 2, n .. " pictures")
  end)

  for _, block in ipairs(blocks) do
    it("runs the Lua block at line " .. block.line .. " as written", function()
      local path = string.format("%s/block_%d.lua", tmp, block.line)
      local f = assert(io.open(path, "wb"))
      f:write(block.code, "\n")
      f:close()
      local ok, out = files.sh(string.format("cd '%s' && %s lua5.4 '%s'", tmp, ENV, path))
      assert.is_true(ok, string.format("README.md line %d:\n%s", block.line, out))
      os.remove(path)
    end)
  end
end)
