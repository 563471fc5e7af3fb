-- cli_spec.lua — the `cocola` command (bin/cocola) run as a user runs it, through lua5.4 in a
-- shell: `score` on two files (JSON equal to cocola.scoring.score_files' result) and on two
-- folders (CSV / JSON rows), `embed` (a safetensors file cocola.load reads back), the forwarded
-- `eval` recipe, `score --plot` (the windows' scores and the HPSS features of both sides as pictures; a
-- missing gnuplot only said on stderr), and errors: one line "cocola: <message>" on stderr, exit status
-- 1, no traceback.
local cocola = require "cocola"
local audio = require "cocola.audio"
local scoring = require "cocola.scoring"
local files = require "helpers.files"
local models = require "helpers.models"
local cjson = require "cjson"

cocola.set_num_threads(1)

local SR, WIN = 16000, 80000
local cli = require "helpers.cli"
local ROOT, ENV, read, one_line_error = cli.ROOT, cli.ENV, cli.read, cli.one_line_error
local cocola_cmd = cli.cocola

local function close(a, b, tol)
  return type(a) == "number" and type(b) == "number" and math.abs(a - b) <= (tol or 1e-5) * math.max(1, math.abs(a), math.abs(b))
end

describe("the cocola command", function()
  local tmp, model_path
  setup(function()
    tmp = files.tmpdir()
    model_path = tmp .. "/model.safetensors"
    cocola.save(model_path, models.calibrated("hpss", 3):state_dict())
    cocola.manual_seed(9)
    -- 8 s: two windows (0-5 s and the last 5 s); gen at 44.1 kHz stereo, resampled on load
    audio.save(tmp .. "/a.wav", cocola.randn({ 1, 8 * SR }) * 0.1, SR)
    audio.save(tmp .. "/b.wav", cocola.randn({ 2, 8 * 44100 }) * 0.1, 44100)
    audio.save(tmp .. "/short.wav", cocola.randn({ 1, 6 * SR }) * 0.1, SR) -- one window
    audio.save(tmp .. "/tiny.wav", cocola.randn({ 1, 2 * SR }) * 0.1, SR) -- shorter than a window
    local f = assert(io.open(tmp .. "/broken.wav", "w"))
    f:write("RIFF but not really")
    f:close()
    local fs = require "cocola.data.fs"
    fs.mkdir_p(tmp .. "/cond")
    fs.mkdir_p(tmp .. "/gen")
    audio.save(tmp .. "/cond/t1.wav", cocola.randn({ 1, WIN }) * 0.1, SR)
    audio.save(tmp .. "/gen/t1.flac", cocola.randn({ 1, WIN }) * 0.1, SR)
    audio.save(tmp .. "/cond/t2.wav", cocola.randn({ 1, WIN }) * 0.1, SR)
    audio.save(tmp .. "/gen/t2.wav", cocola.randn({ 1, WIN }) * 0.1, SR)
    audio.save(tmp .. "/cond/lonely.wav", cocola.randn({ 1, WIN }) * 0.1, SR)
  end)
  teardown(function() os.execute("rm -rf '" .. tmp .. "'") end)

  it("prints the score of two files as JSON, equal to scoring.score_files", function()
    local status, out, err = cocola_cmd(string.format("score --model '%s' --cond '%s/a.wav' --gen '%s/b.wav' --json --threads 1",
      model_path, tmp, tmp), tmp)
    assert.are.equal(0, status, err)
    local got = cjson.decode(out)
    local model = require("cocola.models.cocola").from_checkpoint(model_path)
    local want = scoring.score_files(model, tmp .. "/a.wav", tmp .. "/b.wav")
    assert.are.equal(2, #want.windows)
    assert.are.equal("both", got.mode)
    assert.are.equal(tmp .. "/a.wav", got.cond)
    assert.is_true(close(got.mean, want.mean), string.format("%s vs %s", tostring(got.mean), tostring(want.mean)))
    for _, mode in ipairs { "both", "harmonic", "percussive" } do
      assert.is_true(close(got[mode].mean, want[mode].mean), mode)
      assert.are.equal(#want[mode].windows, #got[mode].windows)
      for k, w in ipairs(want[mode].windows) do
        assert.is_true(close(got[mode].windows[k].score, w.score), mode .. " window " .. k)
        assert.are.equal(w.start, got[mode].windows[k].start)
      end
    end
    assert.is_true(close(got.duration, want.duration))
  end)

  it("prints a table by default, per window on request", function()
    local status, out, err = cocola_cmd(string.format(
      "score -m '%s' -c '%s/a.wav' -g '%s/b.wav' --per-window --no-variants --mode harmonic --threads 1", model_path, tmp, tmp), tmp)
    assert.are.equal(0, status, err)
    assert.truthy(out:find("score (harmonic)", 1, true), out)
    assert.truthy(out:match("\n1%s+0%.00%s+5%.00%s+%-?%d+%.%d+\n2%s+3%.00%s+5%.00%s+%-?%d+%.%d+\n"), out)
  end)

  it("draws the windows' scores and both sides' features with --plot; without gnuplot it says so and goes on", function()
    local png = require "helpers.png"
    local status, out, err = cocola_cmd(string.format(
      "score -m '%s' -c '%s/a.wav' -g '%s/b.wav' --plot '%s/pair.png' -q --threads 1", model_path, tmp, tmp, tmp), tmp)
    assert.are.equal(0, status, err)
    assert.truthy(out:find("harmonic", 1, true), out)
    if os.execute("command -v gnuplot >/dev/null 2>&1") then
      local img = png.read(tmp .. "/pair.png")
      assert.are.same({ 800, 500 }, { img.width, img.height })
      img = png.read(tmp .. "/pair-features.png")
      assert.are.same({ 1200, 800 }, { img.width, img.height })
      assert.are.equal("", err)
    end
    status, out, err = cocola_cmd(string.format(
      "score -m '%s' -c '%s/a.wav' -g '%s/b.wav' --plot '%s/none.png' -q --threads 1", model_path, tmp, tmp, tmp), tmp,
      "COCOLA_GNUPLOT=/nonexistent/gnuplot")
    assert.are.equal(0, status, err)
    assert.truthy(out:find("score", 1, true), out)
    assert.truthy(err:match("^cocola: plots skipped: [^\n]*gnuplot not found[^\n]*\n$"), err)
    assert.is_nil(read(tmp .. "/none.png"))
    status, _, err = cocola_cmd(string.format("score -m '%s' -c '%s/cond' -g '%s/gen' --plot '%s/x.png'", model_path, tmp, tmp, tmp), tmp)
    one_line_error(status, err, "--plot draws one pair: give two files")
  end)

  it("scores folders matched by name into CSV and JSON files", function()
    local status, out, err = cocola_cmd(string.format(
      "score --model '%s' --cond '%s/cond' --gen '%s/gen' --csv '%s/out.csv' --json '%s/out.json' --quiet --threads 1",
      model_path, tmp, tmp, tmp, tmp), tmp)
    assert.are.equal(0, status, err)
    assert.truthy(out:find("unmatched in " .. tmp .. "/cond (1): lonely.wav", 1, true), out)
    local lines = {}
    for l in read(tmp .. "/out.csv"):gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(3, #lines)
    assert.are.equal("name,cond,gen,score,harmonic,percussive,windows,duration", lines[1])
    local j = cjson.decode(read(tmp .. "/out.json"))
    assert.are.equal(2, #j.rows)
    assert.are.same({ "lonely.wav" }, j.unmatched.cond)
    assert.are.same({}, j.unmatched.gen)
    for i, name in ipairs { "t1", "t2" } do
      local row = j.rows[i]
      assert.are.equal(name, row.name)
      local fields = {}
      for v in (lines[i + 1] .. ","):gmatch("([^,]*),") do fields[#fields + 1] = v end
      assert.are.equal(name, fields[1])
      assert.are.equal(row.gen, fields[3])
      assert.is_true(close(tonumber(fields[4]), row.score, 1e-8))
      assert.is_true(close(tonumber(fields[5]), row.harmonic, 1e-8))
      assert.is_true(close(tonumber(fields[6]), row.percussive, 1e-8))
      assert.are.equal("1", fields[7])
    end
    assert.are.equal(tmp .. "/gen/t1.flac", j.rows[1].gen)
    assert.is_true(close(j.mean, (j.rows[1].score + j.rows[2].score) / 2))
  end)

  it("writes window embeddings to safetensors", function()
    local out_path = tmp .. "/emb.safetensors"
    local status, out, err = cocola_cmd(string.format("embed --model '%s' --out '%s' --quiet --threads 1 '%s/a.wav' '%s/short.wav'",
      model_path, out_path, tmp, tmp), tmp)
    assert.are.equal(0, status, err)
    assert.truthy(out:find("2 files, 3 windows, 512 dims", 1, true), out)
    local t, meta = cocola.load(out_path)
    assert.are.same({ 2, 512 }, t.mean.shape)
    assert.are.same({ 3, 512 }, t.windows.shape)
    assert.are.same({ 0, 0, 1 }, t.window_file:totable())
    assert.are.same({ 0, 3, 0 }, t.window_start:totable())
    assert.are.same({ tmp .. "/a.wav", tmp .. "/short.wav" }, cjson.decode(meta.files))
    assert.are.equal("hpss", meta.input)
    assert.is_true(t.mean:select(1, 1):allclose(t.windows:narrow(1, 1, 2):mean(1), 1e-5, 1e-6))
  end)

  it("reports a missing model, unreadable audio and a length mismatch in one line, status 1", function()
    local status, _, err = cocola_cmd(string.format("score --model '%s/nope.safetensors' --cond '%s/a.wav' --gen '%s/b.wav'", tmp, tmp, tmp), tmp)
    one_line_error(status, err, tmp .. "/nope.safetensors")
    status, _, err = cocola_cmd(string.format("score --model '%s' --cond '%s/broken.wav' --gen '%s/b.wav'", model_path, tmp, tmp), tmp)
    one_line_error(status, err, "cannot read audio file '" .. tmp .. "/broken.wav'")
    status, _, err = cocola_cmd(string.format("score --model '%s' --cond '%s/a.wav' --gen '%s/short.wav'", model_path, tmp, tmp), tmp)
    one_line_error(status, err, "length mismatch")
    status, _, err = cocola_cmd(string.format("score --model '%s' --cond '%s/tiny.wav' --gen '%s/tiny.wav'", model_path, tmp, tmp), tmp)
    one_line_error(status, err, tmp .. "/tiny.wav': audio too short: 2.000 s")
    status, _, err = cocola_cmd(string.format("embed --model '%s' --out '%s/e.safetensors' '%s/tiny.wav'", model_path, tmp, tmp), tmp)
    one_line_error(status, err, tmp .. "/tiny.wav': audio too short: 2.000 s")
    status, _, err = cocola_cmd(string.format("score --model '%s' --cond '%s/missing.wav' --gen '%s/b.wav'", model_path, tmp, tmp), tmp)
    one_line_error(status, err, tmp .. "/missing.wav")
    status, _, err = cocola_cmd(string.format("score --model '%s' --cond '%s/cond' --gen '%s/b.wav'", model_path, tmp, tmp), tmp)
    one_line_error(status, err, "both be files or both be folders")
    status, _, err = cocola_cmd(string.format("score --model '%s' --cond '%s/a.wav' --gen '%s/b.wav' --hop x", model_path, tmp, tmp), tmp)
    one_line_error(status, err, "--hop")
    status, _, err = cocola_cmd(string.format("score --model '%s/a.wav' --cond '%s/a.wav' --gen '%s/b.wav'", tmp, tmp, tmp), tmp)
    one_line_error(status, err, "cannot load model '" .. tmp .. "/a.wav'")
  end)

  it("leaves usage errors to argparse (status not 0)", function()
    local status, _, err = cocola_cmd("score --cond x.wav", tmp)
    assert.are_not.equal(0, status)
    assert.truthy(err:find("missing option '--gen'", 1, true), err)
    status, _, err = cocola_cmd("frobnicate", tmp)
    assert.are_not.equal(0, status)
    assert.truthy(err:find("Usage", 1, true), err)
    status, _, err = cocola_cmd("score --cond a --gen b --mode sideways", tmp)
    assert.are_not.equal(0, status)
  end)

  it("explains a missing --model when no bundled model is available", function()
    -- COCOLA_MODEL pointing nowhere stands for an installation without the bundled model
    local status, _, err = cocola_cmd(string.format("score --cond '%s/a.wav' --gen '%s/b.wav'", tmp, tmp), tmp,
      "COCOLA_MODEL=/nonexistent/bundled.safetensors")
    one_line_error(status, err, "no --model given and no bundled model available")
  end)

  it("forwards eval to cocola.recipes.eval (a bad setting is its error, status 1)", function()
    local found = package.searchpath("cocola.recipes.eval", package.path)
    if not found then
      pending("cocola.recipes.eval is not there yet")
      return
    end
    local status, _, err = cocola_cmd("eval no_such_setting=1", tmp)
    assert.are.equal(1, status, err)
    assert.truthy(err:find("no_such_setting", 1, true), err)
    assert.is_nil(err:find("traceback", 1, true), err)
  end)

  it("lists every train and eval setting with its default and meaning (--help)", function()
    for _, c in ipairs { { "train", "cocola.recipes.train" }, { "eval", "cocola.recipes.eval" } } do
      local status, out, err = cocola_cmd(c[1] .. " --help", tmp)
      assert.are.equal(0, status, err)
      local m = require(c[2])
      for key, default in pairs(m.DEFAULTS) do
        local shown = (default == "" and '""' or tostring(default)):gsub("%p", "%%%0")
        assert.truthy(out:find("\n  " .. key .. "=" .. shown .. " +%S"), c[1] .. " --help lacks " .. key .. ":\n" .. out)
      end
    end
    local p = io.popen(string.format("cd '%s' && %s lua5.4 recipes/train_cocola.lua --help 2>&1", ROOT, ENV))
    local out = p:read("a")
    p:close()
    assert.truthy(out:find("\n  lr=0.001 +Adam learning rate"), out)
  end)

  it("gives recipe errors as one line, without code paths, and writes nothing", function()
    local status, _, err = cocola_cmd(string.format("train root='%s/no_data' out='%s/run_x'", tmp, tmp), tmp)
    one_line_error(status, err, "the data folder '" .. tmp .. "/no_data' does not exist")
    assert.is_nil(err:find("%.lua:%d+:"), err)
    assert.is_nil(io.open(tmp .. "/run_x/config.jsonl"))
    status, _, err = cocola_cmd("eval models=default datasets=slakh:" .. tmp .. "/no_data out=/proc/no/such", tmp)
    one_line_error(status, err, "out: cannot create the folder '/proc/no/such'")
  end)

  it("takes a training run's folder as --model (its best model, said on stderr)", function()
    local fs = require "cocola.data.fs"
    fs.mkdir_p(tmp .. "/run/last")
    local f = assert(io.open(model_path, "rb"))
    local bytes = f:read("a")
    f:close()
    for _, name in ipairs { "/run/best.safetensors", "/run/last/model.safetensors" } do
      f = assert(io.open(tmp .. name, "wb"))
      f:write(bytes)
      f:close()
    end
    local status, out, err = cocola_cmd(string.format("score --model '%s/run' --cond '%s/a.wav' --gen '%s/b.wav' --json --threads 1",
      tmp, tmp, tmp), tmp)
    assert.are.equal(0, status, err)
    assert.truthy(err:find("cocola: using " .. tmp .. "/run/best.safetensors (the run's best validation model)", 1, true), err)
    local want = scoring.score_files(require("cocola.models.cocola").from_checkpoint(model_path), tmp .. "/a.wav", tmp .. "/b.wav")
    assert.is_true(close(cjson.decode(out).mean, want.mean))
    os.remove(tmp .. "/run/best.safetensors")
    status, _, err = cocola_cmd(string.format("score --model '%s/run' --cond '%s/a.wav' --gen '%s/b.wav' --threads 1", tmp, tmp, tmp), tmp)
    assert.are.equal(0, status, err)
    assert.truthy(err:find("run/last/model.safetensors (the run's last checkpoint", 1, true), err)
    status, _, err = cocola_cmd(string.format("score --model '%s/cond' --cond '%s/a.wav' --gen '%s/b.wav'", tmp, tmp, tmp), tmp)
    one_line_error(status, err, "is a folder without a model")
  end)

  it("fails --keep-going when no pair could be scored", function()
    local fs = require "cocola.data.fs"
    fs.mkdir_p(tmp .. "/kc")
    fs.mkdir_p(tmp .. "/kg")
    audio.save(tmp .. "/kc/p.wav", cocola.randn({ 1, WIN }) * 0.1, SR)
    audio.save(tmp .. "/kg/p.wav", cocola.randn({ 1, 2 * WIN }) * 0.1, SR) -- a length mismatch
    local status, out, err = cocola_cmd(string.format("score --model '%s' --cond '%s/kc' --gen '%s/kg' --keep-going --quiet",
      model_path, tmp, tmp), tmp)
    one_line_error(status, err, "no pair was scored: 1 failed (first: p: length mismatch")
    assert.truthy(out:find("failed: p:", 1, true), out)
  end)

  it("draws progress as plain lines when stderr is not a terminal, never glued to an error", function()
    local status, _, err = cocola_cmd(string.format("embed --model '%s' --out '%s/e2.safetensors' --threads 1 '%s/a.wav' '%s/short.wav' '%s/tiny.wav'",
      model_path, tmp, tmp, tmp, tmp), tmp)
    assert.are.equal(1, status)
    assert.is_nil(err:find("\r", 1, true), err)
    local last = err:match("([^\n]*)\n$")
    assert.truthy(last:find("^cocola: "), err)
    assert.truthy(err:find("^embedding %d/3"), err)
  end)

  it("runs from a checkout without LUA_PATH, from another directory", function()
    local p = io.popen(string.format("cd /tmp && env -u LUA_PATH -u LUA_CPATH lua5.4 '%s/bin/cocola' --version 2>&1", ROOT))
    local out = p:read("a")
    local _, _, status = p:close()
    assert.are.equal(0, status, out)
    assert.are.equal("cocola " .. cocola.version .. "\n", out)
  end)
end)
