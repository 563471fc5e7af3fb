-- cocola.models.chroma_onset_cocola — a COCOLA coherence model on chroma and onset frames: the same
-- contrastive objective and interface as cocola.models.cocola, with a front-end chosen for what
-- coherence is (pitch classes and note onsets, frame by frame) instead of a mel image:
--   features: cocola.baselines.chroma_onset.frame_features (12 compressed chroma bins and 4 onset-strength
--             band envelopes per 32 ms frame: (B, 16, 1, 157) for 5 s at 16 kHz);
--   `encoder`: FrameEncoder (dilated residual temporal convolutions, per-frame LayerNorm and tanh) ->
--             frame embeddings (B, T x dim);
--   `similarity`: FrameBilinearSimilarity, (1/T) sum_t x_t^T W y_t + mean(x)^T V mean(y).
-- prior = true (what train.lua builds) appends the encoder's parameter-free prior channels to every
-- frame (FrameEncoder: window-scaled chroma and centred onset envelopes) and starts W and V with
-- PRIOR_SCALE on the diagonal of those channels (V: chroma, W: onsets) on top of their random values:
-- the model then starts from PRIOR_SCALE x 2 x the chroma-onset baseline's similarity (computed on the
-- compressed chroma and four onset bands) plus the random learned part, and training moves both.
-- Small (about 90 k parameters) and quick to train on a CPU. State-dict keys: encoder.input.*,
-- encoder.blocks.<i>.*, encoder.output.*, encoder.norm.*, similarity.w, similarity.v.
--
--   local model = cocola.models.chroma_onset_cocola{dim = 32, width = 64, blocks = 4}
--   model:features(waves)          -- (B, samples) 16 kHz -> (B, 16, 1, frames)
--   model:embed(features)          -- -> (B, frames x dim)
--   model(anchors, positives[, negatives])  -- features -> K x (K + M K) similarities
--   model:score{cond = y, gen = x}  -- features -> (B) sim(embed(y_i), embed(x_i)), y the condition's
-- One embedding mode, "both" (there is no harmonic/percussive split to choose from).
local cocola = require "cocola"
local Module = require "cocola.nn.Module"
local FrameEncoder = require "cocola.models.cocola.FrameEncoder"
local FrameBilinearSimilarity = require "cocola.models.cocola.FrameBilinearSimilarity"
local chroma_onset = require "cocola.baselines.chroma_onset"
local score_arguments = require "cocola.models.score_arguments"

local ChromaOnsetCoCola = Module:extend("ChromaOnsetCoCola")

ChromaOnsetCoCola.INPUT = "chroma_onset"

ChromaOnsetCoCola.PRIOR_SCALE = 10

