-- recipes/train_cocola.lua — trains a COCOLA encoder on a stem dataset (the reference's
-- train_all_submixtures_hpss setup: Adam lr 1e-3, K = 32 windows of 5 s, dropout 0.1, noise 1e-3 on
-- positives, embedding mode random for HPSS). Logs every setting and the seed, shows a progress bar,
-- writes metrics to <out>/metrics.jsonl, validates each epoch (contrastive loss and accuracy on a
-- fixed-seed validation sampler), checkpoints atomically every `checkpoint_every` steps and at each
-- epoch end into <out>/last/ (model, optimizer, sampler position and RNG state), keeps the best
-- validation model in <out>/best.safetensors, and resumes exactly with resume=<out>/last.
-- Usage: lua5.4 recipes/train_cocola.lua root=data/midi_stems layout=slakh out=runs/x [key=value ...]
local cocola = require "cocola"
local recipe = require "cocola.recipe"
local Sampler = require "cocola.data.sampler"
local cjson = require "cjson"
local lfs = require "lfs"

local DEFAULTS = {
  layout = "slakh", root = "data/midi_stems", train_split = "train", valid_split = "validation",
  out = "runs/cocola", resume = "", input = "hpss", embedding_mode = "random", embedding_dim = 512,
  dropout = 0.1, lr = 1e-3, batch_size = 32, window = 5.0, max_overlap = 0.5, noise = 1e-3,
  silence_rms = 1e-4, epochs = 500, max_steps = 0, valid_batches = 20, checkpoint_every = 200,
  seed = 0, threads = 2,
}

local M = {}

local function save_checkpoint(dir, model, opt, sampler, state)
  local tmp = dir .. ".tmp"
  os.execute(string.format("rm -rf '%s'", tmp))
  assert(lfs.mkdir(tmp))
  cocola.save(tmp .. "/model.safetensors", model:state_dict())
  opt:save(tmp .. "/optimizer.safetensors")
  local seed, offset = cocola.get_rng_state()
  state.sampler = sampler:state()
  state.rng = { seed = seed, offset = offset }
  recipe.write_atomic(tmp .. "/state.json", cjson.encode(state))
  -- swap the finished directory into place
  os.execute(string.format("rm -rf '%s.old'", dir))
  if lfs.attributes(dir, "mode") then assert(os.rename(dir, dir .. ".old")) end
  assert(os.rename(tmp, dir))
  os.execute(string.format("rm -rf '%s.old'", dir))
end

local function validate(cfg, model, sampler)
  model:eval()
  sampler:set_state({ epoch = 0, position = 0 })
  local loss_sum, acc_sum, n = 0, 0, 0
  for _ = 1, cfg.valid_batches do
    local batch = sampler:next_batch()
    if not batch then break end
    local sim = cocola.no_grad(function()
      local a = cocola.audio.cocola_features(batch.anchor, { mode = cfg.input })
      local p = cocola.audio.cocola_features(batch.positive, { mode = cfg.input })
      return model(a, p)
    end)
    loss_sum = loss_sum + cocola.metrics.contrastive_loss(sim):item()
    acc_sum = acc_sum + cocola.metrics.accuracy(sim)
    n = n + 1
  end
  model:train()
  if n == 0 then return nil end
  return loss_sum / n, acc_sum / n
end

