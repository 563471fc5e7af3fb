-- componet_training_spec.lua — CompoNet's data and trainers on a tiny stems dataset made here:
-- cocola.data.stem_windows (the released code's windows, subsets and prompts; deterministic and resumable),
-- the TagEncoder text side and the pipeline's use of it, cocola.recipes.train_ldm (phase 1: VAE, then U-Net
-- with the tag encoder) and cocola.recipes.train_componet (phase 2: the ControlNet on the frozen model):
-- model folders that load, frozen parts unchanged, a stopped and resumed run equal to the uninterrupted one;
-- cocola.recipes.accompany (generation from files and task folders) and its errors; the curves a run draws
-- into <out>/plots/.
local cocola = require "cocola"
local fs = require "cocola.data.fs"
local recipe = require "cocola.recipe"
local files = require "helpers.files"
local compare = require "helpers.compare"
local stems = require "helpers.stems"
local StemWindows = require "cocola.data.stem_windows"
local TagEncoder = require "cocola.models.audioldm2.tag_encoder"
local Pipeline = require "cocola.models.audioldm2.pipeline"
local AutoencoderKL = require "cocola.models.audioldm2.autoencoder_kl"
local train_ldm = require "cocola.recipes.train_ldm"
local train_componet = require "cocola.recipes.train_componet"
local accompany = require "cocola.recipes.accompany"

