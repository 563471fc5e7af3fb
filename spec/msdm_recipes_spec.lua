-- msdm_recipes_spec.lua — MSDM's data, training and Table 3 generation on a tiny stems dataset made here:
-- cocola.data.stem_windows in channels mode (one channel per stem type, stems of a type summed, other types
-- dropped, tracks without any skipped; deterministic and resumable), cocola.recipes.train_msdm on a tiny network
-- (a stopped and resumed run equal to the uninterrupted one; the model folder loads), and
-- cocola.recipes.msdm_generate on tasks of cocola.recipes.generation_tasks (files, lengths, picking, the given
-- stems kept by the imputation, errors).
local cocola = require "cocola"
local cjson = require "cjson"
local fs = require "cocola.data.fs"
local recipe = require "cocola.recipe"
local files = require "helpers.files"
local stems = require "helpers.stems"
local compare = require "helpers.compare"
local StemWindows = require "cocola.data.stem_windows"
local msdm = require "cocola.models.msdm"
local train_msdm = require "cocola.recipes.train_msdm"
local msdm_generate = require "cocola.recipes.msdm_generate"
local generation_tasks = require "cocola.recipes.generation_tasks"

local RATE, MSDM_RATE, LENGTH = stems.RATE, 22050, 1024
local made = {}
local function temp()
  local d = files.tmpdir()
  made[#made + 1] = d
  return d
end

-- 2 s tracks of tones whose pitch depends on track and stem. Train tracks: Bass, Drums, Piano, Guitar, Guitar,
-- Strings; train track 4: Strings only (skipped); validation and test tracks: Bass, Drums, Piano, Guitar.
local root = temp()
local FULL = { "Bass", "Drums", "Piano", "Guitar", "Guitar", "Strings" }
local FOUR = { "Bass", "Drums", "Piano", "Guitar" }
local function make_track(split, t, tags) stems.track(root, split, t, tags, { seconds = 2, wobble = true }) end
for t = 1, 3 do make_track("train", t, FULL) end
make_track("train", 4, { "Strings" })
make_track("validation", 5, FOUR)
for t = 6, 7 do make_track("test", t, FOUR) end

local silently = stems.silently
local function quiet() end

local function tracks(split) return cocola.data.open("slakh", root, split) end

local function channel_windows(opts)
  local o = { mode = "channels", length = LENGTH, sample_rate = MSDM_RATE, seed = 3, batch_size = 3 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return StemWindows.new(tracks("train"), o)
end

describe("stem_windows, channels mode", function()
  it("sums the stems of each type into its channel, drops other types, skips tracks without any", function()
    local w = channel_windows()
    assert.equal(3, #w.tracks)
    assert.equal(1, w.skipped_tracks)
    assert.same({ strings = 3 }, w.dropped)
    assert.matches("3 stems of types other than bass, drums, guitar, piano dropped %(strings 3%); 1 tracks",
      w:dropped_summary())
    local b = w:next_batch()
    assert.same({ 3, 4, LENGTH }, b.stems.shape)
    assert.is_nil(b.x)
    for i, info in ipairs(b.info) do
      local t
      for _, tr in ipairs(w.tracks) do if tr.name == info.track then t = tr end end
      local function stem(name)
        for _, s in ipairs(t.stems) do
          if s.name == name then
            return cocola.audio.load(s.path, { sr = MSDM_RATE, mono = true, offset = info.start / MSDM_RATE,
              duration = LENGTH / MSDM_RATE }):view(-1)
          end
        end
      end
      -- channels bass, drums, guitar, piano: S00, S01, S03 + S04, S02; S05 (Strings) nowhere
      assert.same({ { "S00" }, { "S01" }, { "S03", "S04" }, { "S02" } }, info.channels)
      compare.assert_close(b.stems[i][1], stem("S00"), 1e-6, "bass")
      compare.assert_close(b.stems[i][2], stem("S01"), 1e-6, "drums")
      compare.assert_close(b.stems[i][3], stem("S03") + stem("S04"), 1e-6, "guitar")
      compare.assert_close(b.stems[i][4], stem("S02"), 1e-6, "piano")
      assert.is_true(info.start >= 0 and info.start + LENGTH <= 2 * MSDM_RATE)
    end
    local again = channel_windows():next_batch()
    compare.assert_close(b.stems, again.stems, 0, "stems")
    local other = channel_windows({ seed = 4 }):next_batch()
    assert.is_false(b.info[1].start == other.info[1].start and b.info[1].track == other.info[1].track
      and b.info[2].start == other.info[2].start)
  end)

  it("resumes exactly from state(), across epochs", function()
    local w = channel_windows({ batch_size = 16 })
    local per_epoch = w:windows_per_epoch()
    for _ = 1, per_epoch // 16 + 1 do w:next_batch() end
    local s = w:state()
    assert.is_true(s.epoch >= 1)
    local next1 = w:next_batch()
    local w2 = channel_windows({ batch_size = 16 })
    w2:set_state(s)
    local next2 = w2:next_batch()
    compare.assert_close(next1.stems, next2.stems, 0, "stems")
  end)

  it("leaves the other modes alone and refuses bad channel options", function()
    assert.matches("channels is an option of mode channels", compare.raises(function()
      return StemWindows.new(tracks("train"), { channels = { "bass" } }) end))
    assert.matches("no track has a stem of the types flute", compare.raises(function()
      return channel_windows({ channels = { "flute" } }) end))
    assert.matches("length must be a positive integer", compare.raises(function() return channel_windows({ length = 0 }) end))
    local b = StemWindows.new(tracks("train"), { seconds = 0.5, seed = 3, batch_size = 2 }):next_batch()
    assert.same({ 2, 8000 }, b.x.shape)
    assert.is_nil(b.stems)
  end)
end)

-- a tiny network: total downsampling 4, windows of 1024 samples
local TINY = { "layout=slakh", "root=" .. root, "length=1024", "channels=8", "multipliers=1,2", "factors=2",
  "num_blocks=1", "attentions=0", "patch_factor=2", "attention_heads=2", "attention_features=4", "resnet_groups=4",
  "batch_size=2", "valid_batches=1", "valid_every=2", "log_every=1", "checkpoint_every=100", "threads=2" }
local function args(extra)
  local out = table.move(TINY, 1, #TINY, 1, {})
  for _, a in ipairs(extra) do out[#out + 1] = a end
  return out
end
local function train(extra)
  return silently(function() return train_msdm.run(recipe.config(train_msdm.DEFAULTS, args(extra)), quiet) end)
end
local function metrics(dir)
  local losses, valid = {}, {}
  for line in io.lines(dir .. "/metrics.jsonl") do
    local r = cjson.decode(line)
    if r.loss then losses[r.step] = r.loss end
    if r.valid_loss then valid[r.step] = r.valid_loss end
  end
  return losses, valid
end

describe("train_msdm and msdm_generate", function()
  local run_a, run_b = temp() .. "/a", temp() .. "/b"
  local logged = {}

  it("trains the tiny network; a stopped and resumed run equals the uninterrupted one", function()
    local r = silently(function()
      return train_msdm.run(recipe.config(train_msdm.DEFAULTS, args({ "out=" .. run_a, "max_steps=2" })),
        function(line) logged[#logged + 1] = line end)
    end)
    assert.equal(2, r.step)
    local text = table.concat(logged, "\n")
    assert.matches("3 stems of types other than bass, drums, guitar, piano dropped %(strings 3%)", text)
    assert.matches("model folder .*/model written", text)
    train({ "out=" .. run_b, "max_steps=1" })
    train({ "out=" .. run_b, "max_steps=2", "resume=" .. run_b .. "/last" })
    local la, va = metrics(run_a)
    local lb, vb = metrics(run_b)
    assert.equal(la[1], lb[1])
    assert.equal(la[2], lb[2])
    assert.equal(va[2], vb[2])
    assert.is_true(la[1] > 0 and la[1] == la[1])
    local wa, wb = cocola.load(run_a .. "/last/unet.safetensors"), cocola.load(run_b .. "/last/unet.safetensors")
    for k, t in pairs(wa) do compare.assert_close(t, wb[k], 0, k) end
  end)

  it("writes a model folder that from_pretrained reads back", function()
    local net, info = msdm.from_pretrained(run_a .. "/model")
    assert.same({ sample_rate = 22050, length = 1024, stems = { "bass", "drums", "guitar", "piano" } }, info.data)
    assert.equal(8, info.config.channels)
    assert.same({ 1, 2 }, info.config.multipliers)
    assert.same({ false }, info.config.attentions)
    local trained = cocola.load(run_a .. "/last/unet.safetensors")
    for k, t in pairs(net:state_dict()) do compare.assert_close(t, trained[k], 0, k) end
    local loaded = msdm.load(run_a .. "/model")
    assert.equal(4, loaded.in_channels)
  end)

  local tasks_dir = temp() .. "/tasks"
  local function make_tasks()
    if fs.is_file(tasks_dir .. "/tasks.json") then return end
    silently(function()
      generation_tasks.run(recipe.config(generation_tasks.DEFAULTS, { "layout=slakh", "root=" .. root, "split=test",
        "out=" .. tasks_dir, "n=2", "seconds=0.04" }), quiet)
    end)
  end
  local function generate(extra)
    local a = { "model=" .. run_a .. "/model", "tasks=" .. tasks_dir, "candidates=2", "batch_size=2", "steps=2",
      "threads=2" }
    for _, x in ipairs(extra) do a[#a + 1] = x end
    return silently(function() return msdm_generate.run(recipe.config(msdm_generate.DEFAULTS, a), quiet) end)
  end

  it("generates every candidate of Table 3 tasks at 16 kHz and the task's length, or keeps the largest", function()
    make_tasks()
    local manifest = cjson.decode(files.read(tasks_dir .. "/tasks.json"))
    assert.equal(2, #manifest.tasks)
    local out_all, out_pick = temp() .. "/all", temp() .. "/pick"
    local report = generate({ "out=" .. out_all })
    assert.equal(2, #report.tasks)
    for i, t in ipairs(manifest.tasks) do
      local want = cocola.audio.info(tasks_dir .. "/target/" .. t.id .. ".wav").frames
      assert.equal(640, want)
      local waves = {}
      for k = 1, 2 do
        local path = string.format("%s/%s_%d.wav", out_all, t.id, k)
        local info = cocola.audio.info(path)
        assert.equal(16000, info.rate)
        assert.equal(want, info.frames)
        waves[k] = cocola.audio.load(path):view(-1)
        assert.is_true(waves[k]:isfinite():min():item() == 1)
      end
      local r = report.tasks[i]
      assert.equal(882, r.samples) -- 0.04 s at 22.05 kHz, zero-padded to the 1024-sample window
      local types = {}
      for _, s in ipairs(t.target) do types[#types + 1] = s.tag:lower() end
      table.sort(types)
      local generated = table.move(r.generated, 1, #r.generated, 1, {})
      table.sort(generated)
      assert.same(types, generated)
      r.waves = waves
    end
    -- pick=largest_l2 keeps the candidate with the larger norm, the one eval-generation's picking takes
    local picked = generate({ "out=" .. out_pick, "pick=largest_l2" })
    local eval_generation = require "cocola.recipes.eval_generation"
    for i, t in ipairs(manifest.tasks) do
      local kept = cocola.audio.load(string.format("%s/%s.wav", out_pick, t.id)):view(-1)
      local best = report.tasks[i].largest_l2
      assert.equal(best, picked.tasks[i].largest_l2)
      compare.assert_close(kept, report.tasks[i].waves[best], 0, "picked")
      assert.is_false(fs.is_file(string.format("%s/%s_1.wav", out_pick, t.id)))
      local by_id = { [t.id] = { string.format("%s/%s_1.wav", out_all, t.id), string.format("%s/%s_2.wav", out_all, t.id) } }
      assert.equal(string.format("%s/%s_%d.wav", out_all, t.id, best), eval_generation.pick_file(by_id, t.id, "largest_l2"))
    end
    assert.is_true(fs.is_file(out_all .. "/generation.json"))
  end)

  it("keeps the given stems exactly inside the imputation", function()
    make_tasks()
    local manifest = cjson.decode(files.read(tasks_dir .. "/tasks.json"))
    local net, info = msdm.from_pretrained(run_a .. "/model")
    local track
    for _, t in ipairs(tracks("test")) do if t.name == manifest.tasks[1].track then track = t end end
    local plan = assert(msdm_generate.plan(manifest.tasks[1], info.data.stems, "silent"))
    local source, n = msdm_generate.source_of(manifest.tasks[1], track, plan, info.data)
    assert.same({ 4, 1024 }, source.shape)
    -- the padded tail is silence, the given channels hold the input stems' sum
    for _, c in ipairs(plan.given) do
      assert.equal(0, source[c]:narrow(1, n + 1, 1024 - n):abs():max():item())
      assert.is_true(source[c]:narrow(1, 1, n):abs():max():item() > 0)
    end
    local mask = {}
    for c = 1, 4 do mask[c] = false end
    for _, c in ipairs(plan.given) do mask[c] = true end
    local out = msdm.impute(net, cocola.cat({ source:unsqueeze(1), source:unsqueeze(1) }, 1), mask,
      { steps = 2, seed = 1 })
    for _, c in ipairs(plan.given) do
      for b = 1, 2 do compare.assert_close(out[b][c], source[c], 0, "given stem " .. c) end
    end
    for _, c in ipairs(plan.target) do
      assert.is_true((out[1][c] - source[c]):abs():max():item() > 0)
    end
  end)

  it("make-tasks types= draws tasks from MSDM's four stem types only, none on both sides", function()
    local function draw(extra)
      local dir = temp() .. "/typed"
      local a = { "layout=slakh", "root=" .. root, "split=train", "out=" .. dir, "n=8", "seconds=0.04" }
      for _, x in ipairs(extra) do a[#a + 1] = x end
      local lines = {}
      silently(function()
        generation_tasks.run(recipe.config(generation_tasks.DEFAULTS, a), function(l) lines[#lines + 1] = l end)
      end)
      return cjson.decode(files.read(dir .. "/tasks.json")).tasks, table.concat(lines, "\n")
    end
    local FOUR_TYPES = { bass = true, drums = true, guitar = true, piano = true }
    local function fits(t)
      local given = {}
      for _, st in ipairs(t.input) do
        if not FOUR_TYPES[st.tag:lower()] then return false end
        given[st.tag:lower()] = true
      end
      for _, st in ipairs(t.target) do
        if not FOUR_TYPES[st.tag:lower()] or given[st.tag:lower()] then return false end
      end
      for _, st in ipairs(t.random.stems) do if not FOUR_TYPES[st.tag:lower()] then return false end end
      return true
    end
    local plain = draw({})
    local misfits = 0
    for _, t in ipairs(plain) do if not fits(t) then misfits = misfits + 1 end end
    assert.is_true(misfits > 0, "without types=, some task has strings or a type on both sides")
    local typed, log = draw({ "types=Bass, drums,guitar,PIANO" })
    assert.equal(8, #typed)
    for _, t in ipairs(typed) do
      assert.is_true(fits(t), t.id .. " " .. t.prompt)
      assert.is_truthy(msdm_generate.plan(t, StemWindows.CHANNELS, "silent"), t.id)
    end
    assert.matches("types Bass, drums,guitar,PIANO: 3 of 4 tracks have two or more stems of them", log)
    assert.matches("%d+ windows passed over: a stem type on both sides", log)
    assert.matches("types must be a comma list of stem types", compare.raises(function() return draw({ "types=bass,,piano" }) end))
    assert.matches("has 0 usable tracks", compare.raises(function() return draw({ "types=vocals" }) end))
  end)

  it("names a task whose stems MSDM does not have, or skips it; refuses a folder that is not MSDM", function()
    make_tasks()
    local bad_dir = temp() .. "/bad_tasks"
    fs.mkdir_p(bad_dir)
    local manifest = cjson.decode(files.read(tasks_dir .. "/tasks.json"))
    manifest.tasks[2].target = { { name = "S09", tag = "Strings" } }
    files.write(bad_dir .. "/tasks.json", cjson.encode(manifest))
    local id = manifest.tasks[2].id
    assert.matches("task " .. id .. ": target stem type 'Strings' %(S09%) is not one of MSDM's stems bass, drums, guitar, piano",
      compare.raises(function() return generate({ "tasks=" .. bad_dir, "out=" .. temp() .. "/x" }) end))
    local out = temp() .. "/skip"
    local report = generate({ "tasks=" .. bad_dir, "out=" .. out, "missing=skip", "candidates=1" })
    assert.equal(1, #report.tasks)
    assert.equal(id, report.skipped[1].id)
    assert.is_false(fs.is_file(string.format("%s/%s_1.wav", out, id)))
    local not_msdm = temp()
    files.write(not_msdm .. "/config.json", cjson.encode({ _class_name = "AutoencoderKL" }))
    assert.matches("is not an MSDM model folder %(config.json has _class_name AutoencoderKL",
      compare.raises(function() return generate({ "model=" .. not_msdm, "out=" .. temp() .. "/y" }) end))
    assert.matches("is not an MSDM model folder %(no config.json%)",
      compare.raises(function() return msdm.from_pretrained(temp()) end))
    assert.matches("pick must be all or largest_l2", compare.raises(function() return generate({ "out=" .. temp(), "pick=best" }) end))
  end)

  it("init= starts a run from another model folder's weights, its network config over the settings", function()
    local out = temp() .. "/init"
    local logged_init = {}
    silently(function()
      return train_msdm.run(recipe.config(train_msdm.DEFAULTS, args({ "out=" .. out, "max_steps=1", "lr=0",
        "init=" .. run_a .. "/model", "channels=16", "multipliers=1,2,4", "factors=2,2", "num_blocks=1,1",
        "attentions=0,0" })), function(line) logged_init[#logged_init + 1] = line end)
    end)
    assert.matches("starts from the weights of .*/a/model", table.concat(logged_init, "\n"))
    local net, info = msdm.from_pretrained(out .. "/model")
    assert.equal(8, info.config.channels)
    local base = cocola.load(run_a .. "/model/model.safetensors")
    local n = 0
    for k, t in pairs(net:state_dict()) do compare.assert_close(t, base[k], 0, k) n = n + 1 end
    assert.is_true(n > 10)
    assert.matches("init=.*: its model is for 22050 Hz, sample_rate=16000", compare.raises(function()
      return train({ "out=" .. temp() .. "/e", "max_steps=1", "sample_rate=16000", "init=" .. run_a .. "/model" }) end))
    assert.matches("neither a model folder nor a checkpoint file", compare.raises(function()
      return train({ "out=" .. temp() .. "/f", "max_steps=1", "init=" .. temp() .. "/nothing" }) end))
  end)

  it("refuses bad network settings", function()
    assert.matches("factors has 2 entries; 2 multipliers need 1", compare.raises(function()
      return train({ "out=" .. temp() .. "/c", "factors=2,2", "max_steps=1" }) end))
    assert.matches("length=1022 is not a multiple of the network's total downsampling 4", compare.raises(function()
      return train({ "out=" .. temp() .. "/d", "length=1022", "max_steps=1" }) end))
  end)
end)

-- #cuda: training and generation with device=cuda. Only losses computed from the same weights are compared (the
-- first step; a step resumed from the other device's checkpoint); Adam's steps part the two trajectories by
-- more than rounding afterwards.
describe("train_msdm and msdm_generate on the GPU #cuda", function()
  if not cocola.cuda.is_available() then
    pending("no CUDA device")
    return
  end
  local function near(a, b, what)
    assert.is_true(math.abs(a - b) <= 1e-3 * math.abs(b), string.format("%s: GPU %.7f, CPU %.7f", what, a, b))
  end
  it("trains on the GPU as on the CPU, and resumes across devices", function()
    local cpu_dir, gpu_dir, mixed_dir = temp() .. "/cpu", temp() .. "/gpu", temp() .. "/mixed"
    train({ "out=" .. cpu_dir, "max_steps=3" })
    train({ "out=" .. gpu_dir, "max_steps=2", "device=cuda" })
    local lc, vc = metrics(cpu_dir)
    local lg, vg = metrics(gpu_dir)
    near(lg[1], lc[1], "step 1")
    assert.is_true(lg[2] > 0 and lg[2] == lg[2], "step 2 on the GPU is a loss")
    assert.is_true(vg[2] > 0 and vg[2] == vg[2], "validation on the GPU is a loss")
    for k, t in pairs(cocola.load(gpu_dir .. "/last/unet.safetensors")) do assert.equal("cpu", t:device(), k) end
    -- the CPU's first two steps, the third on the GPU from that checkpoint: the CPU's third loss
    train({ "out=" .. mixed_dir, "max_steps=2" })
    train({ "out=" .. mixed_dir, "max_steps=3", "device=cuda", "resume=" .. mixed_dir .. "/last" })
    local lm = metrics(mixed_dir)
    near(lm[3], lc[3], "step 3 resumed on the GPU")
    -- and the GPU's checkpoint goes on on the CPU
    train({ "out=" .. gpu_dir, "max_steps=3", "resume=" .. gpu_dir .. "/last" })
    local lg3 = metrics(gpu_dir)
    assert.is_true(lg3[3] > 0 and lg3[3] == lg3[3])
    -- bf16 autocast: the first loss within bf16's rounding of the float32 one
    local bf16_dir = temp() .. "/bf16"
    train({ "out=" .. bf16_dir, "max_steps=1", "device=cuda", "autocast=bf16" })
    local lb = metrics(bf16_dir)
    assert.is_true(math.abs(lb[1] - lc[1]) <= 0.05 * lc[1], string.format("bf16 step 1: %.5f, float32 %.5f", lb[1], lc[1]))
  end)

  it("generates Table 3 candidates on the GPU as on the CPU", function()
    local model_dir = temp() .. "/m"
    train({ "out=" .. model_dir, "max_steps=1" })
    local tasks = temp() .. "/tasks"
    silently(function()
      generation_tasks.run(recipe.config(generation_tasks.DEFAULTS, { "layout=slakh", "root=" .. root, "split=test",
        "out=" .. tasks, "n=1", "seconds=0.04" }), quiet)
    end)
    local function gen(out, device, autocast)
      return silently(function()
        return msdm_generate.run(recipe.config(msdm_generate.DEFAULTS, { "model=" .. model_dir .. "/model",
          "tasks=" .. tasks, "out=" .. out, "candidates=2", "batch_size=2", "steps=3", "threads=2",
          "device=" .. device, "autocast=" .. (autocast or "off") }), quiet)
      end)
    end
    local cpu_out, gpu_out = temp() .. "/cpu_gen", temp() .. "/gpu_gen"
    local rc, rg = gen(cpu_out, "cpu"), gen(gpu_out, "cuda")
    local id = rc.tasks[1].id
    assert.equal(id, rg.tasks[1].id)
    for k = 1, 2 do
      local a = cocola.audio.load(string.format("%s/%s_%d.wav", cpu_out, id, k))
      local b = cocola.audio.load(string.format("%s/%s_%d.wav", gpu_out, id, k))
      -- float files, the same host noise: only the devices' rounding, carried through 3 sampler steps
      compare.assert_close(b, a, 1e-3, "candidate " .. k)
    end
    local bf16_out = temp() .. "/bf16_gen"
    gen(bf16_out, "cuda", "bf16")
    for k = 1, 2 do
      local w = cocola.audio.load(string.format("%s/%s_%d.wav", bf16_out, id, k))
      local ref = cocola.audio.load(string.format("%s/%s_%d.wav", cpu_out, id, k))
      assert.is_true(w:isfinite():min():item() == 1, "bf16 candidate finite")
      compare.assert_close(w, ref, 0.1, "bf16 candidate " .. k)
    end
  end)
end)

teardown(function()
  for _, d in ipairs(made) do os.execute("rm -rf '" .. d .. "'") end
end)
