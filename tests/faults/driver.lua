-- tests/faults/driver.lua — fault injection for cocola (make test-faults; spec/fault_injection_spec.lua
-- runs a quick subset through the same functions).
--
-- Allocation failures: for each workload of tests/faults/workload.lua (load, train_step, features,
-- save, conv_onednn) the allocations of one run are counted, then the workload is run with its Nth allocation
-- failing for every N (or the points given), under tests/faults/fault_shim.so. A point passes when
-- the run either raises a Lua error with a message or goes through with the right result, leaves no
-- block allocated outside Lua's core live, and a clean run afterwards gives the right result again;
-- a signal (crash), a hang (timeout), a leak or a wrong result fails it. Points inside libgomp and
-- lua-cjson, which end the process on a failed allocation by design, are counted apart ("spared"),
-- as is one allocation of libsndfile 1.2.0 that it dereferences unchecked, and oneDNN's own allocations
-- (libdnnl's, and its C++ `new` in libstdc++, whose std::bad_alloc crosses oneDNN's C API and ends the
-- process: std::terminate, or a crash on an unchecked pointer) (SPARE below); the blocks cocola's oneDNN
-- convolutions borrow from the engine are not spared.
--
-- Write failures: each writer of tests/faults/io_child.lua (and `cocola score --json/--csv`) runs
-- once cleanly (the previous files), then again with the shim failing its writes to one target file
-- (ENOSPC at the first byte, after 16 bytes, after 4096 bytes (files that large only), or EIO on close). A case passes when the process
-- ends with an error naming the file (status 1, no signal), the shim did fail a write, every file
-- already in the folder is byte-identical and no file was added (no temporary left behind).
--
--   lua5.4 tests/faults/driver.lua [all|alloc|io] [STRIDE]   (STRIDE: every Nth point, default 1)
local D = {}

local ROOT = "."
D.SHIM_SRC = "tests/faults/fault_shim.c"
D.SHIM = "build/fault_shim.so"
D.SPARE = "libgomp,cjson,libsndfile.so.1+0x5e0c1,libdnnl,libstdc"
D.WORKLOADS = { "load", "train_step", "features", "save", "conv_onednn" }
D.TIMEOUT = 600 -- seconds per child process of a sweep

package.path = "./tests/lib/?.lua;" .. package.path
local shell = require "test_shell"
local quote, read = shell.quote, shell.read

--- runs a shell command; returns status ("exit" code, or 128 + signal as the shell reports it)
local function run(cmd)
  local ok, how, code = os.execute(cmd)
  if how == "signal" then return 128 + code end
  return ok and 0 or code
end

local tmpdir = shell.tmpdir
D.tmpdir = tmpdir

--- builds the shim (gcc) when missing or older than its source; returns its path, or nil and why
function D.build_shim()
  local stale = run(string.format("test %s -nt %s", quote(D.SHIM), quote(D.SHIM_SRC))) ~= 0
  if stale then
    local log = os.tmpname()
    local rc = run(string.format("mkdir -p build && gcc -std=c11 -O1 -Wall -Wextra -Werror -shared -fPIC -o %s %s -ldl >%s 2>&1",
      quote(D.SHIM), quote(D.SHIM_SRC), quote(log)))
    local out = read(log) or ""
    os.remove(log)
    if rc ~= 0 then return nil, "cannot build the fault shim: " .. out end
  end
  return D.SHIM
end

