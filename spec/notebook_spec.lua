-- notebook_spec.lua — cocola.notebook, the Lua side of the notebooks' display hook: show writes the
-- control sequence the kernel (notebooks/kernel/cocola_kernel.py) turns into an image output, with the
-- file's MIME type, removal flag, width and path; notebook.plot draws into a temporary PNG flagged for
-- removal; outside the kernel the file names are printed instead; bad input is a clear error.
local cocola = require "cocola"
local files = require "helpers.files"
local notebook = require "cocola.notebook"

-- runs fn with io.output captured and notebook.active set; returns what was written
local function captured(active, fn)
  local was = notebook.active
  notebook.active = active
  local path = os.tmpname()
  local out = io.output()
  io.output(path)
  local ok, err = pcall(fn)
  io.output():close()
  io.output(out)
  notebook.active = was
  local text = files.read(path)
  os.remove(path)
  assert(ok, err)
  return text
end

local function markers(text)
  local list = {}
  for body in text:gmatch("\27%]cocola%-display;([^\7]*)\7") do
    local mime, remove, width, path = body:match("^([^;]*);([01]);(%d*);(.*)$")
    list[#list + 1] = { mime = mime, remove = remove, width = width, path = path }
  end
  return list
end

describe("cocola.notebook", function()
  local dir
  before_each(function() dir = files.tmpdir() end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("show writes one display request per file, in the kernel", function()
    local png, svg = dir .. "/a.png", dir .. "/b.svg"
    cocola.plot.lines({ { x = { 1, 2, 3 }, y = { 1, 4, 9 } } }, { output = png, width = 200, height = 120 })
    cocola.plot.lines({ { x = { 1, 2, 3 }, y = { 1, 4, 9 } } }, { output = svg, width = 200, height = 120 })
    local m = markers(captured(true, function() notebook.show(png, { width = 300 }); notebook.show({ svg }) end))
    assert.are.equal(2, #m)
    assert.are.same({ mime = "image/png", remove = "0", width = "300", path = png }, m[1])
    assert.are.same({ mime = "image/svg+xml", remove = "0", width = "", path = svg }, m[2])
    assert.truthy(files.read(png):sub(1, 8) == "\137PNG\r\n\26\n")   -- the file stays
  end)

  it("notebook.plot draws into a temporary PNG flagged for removal", function()
    local m = markers(captured(true, function()
      notebook.plot.image(cocola.rand({ 8, 10 }), { xlabel = "x", width = 160, height = 120 })
    end))
    assert.are.equal(1, #m)
    assert.are.equal("image/png", m[1].mime)
    assert.are.equal("1", m[1].remove)
    assert.truthy(files.read(m[1].path):sub(1, 4) == "\137PNG")
    os.remove(m[1].path)   -- what the kernel does once it has read it
  end)

  it("notebook.plot.metrics shows every curve of a run and leaves no temporary folder", function()
    files.write(dir .. "/metrics.jsonl", '{"step":1,"loss":2.0}\n{"step":2,"loss":1.5}\n{"step":2,"valid_loss":1.7}\n')
    local m = markers(captured(true, function() notebook.plot.metrics(dir, { width = 200, height = 120 }) end))
    assert.are.equal(1, #m)  -- loss and valid_loss in one picture
    assert.are.equal("1", m[1].remove)
    assert.falsy(m[1].path:find("%.d/"))
    os.remove(m[1].path)
  end)

  it("outside the kernel prints file names instead", function()
    local png = dir .. "/a.png"
    cocola.plot.lines({ { x = { 1, 2 }, y = { 1, 2 } } }, { output = png, width = 100, height = 80 })
    local text = captured(false, function() notebook.show(png) end)
    assert.are.equal(png .. "\n", text)
  end)

  it("rejects what it cannot show", function()
    files.write(dir .. "/a.txt", "x")
    local ok, err = pcall(notebook.show, dir .. "/a.txt")
    assert.falsy(ok)
    assert.truthy(tostring(err):find("not a .png or .svg file", 1, true), err)
    ok, err = pcall(notebook.show, dir .. "/missing.png")
    assert.falsy(ok)
    assert.truthy(tostring(err):find("cannot read", 1, true), err)
    ok, err = pcall(notebook.show, dir .. "/missing.png", { width = 1.5 })
    assert.falsy(ok)
    ok, err = pcall(notebook.plot.lines, { { x = { 1 }, y = { 1, 2 } } }, {})
    assert.falsy(ok)   -- cocola.plot's own error, passed on
  end)
end)
