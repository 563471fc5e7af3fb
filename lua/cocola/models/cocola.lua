-- cocola.models.cocola — the COCOLA coherence model (the reference's CoCola LightningModule):
-- `encoder` (CoColaEncoder: EfficientNet-B0 as efficientnet_pytorch 0.7.1 builds it, Dropout,
-- Flatten, Linear 1280 -> D), `layer_norm` (LayerNorm(D)), `tanh`, `similarity` (bilinear W).
-- State-dict keys are the reference checkpoint's (encoder.encoder.model.0._conv_stem.weight ...,
-- encoder.projection.*, layer_norm.*, similarity.w), so a converted checkpoint loads strictly.
--
--   local model = cocola.models.cocola{input = "hpss", embedding_dim = 512, dropout = 0.1}
--   model:features(waves)          -- (B, samples) 16 kHz -> (B, C, 64, T) (cocola.audio.cocola_features)
--   model:embed(features)          -- (B, C, 64, T) -> (B, D) = tanh(LayerNorm(projection(f(x))))
--   model:similarity(a, b)         -- (K, D), (K', D) -> K x K' = a W b^T
--   model(anchors, positives)      -- features -> K x K similarity matrix (one encoder batch of 2K)
--   model:score{cond = y, gen = x}  -- features -> (B) COCOLA scores sim(embed(y_i), embed(x_i)),
--                                  -- y the conditioning audio's, x the accompaniment's
--
-- Inputs: "hpss" features have 2 channels (harmonic, percussive), "mel" features 1.
-- Embedding modes (HPSS models): "both" uses both channels, "harmonic" zeroes the percussive
-- channel, "percussive" zeroes the harmonic one, "random" (training only; "both" in eval) picks
-- one of the three per example, the same choice for an anchor and its positive. The mode applies
-- to embed(), forward() and score() (the reference's score() forgot it).
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local LayerNorm = require "cocola.nn.LayerNorm"
local Tanh = require "cocola.nn.Tanh"
local CoColaEncoder = require "cocola.models.cocola.CoColaEncoder"
local BilinearSimilarity = require "cocola.models.cocola.BilinearSimilarity"
local score_arguments = require "cocola.models.score_arguments"

local CoCola = Module:extend("CoCola")

CoCola.INPUTS = { hpss = 2, mel = 1 }
-- windows per forward pass when scoring (cocola.scoring): an EfficientNet batch of 2 x 4 windows keeps
-- the activations of one pass near 300 MB
CoCola.scoring_batch = 4
CoCola.MODES = { both = true, harmonic = true, percussive = true, random = true }

--- cocola.models.cocola{input = "hpss" | "mel", embedding_dim = 512, dropout = 0.1,
---   embedding_mode = "both", drop_connect_rate = 0.2, image_size = 224}
function CoCola:init(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("cocola.models.cocola: expected an options table", 3) end
  local input = opts.input or "hpss"
  local channels = CoCola.INPUTS[input]
  if not channels then
    error("cocola.models.cocola: input must be \"hpss\" or \"mel\", got " .. tostring(input), 3)
  end
  local dim = opts.embedding_dim or 512
  if math.type(dim) ~= "integer" or dim < 1 then
    error("cocola.models.cocola: embedding_dim must be a positive integer", 3)
  end
  local dropout = opts.dropout
  if dropout == nil then dropout = 0.1 end
  if type(dropout) ~= "number" or dropout < 0 or dropout > 1 then
    error("cocola.models.cocola: dropout must be a number in [0, 1]", 3)
  end
  self.input, self.in_channels, self.embedding_dim, self.dropout_p = input, channels, dim, dropout
  self.encoder = CoColaEncoder {
    in_channels = channels, embedding_dim = dim, dropout = dropout,
    drop_connect_rate = opts.drop_connect_rate, image_size = opts.image_size,
  }
  self.layer_norm = LayerNorm(dim)
  self.tanh = Tanh()
  self.similarity = BilinearSimilarity(dim)
  self:set_embedding_mode(opts.embedding_mode or "both")
end

--- Sets the embedding mode ("both", "harmonic", "percussive", "random"); returns self. A mel
-- model has one channel: only "both" and "random" (a no-op there) are accepted.
function CoCola:set_embedding_mode(mode)
  if not CoCola.MODES[mode] then
    error("embedding mode must be one of both, harmonic, percussive, random; got " .. tostring(mode), 2)
  end
  if self.in_channels == 1 and (mode == "harmonic" or mode == "percussive") then
    error("embedding mode '" .. mode .. "' needs an HPSS model (2 channels); this one takes mel features", 2)
  end
  self.embedding_mode = mode
  return self
end

local function check_features(self, x, what)
  if not cocola.is_tensor(x) then error(what .. ": features must be a tensor", 3) end
  if x:dim() ~= 4 or x:size(2) ~= self.in_channels then
    error(string.format("%s: expected features (B, %d, n_mels, frames) for a %s model, got %s", what,
      self.in_channels, self.input, x:shape_string()), 3)
  end
end

-- per-example channel keep-mask (B, 2, 1, 1) for a mode; choices (0-based as the reference's
-- randint(0, 3)): 0 keeps the percussive channel only, 1 the harmonic only, 2 both
local KEEP = { [0] = { 0, 1 }, [1] = { 1, 0 }, [2] = { 1, 1 } }
local MODE_CHOICE = { percussive = 0, harmonic = 1, both = 2 }

local function keep_mask(choices, x)
  local rows = {}
  for i, c in ipairs(choices) do rows[i] = { { { KEEP[c][1] } }, { { KEEP[c][2] } } } end
  local m = cocola.tensor(rows, { dtype = x:dtype() })
  if x:device() ~= "cpu" then m = m:to(x:device()) end
  return m
end

--- The per-example mode choices for a batch of n (a list of 0/1/2 as keep_mask reads them, or nil
-- when nothing is masked). "random" draws from cocola's generator, in training only.
function CoCola:mode_choices(n, mode)
  mode = mode or self.embedding_mode
  if self.in_channels ~= 2 then return nil end
  if mode == "random" then
    if not self.training then return nil end
    return cocola.randint(0, 3, { n }):totable()
  end
  local c = MODE_CHOICE[mode]
  if c == nil then error("unknown embedding mode " .. tostring(mode), 2) end
  if c == 2 then return nil end
  local out = {}
  for i = 1, n do out[i] = c end
  return out
end

--- Applies the embedding mode to features (B, 2, H, W): returns the masked features (x itself
-- when nothing is zeroed) and the choices used. Pass choices to reuse another batch's draw.
function CoCola:apply_mode(x, mode, choices)
  choices = choices or self:mode_choices(x:size(1), mode)
  if choices == nil then return x, nil end
  return x * keep_mask(choices, x), choices
end

-- encoder -> LayerNorm -> tanh on already masked features
function CoCola:_embed(x)
  return self.tanh(self.layer_norm(self.encoder(x)))
end

--- The model's input features of 16 kHz mono waves (B, samples) or (samples):
-- cocola.audio.cocola_features in this model's input mode, (B, 2, 64, frames) or (B, 1, 64, frames).
function CoCola:features(waves)
  return cocola.audio.cocola_features(waves, { mode = self.input })
end

--- (B, C, H, W) features -> (B, D) embeddings tanh(LN(f(x))), after the embedding mode (or the
-- mode given here).
function CoCola:embed(x, mode)
  check_features(self, x, "embed")
  return self:_embed((self:apply_mode(x, mode)))
end

-- anchors (K, ...) and columns (M K, ...: M blocks of K rows, row i of each block paired with anchor
-- i) through one encoder batch (as the reference: BatchNorm in training sees both), each column row
-- with its anchor's mode choice; returns the anchors' and the columns' embeddings
local function embed_with_columns(self, anchors, columns, mode)
  local k = anchors:size(1)
  local a, choices = self:apply_mode(anchors, mode)
  local c = columns
  if choices then
    local repeated = {}
    for j = 1, columns:size(1) do repeated[j] = choices[(j - 1) % k + 1] end
    c = self:apply_mode(columns, mode, repeated)
  end
  local e = self:_embed(cocola.cat({ a, c }, 1))
  return e:narrow(1, 1, k), e:narrow(1, k + 1, columns:size(1))
end

-- anchors and positives through one encoder batch of 2K, with the same mode choice for an anchor
-- and its positive
function CoCola:embed_pairs(anchors, positives, mode)
  check_features(self, anchors, "anchors")
  check_features(self, positives, "positives")
  if anchors:size(1) ~= positives:size(1) then
    error(string.format("expected as many positives as anchors, got %d and %d", positives:size(1), anchors:size(1)), 2)
  end
  return embed_with_columns(self, anchors, positives, mode)
end

--- model(anchors, positives) or model{anchor = , positive = }: the K x K similarity matrix of the
-- anchors' embeddings (rows) against the positives' (columns); the contrastive targets are the
-- diagonal (cocola.metrics.contrastive_loss).
-- With negatives (M K, C, H, W) as well (M blocks of K rows, row i of a block a hard negative of
-- anchor i, as the sampler's hard_negatives make them), the matrix is K x (K + M K): the positives'
-- columns first, then the negatives'; everything goes through one encoder batch and each negative
-- gets its anchor's embedding-mode choice.
function CoCola:forward(anchors, positives, negatives)
  if type(anchors) == "table" and not cocola.is_tensor(anchors) then
    anchors, positives, negatives = anchors.anchor, anchors.positive, anchors.negative
  end
  if negatives == nil then
    local ea, ep = self:embed_pairs(anchors, positives)
    return self.similarity(ea, ep)
  end
  check_features(self, anchors, "anchors")
  check_features(self, positives, "positives")
  check_features(self, negatives, "negatives")
  local k = anchors:size(1)
  if positives:size(1) ~= k then
    error(string.format("expected as many positives as anchors, got %d and %d", positives:size(1), k), 2)
  end
  if negatives:size(1) % k ~= 0 then
    error(string.format("expected a multiple of %d negatives (blocks of one per anchor), got %d", k, negatives:size(1)), 2)
  end
  local ea, columns = embed_with_columns(self, anchors, cocola.cat({ positives, negatives }, 1))
  return self.similarity(ea, columns)
end

--- score{cond = y, gen = x[, mode = m]} or score(y, x[, mode]) -> (B) COCOLA scores
-- score_i = sim(embed(y_i), embed(x_i)), y the features of the conditioning audio and x those of the
-- generated accompaniment ((B, C, H, W) each), in the current embedding mode (or the mode given).
function CoCola:score(cond, gen, mode)
  local y, x, m = score_arguments("score", cond, gen, mode)
  local ey, ex = self:embed_pairs(y, x, m)
  return self.similarity:pairwise(ey, ex)
end

--- recalibrate_batchnorm(batches) -> self, in eval mode. Re-estimates every BatchNorm's running
-- statistics as plain averages over the given feature batches ((B, C, H, W) tensors: one, a list of
-- them, or a function returning the next one or nil), with the rest of the model in eval mode and no
-- gradients. A model fresh from the constructor has the initial statistics (mean 0, variance 1),
-- which in eval mode make every embedding the same, so every pair gets one constant score: train it,
-- load weights, or recalibrate it on some real audio first.
function CoCola:recalibrate_batchnorm(batches)
  local next_batch
  if cocola.is_tensor(batches) then
    local done = false
    next_batch = function()
      if done then return nil end
      done = true
      return batches
    end
  elseif type(batches) == "table" then
    local i = 0
    next_batch = function()
      i = i + 1
      return batches[i]
    end
  elseif type(batches) == "function" then
    next_batch = batches
  else
    error("recalibrate_batchnorm: expected feature batches (a tensor, a list of tensors or a function), got " .. type(batches), 2)
  end
  local norms = {}
  for _, m in ipairs(self:modules()) do
    if m:type_name() == "BatchNorm2d" and m.track_running_stats then norms[#norms + 1] = m end
  end
  self:eval()
  local momenta = {}
  for i, bn in ipairs(norms) do
    momenta[i] = bn.momentum
    rawset(bn, "momentum", nil)
    bn:reset_running_stats()
    rawset(bn, "training", true)
  end
  local ok, err = pcall(function()
    local n = 0
    while true do
      local f = next_batch()
      if f == nil then break end
      check_features(self, f, "recalibrate_batchnorm")
      cocola.no_grad(function() self:_embed(f) end)
      n = n + 1
    end
    if n == 0 and #norms > 0 then error("recalibrate_batchnorm: no batches given", 0) end
  end)
  for i, bn in ipairs(norms) do
    rawset(bn, "momentum", momenta[i])
    rawset(bn, "training", false)
  end
  if not ok then error(err, 2) end
  return self
end

local STEM = "encoder.encoder.model.0._conv_stem.weight"

--- CoCola.resolve_checkpoint(path) -> file, note. A file is itself (note nil). A folder is a
-- checkpoint folder (<dir>/model.safetensors, as <run>/last) or a training run's folder: its best
-- validation model (<dir>/best.safetensors) if there is one, else its last checkpoint
-- (<dir>/last/model.safetensors); the note says which, for the user. Anything else is an error.
function CoCola.resolve_checkpoint(path)
  if type(path) ~= "string" then error("expected a checkpoint path, got " .. type(path), 2) end
  local lfs = require "lfs"
  local mode = lfs.attributes(path, "mode")
  if mode ~= "directory" then return path, nil end
  local dir = path:gsub("/+$", "")
  local function is_file(p) return lfs.attributes(p, "mode") == "file" end
  if is_file(dir .. "/model.safetensors") then return dir .. "/model.safetensors", nil end
  if is_file(dir .. "/best.safetensors") then
    return dir .. "/best.safetensors", "using " .. dir .. "/best.safetensors (the run's best validation model)"
  end
  if is_file(dir .. "/last/model.safetensors") then
    return dir .. "/last/model.safetensors", "using " .. dir .. "/last/model.safetensors (the run's last checkpoint; it has no best.safetensors)"
  end
  error(string.format("'%s' is a folder without a model (expected model.safetensors, or a training run's best.safetensors or last/model.safetensors)", path), 2)
end

--- Builds a model from a checkpoint and loads its weights strictly: the reference's Lightning
-- .ckpt (state_dict + hyper_parameters), a safetensors state dict (as train_cocola writes), or a
-- train_cocola checkpoint directory (<dir>/model.safetensors). Weights of a chroma-onset model
-- (cocola.models.chroma_onset_cocola) give that model. The architecture is read off the
-- weights (input channels from the stem conv, embedding size from W); the embedding mode comes from
-- opts.embedding_mode, else the checkpoint's hyper-parameters, else "both". Returns an eval-mode model.
function CoCola.from_checkpoint(path, opts)
  opts = opts or {}
  if type(path) ~= "string" then error("from_checkpoint: expected a path", 2) end
  local lfs = require "lfs"
  if lfs.attributes(path, "mode") == "directory" then
    local ok, file = pcall(CoCola.resolve_checkpoint, path)
    if not ok then error("from_checkpoint: " .. tostring(file), 2) end
    path = file
  end
  if not lfs.attributes(path, "mode") then error("from_checkpoint: no such file '" .. path .. "'", 2) end
  local loaded, meta = cocola.load(path)
  local sd, hparams = loaded, meta or {}
  if type(loaded.state_dict) == "table" and not cocola.is_tensor(loaded.state_dict) then
    sd, hparams = loaded.state_dict, loaded.hyper_parameters or {}
  end
  local ChromaOnsetCoCola = require "cocola.models.chroma_onset_cocola"
  if ChromaOnsetCoCola.matches(sd) then
    local own = {}
    for k, v in pairs(sd) do
      if cocola.is_tensor(v) then own[k] = v end
    end
    local model = ChromaOnsetCoCola.from_state_dict(own)
    if opts.embedding_mode then model:set_embedding_mode(opts.embedding_mode) end
    return model
  end
  local stem, w = sd[STEM], sd["similarity.w"]
  if not cocola.is_tensor(stem) or not cocola.is_tensor(w) then
    error("from_checkpoint: '" .. path .. "' holds no COCOLA weights (" .. STEM .. ", similarity.w; or "
      .. ChromaOnsetCoCola.KEY .. ", similarity.v)", 2)
  end
  local in_channels = stem:size(2)
  local mode = opts.embedding_mode
  if not mode and type(hparams.embedding_mode) == "string" then
    mode = hparams.embedding_mode:lower():match("(%a+)$")
  end
  if in_channels == 1 or mode == "random" or not CoCola.MODES[mode or ""] then mode = "both" end
  local model = CoCola {
    input = in_channels == 2 and "hpss" or "mel", embedding_dim = w:size(1), embedding_mode = mode,
  }
  local own = {}
  for k, v in pairs(sd) do
    if cocola.is_tensor(v) then own[k] = v end
  end
  model:load_state_dict(own)
  model:eval()
  return model
end

CoCola.DEFAULT_FILE = "cocola_midi_chroma_onset.safetensors"

-- where the bundled model lives: $COCOLA_MODEL, else assets/ beside the installed modules
-- (<luadir>/cocola/assets/), else the repository's assets/ (running from a checkout)
local function default_path()
  local env = os.getenv("COCOLA_MODEL")
  if env and env ~= "" then return env end
  local here = package.searchpath("cocola.models.cocola", package.path)
  local candidates = {}
  if here then
    local luadir = here:match("^(.*)/cocola/models/cocola%.lua$")
    if luadir then
      candidates[#candidates + 1] = luadir .. "/cocola/assets/" .. CoCola.DEFAULT_FILE
      candidates[#candidates + 1] = luadir .. "/../assets/" .. CoCola.DEFAULT_FILE
    end
  end
  candidates[#candidates + 1] = "assets/" .. CoCola.DEFAULT_FILE
  for _, c in ipairs(candidates) do
    local f = io.open(c, "rb")
    if f then
      f:close()
      return c
    end
  end
  return nil, candidates
end

--- The bundled model: a chroma-onset COCOLA model (cocola.models.chroma_onset_cocola, with its prior
-- channels) trained by recipes/train_cocola.lua on stems rendered from Debian's MIDI songs and MMA
-- grooves (assets/cocola_midi_chroma_onset.safetensors; its training settings and log are beside it).
-- The paper-architecture HPSS model trained on the same songs is assets/cocola_midi_hpss.safetensors
-- (load it with from_checkpoint). $COCOLA_MODEL overrides the file. opts as from_checkpoint.
function CoCola.default(opts)
  local path, tried = default_path()
  if not path then
    error("no bundled model found (looked for " .. table.concat(tried, ", ") .. "); set COCOLA_MODEL or pass a checkpoint", 2)
  end
  return CoCola.from_checkpoint(path, opts)
end

function CoCola:extra_repr()
  return string.format("input=%s, embedding_dim=%d, embedding_mode=%s", self.input, self.embedding_dim,
    self.embedding_mode)
end

return CoCola