--- runs training with a config table (the command line builds it); returns the list of step
-- losses and the final state. log (default print) receives the text lines.
function M.run(cfg, log)
  log = log or print
  recipe.log_config(cfg)
  cocola.set_num_threads(cfg.threads)
  cocola.manual_seed(cfg.seed)
  lfs.mkdir(cfg.out)
  local train_tracks = cocola.data.open(cfg.layout, cfg.root, cfg.train_split)
  local valid_tracks = cocola.data.open(cfg.layout, cfg.root, cfg.valid_split)
  log(string.format("%d training tracks, %d validation tracks", #train_tracks, #valid_tracks))
  local sampler_opts = {
    batch_size = cfg.batch_size, window = cfg.window, max_overlap = cfg.max_overlap, seed = cfg.seed,
    silence_rms = cfg.silence_rms, noise = cfg.noise,
  }
  local sampler = Sampler.new(train_tracks, sampler_opts)
  local valid_opts = {}
  for k, v in pairs(sampler_opts) do valid_opts[k] = v end
  valid_opts.seed, valid_opts.shuffle = cfg.seed + 1, true
  local valid_sampler = Sampler.new(valid_tracks, valid_opts)

  local model = cocola.models.cocola {
    input = cfg.input, embedding_dim = cfg.embedding_dim, dropout = cfg.dropout,
    embedding_mode = cfg.input == "hpss" and cfg.embedding_mode or "both",
  }
  model:train()
  local opt = cocola.optim.Adam(model:parameters(), { lr = cfg.lr })
  local state = { step = 0, epoch = 0 } -- best_valid_loss appears with the first validation
  if cfg.resume ~= "" then
    model:load_state_dict(cocola.load(cfg.resume .. "/model.safetensors"))
    opt:load(cfg.resume .. "/optimizer.safetensors")
    state = cjson.decode((assert(recipe.read(cfg.resume .. "/state.json"), "resume: no state.json in " .. cfg.resume)))
    sampler:set_state(state.sampler)
    cocola.set_rng_state(state.rng.seed, state.rng.offset)
    log(string.format("resumed from %s at step %d (epoch %d)", cfg.resume, state.step, state.epoch))
  end
  local metrics = cfg.out .. "/metrics.jsonl"
  local losses = {}
  local per_epoch = sampler:batches_per_epoch()
  local t0 = cocola.wall_time()
  while state.epoch < cfg.epochs and (cfg.max_steps == 0 or state.step < cfg.max_steps) do
    local batch = sampler:next_batch()
    if not batch then
      -- end of an epoch: validate, keep the best, checkpoint
      local vloss, vacc = validate(cfg, model, valid_sampler)
      state.epoch = state.epoch + 1
      if vloss then
        recipe.append_jsonl(metrics, { epoch = state.epoch, step = state.step, valid_loss = vloss, valid_accuracy = vacc })
        log(string.format("\nepoch %d: valid loss %.4f, valid accuracy %.3f", state.epoch, vloss, vacc))
        if not state.best_valid_loss or vloss < state.best_valid_loss then
          state.best_valid_loss = vloss
          cocola.save(cfg.out .. "/best.safetensors", model:state_dict(), {
            metadata = { input = cfg.input, embedding_dim = tostring(cfg.embedding_dim), epoch = tostring(state.epoch),
                         valid_loss = tostring(vloss), valid_accuracy = tostring(vacc) },
          })
        end
      end
      save_checkpoint(cfg.out .. "/last", model, opt, sampler, state)
    else
      local a = cocola.audio.cocola_features(batch.anchor, { mode = cfg.input })
      local p = cocola.audio.cocola_features(batch.positive, { mode = cfg.input })
      opt:zero_grad()
      local sim = model(a, p)
      local loss = cocola.metrics.contrastive_loss(sim)
      loss:backward()
      opt:step()
      state.step = state.step + 1
      local l, acc = loss:item(), cocola.metrics.accuracy(sim)
      losses[#losses + 1] = l
      recipe.append_jsonl(metrics, { epoch = state.epoch, step = state.step, loss = l, accuracy = acc })
      local elapsed = cocola.wall_time() - t0
      recipe.progress(string.format("epoch %d", state.epoch + 1), math.min(sampler.position // cfg.batch_size, per_epoch), per_epoch,
        string.format("loss %.4f acc %.2f %.2f s/step", l, acc, elapsed / #losses))
      if state.step % cfg.checkpoint_every == 0 then save_checkpoint(cfg.out .. "/last", model, opt, sampler, state) end
    end
  end
  save_checkpoint(cfg.out .. "/last", model, opt, sampler, state)
  return losses, state
end

M.DEFAULTS = DEFAULTS

if arg and arg[0] and arg[0]:match("train_cocola%.lua$") then
  local ok, err = pcall(function() M.run(recipe.config(DEFAULTS, arg)) end)
  if not ok then
    io.stderr:write("train_cocola: ", tostring(err), "\n")
    os.exit(1)
  end
end

return M
