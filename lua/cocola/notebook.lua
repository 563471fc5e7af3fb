-- cocola.notebook — pictures inline in a Jupyter notebook run on the project's Lua kernel
-- (notebooks/kernel: ILua on lua5.4 with a display hook). show(path) puts a PNG or SVG file into the
-- notebook as an image; notebook.plot has cocola.plot's functions with the output file optional:
-- without one the picture goes to a temporary PNG that is shown and then deleted.
--
--   local nb = require "cocola.notebook"
--   nb.plot.image(mel, { xlabel = "time (s)", ylabel = "mel band", width = 640, height = 320 })
--   nb.show(cocola.plot.lines(series, { output = "curves.png" }))   -- a file that stays
--
-- Outside the notebook kernel (plain lua5.4, where COCOLA_NOTEBOOK is not 1) show prints the file's
-- path instead, and pictures without an output file are kept and their paths printed.
local notebook = {}

--- true inside the notebook kernel
notebook.active = os.getenv("COCOLA_NOTEBOOK") == "1"

local MIME = { png = "image/png", svg = "image/svg+xml" }

local function show_one(path, opts, remove)
  if type(path) ~= "string" then error("notebook.show: expected a file name, got " .. type(path), 3) end
  local ext = (path:match("%.(%w+)$") or ""):lower()
  local mime = MIME[ext]
  if not mime then error("notebook.show: " .. path .. " is not a .png or .svg file", 3) end
  local f = io.open(path, "rb")
  if not f then error("notebook.show: cannot read " .. path, 3) end
  f:close()
  if not notebook.active then
    io.write(path, "\n")
    return
  end
  local width = opts.width
  if width ~= nil and math.type(width) ~= "integer" then error("notebook.show: width must be a whole number of pixels", 3) end
  if path:find("[\27\7]") then error("notebook.show: unusual characters in " .. path, 3) end
  io.stdout:flush()
  io.write(string.format("\27]cocola-display;%s;%d;%s;%s\7", mime, remove and 1 or 0, width or "", path))
  io.stdout:flush()
end

--- show(what[, opts]): what is a .png/.svg file name or a list of them (what plot.metrics returns);
-- opts.width displays the image at that width in pixels. Returns nothing, so a cell ending with it
-- prints no value.
function notebook.show(what, opts)
  opts = opts or {}
  if type(what) == "table" then
    for _, p in ipairs(what) do show_one(p, opts, false) end
  else
    show_one(what, opts, false)
  end
end

local function temp_png()
  local base = os.tmpname()
  os.remove(base)
  return base .. ".png"
end

-- opts with output filled in when missing; the second value says whether it is temporary
local function with_output(opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.output then return o, false end
  o.output = temp_png()
  return o, true
end

local function draw_and_show(draw, opts)
  local o, temp = with_output(opts)
  local ok, err = pcall(draw, o)
  if not ok then
    if temp then os.remove(o.output) end
    error(err, 0)
  end
  if temp and not notebook.active then
    io.write(o.output, "\n")
    return
  end
  show_one(o.output, {}, temp)
end

--- notebook.plot: cocola.plot's lines, histogram, image, scatter and metrics, shown inline
notebook.plot = {}
function notebook.plot.lines(series, opts)
  draw_and_show(function(o) return require("cocola.plot").lines(series, o) end, opts)
end
function notebook.plot.histogram(values, opts)
  draw_and_show(function(o) return require("cocola.plot").histogram(values, o) end, opts)
end
function notebook.plot.image(matrix, opts)
  draw_and_show(function(o) return require("cocola.plot").image(matrix, o) end, opts)
end
function notebook.plot.scatter(x, y, opts)
  draw_and_show(function(o) return require("cocola.plot").scatter(x, y, o) end, opts)
end
--- metrics(run or metrics.jsonl[, opts]): every curve of a training run, shown one after the other
-- (opts.out keeps the PNGs in that folder; without it they go to a temporary folder, removed after)
function notebook.plot.metrics(path, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  local temp_dir
  if not o.out then
    temp_dir = temp_png():gsub("%.png$", "") .. ".d"
    o.out = temp_dir
  end
  o.format = "png"
  local files = require("cocola.plot").metrics(path, o)
  for _, p in ipairs(files) do
    if temp_dir and notebook.active then
      -- moved out of the temporary folder; the kernel deletes each file once it has read it
      local moved = temp_png()
      assert(os.rename(p, moved))
      show_one(moved, {}, true)
    elseif temp_dir then
      io.write(p, "\n")
    else
      show_one(p, {}, false)
    end
  end
  if temp_dir and notebook.active then require("lfs").rmdir(temp_dir) end
end

return notebook
