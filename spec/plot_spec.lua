-- plot_spec.lua — cocola.plot on gnuplot: every kind of plot (lines, histogram, image, scatter) as a PNG
-- and an SVG of the requested size, the PNGs decoded (spec/helpers/png.lua: chunk CRCs, IHDR, inflated
-- pixels) and the SVGs parsed; a heat map's colours in the order of its data (both origins); names as tick
-- labels (xtics, ytics), line styles and a grid of heat maps (plot.images); the errors
-- on bad input, a missing gnuplot and gnuplot's own; scratch files beside the output, none left (nor in
-- /tmp); `cocola plot` on the
-- metrics of the COCOLA trainer and of the diffusion trainers.
local cocola = require "cocola"
local plot = require "cocola.plot"
local png = require "helpers.png"
local files = require "helpers.files"
local cli = require "helpers.cli"

local have_gnuplot = os.execute("command -v gnuplot >/dev/null 2>&1")

-- gnuplot's first two line colours (#9400d3, #009e73)
local PURPLE, GREEN = { 148, 0, 211 }, { 0, 158, 115 }

local function count_colour(img, rgb)
  local n = 0
  for y = 0, img.height - 1 do
    for x = 0, img.width - 1 do
      local r, g, b = img.pixel(x, y)
      if r == rgb[1] and g == rgb[2] and b == rgb[3] then n = n + 1 end
    end
  end
  return n
end

local function non_white(img)
  local n = 0
  for y = 0, img.height - 1, 2 do
    for x = 0, img.width - 1, 2 do
      local r, g, b = img.pixel(x, y)
      if r + g + b < 765 then n = n + 1 end
    end
  end
  return n
end

