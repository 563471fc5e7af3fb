-- cocola.plot — pictures through gnuplot (Debian's gnuplot-nox), driven through a pipe: line plots
-- (several series, log axes), histograms (several sets overlaid), images / heat maps with a colour bar
-- (spectrograms, similarity matrices) and scatter plots, written as PNG (pngcairo) or SVG of a given
-- size in pixels; plot.images puts several heat maps on one page (a grid of panels). Tick labels can
-- be names (xtics / ytics: a model or dataset per column, a file per row), and a heat map can show its
-- values (labels). plot.available() tells whether gnuplot can be run (the recipes skip their pictures
-- without it). Tensors (any dtype, any device) and Lua lists of numbers go in directly; their values
-- reach gnuplot as little-endian float64 in scratch files beside the output (<output>.tmp<k>.dat), removed
-- on every path; the picture is drawn into <output>.tmp and renamed when whole. plot.metrics draws
-- a training run's metrics.jsonl (what `cocola plot` runs).
local core = require "cocola.core"

local plot = {}

--- the gnuplot command (a name on PATH or a path; default $COCOLA_GNUPLOT, else gnuplot)
plot.gnuplot = os.getenv("COCOLA_GNUPLOT") or "gnuplot"

local COMMON = { title = true, xlabel = true, ylabel = true, width = true, height = true, output = true }
local KNOWN = {
  lines = { logx = true, logy = true, xrange = true, yrange = true, key = true, style = true, xtics = true, ytics = true },
  histogram = { bins = true, density = true, xrange = true, yrange = true, key = true },
  image = { cblabel = true, origin = true, palette = true, extent = true, cbrange = true, xtics = true, ytics = true,
            labels = true },
  images = { cols = true },
  scatter = { logx = true, logy = true, xrange = true, yrange = true, label = true, key = true },
}

-- named palettes (gnuplot `set palette` bodies); viridis' lightness rises from 0 to 1
local PALETTES = {
  viridis = "defined (0 '#440154', 0.25 '#3b528b', 0.5 '#21918c', 0.75 '#5ec962', 1 '#fde725')",
  magma = "defined (0 '#000004', 0.25 '#51127c', 0.5 '#b73779', 0.75 '#fc8961', 1 '#fcfdbf')",
  gray = "gray",
  hot = "rgbformulae 21,22,23",
  coolwarm = "defined (0 '#3b4cc0', 0.5 '#dddddd', 1 '#b40426')",
}

local function fail(fn, fmt, ...) error("plot." .. fn .. ": " .. string.format(fmt, ...), 0) end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function check_options(fn, opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then fail(fn, "options must be a table, got %s", type(opts)) end
  for k in pairs(opts) do
    if not COMMON[k] and not KNOWN[fn][k] then
      local known = {}
      for name in pairs(COMMON) do known[#known + 1] = name end
      for name in pairs(KNOWN[fn]) do known[#known + 1] = name end
      table.sort(known)
      fail(fn, "unknown option '%s' (known: %s)", tostring(k), table.concat(known, ", "))
    end
  end
  return opts
end

-- the terminal line for opts.output: format from the extension, size in pixels
local function terminal(fn, opts)
  local out = opts.output
  if type(out) ~= "string" or out == "" then fail(fn, "option output (a .png or .svg file name) is required") end
  local ext = (out:match("%.([%w]+)$") or ""):lower()
  local w, h = opts.width or 800, opts.height or 500
  for name, v in pairs({ width = w, height = h }) do
    if math.type(v) ~= "integer" or v < 16 or v > 20000 then
      fail(fn, "option %s must be a whole number of pixels (16 to 20000), got %s", name, tostring(v))
    end
  end
  if ext == "png" then
    return string.format("set terminal pngcairo size %d,%d noenhanced font 'sans,10'", w, h)
  elseif ext == "svg" then
    return string.format("set terminal svg size %d,%d noenhanced font 'sans,10' background '#ffffff'", w, h)
  end
  fail(fn, "unknown output format '.%s' of %s (use .png or .svg)", ext, out)
end

-- a gnuplot single-quoted string (no escapes; a quote is doubled)
local function quote(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end

-- `set xtics (...)` with names at positions (labels: a list of strings; positions: numbers, one each)
local function tics_line(axis, labels, positions)
  local parts = {}
  for i, label in ipairs(labels) do
    parts[i] = string.format("%s %.17g", quote(label), positions[i])
  end
  local rotate = (axis == "x" and #labels > 1) and " rotate by -30" or ""
  return string.format("set %stics (%s)%s", axis, table.concat(parts, ", "), rotate)
end

-- checks an xtics / ytics option: a list of n names (strings or numbers)
local function check_tics(name, labels, n, what)
  if type(labels) ~= "table" or #labels ~= n then
    error(string.format("option %s must be a list of %d names (one per %s), got %s", name, n, what,
      type(labels) == "table" and (#labels .. " entries") or type(labels)), 0)
  end
  for i = 1, n do
    if type(labels[i]) ~= "string" and type(labels[i]) ~= "number" then
      error(string.format("option %s: entry %d is a %s, not a name", name, i, type(labels[i])), 0)
    end
  end
end

-- values of a tensor or a list of numbers as a flat Lua list, with its shape; checks finiteness
local function values_of(fn, what, v, rank)
  local list, shape
  if core.is_tensor(v) then
    if v:device() ~= "cpu" then v = v:to("cpu") end
    shape = {}
    for i = 1, v:dim() do shape[i] = v.shape[i] end
    if rank and v:dim() ~= rank then
      fail(fn, "%s must be a %d-D tensor, got shape (%s)", what, rank, table.concat(shape, ", "))
    end
    if v:numel() == 0 then fail(fn, "%s is empty", what) end
    local t = v:to("float64"):reshape({ v:numel() }):totable()
    list = t
  elseif type(v) == "table" then
    if rank and rank ~= 1 then fail(fn, "%s must be a %d-D tensor, got a Lua table", what, rank) end
    list = {}
    for i = 1, #v do
      if type(v[i]) ~= "number" then fail(fn, "%s: element %d is a %s, not a number", what, i, type(v[i])) end
      list[i] = v[i]
    end
    if #list == 0 then fail(fn, "%s is empty", what) end
    shape = { #list }
  else
    fail(fn, "%s must be a tensor or a list of numbers, got %s", what, type(v))
  end
  for i = 1, #list do
    local x = list[i]
    if x ~= x then fail(fn, "%s holds NaN (element %d)", what, i) end
    if x == math.huge or x == -math.huge then fail(fn, "%s holds %s (element %d)", what, x > 0 and "inf" or "-inf", i) end
  end
  return list, shape
end

-- the scratch files of one picture: beside its output (<output>.tmp<k>.dat, <output>.tmp.err), where a process
-- stopped half-way leaves them for the next drawing of that picture to replace (not in /tmp, where nothing
-- would); os.tmpname only while the output is not yet a valid name (run then fails and removes them)
local function scratch(opts)
  return { base = type(opts.output) == "string" and opts.output ~= "" and opts.output or nil }
end

local function scratch_name(temps, suffix)
  local path = temps.base and string.format("%s.tmp%s", temps.base, suffix) or os.tmpname()
  temps[#temps + 1] = path
  return path
end

-- writes records of float64 columns (cols: lists of equal length) to a new scratch file
local function write_binary(temps, cols)
  local path = scratch_name(temps, (#temps + 1) .. ".dat")
  local f, why = io.open(path, "wb")
  if not f then error("cannot write " .. path .. ": " .. tostring(why), 0) end
  local n, k = #cols[1], #cols
  local fmt = "<" .. string.rep("d", k)
  local buf, row = {}, {}
  for i = 1, n do
    for j = 1, k do row[j] = cols[j][i] end
    buf[#buf + 1] = string.pack(fmt, table.unpack(row, 1, k))
    if #buf == 4096 then
      f:write(table.concat(buf))
      buf = {}
    end
  end
  f:write(table.concat(buf))
  f:close()
  return path
end

local gnuplot_checked = {}

--- plot.available() -> true, or false and the reason: whether plot.gnuplot can be run
function plot.available()
  local cmd = plot.gnuplot
  if gnuplot_checked[cmd] then return true end
  if os.execute("command -v " .. quote(cmd):gsub("''", "'\\''") .. " >/dev/null 2>&1") then
    gnuplot_checked[cmd] = true
    return true
  end
  return false, "gnuplot not found: apt-get install gnuplot-nox"
end

-- runs a gnuplot script (a list of lines) with the temporary files in temps; removes them on every path.
-- gnuplot draws into <output>.tmp, renamed over the output once it is complete: a process stopped half-way
-- leaves the previous picture (or none), never a truncated one
local function run(fn, opts, body, temps)
  local ok, err = pcall(function()
    local cmd = plot.gnuplot
    local found, why = plot.available()
    if not found then error(why, 0) end
    local errfile = scratch_name(temps, ".err")
    local term = terminal(fn, opts) -- checks opts.output
    local partial = opts.output .. ".tmp"
    temps[#temps + 1] = partial
    local script = { term, "set output " .. quote(partial) }
    if opts.title then script[#script + 1] = "set title " .. quote(opts.title) end
    if opts.xlabel then script[#script + 1] = "set xlabel " .. quote(opts.xlabel) end
    if opts.ylabel then script[#script + 1] = "set ylabel " .. quote(opts.ylabel) end
    for _, name in ipairs({ "xrange", "yrange", "cbrange" }) do
      local r = opts[name]
      if r ~= nil then
        if type(r) ~= "table" or type(r[1]) ~= "number" or type(r[2]) ~= "number" then
          error(string.format("option %s must be {min, max}", name), 0)
        end
        script[#script + 1] = string.format("set %s [%.17g:%.17g]", name, r[1], r[2])
      end
    end
    for _, line in ipairs(body) do script[#script + 1] = line end
    script[#script + 1] = "unset output"
    -- /dev/stdin as a script file: gnuplot stops at the first error (on a plain pipe it goes on)
    local p = io.popen(cmd .. " /dev/stdin >/dev/null 2>" .. errfile, "w")
    p:write(table.concat(script, "\n"), "\n")
    local done, _, code = p:close()
    if not done then
      local f = io.open(errfile, "rb")
      local text = f and f:read("a") or ""
      if f then f:close() end
      if code == 127 then error("gnuplot not found: apt-get install gnuplot-nox", 0) end
      text = text:gsub('"/dev/stdin" line', "script line"):gsub("^%s+", ""):gsub("%s+$", ""):gsub("\n%s*\n", "\n")
      error("gnuplot failed" .. (text ~= "" and (": " .. text) or string.format(" (exit status %s)", tostring(code))), 0)
    end
    local moved, why = os.rename(partial, opts.output)
    if not moved then error("cannot write " .. opts.output .. ": " .. tostring(why), 0) end
  end)
  for _, path in ipairs(temps) do os.remove(path) end
  if not ok then error("plot." .. fn .. ": " .. tostring(err):gsub("^plot%.%w+: ", ""), 3) end
  return opts.output
end

-- one series given alone (not in a list): a tensor, a list of numbers or {x = , y = }
local function is_single_series(v)
  return core.is_tensor(v) or (type(v) == "table" and (v.y ~= nil or type(v[1]) == "number"))
end

-- the axis options shared by lines, histogram and scatter
local function axis_lines(opts)
  local out = {}
  if opts.logx then out[#out + 1] = "set logscale x" end
  if opts.logy then out[#out + 1] = "set logscale y" end
  if opts.key == false then out[#out + 1] = "unset key"
  elseif type(opts.key) == "string" then out[#out + 1] = "set key " .. opts.key
  else out[#out + 1] = "set key top right" end
  out[#out + 1] = "set grid"
  return out
end

local function check_log(fn, opts, axis, list, what)
  if opts["log" .. axis] then
    for i = 1, #list do
      if list[i] <= 0 then fail(fn, "%s holds %s (element %d), which a log %s axis cannot show", what, list[i], i, axis) end
    end
  end
end

-- plot.lines' styles (gnuplot's `with` clauses)
local STYLES = {
  lines = "lines lw 1.5", linespoints = "linespoints lw 1.5 pt 7 ps 0.6", points = "points pt 7 ps 0.8",
  impulses = "impulses lw 3",
}

--- plot.lines(series, opts) -> output path. series: one series or a list of them; a series is a tensor y
-- (x = 1, 2, ...), {x, y}, or {x = , y = , label = , color = "#rrggbb", style = }. opts: output (required, .png or .svg), title,
-- xlabel, ylabel, width, height (pixels; 800 x 500), logx, logy, xrange, yrange ({min, max}), key
-- (false hides the legend, a string places it: "bottom left"), style ("lines", "linespoints",
-- "points", "impulses"; default linespoints up to 50 points, else lines), xtics / ytics (names shown at
-- x (or y) = 1, 2, ...: a ranking's files).
function plot.lines(series, opts)
  opts = check_options("lines", opts)
  if not is_single_series(series) and (type(series) ~= "table" or #series == 0) then
    fail("lines", "series must be a tensor, {x = , y = , label = } or a non-empty list of series (tensors, {x, y} or {x = , y = , label = })")
  end
  local list = is_single_series(series) and { series } or series
  local temps, plots, tics = scratch(opts), {}, {}
  local ok, err = pcall(function()
    if opts.style ~= nil and not STYLES[opts.style] then
      error(string.format("unknown style '%s' (known: %s)", tostring(opts.style), table.concat(sorted_keys(STYLES), ", ")), 0)
    end
    for _, axis in ipairs({ "x", "y" }) do
      local labels = opts[axis .. "tics"]
      if labels ~= nil then
        check_tics(axis .. "tics", labels, type(labels) == "table" and #labels or -1, "position 1, 2, ...")
        if #labels == 0 then error("option " .. axis .. "tics: an empty list", 0) end
        local at = {}
        for i = 1, #labels do at[i] = i end
        tics[#tics + 1] = tics_line(axis, labels, at)
      end
    end
    for i, s in ipairs(list) do
      local x, y, label
      if core.is_tensor(s) or (type(s) == "table" and type(s[1]) == "number") then
        y = s
      elseif type(s) == "table" then
        x, y, label = s.x or (s.y == nil and s[1] or nil), s.y or s[2], s.label
        if s.y == nil and #s == 1 then x, y = nil, s[1] end
      else
        error(string.format("series %d must be a tensor or a table, got %s", i, type(s)), 0)
      end
      local what = string.format("series %d (y)", i)
      local ys, shape = values_of("lines", what, y)
      if #shape ~= 1 then error(string.format("%s must be 1-D, got shape (%s)", what, table.concat(shape, ", ")), 0) end
      local xs
      if x ~= nil then
        local xshape
        xs, xshape = values_of("lines", string.format("series %d (x)", i), x)
        if #xshape ~= 1 then error(string.format("series %d (x) must be 1-D", i), 0) end
        if #xs ~= #ys then error(string.format("series %d: x has %d values and y %d", i, #xs, #ys), 0) end
      else
        xs = {}
        for j = 1, #ys do xs[j] = j end
      end
      check_log("lines", opts, "x", xs, string.format("series %d (x)", i))
      check_log("lines", opts, "y", ys, what)
      local own_style, color = type(s) == "table" and s.style or nil, type(s) == "table" and s.color or nil
      if own_style ~= nil and not STYLES[own_style] then
        error(string.format("series %d: unknown style '%s' (known: %s)", i, tostring(own_style), table.concat(sorted_keys(STYLES), ", ")), 0)
      end
      if color ~= nil and (type(color) ~= "string" or not color:match("^#%x%x%x%x%x%x$")) then
        error(string.format("series %d: color must be a string \"#rrggbb\", got %s", i, tostring(color)), 0)
      end
      local path = write_binary(temps, { xs, ys })
      -- short series (a run's validations) with their points marked
      local style = STYLES[own_style or opts.style or (#ys <= 50 and "linespoints" or "lines")]
      if color then style = style .. " lc rgb '" .. color .. "'" end
      plots[#plots + 1] = string.format("%s binary record=(%d) format='%%float64%%float64' endian=little using 1:2 with %s title %s",
        quote(path), #ys, style, label and quote(label) or "''")
      if not label then plots[#plots] = plots[#plots]:gsub("title ''$", "notitle") end
    end
  end)
  if not ok then
    for _, path in ipairs(temps) do os.remove(path) end
    error("plot.lines: " .. tostring(err):gsub("^plot%.lines: ", ""), 2)
  end
  local body = axis_lines(opts)
  for _, line in ipairs(tics) do body[#body + 1] = line end
  body[#body + 1] = "plot " .. table.concat(plots, ", \\\n  ")
  local path = run("lines", opts, body, temps)
  return path
end

-- the sets of plot.histogram's values: {list, label}
local function histogram_sets(values)
  if core.is_tensor(values) or (type(values) == "table" and type(values[1]) == "number") then
    return { { values } }
  end
  if type(values) == "table" and values.values ~= nil then return { { values.values, values.label } } end
  if type(values) ~= "table" or #values == 0 then
    error("values must be a tensor, a list of numbers, {values = , label = } or a list of those", 0)
  end
  local sets = {}
  for i, v in ipairs(values) do
    if type(v) == "table" and not core.is_tensor(v) and v.values ~= nil then
      sets[i] = { v.values, v.label }
    else
      sets[i] = { v }
    end
  end
  return sets
end

--- plot.histogram(values, opts) -> output path. values: a tensor (any shape, flattened) or list of
-- numbers; or several sets overlaid: a list of tensors or of {values = , label = }. opts.bins: a number
-- of equal bins over the range of all the values (default 30), or the increasing edges (a list or a
-- 1-D tensor; values outside them are left out); opts.density: heights as densities instead of counts;
-- also output, title, xlabel, ylabel (default "count" or "density"), width, height, xrange, yrange,
-- key.
function plot.histogram(values, opts)
  opts = check_options("histogram", opts)
  local temps, plots = scratch(opts), {}
  local ok, err = pcall(function()
    local sets = histogram_sets(values)
    local lo, hi = math.huge, -math.huge
    for i, set in ipairs(sets) do
      set.list = values_of("histogram", #sets > 1 and string.format("set %d", i) or "values", set[1])
      for _, v in ipairs(set.list) do
        if v < lo then lo = v end
        if v > hi then hi = v end
      end
    end
    local edges = {}
    local bins = opts.bins or 30
    if type(bins) == "number" then
      if math.type(bins) ~= "integer" or bins < 1 then error("option bins must be a whole number >= 1 or a list of edges", 0) end
      if hi == lo then lo, hi = lo - 0.5, hi + 0.5 end
      for j = 0, bins do edges[j + 1] = lo + (hi - lo) * j / bins end
    else
      edges = values_of("histogram", "bins (edges)", bins)
      if #edges < 2 then error("option bins: give at least two edges", 0) end
      for j = 2, #edges do
        if edges[j] <= edges[j - 1] then error("option bins: edges must increase", 0) end
      end
    end
    local nb = #edges - 1
    for i, set in ipairs(sets) do
      local counts = {}
      for j = 1, nb do counts[j] = 0 end
      for _, v in ipairs(set.list) do
        if v >= edges[1] and v <= edges[nb + 1] then
          local a, b = 1, nb -- the last bin whose left edge is <= v
          while a < b do
            local m = (a + b + 1) // 2
            if edges[m] <= v then a = m else b = m - 1 end
          end
          counts[a] = counts[a] + 1
        end
      end
      local xs, ws = {}, {}
      for j = 1, nb do
        xs[j], ws[j] = (edges[j] + edges[j + 1]) / 2, edges[j + 1] - edges[j]
        if opts.density then counts[j] = counts[j] / (#set.list * ws[j]) end
      end
      local path = write_binary(temps, { xs, counts, ws })
      local title = set[2] and ("title " .. quote(set[2])) or "notitle"
      plots[i] = string.format("%s binary record=(%d) format='%%float64%%float64%%float64' endian=little using 1:2:3 with boxes %s",
        quote(path), nb, title)
    end
  end)
  if not ok then
    for _, path in ipairs(temps) do os.remove(path) end
    error("plot.histogram: " .. tostring(err):gsub("^plot%.histogram: ", ""), 2)
  end
  if not opts.ylabel then opts = setmetatable({ ylabel = opts.density and "density" or "count" }, { __index = opts }) end
  local body = axis_lines(opts)
  body[#body + 1] = "set style fill transparent solid 0.45 border -1"
  body[#body + 1] = "set yrange [0:*]"
  if opts.yrange then body[#body] = nil end
  body[#body + 1] = "plot " .. table.concat(plots, ", \\\n  ")
  local path = run("histogram", opts, body, temps)
  return path
end

-- the script lines of one heat map (plot.image and every panel of plot.images); fn names the caller
local function image_body(fn, matrix, opts, temps)
  local body = { "set tics out", "unset key" }
  local list, shape = values_of(fn, "matrix", matrix, 2)
  local h, w = shape[1], shape[2]
  local palette = opts.palette or "viridis"
  if not PALETTES[palette] then
    error(string.format("unknown palette '%s' (known: %s)", tostring(palette), table.concat(sorted_keys(PALETTES), ", ")), 0)
  end
  local origin = opts.origin or "lower"
  if origin ~= "lower" and origin ~= "upper" then error("option origin must be 'lower' or 'upper'", 0) end
  local x0, x1, y0, y1 = 0.5, w + 0.5, 0.5, h + 0.5
  if opts.extent ~= nil then
    local e = opts.extent
    if type(e) ~= "table" or #e ~= 4 then error("option extent must be {x0, x1, y0, y1}", 0) end
    for i = 1, 4 do
      if type(e[i]) ~= "number" or e[i] ~= e[i] then error("option extent must be {x0, x1, y0, y1} (numbers)", 0) end
    end
    if e[2] == e[1] or e[4] == e[3] then error("option extent: an empty range", 0) end
    x0, x1, y0, y1 = e[1], e[2], e[3], e[4]
  end
  local dx, dy = (x1 - x0) / w, (y1 - y0) / h
  -- names at the columns' and rows' centres
  for _, t in ipairs({ { "x", w, x0, dx, "column" }, { "y", h, y0, dy, "row" } }) do
    local labels = opts[t[1] .. "tics"]
    if labels ~= nil then
      check_tics(t[1] .. "tics", labels, t[2], t[5])
      local at = {}
      for i = 1, t[2] do at[i] = t[3] + t[4] * (i - 0.5) end
      body[#body + 1] = tics_line(t[1], labels, at)
    end
  end
  -- every cell's value written at its centre (small matrices: an accuracy table), dark on light cells
  if opts.labels ~= nil then
    if type(opts.labels) ~= "string" or not pcall(string.format, opts.labels, 0.5) then
      error("option labels must be a number format such as '%.2f'", 0)
    end
    if h * w > 2500 then error(string.format("option labels: %d cells are too many to write (at most 2500)", h * w), 0) end
    local lo, hi = math.huge, -math.huge
    for _, v in ipairs(list) do lo, hi = math.min(lo, v), math.max(hi, v) end
    if opts.cbrange then lo, hi = opts.cbrange[1], opts.cbrange[2] end
    for i = 1, h do
      for j = 1, w do
        local v = list[(i - 1) * w + j]
        local t = hi > lo and (v - lo) / (hi - lo) or 0.5
        local light = palette == "coolwarm" and math.abs(t - 0.5) < 0.3 or (palette ~= "coolwarm" and t > 0.55)
        body[#body + 1] = string.format("set label %s at %.17g,%.17g center front textcolor rgb '%s'",
          quote(string.format(opts.labels, v)), x0 + dx * (j - 0.5), y0 + dy * (i - 0.5), light and "#000000" or "#ffffff")
      end
    end
  end
  local path = write_binary(temps, { list })
  body[#body + 1] = "set palette " .. PALETTES[palette]
  if opts.cblabel then body[#body + 1] = "set cblabel " .. quote(opts.cblabel) end
  if opts.cbrange then
    local r = opts.cbrange
    if type(r) ~= "table" or type(r[1]) ~= "number" or type(r[2]) ~= "number" then error("option cbrange must be {min, max}", 0) end
    body[#body + 1] = string.format("set cbrange [%.17g:%.17g]", r[1], r[2])
  end
  body[#body + 1] = string.format("set xrange [%.17g:%.17g]", math.min(x0, x1), math.max(x0, x1))
  if origin == "upper" then
    body[#body + 1] = string.format("set yrange [%.17g:%.17g]", math.max(y0, y1), math.min(y0, y1))
  else
    body[#body + 1] = string.format("set yrange [%.17g:%.17g]", math.min(y0, y1), math.max(y0, y1))
  end
  -- the file holds the rows in order; gnuplot's array puts element 1 at the origin, rows going up in y.
  -- PNG: one bitmap (cells drawn one by one leave seams); SVG: one rectangle per cell
  local pixels = opts.output:lower():match("%.svg$") and " pixels" or ""
  body[#body + 1] = string.format(
    "plot %s binary array=(%d,%d) format='%%float64' endian=little origin=(%.17g,%.17g) dx=%.17g dy=%.17g with image%s notitle",
    quote(path), w, h, x0 + dx / 2, y0 + dy / 2, dx, dy, pixels)
  return body
end

--- plot.image(matrix, opts) -> output path: a heat map of a (H, W) tensor with a colour bar. Row 1 is at
-- the bottom (opts.origin = "lower", the default: spectrograms, frequency rising) or at the top
-- (origin = "upper": matrices, similarity matrices). opts: palette (viridis, magma, gray, hot, coolwarm;
-- default viridis), cblabel, cbrange ({min, max}), extent ({x0, x1, y0, y1}: the axes' values at the
-- image's edges, e.g. seconds and Hz; default: column and row numbers from 1), xtics / ytics (a name
-- per column / row, shown at its centre: the models and datasets of an accuracy matrix), labels (a
-- number format such as "%.2f": every cell's value written on it; small matrices), and output, title,
-- xlabel, ylabel, width, height.
function plot.image(matrix, opts)
  opts = check_options("image", opts)
  if type(opts.output) ~= "string" then terminal("image", opts) end
  local temps, body = scratch(opts), nil
  local ok, err = pcall(function() body = image_body("image", matrix, opts, temps) end)
  if not ok then
    for _, path in ipairs(temps) do os.remove(path) end
    error("plot.image: " .. tostring(err):gsub("^plot%.image: ", ""), 2)
  end
  local path = run("image", opts, body, temps)
  return path
end

-- the settings of a panel of plot.images
local PANEL = { matrix = true, title = true, xlabel = true, ylabel = true, cblabel = true, origin = true, palette = true,
  extent = true, cbrange = true, xtics = true, ytics = true, labels = true }

--- plot.images(panels, opts) -> output path: several heat maps on one page, in a grid of opts.cols
-- columns (default 2), filled row by row (e.g. the harmonic and percussive features of a condition and
-- of an accompaniment). panels: a list of {matrix = (H, W) tensor, title, xlabel, ylabel, cblabel,
-- origin, palette, extent, cbrange, xtics, ytics, labels} as in plot.image; opts: output, title (the page's),
-- width, height (of the page; default 500 per panel column and 350 per panel row), cols.
function plot.images(panels, opts)
  opts = check_options("images", opts)
  if type(panels) ~= "table" or #panels == 0 then fail("images", "panels must be a non-empty list of {matrix = , ...}") end
  local cols = opts.cols or 2
  if math.type(cols) ~= "integer" or cols < 1 then fail("images", "option cols must be a whole number >= 1") end
  cols = math.min(cols, #panels)
  local rows = (#panels + cols - 1) // cols
  local page = setmetatable({ width = opts.width or 500 * cols, height = opts.height or 350 * rows, title = false },
    { __index = opts })
  if type(opts.output) ~= "string" then terminal("images", page) end
  local temps = scratch(opts)
  local body = { string.format("set multiplot layout %d,%d%s", rows, cols, opts.title and (" title " .. quote(opts.title)) or "") }
  local ok, err = pcall(function()
    for i, p in ipairs(panels) do
      if type(p) ~= "table" or p.matrix == nil then error(string.format("panel %d must be {matrix = , ...}", i), 0) end
      for k in pairs(p) do
        if not PANEL[k] then
          error(string.format("panel %d: unknown setting '%s' (known: %s)", i, tostring(k), table.concat(sorted_keys(PANEL), ", ")), 0)
        end
      end
      local popts = setmetatable({ output = opts.output }, { __index = p })
      body[#body + 1] = "reset"
      body[#body + 1] = "set title " .. quote(p.title or "")
      body[#body + 1] = "set xlabel " .. quote(p.xlabel or "")
      body[#body + 1] = "set ylabel " .. quote(p.ylabel or "")
      local ok_panel, lines = pcall(image_body, "images", p.matrix, popts, temps)
      if not ok_panel then error(string.format("panel %d: %s", i, tostring(lines):gsub("^plot%.images: ", "")), 0) end
      for _, line in ipairs(lines) do body[#body + 1] = line end
    end
  end)
  if not ok then
    for _, path in ipairs(temps) do os.remove(path) end
    error("plot.images: " .. tostring(err):gsub("^plot%.images: ", ""), 2)
  end
  body[#body + 1] = "unset multiplot"
  return run("images", page, body, temps)
end

--- plot.scatter(x, y, opts) -> output path: points (x[i], y[i]); x and y tensors or lists of the same
-- length. opts: label (the legend's entry), output, title, xlabel, ylabel, width, height, logx, logy,
-- xrange, yrange, key.
function plot.scatter(x, y, opts)
  opts = check_options("scatter", opts)
  local temps, line = scratch(opts), nil
  local ok, err = pcall(function()
    local xs, xshape = values_of("scatter", "x", x)
    local ys, yshape = values_of("scatter", "y", y)
    if #xshape ~= 1 then error("x must be 1-D", 0) end
    if #yshape ~= 1 then error("y must be 1-D", 0) end
    if #xs ~= #ys then error(string.format("x has %d values and y %d", #xs, #ys), 0) end
    check_log("scatter", opts, "x", xs, "x")
    check_log("scatter", opts, "y", ys, "y")
    local path = write_binary(temps, { xs, ys })
    line = string.format("plot %s binary record=(%d) format='%%float64%%float64' endian=little using 1:2 with points pt 7 ps 0.6 %s",
      quote(path), #xs, opts.label and ("title " .. quote(opts.label)) or "notitle")
  end)
  if not ok then
    for _, path in ipairs(temps) do os.remove(path) end
    error("plot.scatter: " .. tostring(err):gsub("^plot%.scatter: ", ""), 2)
  end
  local body = axis_lines(opts)
  body[#body + 1] = line
  local path = run("scatter", opts, body, temps)
  return path
end

-- ---- a training run's curves -------------------------------------------------------------------

-- fields of metrics.jsonl that are not curves against step
local NOT_CURVES = { step = true, epoch = true }
-- a training curve (raw values faint, their running mean strong) and its validation twin
local RAW_COLOR, TRAIN_COLOR, VALID_COLOR = "#d9c3ee", "#9400d3", "#009e73"

-- the mean of the last `window` values at each position (fewer at the start)
local function running_mean(values, window)
  local out, sum = {}, 0
  for i, v in ipairs(values) do
    sum = sum + v
    if i > window then sum = sum - values[i - window] end
    out[i] = sum / math.min(i, window)
  end
  return out
end

--- plot.metrics(path, opts) -> list of written files: the curves of a training run's metrics.jsonl (the
-- COCOLA trainer's and the diffusion trainers'), every numeric field against step: a field and its
-- validation twin (loss and valid_loss, accuracy and valid_accuracy) share one picture; every other
-- field (lr, seconds, ...) has its own. path: the file or the run folder holding metrics.jsonl.
-- opts: out (folder; default: the file's), format ("png" or "svg"), width, height, smooth (a training
-- curve is drawn faint with its running mean over the last `smooth` steps on top; default: for curves
-- of more than 200 points, a fortieth of their length; 0 draws the raw curve alone).
-- Pictures are named <out>/metrics-<quantity>.<format>.
function plot.metrics(path, opts)
  opts = opts or {}
  local cjson = require "cjson"
  local fs = require "cocola.data.fs"
  if fs.is_dir(path) then path = path:gsub("/+$", "") .. "/metrics.jsonl" end
  local f = io.open(path, "rb")
  if not f then error("plot.metrics: cannot read " .. path .. " (a metrics.jsonl file or a run folder holding one)", 2) end
  local text = f:read("a")
  f:close()
  local dir = opts.out or path:match("^(.*)/[^/]*$") or "."
  local format = opts.format or "png"
  if format ~= "png" and format ~= "svg" then error("plot.metrics: format must be png or svg", 2) end
  local smooth = opts.smooth
  if smooth ~= nil and (math.type(smooth) ~= "integer" or smooth < 0) then
    error("plot.metrics: smooth must be a whole number of steps (0: no running mean), got " .. tostring(smooth), 2)
  end
  local fields, order, n = {}, {}, 0
  for line in text:gmatch("[^\n]+") do
    local ok, rec = pcall(cjson.decode, line)
    n = n + 1
    if not ok or type(rec) ~= "table" then error(string.format("plot.metrics: %s line %d is not a JSON object", path, n), 2) end
    local step = type(rec.step) == "number" and rec.step or n
    for k, v in pairs(rec) do
      if type(v) == "number" and not NOT_CURVES[k] and v == v and v ~= math.huge and v ~= -math.huge then
        if not fields[k] then
          fields[k] = { x = {}, y = {} }
          order[#order + 1] = k
        end
        local c = fields[k]
        c.x[#c.x + 1], c.y[#c.y + 1] = step, v
      end
    end
  end
  if #order == 0 then error("plot.metrics: " .. path .. " holds no numeric field to plot", 2) end
  table.sort(order)
  -- groups: a quantity with its valid_ twin
  local groups, grouped = {}, {}
  for _, k in ipairs(order) do
    local base = k:match("^valid_(.+)$") or k
    if not grouped[base] then
      grouped[base] = true
      local members = {}
      if fields[base] then members[#members + 1] = base end
      if fields["valid_" .. base] then members[#members + 1] = "valid_" .. base end
      groups[#groups + 1] = { name = base, members = members }
    end
  end
  fs.mkdir_p(dir)
  local written = {}
  for _, g in ipairs(groups) do
    local series, positive, lo, hi = {}, true, math.huge, -math.huge
    for _, k in ipairs(g.members) do
      local c = fields[k]
      local valid = k:match("^valid_") ~= nil
      local window = smooth or (#c.y > 200 and #c.y // 40 or 0)
      if valid or window < 2 or window >= #c.y then
        series[#series + 1] = { x = c.x, y = c.y, label = valid and "validation" or "training",
          color = valid and VALID_COLOR or TRAIN_COLOR }
      else
        series[#series + 1] = { x = c.x, y = c.y, label = "training", color = RAW_COLOR, style = "lines" }
        series[#series + 1] = { x = c.x, y = running_mean(c.y, window), style = "lines",
          label = string.format("training, mean of %d steps", window), color = TRAIN_COLOR }
      end
      for _, v in ipairs(c.y) do
        if v <= 0 then positive = false end
        lo, hi = math.min(lo, v), math.max(hi, v)
      end
    end
    if #series == 1 then series[1].label = nil end
    local out = string.format("%s/metrics-%s.%s", dir, g.name:gsub("[^%w_.-]", "_"), format)
    plot.lines(series, {
      output = out, title = g.name .. " per step", xlabel = "step", ylabel = g.name,
      logy = (g.name == "lr" or g.name:match("loss$") ~= nil) and positive and hi > 20 * lo or nil,
      width = opts.width, height = opts.height,
    })
    written[#written + 1] = out
  end
  return written
end

return plot