--- cocola.models.chroma_onset_cocola{dim = 32, width = 64, blocks = 4, prior = false}
function ChromaOnsetCoCola:init(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("chroma_onset_cocola: expected an options table", 3) end
  self.input, self.embedding_mode = ChromaOnsetCoCola.INPUT, "both"
  self.in_channels = chroma_onset.FRAME_CHANNELS
  self.encoder = FrameEncoder { in_channels = self.in_channels, width = opts.width or 64, dim = opts.dim or 32,
                                blocks = opts.blocks or 4, prior = opts.prior == true }
  self.prior = self.encoder.prior
  self.embedding_dim = self.encoder.frame_size
  self.similarity = FrameBilinearSimilarity(self.encoder.frame_size)
  if self.prior then
    local dim = self.encoder.dim
    cocola.no_grad(function()
      for i = 1, self.in_channels do
        -- V's diagonal for the chroma channels, W's for the onset channels
        local p = i <= FrameEncoder.PRIOR_CHROMA and self.similarity.v or self.similarity.w
        local cell = p:narrow(1, dim + i, 1):narrow(2, dim + i, 1)
        cell:copy_(cell + ChromaOnsetCoCola.PRIOR_SCALE)
      end
    end)
  end
end

--- set_embedding_mode("both") -> self; this model has no other mode.
function ChromaOnsetCoCola:set_embedding_mode(mode)
  if mode ~= "both" then
    error("embedding mode '" .. tostring(mode) .. "' needs an HPSS model; a chroma-onset model has one mode, 'both'", 2)
  end
  return self
end

local function check_features(self, x, what)
  if not cocola.is_tensor(x) then error(what .. ": features must be a tensor", 3) end
  if x:dim() ~= 4 or x:size(2) ~= self.in_channels or x:size(3) ~= 1 then
    error(string.format("%s: expected chroma-onset features (B, %d, 1, frames), got %s", what, self.in_channels,
      x:shape_string()), 3)
  end
end

local function check_mode(mode)
  if mode ~= nil and mode ~= "both" then
    error("embedding mode '" .. tostring(mode) .. "' needs an HPSS model; a chroma-onset model has one mode, 'both'", 3)
  end
end

--- features(waves (B, samples) or (samples), 16 kHz mono) -> (B, 16, 1, frames), computed on the CPU.
function ChromaOnsetCoCola:features(waves) return chroma_onset.frame_features(waves) end

--- embed(features (B, 16, 1, T)) -> (B, T x dim) frame embeddings.
function ChromaOnsetCoCola:embed(x, mode)
  check_mode(mode)
  check_features(self, x, "embed")
  return self.encoder(x)
end

--- embed_pairs(anchors, positives) -> their embeddings (one encoder batch).
function ChromaOnsetCoCola:embed_pairs(anchors, positives, mode)
  check_mode(mode)
  check_features(self, anchors, "anchors")
  check_features(self, positives, "positives")
  if anchors:size(1) ~= positives:size(1) then
    error(string.format("expected as many positives as anchors, got %d and %d", positives:size(1), anchors:size(1)), 2)
  end
  local k = anchors:size(1)
  local e = self.encoder(cocola.cat({ anchors, positives }, 1))
  return e:narrow(1, 1, k), e:narrow(1, k + 1, k)
end

--- model(anchors, positives[, negatives]) or model{anchor =, positive =, negative =}: K x K (or
-- K x (K + M K) with M blocks of K hard negatives) similarities, as cocola.models.cocola's forward.
function ChromaOnsetCoCola:forward(anchors, positives, negatives)
  if type(anchors) == "table" and not cocola.is_tensor(anchors) then
    anchors, positives, negatives = anchors.anchor, anchors.positive, anchors.negative
  end
  check_features(self, anchors, "anchors")
  check_features(self, positives, "positives")
  local k = anchors:size(1)
  if positives:size(1) ~= k then
    error(string.format("expected as many positives as anchors, got %d and %d", positives:size(1), k), 2)
  end
  local parts = { anchors, positives }
  if negatives ~= nil then
    check_features(self, negatives, "negatives")
    if negatives:size(1) % k ~= 0 then
      error(string.format("expected a multiple of %d negatives (blocks of one per anchor), got %d", k, negatives:size(1)), 2)
    end
    parts[3] = negatives
  end
  local e = self.encoder(cocola.cat(parts, 1))
  local n = e:size(1)
  return self.similarity(e:narrow(1, 1, k), e:narrow(1, k + 1, n - k))
end

--- score{cond = y, gen = x} or score(y, x) -> (B) COCOLA scores sim(embed(y_i), embed(x_i)) of paired
-- features, y the conditioning audio's and x the generated accompaniment's.
function ChromaOnsetCoCola:score(cond, gen, mode)
  local y, x, m = score_arguments("score", cond, gen, mode)
  local ey, ex = self:embed_pairs(y, x, m)
  return self.similarity:pairwise(ey, ex)
end

ChromaOnsetCoCola.KEY = "encoder.input.weight"

--- whether a state dict holds this model's weights
function ChromaOnsetCoCola.matches(sd)
  return cocola.is_tensor(sd[ChromaOnsetCoCola.KEY]) and cocola.is_tensor(sd["similarity.v"])
end

--- builds the model a state dict describes (width, dim, number of blocks and whether the prior
-- channels are there read off the weights), loads it strictly and returns it in eval mode
function ChromaOnsetCoCola.from_state_dict(sd)
  local input = sd[ChromaOnsetCoCola.KEY]
  local blocks = 0
  while cocola.is_tensor(sd["encoder.blocks." .. blocks .. ".weight"]) do blocks = blocks + 1 end
  local output = sd["encoder.output.weight"]
  if not cocola.is_tensor(output) then error("chroma_onset_cocola: the weights lack encoder.output.weight", 2) end
  local dim, frame = output:size(1), sd["similarity.w"]:size(1)
  if frame ~= dim and frame ~= dim + input:size(2) then
    error(string.format("chroma_onset_cocola: similarity.w is %d wide; the encoder gives %d (or %d with the prior)",
      frame, dim, dim + input:size(2)), 2)
  end
  local model = ChromaOnsetCoCola { width = input:size(1), dim = dim, blocks = blocks, prior = frame ~= dim }
  if input:size(2) ~= model.in_channels then
    error(string.format("chroma_onset_cocola: the weights take %d input channels, the features have %d", input:size(2),
      model.in_channels), 2)
  end
  model:load_state_dict(sd)
  model:eval()
  return model
end

function ChromaOnsetCoCola:extra_repr()
  return string.format("input=%s, dim=%d, embedding_mode=both%s", self.input, self.embedding_dim,
    self.prior and ", prior=true" or "")
end

return ChromaOnsetCoCola