local function check_png(path, w, h)
  local img = png.read(path)
  assert.are.same({ w, h }, { img.width, img.height })
  assert.are.equal("IHDR", img.chunks[1])
  assert.are.equal("IEND", img.chunks[#img.chunks])
  assert.truthy(img.pixel, "8-bit non-interlaced pixels expected")
  return img
end

local function check_svg(path, w, h)
  local s = files.read(path)
  assert.truthy(s:find("^<%?xml") and s:find("</svg>%s*$"), "not a whole SVG document")
  local sw, sh = s:match('<svg%s+width="(%d+)" height="(%d+)"')
  assert.are.same({ w, h }, { tonumber(sw), tonumber(sh) })
  return s
end

-- runs of one colour (other than white) at least `min` pixels long along a row (dx = 1) or column,
-- in order: {r, g, b, length}
local function runs(img, fixed, along_x, min)
  local out, prev, len = {}, nil, 0
  local n = along_x and img.width or img.height
  for i = 0, n do
    local key
    if i < n then
      local r, g, b = img.pixel(along_x and i or fixed, along_x and fixed or i)
      key = (r << 16) | (g << 8) | b
    end
    if key == prev then
      len = len + 1
    else
      if prev and prev ~= 0xFFFFFF and len >= min then out[#out + 1] = { prev >> 16, (prev >> 8) & 255, prev & 255, len } end
      prev, len = key, 1
    end
  end
  return out
end

local function luminance(c) return 0.299 * c[1] + 0.587 * c[2] + 0.114 * c[3] end

-- the temporary names cocola.plot asks for in `cocola` subprocesses: LUA_INIT wraps os.tmpname there to
-- log each name into <dir>/tmpnames.log (a listing of /tmp would also see other programs' files)
local function tracking_init(dir)
  local f = assert(io.open(dir .. "/track_tmpnames.lua", "wb"))
  f:write(string.format([[
local tmpname, log = os.tmpname, %q
os.tmpname = function()
  local p = tmpname()
  local f = io.open(log, "ab")
  if f then f:write(p, "\n") f:close() end
  return p
end
]], dir .. "/tmpnames.log"))
  f:close()
  return "LUA_INIT='@" .. dir .. "/track_tmpnames.lua'"
end

describe("cocola.plot", function()
  if not have_gnuplot then
    it("needs gnuplot", function() pending("gnuplot not installed (apt-get install gnuplot-nox; make deps installs it)") end)
    return
  end

  local dir
  local made, tmpname = {}, nil
  local track_env
  local function cocola_cli(args, tmp) return cli.cocola(args, tmp, track_env) end
  setup(function()
    dir = files.tmpdir()
    track_env = tracking_init(dir)
    -- every temporary name cocola.plot asks for, to check that none remains
    tmpname = os.tmpname
    os.tmpname = function()
      local p = tmpname()
      made[#made + 1] = p
      return p
    end
  end)
  teardown(function() os.tmpname = tmpname end)

  local x = cocola.arange(200):to("float32"):mul(0.05)

  it("draws several line series (tensor y, {x, y}, {x =, y =, label =}) as PNG and SVG", function()
    local series = { { x = x, y = x:sin(), label = "sine" }, { x, x:cos():mul(0.5) }, x:mul(0.01) }
    local out = plot.lines(series, { output = dir .. "/lines.png", width = 640, height = 360, title = "waves",
                                      xlabel = "time (s)", ylabel = "amplitude" })
    assert.are.equal(dir .. "/lines.png", out)
    local img = check_png(out, 640, 360)
    assert.is_true(count_colour(img, PURPLE) > 100, "the first series' line")
    assert.is_true(count_colour(img, GREEN) > 100, "the second series' line")
    local s = check_svg(plot.lines(series, { output = dir .. "/lines.svg", width = 500, height = 300, title = "waves" }), 500, 300)
    for i = 1, 3 do assert.truthy(s:find('id="gnuplot_plot_' .. i .. '"', 1, true), "series " .. i) end
    assert.truthy(s:find("<text>sine</text>", 1, true))
    assert.truthy(s:find(">waves<", 1, true))
    -- float64 data and log axes
    check_png(plot.lines({ x = x:add(1):double(), y = x:exp():double() }, { output = dir .. "/log.png", logx = true,
                                                                             logy = true, width = 300, height = 200 }), 300, 200)
  end)

  it("draws histograms, one set or several overlaid with labels, from a bin count or edges", function()
    cocola.manual_seed(1)
    local a, b = cocola.randn({ 2000 }), cocola.randn({ 2000 }):add(2)
    local img = check_png(plot.histogram({ { values = a, label = "ground truth" }, { values = b, label = "random" } },
      { output = dir .. "/hist.png", bins = 40, width = 700, height = 400, xlabel = "score" }), 700, 400)
    assert.is_true(non_white(img) > 2000)
    local s = check_svg(plot.histogram(a, { output = dir .. "/hist.svg", bins = { -3, -1, 0, 1, 3 }, density = true,
                                            width = 400, height = 300 }), 400, 300)
    assert.truthy(s:find('id="gnuplot_plot_1"', 1, true))
    assert.truthy(s:find(">density<", 1, true))
    local s2 = files.read(plot.histogram({ a, b }, { output = dir .. "/hist2.svg" }))
    assert.truthy(s2:find('id="gnuplot_plot_2"', 1, true))
  end)

  it("draws a scatter plot", function()
    cocola.manual_seed(2)
    local px, py = cocola.randn({ 300 }), cocola.randn({ 300 })
    local img = check_png(plot.scatter(px, py, { output = dir .. "/scatter.png", width = 400, height = 400, label = "pairs" }), 400, 400)
    assert.is_true(count_colour(img, PURPLE) > 300, "the points")
    local s = check_svg(plot.scatter({ 1, 2, 3 }, { 3, 1, 2 }, { output = dir .. "/scatter.svg", width = 300, height = 250 }), 300, 250)
    assert.truthy(s:find('id="gnuplot_plot_1"', 1, true))
  end)

  it("draws a heat map with a colour bar whose colours follow the data's order", function()
    -- 4 x 8, every column one value rising to the right: along the middle row, the image's 8 cells from
    -- left to right grow lighter (the viridis palette's lightness rises)
    local ramp = cocola.arange(8):to("float32"):reshape({ 1, 8 }):expand({ 4, 8 }):contiguous()
    local img = check_png(plot.image(ramp, { output = dir .. "/ramp.png", width = 500, height = 300, cblabel = "value" }), 500, 300)
    local cells = runs(img, 150, true, 12)
    assert.is_true(#cells >= 9, "8 cells and the colour bar") -- the colour box crosses the row too
    for i = 2, 8 do
      assert.is_true(luminance(cells[i]) > luminance(cells[i - 1]) + 5, "cell " .. i .. " lighter than cell " .. (i - 1))
    end
    assert.are.same({ 68, 1, 84 }, { cells[1][1], cells[1][2], cells[1][3] }) -- the palette's first colour
    assert.are.same({ 253, 231, 37 }, { cells[8][1], cells[8][2], cells[8][3] }) -- and its last
    -- 6 x 3, every row one value rising with the row: origin lower puts row 1 at the bottom
    local rows = cocola.arange(6):to("float64"):reshape({ 6, 1 }):expand({ 6, 3 }):contiguous()
    for _, origin in ipairs({ "lower", "upper" }) do
      local im = check_png(plot.image(rows, { output = dir .. "/rows_" .. origin .. ".png", width = 400, height = 400,
                                              origin = origin }), 400, 400)
      local down = runs(im, 200, false, 12)
      assert.is_true(#down >= 6)
      for i = 2, 6 do
        local lighter = luminance(down[i]) > luminance(down[i - 1])
        assert.are.equal(origin == "upper", lighter, origin .. ": cell " .. i .. " from the top")
      end
    end
    -- the gray palette, an extent in physical units
    local spec = cocola.rand({ 64, 100 })
    check_png(plot.image(spec, { output = dir .. "/spec.png", palette = "gray", extent = { 0, 5, 0, 8000 },
                                 xlabel = "time (s)", ylabel = "frequency (Hz)", width = 320, height = 240 }), 320, 240)
    -- SVG: one filled polygon per cell, lighter along each row of the ramp
    local s = check_svg(plot.image(ramp:narrow(1, 1, 3), { output = dir .. "/ramp.svg", width = 320, height = 240,
                                                           title = "ramp" }), 320, 240)
    local group = s:match('<g id="gnuplot_plot_1" >(.-)</g>%s*</g>')
    local fills = {}
    for r, g, b in group:gmatch("<polygon fill = 'rgb%(%s*(%d+),%s*(%d+),%s*(%d+)%)'") do
      fills[#fills + 1] = { tonumber(r), tonumber(g), tonumber(b) }
    end
    assert.are.equal(24, #fills)
    for i = 1, 24 do
      if i % 8 ~= 1 then assert.is_true(luminance(fills[i]) > luminance(fills[i - 1]), "cell " .. i) end
    end
    assert.truthy(s:find(">ramp<", 1, true))
  end)

  it("names an image's columns and rows (xtics, ytics), writes its values, draws line styles with names, and a grid of heat maps", function()
    -- names at the cells' centres: the script gnuplot receives is not kept, so the picture is checked
    -- for size and content, and wrong counts are errors
    local m = cocola.tensor({ { 0.2, 0.9, 0.5 }, { 0.7, 0.1, 0.3 } })
    local img = check_png(plot.image(m, { output = dir .. "/tics.png", origin = "upper", cbrange = { 0, 1 },
      xtics = { "slakh", "musdb", "moisesdb" }, ytics = { "default", "chroma-onset" }, width = 420, height = 300 }), 420, 300)
    assert.is_true(non_white(img) > 500)
    local svg = check_svg(plot.image(m, { output = dir .. "/tics.svg", xtics = { "a", "b", "c" }, ytics = { 1, 2 }, labels = "%.2f",
      width = 300, height = 200 }), 300, 200)
    for _, text in ipairs({ ">a<", ">b<", ">c<", ">0.90<", ">0.10<" }) do assert.truthy(svg:find(text, 1, true), text) end
    assert.matches("option labels must be a number format",
      select(2, pcall(plot.image, m, { output = dir .. "/x.png", labels = "%d %d" })))
    assert.matches("option xtics must be a list of 3 names %(one per column%), got 2 entries",
      select(2, pcall(plot.image, m, { output = dir .. "/x.png", xtics = { "a", "b" } })))
    assert.matches("option ytics: entry 2 is a boolean",
      select(2, pcall(plot.image, m, { output = dir .. "/x.png", ytics = { "a", true } })))
    for _, style in ipairs({ "points", "impulses", "lines", "linespoints" }) do
      check_png(plot.lines({ x = { 0.3, 0.2, 0.1 }, y = { 1, 2, 3 } }, { output = dir .. "/s-" .. style .. ".png", style = style,
        ytics = { "a.wav", "b.wav", "c.wav" }, yrange = { 3.5, 0.5 }, width = 320, height = 200 }), 320, 200)
    end
    assert.matches("unknown style 'bars'", select(2, pcall(plot.lines, { 1, 2 }, { output = dir .. "/x.png", style = "bars" })))
    local panels = {}
    for i = 1, 4 do
      panels[i] = { matrix = cocola.rand({ 16, 20 }), title = "panel " .. i, xlabel = "time (s)", ylabel = "mel band",
                    extent = { 0, 2, 0.5, 16.5 }, cblabel = "dB" }
    end
    img = check_png(plot.images(panels, { output = dir .. "/grid.png", title = "four", width = 600, height = 400 }), 600, 400)
    assert.is_true(non_white(img) > 5000)
    check_png(plot.images({ panels[1], panels[2], panels[3] }, { output = dir .. "/grid3.png", cols = 3 }), 1500, 350)
    check_svg(plot.images({ panels[1] }, { output = dir .. "/grid.svg", width = 300, height = 200 }), 300, 200)
    assert.matches("plot.images: panel 2: matrix is empty",
      select(2, pcall(plot.images, { panels[1], { matrix = cocola.zeros({ 0, 2 }) } }, { output = dir .. "/x.png" })))
    assert.matches("panel 1: unknown setting 'colour'",
      select(2, pcall(plot.images, { { matrix = m, colour = 1 } }, { output = dir .. "/x.png" })))
    assert.matches("panels must be a non%-empty list", select(2, pcall(plot.images, {}, { output = dir .. "/x.png" })))
    assert.is_nil(io.open(dir .. "/x.png", "rb"))
  end)

  it("turns bad input into clear errors", function()
    local out = { output = dir .. "/bad.png" }
    local function err(fn, ...)
      local ok, e = pcall(fn, ...)
      assert.is_false(ok)
      return tostring(e)
    end
    assert.matches("plot.lines: series 1 %(y%) is empty", err(plot.lines, cocola.zeros({ 0 }), out))
    assert.matches("plot.histogram: values is empty", err(plot.histogram, cocola.zeros({ 0 }), out))
    assert.matches("holds NaN %(element 2%)", err(plot.lines, cocola.tensor({ 1, 0 / 0, 3 }), out))
    assert.matches("holds inf", err(plot.scatter, cocola.tensor({ 1, 1 / 0 }), cocola.tensor({ 1, 2 }), out))
    assert.matches("holds NaN", err(plot.image, cocola.tensor({ { 1, 0 / 0 } }), out))
    assert.matches("plot.image: matrix must be a 2%-D tensor, got shape %(3%)", err(plot.image, cocola.zeros({ 3 }), out))
    assert.matches("matrix must be a 2%-D tensor, got shape %(2, 2, 2%)", err(plot.image, cocola.zeros({ 2, 2, 2 }), out))
    assert.matches("series 1 %(y%) must be 1%-D", err(plot.lines, cocola.zeros({ 2, 2 }), out))
    assert.matches("series 1: x has 3 values and y 2",
      err(plot.lines, { x = cocola.tensor({ 1, 2, 3 }), y = cocola.tensor({ 1, 2 }) }, out))
    assert.matches("plot.scatter: x has 2 values and y 3", err(plot.scatter, { 1, 2 }, { 1, 2, 3 }, out))
    assert.matches("unknown option 'colour' %(known: ", err(plot.lines, { 1, 2 }, { output = out.output, colour = "red" }))
    assert.matches("unknown output format '%.pdf'", err(plot.lines, { 1, 2 }, { output = dir .. "/x.pdf" }))
    assert.matches("option output %(a %.png or %.svg file name%) is required", err(plot.lines, { 1, 2 }, {}))
    assert.matches("unknown palette 'rainbow'", err(plot.image, cocola.zeros({ 2, 2 }), { output = out.output, palette = "rainbow" }))
    assert.matches("a log y axis cannot show", err(plot.lines, { 1, 0, 2 }, { output = out.output, logy = true }))
    assert.matches("option width must be a whole number", err(plot.lines, { 1, 2 }, { output = out.output, width = 10.5 }))
    assert.matches("plot.lines: cannot write .*/no/such/folder/x%.png%.tmp1%.dat: No such file",
      err(plot.lines, { 1, 2 }, { output = dir .. "/no/such/folder/x.png" }))
    -- gnuplot's own error text (its output, <output>.tmp, cannot be opened: a folder is in the way)
    assert.is_true(files.sh("mkdir -p " .. dir .. "/busy.png.tmp/inside"))
    local e = err(plot.lines, { 1, 2 }, { output = dir .. "/busy.png" })
    assert.matches("plot.lines: gnuplot failed: .*cannot open file", e)
    assert.is_true(files.sh("rm -r " .. dir .. "/busy.png.tmp"))
    -- no gnuplot
    local saved = plot.gnuplot
    plot.gnuplot = "/nonexistent/gnuplot"
    local ok, missing = pcall(plot.lines, { 1, 2 }, out)
    plot.gnuplot = saved
    assert.is_false(ok)
    assert.matches("gnuplot not found: apt%-get install gnuplot%-nox", missing)
    assert.is_nil(io.open(out.output, "rb"), "no picture after an error")
  end)

  it("redraws a run's curves from metrics.jsonl (cocola plot)", function()
    -- the COCOLA trainer's lines: loss/accuracy per step, validations (with a boolean field) per epoch
    local run = dir .. "/run"
    os.execute("mkdir -p '" .. run .. "'")
    local lines = {}
    for step = 1, 20 do
      lines[#lines + 1] = string.format('{"epoch":%d,"step":%d,"loss":%g,"accuracy":%g}', (step - 1) // 10 + 1, step,
        3 / step, step / 25)
      if step % 10 == 0 then
        lines[#lines + 1] = string.format('{"epoch":%d,"step":%d,"valid_loss":%g,"valid_accuracy":%g,"valid_degenerate":false}',
          step // 10, step, 4 / step, step / 30)
      end
    end
    files.write(run .. "/metrics.jsonl", table.concat(lines, "\n") .. "\n")
    local status, out, err = cocola_cli("plot '" .. run .. "/metrics.jsonl'", dir)
    assert.are.equal(0, status, err)
    assert.are.equal(run .. "/metrics-accuracy.png\n" .. run .. "/metrics-loss.png\n", out)
    local img = check_png(run .. "/metrics-loss.png", 800, 500)
    assert.is_true(count_colour(img, PURPLE) > 100, "the training curve")
    assert.is_true(count_colour(img, GREEN) > 50, "the validation curve")
    -- the diffusion trainers' lines, a run folder, another folder, SVG and a size
    local drun = dir .. "/drun"
    os.execute("mkdir -p '" .. drun .. "'")
    lines = {}
    for step = 10, 100, 10 do
      lines[#lines + 1] = string.format('{"step":%d,"loss":%g,"seconds":%g,"epoch":1,"lr":%g}', step, 1 / step, 0.2, 1e-4 * step / 100)
      if step % 50 == 0 then lines[#lines + 1] = string.format('{"step":%d,"valid_loss":%g}', step, 2 / step) end
    end
    files.write(drun .. "/metrics.jsonl", table.concat(lines, "\n") .. "\n")
    status, out, err = cocola_cli(string.format("plot '%s' --out '%s/pics' --format svg --size 600x400", drun, dir), dir)
    assert.are.equal(0, status, err)
    assert.are.equal(string.format("%s/pics/metrics-loss.svg\n%s/pics/metrics-lr.svg\n%s/pics/metrics-seconds.svg\n", dir, dir, dir), out)
    local s = check_svg(dir .. "/pics/metrics-loss.svg", 600, 400)
    assert.truthy(s:find("<text>training</text>", 1, true) and s:find("<text>validation</text>", 1, true))
    -- errors
    status, _, err = cocola_cli("plot '" .. dir .. "/nothing.jsonl'", dir)
    cli.one_line_error(status, err, "cannot read")
    files.write(dir .. "/broken.jsonl", '{"step":1,"loss":1}\nnot json\n')
    status, _, err = cocola_cli("plot '" .. dir .. "/broken.jsonl'", dir)
    cli.one_line_error(status, err, "line 2 is not a JSON object")
    status, _, err = cocola_cli("plot '" .. run .. "' --size big", dir)
    cli.one_line_error(status, err, "--size")
  end)

  it("draws a long training curve faint with its running mean on top", function()
    local run = dir .. "/long"
    os.execute("mkdir -p '" .. run .. "'")
    local lines, values = {}, {}
    for step = 1, 400 do
      values[step] = (step % 2 == 0) and 1 or 3 -- noise around 2
      lines[#lines + 1] = string.format('{"step":%d,"loss":%g}', step, values[step])
    end
    lines[#lines + 1] = '{"step":400,"valid_loss":2.5}'
    files.write(run .. "/metrics.jsonl", table.concat(lines, "\n") .. "\n")
    -- default: a fortieth of 400 points
    local written = plot.metrics(run, { format = "svg" })
    assert.are.same({ run .. "/metrics-loss.svg" }, written)
    local s = check_svg(run .. "/metrics-loss.svg", 800, 500)
    assert.truthy(s:find("<text>training, mean of 10 steps</text>", 1, true), "the running mean's legend")
    assert.truthy(s:find("<text>training</text>", 1, true) and s:find("<text>validation</text>", 1, true))
    -- an explicit window, in PNG: the mean's strong purple and the raw curve's faint one
    local status, _, err = cocola_cli("plot '" .. run .. "' --smooth 20", dir)
    assert.are.equal(0, status, err)
    local img = check_png(run .. "/metrics-loss.png", 800, 500)
    assert.is_true(count_colour(img, PURPLE) > 100, "the running mean")
    assert.is_true(count_colour(img, { 0xd9, 0xc3, 0xee }) > 100, "the raw curve, faint")
    -- 0: the raw curve alone, in the strong colour
    plot.metrics(run, { format = "svg", smooth = 0 })
    s = check_svg(run .. "/metrics-loss.svg", 800, 500)
    assert.falsy(s:find("mean of", 1, true))
    assert.has_error(function() plot.metrics(run, { smooth = -1 }) end,
      "plot.metrics: smooth must be a whole number of steps (0: no running mean), got -1")
    status, _, err = cocola_cli("plot '" .. run .. "' --smooth x", dir)
    cli.one_line_error(status, err, "--smooth")
  end)

  it("draws from scratch files beside the output, and leaves none there or in /tmp", function()
    -- a gnuplot that keeps a copy of the script it was given
    local wrapper, seen = dir .. "/gnuplot-wrapper.sh", dir .. "/script.gp"
    files.write(wrapper, string.format("#!/bin/sh\ncat \"$1\" > '%s'\nexec %s '%s'\n", seen, plot.gnuplot, seen))
    assert.is_true(files.sh("chmod +x " .. wrapper))
    local saved = plot.gnuplot
    plot.gnuplot = wrapper
    local ok, e = pcall(plot.scatter, { 1, 2, 3 }, { 3, 1, 2 }, { output = dir .. "/beside.png" })
    plot.gnuplot = saved
    assert.is_true(ok, e)
    local script = files.read(seen)
    assert.truthy(script:find(dir .. "/beside.png.tmp1.dat", 1, true), script)
    assert.truthy(script:find("set output '" .. dir .. "/beside.png.tmp'", 1, true), script)
    check_png(dir .. "/beside.png", 800, 500)
    -- every picture of this spec was drawn under dir: no scratch file or partial picture is left there
    local _, left = files.sh("find " .. dir .. " -name '*.tmp*'")
    assert.equal("", left)
    -- os.tmpname is used only before an output name is valid (an error case), and those files are gone too
    for _, p in ipairs(made) do assert.is_nil(io.open(p, "rb"), p .. " remains") end
    local f = io.open(dir .. "/tmpnames.log", "rb")
    if f then
      for p in f:lines() do assert.is_nil(io.open(p, "rb"), p .. " remains (a cocola subprocess)") end
      f:close()
    end
  end)
end)