local function env(extra)
  local parts = { "OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "FAULT_ALLOC_SPARE=" .. quote(D.SPARE),
    "LD_PRELOAD=" .. quote(ROOT .. "/" .. D.SHIM) }
  for k, v in pairs(extra or {}) do parts[#parts + 1] = k .. "=" .. quote(v) end
  table.sort(parts)
  return "env -u LUA_INIT " .. table.concat(parts, " ")
end

-- ---- allocation failures ------------------------------------------------------------------------

--- the allocations of one clean run of a workload (after warm-up); or nil and the child's output
function D.count(workload, scratch)
  local out = os.tmpname()
  run(string.format("%s timeout -k 5 %d nice -n 5 lua5.4 tests/faults/workload.lua %s count >%s 2>&1",
    env({ FAULT_TMPDIR = scratch }), D.TIMEOUT, workload, quote(out)))
  local text = read(out) or ""
  os.remove(out)
  local n = tonumber(text:match("count (%d+)"))
  if not n then return nil, text end
  return n
end

--- runs the workload with each point of `points` failing; returns a summary
-- {tried, ok, error, spared, crash = {points}, hang = {points}, leak = {...}, wrong = {...},
--  unrecovered = {...}, nomessage = {...}, messages = {sample per kind}}
function D.sweep(workload, points, scratch, log)
  log = log or function() end
  local s = { tried = 0, ok = 0, error = 0, spared = 0, crash = {}, hang = {}, leak = {}, wrong = {},
    unrecovered = {}, nomessage = {}, messages = {} }
  local i = 1
  while i <= #points do
    local list = table.concat(points, ",", i)
    local out = os.tmpname()
    local rc = run(string.format("%s timeout -k 5 %d nice -n 5 lua5.4 tests/faults/workload.lua %s sweep %s >%s 2>&1",
      env({ FAULT_TMPDIR = scratch }), D.TIMEOUT, workload, list, quote(out)))
    local text = read(out) or ""
    os.remove(out)
    local last, done = nil, text:find("\ndone\n", 1, true) or text:find("^done\n")
    for line in text:gmatch("[^\n]+") do
      local n, outcome, live, rec, msg = line:match("^point (%d+) (%S+) live=(%-?%d+) recovered=(%S+) ?(.*)$")
      if n then
        n, live = tonumber(n), tonumber(live)
        last = n
        s.tried = s.tried + 1
        local kind = outcome:match("^(%a+)")
        if kind == "spared" then
          s.spared = s.spared + 1
        elseif kind == "wrong" then
          s.wrong[#s.wrong + 1] = n
        elseif kind == "error" then
          s.error = s.error + 1
          if msg == "" or msg:find("^%(no message") then s.nomessage[#s.nomessage + 1] = n end
          if not s.messages[msg] and #msg > 0 then s.messages[msg] = n end
        else
          s.ok = s.ok + 1
        end
        if live > 0 then s.leak[#s.leak + 1] = n end
        if rec ~= "yes" then s.unrecovered[#s.unrecovered + 1] = n end
      end
    end
    -- advance past the points reported; a child that ended without "done" stopped at the next one
    local at = i
    while at <= #points and last and points[at] <= last do at = at + 1 end
    if done then break end
    if at > #points then break end
    local n = points[at]
    s.tried = s.tried + 1
    if rc == 124 or rc == 137 then
      s.hang[#s.hang + 1] = n
    else
      s.crash[#s.crash + 1] = n
      log(string.format("  %s: point %d ended the process (status %d): %s", workload, n, rc,
        (text:match("([^\n]*)\n?$") or ""):sub(1, 200)))
    end
    i = at + 1
  end
  s.failed = #s.crash + #s.hang + #s.leak + #s.wrong + #s.unrecovered + #s.nomessage
  return s
end

--- every `stride`th point of 1..count (always the first and the last)
function D.points(count, stride)
  local p = {}
  for n = 1, count, stride or 1 do p[#p + 1] = n end
  if p[#p] ~= count then p[#p + 1] = count end
  return p
end

-- ---- write failures -----------------------------------------------------------------------------

D.VARIANTS = {
  { name = "ENOSPC at the first byte", env = { FAULT_IO_AFTER = "0", FAULT_IO_ERRNO = "ENOSPC" } },
  { name = "ENOSPC after 16 bytes", env = { FAULT_IO_AFTER = "16", FAULT_IO_ERRNO = "ENOSPC" } },
  { name = "ENOSPC after 4096 bytes", env = { FAULT_IO_AFTER = "4096", FAULT_IO_ERRNO = "ENOSPC" }, larger = true },
  { name = "EIO on close", env = { FAULT_IO_CLOSE = "1", FAULT_IO_ERRNO = "EIO" } },
}

-- the cases: the writer (io_child case, or a cocola command), the target matched by FAULT_IO_PATH,
-- what the error must name, and how the folder is prepared
D.CASES = {
  { name = "cocola.save (safetensors)", child = "safetensors", target = "x.safetensors", names = "x.safetensors" },
  { name = "audio.save WAV", child = "wav", target = "x.wav", names = "x.wav" },
  { name = "audio.save FLAC", child = "flac", target = "x.flac", names = "x.flac" },
  { name = "train checkpoint: model", child = "checkpoint", target = "last.tmp/model.safetensors", names = "model.safetensors" },
  { name = "train checkpoint: optimizer", child = "checkpoint", target = "last.tmp/optimizer.safetensors", names = "optimizer.safetensors" },
  { name = "train checkpoint: state", child = "checkpoint", target = "last.tmp/state.json", names = "state.json" },
  { name = "diffusion checkpoint: unet", child = "diffusion_checkpoint", target = "last.tmp/unet.safetensors", names = "unet.safetensors" },
  { name = "prepare: stem", child = "prepare", target = ".bass.tmp", names = "bass", stale_stem = true },
  { name = "prepare: index.json", child = "prepare", target = "index.json", names = "index.json" },
  { name = "cocola score --json", score = "--json", target = "out.json", names = "out.json" },
  { name = "cocola score --csv", score = "--csv", target = "out.csv", names = "out.csv" },
}

-- every file under dir (relative path -> contents)
local function snapshot(dir)
  local files = {}
  local p = io.popen("cd " .. quote(dir) .. " && find . -type f | sort")
  for path in p:lines() do files[path] = read(dir .. "/" .. path:sub(3)) end
  p:close()
  return files
end

local function setup_sources(dir)
  local cocola = require "cocola"
  cocola.manual_seed(1)
  assert(os.execute("mkdir -p " .. quote(dir .. "/src/train/Song A")))
  cocola.audio.save(dir .. "/src/train/Song A/bass.wav", cocola.randn({ 1, 8000 }) * 0.1, 22050)
  cocola.audio.save(dir .. "/src/train/Song A/keys.wav", cocola.randn({ 1, 8000 }) * 0.1, 22050)
end

local function setup_score(dir)
  local cocola = require "cocola"
  cocola.manual_seed(2)
  cocola.audio.save(dir .. "/a.wav", cocola.randn({ 1, 5 * 16000 }) * 0.1, 16000)
  cocola.audio.save(dir .. "/b.wav", cocola.randn({ 1, 5 * 16000 }) * 0.1, 16000)
end

local function writer_command(case, dir, seed)
  if case.score then
    -- the previous run writes another file than the failing one would: the previous output is the
    -- same file, from a run on the other pair
    local cond, gen = seed == 1 and "b.wav" or "a.wav", seed == 1 and "a.wav" or "b.wav"
    return string.format("lua5.4 bin/cocola score --cond %s --gen %s %s %s --threads 1 -q",
      quote(dir .. "/" .. cond), quote(dir .. "/" .. gen), case.score, quote(dir .. "/" .. case.target))
  end
  return string.format("lua5.4 tests/faults/io_child.lua %s %s %d", case.child, quote(dir), seed)
end

--- one case with one variant; returns ok, a description of what went wrong (or the error shown);
-- ok is nil when the variant does not apply (a file smaller than the bytes it lets through)
function D.io_case(case, variant)
  local dir = tmpdir()
  local function finish(ok, why)
    os.execute("rm -rf " .. quote(dir))
    return ok, why
  end
  if case.child == "prepare" then setup_sources(dir) end
  if case.score then setup_score(dir) end
  local out = dir .. ".out"
  -- the previous files: a clean run
  local rc = run(string.format("env -u LUA_INIT nice -n 5 %s >%s 2>&1", writer_command(case, dir, 1), quote(out)))
  if rc ~= 0 then
    local text = read(out) or ""
    os.remove(out)
    return finish(false, "the clean run failed: " .. text:sub(1, 300))
  end
  if case.stale_stem then -- a stem that is not complete: the next run writes it again
    local stem = dir .. "/out/train/Song A/bass.flac"
    local f = assert(io.open(stem, "wb"))
    f:write("previous stem, not a FLAC file")
    f:close()
  end
  local before = snapshot(dir)
  local report = dir .. ".report"
  local e = { FAULT_IO_PATH = case.target, FAULT_SHIM_REPORT = report }
  for k, v in pairs(variant.env) do e[k] = v end
  rc = run(string.format("%s timeout -k 5 300 nice -n 5 %s >%s 2>&1", env(e), writer_command(case, dir, 2), quote(out)))
  local text = read(out) or ""
  local rep = read(report) or ""
  os.remove(out)
  os.remove(report)
  local injected = 0
  for k in rep:gmatch("io_failed=(%d+)") do injected = injected + tonumber(k) end
  -- the error line (lua5.4's "lua5.4: ..." or the command's "cocola: ..."), else the last line
  local shown = (text:match("lua5%.4: ([^\n]*)") or text:match("cocola: ([^\n]*)") or
    text:match("([^\n]*%S[^\n]*)\n?%s*$") or text):sub(1, 300)
  if injected == 0 and rc == 0 and variant.larger then return finish(nil, "n/a: the file is smaller") end
  if injected == 0 then return finish(false, "no write was failed (the target was not written?): " .. shown) end
  if rc == 0 then return finish(false, "the writer reported success after a failed write") end
  if rc ~= 1 then return finish(false, string.format("the writer ended with status %d: %s", rc, shown)) end
  if not text:find(case.names, 1, true) then return finish(false, "the error does not name " .. case.names .. ": " .. shown) end
  local after = snapshot(dir)
  for path, bytes in pairs(before) do
    if after[path] == nil then return finish(false, path .. " was removed") end
    if after[path] ~= bytes then return finish(false, path .. " changed") end
  end
  for path in pairs(after) do
    if before[path] == nil then return finish(false, path .. " was left behind") end
  end
  return finish(true, shown)
end

-- ---- the whole run ------------------------------------------------------------------------------

function D.main(what, stride)
  what = what or "all"
  local shim, why = D.build_shim()
  if not shim then
    print(why)
    print("0 passed, 1 failed")
    return false
  end
  local passed, failed = 0, 0
  if what == "all" or what == "alloc" then
    print("allocation failures (the Nth allocation of a workload fails, for N = 1 .. its allocations):")
    for _, w in ipairs(D.WORKLOADS) do
      local scratch = tmpdir()
      local count, err = D.count(w, scratch)
      if not count then
        print(string.format("  %s: cannot count its allocations: %s", w, err:sub(1, 400)))
        failed = failed + 1
      else
        local t0 = os.time()
        local s = D.sweep(w, D.points(count, stride), scratch, print)
        local bad = s.failed
        passed, failed = passed + s.tried - bad, failed + bad
        print(string.format("  %-10s %5d allocations, %5d points tried: %d Lua errors, %d went through (right result), " ..
          "%d spared; %d crashes, %d hangs, %d leaks, %d wrong results, %d not recovered, %d errors without a message (%d s)",
          w, count, s.tried, s.error, s.ok, s.spared, #s.crash, #s.hang, #s.leak, #s.wrong, #s.unrecovered,
          #s.nomessage, os.time() - t0))
        for _, k in ipairs({ "crash", "hang", "leak", "wrong", "unrecovered", "nomessage" }) do
          if #s[k] > 0 then print(string.format("    %s at points %s", k, table.concat(s[k], ",", 1, math.min(#s[k], 30)))) end
        end
      end
      os.execute("rm -rf " .. quote(scratch))
    end
  end
  if what == "all" or what == "io" then
    print("write failures (the previous file must stay as it was, the error must name the file):")
    for _, case in ipairs(D.CASES) do
      for _, v in ipairs(D.VARIANTS) do
        local ok, msg = D.io_case(case, v)
        if ok then passed = passed + 1 elseif ok == false then failed = failed + 1 end
        print(string.format("  %-30s %-25s %s  %s", case.name, v.name, ok and "ok  " or ok == nil and "n/a " or "FAIL",
          msg:gsub("%s+", " "):sub(1, 160)))
      end
    end
  end
  print(string.format("%d passed, %d failed", passed, failed))
  return failed == 0
end

if arg and arg[0] and arg[0]:find("driver%.lua$") then
  package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
  local build = os.getenv("COCOLA_BUILD_DIR") or "build"
  package.cpath = (build:sub(1, 1) == "/" and "" or "./") .. build .. "/?.so;" .. package.cpath
  os.exit(D.main(arg[1], tonumber(arg[2])) and 0 or 1)
end

return D