local RATE = stems.RATE
local TAGS = { "Bass", "Drums", "Piano", "Guitar" }
local made = {}
local function temp()
  local d = files.tmpdir()
  made[#made + 1] = d
  return d
end

-- tracks of 4 stems, 6 s: tones whose pitch depends on track and stem, stem 4 of track 1 silent
local root = temp()
local function stem_wave(t, s) return stems.wave(t, s, 6, true) end
local function make_track(split, t)
  stems.track(root, split, t, TAGS, { seconds = 6, wobble = true, silent = t == 1 and { [4] = true } or nil })
end
for t = 1, 3 do make_track("train", t) end
for t = 4, 5 do make_track("validation", t) end
for t = 6, 7 do make_track("test", t) end

local silently = stems.silently
local function quiet() end

local function tracks(split) return cocola.data.open("slakh", root, split) end

-- tiny model settings for both phases (2.55 s windows: 256 mel frames)
local TINY = { "layout=slakh", "root=" .. root, "seconds=2.55", "vae_seconds=0.95", "vae_channels=4,8,8",
  "vae_groups=4", "latent_channels=4", "unet_channels=8,16,16", "unet_groups=4", "heads=2", "text_dim=8", "tag_dim=8",
  "batch_size=2", "valid_batches=1", "valid_every=2", "log_every=1", "checkpoint_every=100", "scale_batches=1",
  "threads=2", "griffin_lim_iters=4", "plots=false" }

local function args(extra)
  local out = table.move(TINY, 1, #TINY, 1, {})
  for _, a in ipairs(extra) do out[#out + 1] = a end
  return out
end

local function metrics(dir)
  local losses, valid = {}, {}
  for line in io.lines(dir .. "/metrics.jsonl") do
    local r = require("cjson").decode(line)
    if r.loss then losses[r.step] = r.loss end
    if r.valid_loss then valid[r.step] = r.valid_loss end
  end
  return losses, valid
end

local function assert_same_state(a, b, tol)
  for k, t in pairs(a) do
    assert.is_not_nil(b[k], k)
    compare.assert_close(t, b[k], tol, k)
  end
end

describe("cocola.data.stem_windows", function()
  it("draws the released code's examples: sub-mixes of active stems and their prompts, the same for a seed", function()
    local w = StemWindows.new(tracks("train"), { seconds = 2.0, seed = 3, batch_size = 3 })
    local b = w:next_batch()
    assert.same({ 3, 32000 }, b.x.shape)
    assert.same({ 3, 32000 }, b.y.shape)
    for i, info in ipairs(b.info) do
      -- x is the sum of the output stems' windows, y of the input stems'
      local t
      for _, tr in ipairs(w.tracks) do if tr.name == info.track then t = tr end end
      local function sum(names)
        local s
        for _, n in ipairs(names) do
          for _, stem in ipairs(t.stems) do
            if stem.name == n then
              local x = cocola.audio.load(stem.path, { offset = info.start / RATE, duration = 2.0 }):view(-1)
              s = s and s + x or x
            end
          end
        end
        return s
      end
      compare.assert_close(b.x[i], sum(info.output), 1e-6, "x")
      compare.assert_close(b.y[i], sum(info.input), 1e-6, "y")
      assert.matches("^in: [%w_, ]+; out: [%w_, ]+$", b.z[i])
      assert.is_true(#info.input >= 1 and #info.output >= 1)
      -- the silent stem (track 1, S03) is never drawn
      for _, n in ipairs(info.input) do assert.is_false(info.track == "Track00001" and n == "S03") end
      for _, n in ipairs(info.output) do assert.is_false(info.track == "Track00001" and n == "S03") end
      -- windows start on the shifted grid inside the track
      assert.is_true(info.start >= 0 and info.start + 32000 <= 6 * RATE)
    end
    local again = StemWindows.new(tracks("train"), { seconds = 2.0, seed = 3, batch_size = 3 }):next_batch()
    assert.same(b.z, again.z)
    compare.assert_close(b.x, again.x, 0, "x")
    local other = StemWindows.new(tracks("train"), { seconds = 2.0, seed = 4, batch_size = 3 }):next_batch()
    assert.is_false(table.concat(b.z, "|") == table.concat(other.z, "|") and b.info[1].start == other.info[1].start)
  end)

  it("resumes exactly from state(), across epochs", function()
    local w = StemWindows.new(tracks("train"), { seconds = 2.0, seed = 1, batch_size = 2 })
    local per_epoch = w:windows_per_epoch()
    for _ = 1, per_epoch do w:next_batch() end -- past the first epoch
    local s = w:state()
    assert.is_true(s.epoch >= 1)
    local next1 = w:next_batch()
    local w2 = StemWindows.new(tracks("train"), { seconds = 2.0, seed = 1, batch_size = 2 })
    w2:set_state(s)
    local next2 = w2:next_batch()
    assert.same(next1.z, next2.z)
    compare.assert_close(next1.x, next2.x, 0, "x")
  end)

  it("mixture mode gives one sub-mix with an out: prompt; disjoint subsets do not overlap", function()
    local m = StemWindows.new(tracks("train"), { seconds = 2.0, mode = "mixture", batch_size = 4 }):next_batch()
    assert.is_nil(m.y)
    for _, z in ipairs(m.z) do assert.matches("^out: [%w_, ]+$", z) end
    local d = StemWindows.new(tracks("train"), { seconds = 2.0, subsets = "disjoint", batch_size = 6 }):next_batch()
    for _, info in ipairs(d.info) do
      local seen = {}
      for _, n in ipairs(info.input) do seen[n] = true end
      for _, n in ipairs(info.output) do assert.is_nil(seen[n]) end
    end
    assert.equal("in: bass_1, guitar_1, guitar_2; out: drums_1",
      StemWindows.prompt({ { tag = "Bass" }, { tag = "Guitar" }, { tag = "Guitar" } }, { { tag = "Drums" } }))
    assert.equal("genre: pop; out: other_keys_1", StemWindows.prompt(nil, { { tag = "Other Keys" } }, "Pop"))
  end)

  it("gives the same batches with stems decoded ahead on loader threads as without, across epochs and resumes", function()
    for _, mode in ipairs({ "componet", "mixture" }) do
      local plain = StemWindows.new(tracks("train"), { seconds = 2.0, seed = 5, batch_size = 3, mode = mode, loaders = 0 })
      local ahead = StemWindows.new(tracks("train"), { seconds = 2.0, seed = 5, batch_size = 3, mode = mode, loaders = 3 })
      assert.is_false(plain.prefetch)
      assert.is_true(ahead.prefetch)
      local n = plain:windows_per_epoch() + 2 -- into the second epoch
      for i = 1, n do
        if i == 3 then
          plain:set_state({ epoch = 0, position = 1 })
          ahead:set_state({ epoch = 0, position = 1 })
        end
        local a, b = plain:next_batch(), ahead:next_batch()
        assert.same(a.z, b.z)
        compare.assert_close(a.x, b.x, 0, mode .. " x, batch " .. i)
        if a.y then compare.assert_close(a.y, b.y, 0, mode .. " y, batch " .. i) end
      end
      assert.is_true(ahead.epoch >= 1)
    end
    assert.matches("loaders must be an integer", compare.raises(function() return StemWindows.new(tracks("train"), { loaders = -1 }) end))
  end)

  it("refuses bad options and tracks shorter than the window", function()
    assert.matches("unknown option 'window'", compare.raises(function() return StemWindows.new(tracks("train"), { window = 2 }) end))
    assert.matches("mode must be componet or mixture", compare.raises(function() return StemWindows.new(tracks("train"), { mode = "x" }) end))
    assert.matches("no track is at least 10.00 s long", compare.raises(function() return StemWindows.new(tracks("train"), { seconds = 10 }) end))
  end)
end)

describe("TagEncoder", function()
  local words = TagEncoder.vocabulary({ "bass", "drums", "piano" }, { genres = { "pop" } })
  local enc = TagEncoder({ words = words, max_length = 12, embedding_dim = 8, output_dims = { 6, 10 } })

  it("embeds the words of a prompt into the U-Net's two text streams", function()
    local out = enc({ "in: bass_1, drums_1; out: piano_1", "out: piano_2" })
    assert.same({ 2, 12, 6 }, out.encoder_hidden_states.shape)
    assert.same({ 2, 12, 10 }, out.encoder_hidden_states_1.shape)
    assert.same({ 2, 12 }, out.encoder_attention_mask_1.shape)
    assert.same({ 1, 5, 9, 4, 2, 13 }, enc:tokenize("in: bass_1, drums_1; out: piano_1"))
    -- a prompt's rows do not depend on the batch
    local alone = enc({ "out: piano_2" })
    compare.assert_close(out.encoder_hidden_states[2], alone.encoder_hidden_states[1], 1e-6, "row")
  end)

  it("names unknown stem tags; cuts over-long prompts at max_length words, as tokenizers truncate", function()
    assert.matches("unknown word 'kazoo_1'.*known stem tags: bass, drums, piano", compare.raises(function() return enc:tokenize(
      "in: kazoo_1; out: bass_1") end))
    local long = "in: bass_1, drums_1, piano_1, bass_2, drums_2, piano_2; out: bass_1, drums_1, piano_1"
    local ids = enc:tokenize(long)
    assert.equal(12, #ids)
    assert.same(enc:tokenize("in: bass_1, drums_1, piano_1, bass_2, drums_2, piano_2; out: bass_1, drums_1, piano_1"), ids)
    assert.same(enc:tokenize("in: bass_1, drums_1, piano_1, bass_2, drums_2, piano_2; out: bass_1, drums_1, piano_1 drums_2"), ids)
    local rows = enc({ long }).encoder_hidden_states
    assert.same({ 1, 12, 6 }, rows.shape)
  end)
end)

describe("train_ldm, train_componet and accompany", function()
  local vae_run, ldm_a, ldm_b, cn_a, cn_b = temp() .. "/vae", temp() .. "/ldm_a", temp() .. "/ldm_b", temp() .. "/cn_a",
    temp() .. "/cn_b"

  local function ldm(extra) return silently(function() return train_ldm.run(recipe.config(train_ldm.DEFAULTS, args(extra)), quiet) end) end
  local function cn(extra)
    local a = { "layout=slakh", "root=" .. root, "seconds=2.55", "batch_size=2", "valid_batches=1", "valid_every=2",
      "log_every=1", "checkpoint_every=100", "plots=false" }
    for _, x in ipairs(extra) do a[#a + 1] = x end
    return silently(function() return train_componet.run(recipe.config(train_componet.DEFAULTS, a), quiet) end)
  end

  it("stage vae writes a VAE folder with its scaling factor", function()
    local r = ldm({ "stage=vae", "out=" .. vae_run, "max_steps=2", "plots=true" })
    assert.equal(2, r.step)
    -- the run's curves (plots=true, the default; the other runs here have plots=false)
    if os.execute("command -v gnuplot >/dev/null 2>&1") then
      local img = require("helpers.png").read(vae_run .. "/plots/metrics-loss.png")
      assert.are.same({ 800, 500 }, { img.width, img.height })
    end
    local vae = AutoencoderKL.from_pretrained(vae_run .. "/model")
    assert.is_true(vae.scaling_factor > 0 and vae.scaling_factor < math.huge)
    assert.equal(4, vae.latent_channels)
  end)

  it("stage unet: a stopped and resumed run equals the uninterrupted one; the model folder loads", function()
    ldm({ "stage=unet", "vae=" .. vae_run .. "/model", "out=" .. ldm_a, "max_steps=4" })
    ldm({ "stage=unet", "vae=" .. vae_run .. "/model", "out=" .. ldm_b, "max_steps=2" })
    ldm({ "resume=" .. ldm_b .. "/last", "max_steps=4" })
    local la, va = metrics(ldm_a)
    local lb, vb = metrics(ldm_b)
    for step = 1, 4 do
      assert.is_not_nil(la[step])
      assert.is_true(math.abs(la[step] - lb[step]) <= 1e-6 * math.max(1, math.abs(la[step])), "step " .. step)
    end
    assert.is_true(math.abs(va[4] - vb[4]) <= 1e-6 * math.max(1, va[4]))
    assert_same_state(cocola.load(ldm_a .. "/model/unet/diffusion_pytorch_model.safetensors"),
      cocola.load(ldm_b .. "/model/unet/diffusion_pytorch_model.safetensors"), 1e-6)
    local pipe = Pipeline.from_pretrained(ldm_a .. "/model")
    assert.is_not_nil(pipe.tag_encoder)
    assert.equal("GriffinLim", pipe.vocoder:type_name())
    -- guidance: the negative (empty) prompts' rows come first
    local e, _, g = pipe:encode_prompt({ "out: bass_1" }, { guidance_scale = 2 })
    assert.same(2, e:size(1))
    local empty = pipe.tag_encoder({ "" })
    compare.assert_close(g[1], empty.encoder_hidden_states[1], 1e-6, "negative row")
  end)

  it("train_componet trains only the ControlNet, resumes exactly and writes a CompoNet folder", function()
    local model = ldm_a .. "/model"
    cn({ "model=" .. model, "out=" .. cn_a, "max_steps=4" })
    cn({ "model=" .. model, "out=" .. cn_b, "max_steps=2" })
    cn({ "resume=" .. cn_b .. "/last", "max_steps=4" })
    local la = metrics(cn_a)
    local lb = metrics(cn_b)
    for step = 1, 4 do
      assert.is_true(math.abs(la[step] - lb[step]) <= 1e-6 * math.max(1, math.abs(la[step])), "step " .. step)
    end
    assert_same_state(cocola.load(cn_a .. "/model/controlnet/diffusion_pytorch_model.safetensors"),
      cocola.load(cn_b .. "/model/controlnet/diffusion_pytorch_model.safetensors"), 1e-6)
    -- the frozen U-Net is the base model's; the ControlNet moved from its copy of the U-Net
    local pipe = Pipeline.from_pretrained(cn_a .. "/model")
    assert.is_not_nil(pipe.controlnet)
    assert_same_state(cocola.load(model .. "/unet/diffusion_pytorch_model.safetensors"), pipe.unet:state_dict(), 0)
    local moved = (pipe.controlnet.controlnet_mid_block.weight):abs():max():item()
    assert.is_true(moved > 0, "the zero convs trained")
  end)

  it("init= starts a run from another model folder's weights (U-Net and tag encoder; ControlNet)", function()
    local base = ldm_a .. "/model"
    local out = temp() .. "/ldm_init"
    ldm({ "stage=unet", "vae=" .. base, "init=" .. base, "out=" .. out, "max_steps=1", "lr=0" })
    -- lr 0: one AdamW step leaves the weights (weight decay scales with lr), so the model folder equals init's
    assert_same_state(cocola.load(base .. "/unet/diffusion_pytorch_model.safetensors"),
      cocola.load(out .. "/model/unet/diffusion_pytorch_model.safetensors"), 0)
    assert_same_state(cocola.load(base .. "/tag_encoder/diffusion_pytorch_model.safetensors"),
      cocola.load(out .. "/model/tag_encoder/diffusion_pytorch_model.safetensors"), 0)
    local cn_init = temp() .. "/cn_init"
    cn({ "model=" .. base, "init=" .. cn_a .. "/model", "out=" .. cn_init, "max_steps=1", "lr=0" })
    assert_same_state(cocola.load(cn_a .. "/model/controlnet/diffusion_pytorch_model.safetensors"),
      cocola.load(cn_init .. "/model/controlnet/diffusion_pytorch_model.safetensors"), 0)
    assert.matches("init=.* has no controlnet/", compare.raises(function()
      return cn({ "model=" .. base, "init=" .. base, "out=" .. temp() .. "/cn_bad", "max_steps=1" }) end))
    assert.matches("init= is a setting of stage=unet", compare.raises(function()
      return ldm({ "stage=vae", "init=" .. base, "out=" .. temp() .. "/vae_bad", "max_steps=1" }) end))
  end)

  it("variant attentions also trains the U-Net's transformer blocks, and nothing else of it", function()
    local out = temp() .. "/att"
    cn({ "model=" .. ldm_a .. "/model", "out=" .. out, "max_steps=1", "variant=attentions" })
    local before = cocola.load(ldm_a .. "/model/unet/diffusion_pytorch_model.safetensors")
    local after = cocola.load(out .. "/model/unet/diffusion_pytorch_model.safetensors")
    local changed, attention_changed = 0, 0
    for k, t in pairs(before) do
      if (t - after[k]):abs():max():item() > 0 then
        changed = changed + 1
        assert.matches("attentions%.", k)
        attention_changed = attention_changed + 1
      end
    end
    assert.is_true(attention_changed > 0)
  end)

  it("accompany generates from a file and from a task folder, the same for a seed", function()
    local cond = temp() .. "/cond.wav"
    local mix = stem_wave(6, 1) + stem_wave(6, 2)
    cocola.audio.save(cond, mix:narrow(2, 1, 3 * RATE), RATE, { subtype = "float" })
    local out1, out2 = temp() .. "/a.wav", temp() .. "/b.wav"
    local function run(out, extra)
      local a = { "model=" .. cn_a .. "/model", "cond=" .. cond, "inputs=bass,drums", "outputs=piano", "out=" .. out,
        "seconds=2.55", "steps=2", "seed=5" }
      for _, x in ipairs(extra or {}) do a[#a + 1] = x end
      return silently(function() return accompany.run(recipe.config(accompany.DEFAULTS, a), quiet) end)
    end
    run(out1)
    run(out2)
    local a, rate = cocola.audio.load(out1)
    assert.equal(RATE, rate)
    assert.equal(40800, a:size(2))
    assert.is_true(a:abs():max():item() < math.huge)
    compare.assert_close(a, (cocola.audio.load(out2)), 0, "same seed")
    -- the released prompt verbatim: the same accompaniment; with inputs= too, or malformed, an error
    local function run_prompt(prompt, out)
      return silently(function() return accompany.run(recipe.config(accompany.DEFAULTS, { "model=" .. cn_a .. "/model",
        "cond=" .. cond, "prompt=" .. prompt, "out=" .. out, "seconds=2.55", "steps=2", "seed=5" }), quiet) end)
    end
    local out3 = temp() .. "/c.wav"
    run_prompt("in: bass_1, drums_1; out: piano_1", out3)
    compare.assert_close(a, (cocola.audio.load(out3)), 0, "prompt= as inputs=/outputs=")
    assert.matches("give prompt= or inputs=/outputs=/genre=, not both",
      compare.raises(function() return run(out2, { "prompt=in: bass_1; out: piano_1" }) end))
    assert.matches("is not a CompoNet prompt", compare.raises(function() return run_prompt("bass and piano", out3) end))
    run(out2, { "guidance=2.5" })
    assert.is_true((a - (cocola.audio.load(out2))):abs():max():item() > 0)
    -- a Table 3 task folder: one <task id>.wav per task
    local tasks_dir, gen_dir = temp() .. "/tasks", temp() .. "/gen"
    local tasks_recipe = require "cocola.recipes.generation_tasks"
    local tcfg = {}
    for k, v in pairs(tasks_recipe.DEFAULTS) do tcfg[k] = v end
    tcfg.root, tcfg.out, tcfg.n, tcfg.seconds = root, tasks_dir, 2, 2.56
    local manifest = tasks_recipe.run(tcfg, quiet)
    silently(function() return accompany.run(recipe.config(accompany.DEFAULTS, { "model=" .. cn_a .. "/model",
      "tasks=" .. tasks_dir, "out=" .. gen_dir, "seconds=2.55", "steps=1", "batch_size=2" }), quiet) end)
    for _, t in ipairs(manifest.tasks) do
      assert.equal(40800, (cocola.audio.load(gen_dir .. "/" .. t.id .. ".wav")):size(2))
    end
    -- bad input
    assert.matches("shorter than the window of 4.00 s", compare.raises(function() return run(out2, { "seconds=4" }) end))
    assert.matches("unknown word 'kazoo_1'", compare.raises(function() return run(out2, { "inputs=kazoo" }) end))
    assert.matches("outputs= is empty", compare.raises(function() return run(out2, { "outputs=" }) end))
    assert.matches("has no ControlNet.*not a CompoNet", compare.raises(function() return run(out2, { "model=" .. ldm_a .. "/model" }) end))
    local not_componet = temp() .. "/x.safetensors"
    cocola.save(not_componet, { ["unet.conv_in.weight"] = cocola.zeros({ 1 }) })
    assert.matches("not a CompoNet checkpoint", compare.raises(function() return run(out2, { "model=" .. ldm_a .. "/model",
      "controlnet=" .. not_componet }) end))
  end)
end)

teardown(function()
  for _, d in ipairs(made) do files.sh("rm -rf '" .. d .. "'") end
end)
