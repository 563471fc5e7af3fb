-- cocola.models.text.gpt2 — transformers' GPT2Model (modeling_gpt2.py, transformers 4.38.2), the language
-- model of AudioLDM 2, fed with embeddings (inputs_embeds) rather than token ids, plus the 8-step
-- generation of embeddings of diffusers' AudioLDM2Pipeline.generate_language_model (0.27.2).
-- State-dict names are transformers' (model.safetensors of `language_model/`):
--   wte (vocab_size, n_embd), wpe (n_positions, n_embd), h.{i}.ln_1, h.{i}.attn.c_attn, h.{i}.attn.c_proj,
--   h.{i}.ln_2, h.{i}.mlp.c_fc, h.{i}.mlp.c_proj, ln_f. The c_* layers are transformers' Conv1D, weights
--   stored (in, out) (conv1d.lua). wte is loaded but unused: the model is only called with inputs_embeds.
--   No `transformer.` prefix (that is GPT2LMHeadModel's layout): convert such a file offline.
-- forward(inputs_embeds (B, L, n_embd), {attention_mask = (B, P + L) 1 keep / 0 pad, past = cache})
--   -> last hidden state after ln_f (B, L, n_embd), and the new cache (a list of n_layer {k, v}, each
--   (B, n_head, P + L, head_dim)); P is the cached length (0 without a cache). Positions are P .. P + L - 1
--   whatever the mask (the pipeline passes no position_ids). Dropout is not applied (inference).
-- Masking, as the reference (eager attention) does it in float32: scores q k^T / sqrt(head_dim); a future
--   key's score becomes finfo.min (torch.where), then (1 - mask) * finfo.min is added. A padded key thus
--   scores finfo.min, and a key that is both future and padded -inf: a query whose past keys are all padding
--   (left padding) attends uniformly to them and to the unpadded future keys, exactly as transformers does.
-- Config: GPT2Model(cfg) / GPT2Model.from_config(cfg) takes config.json as parsed (GPT2Config's keys,
--   defaults in GPT2Model.DEFAULTS); unsupported values are refused with the key named.
--   GPT2Model.from_pretrained(dir) reads dir/config.json + dir/model.safetensors (or a pipeline folder's
--   language_model/), strictly by name.
local cocola = require "cocola"
local nn = require "cocola.nn"
local pretrained = require "cocola.models.audioldm2.pretrained"
local GPT2Block = require "cocola.models.text.gpt2_block"

local GPT2Model = nn.Module:extend("GPT2Model")

-- float32's most negative finite value, torch.finfo(torch.float32).min
GPT2Model.FMIN = -3.4028234663852886e38

-- GPT2Config's defaults (transformers 4.38.2) for the keys this port reads
GPT2Model.DEFAULTS = {
  vocab_size = 50257, n_positions = 1024, n_embd = 768, n_layer = 12, n_head = 12, n_inner = pretrained.null,
  activation_function = "gelu_new", layer_norm_epsilon = 1e-5, scale_attn_weights = true,
  scale_attn_by_inverse_layer_idx = false, reorder_and_upcast_attn = false, add_cross_attention = false,
  max_new_tokens = 8,
}

local positive_integer = pretrained.positive_integer
local boolean = pretrained.boolean
local number = pretrained.number
local must_be = pretrained.must_be

-- GPT2Config's keys: a rule when the value matters here, true when it is accepted and unused
-- (dropout rates, initialisation, the sequence-summary head, token ids, PretrainedConfig bookkeeping)
GPT2Model.CONFIG_KEYS = {
  vocab_size = positive_integer, n_positions = positive_integer, n_embd = positive_integer,
  n_layer = positive_integer, n_head = positive_integer,
  n_inner = function(v) if not pretrained.is_null(v) then return positive_integer(v) end end,
  activation_function = pretrained.one_of({ "gelu_new", "gelu_pytorch_tanh" }),
  layer_norm_epsilon = number,
  scale_attn_weights = must_be(true),
  scale_attn_by_inverse_layer_idx = boolean,
  -- the upcast/reordered path computes the same float32 scores
  reorder_and_upcast_attn = boolean,
  add_cross_attention = must_be(false),
  max_new_tokens = positive_integer,
}
for _, k in ipairs({ "resid_pdrop", "embd_pdrop", "attn_pdrop", "initializer_range", "summary_type",
  "summary_use_proj", "summary_activation", "summary_proj_to_labels", "summary_first_dropout", "use_cache",
  "bos_token_id", "eos_token_id", "pad_token_id", "n_ctx", "architectures", "model_type", "torch_dtype",
  "transformers_version", "return_dict", "output_hidden_states", "output_attentions", "torchscript",
  "use_bfloat16", "is_encoder_decoder", "is_decoder", "tie_word_embeddings", "id2label", "label2id",
  "problem_type", "pruned_heads", "chunk_size_feed_forward", "tf_legacy_loss", "finetuning_task",
  "task_specific_params" }) do
  GPT2Model.CONFIG_KEYS[k] = true
end
GPT2Model.CONFIG_KEYS.model_type = pretrained.one_of({ "gpt2" })

--- GPT2Model(cfg): cfg is config.json as parsed (missing keys take GPT2Model.DEFAULTS)
function GPT2Model:init(cfg)
  cfg = cfg or {}
  if type(cfg) ~= "table" then error("GPT2Model: expected a config table", 3) end
  pretrained.check_keys(cfg, GPT2Model.CONFIG_KEYS, "GPT2Model")
  local c = {}
  for k, v in pairs(GPT2Model.DEFAULTS) do c[k] = v end
  for k, v in pairs(cfg) do c[k] = v end
  if c.n_embd % c.n_head ~= 0 then
    error(string.format("%s: n_embd (%d) must be divisible by n_head (%d)", cfg._path or "GPT2Model config",
      c.n_embd, c.n_head), 3)
  end
  self.config = c
  self.n_embd, self.n_layer, self.n_head, self.n_positions = c.n_embd, c.n_layer, c.n_head, c.n_positions
  self.head_dim = c.n_embd // c.n_head
  self.max_new_tokens = c.max_new_tokens
  local inner = (not pretrained.is_null(c.n_inner)) and c.n_inner or 4 * c.n_embd
  self.wte = nn.Embedding(c.vocab_size, c.n_embd)
  self.wpe = nn.Embedding(c.n_positions, c.n_embd)
  local blocks = {}
  for i = 1, c.n_layer do
    blocks[i] = GPT2Block(c.n_embd, c.n_head, { inner = inner, eps = c.layer_norm_epsilon, layer_idx = i - 1,
      scale_by_inverse_layer_idx = c.scale_attn_by_inverse_layer_idx })
  end
  self.h = nn.ModuleList(blocks)
  self.ln_f = nn.LayerNorm(c.n_embd, { eps = c.layer_norm_epsilon })
end

GPT2Model.from_config = GPT2Model

--- GPT2Model.from_pretrained(dir): a GPT-2 folder (config.json + model.safetensors / pytorch_model.bin) or
--- a pipeline folder holding language_model/; strict loading, eval mode
function GPT2Model.from_pretrained(dir)
  return pretrained.from_pretrained(GPT2Model, dir, "language_model", { "model.safetensors", "pytorch_model.bin" })
end

-- the cached length P after checking the cache against the model and the batch
local function cache_length(self, past, B)
  if past == nil then return 0 end
  if type(past) ~= "table" or #past ~= self.n_layer then
    error(string.format("GPT2Model: past must be the cache a previous call returned (%d layers of {k, v})",
      self.n_layer), 3)
  end
  local P
  for i, kv in ipairs(past) do
    for j = 1, 2 do
      local t = type(kv) == "table" and kv[j] or nil
      if not cocola.is_tensor(t) or t:dim() ~= 4 or t:size(1) ~= B or t:size(2) ~= self.n_head
          or t:size(4) ~= self.head_dim or (P and t:size(3) ~= P) then
        error(string.format("GPT2Model: past[%d][%d] must be (%d, %d, P, %d), got %s", i, j, B, self.n_head,
          self.head_dim, cocola.is_tensor(t) and t:shape_string() or type(t)), 3)
      end
      P = t:size(3)
    end
  end
  return P
end

-- the additive bias (B or 1, 1, L, S) that reproduces the reference's masking (see the header)
local function attention_bias(B, L, P, mask_rows)
  local S, FMIN = P + L, GPT2Model.FMIN
  if mask_rows == nil and L == 1 then return nil end
  local rows = {}
  for b = 1, (mask_rows and B or 1) do
    local m = mask_rows and mask_rows[b]
    local plane = {}
    for i = 1, L do
      local row = {}
      for j = 1, S do
        local future = j > P + i
        local padded = m ~= nil and m[j] == 0
        row[j] = (future and padded) and -math.huge or ((future or padded) and FMIN or 0.0)
      end
      plane[i] = row
    end
    rows[b] = { plane }
  end
  return cocola.tensor(rows, { dtype = "float32" })
end

function GPT2Model:forward(inputs_embeds, opts)
  opts = opts or {}
  local x = inputs_embeds
  if not cocola.is_tensor(x) or x:dim() ~= 3 or x:size(3) ~= self.n_embd then
    error(string.format("GPT2Model: inputs_embeds must be (B, L, %d), got %s", self.n_embd,
      cocola.is_tensor(x) and x:shape_string() or type(x)), 2)
  end
  local B, L = x:size(1), x:size(2)
  if L < 1 then error("GPT2Model: inputs_embeds must hold at least one position", 2) end
  local P = cache_length(self, opts.past, B)
  if P + L > self.n_positions then
    error(string.format("GPT2Model: %d positions (%d cached + %d new) exceed n_positions = %d", P + L, P, L,
      self.n_positions), 2)
  end
  local mask_rows
  if opts.attention_mask ~= nil then
    local m = opts.attention_mask
    if not cocola.is_tensor(m) or m:dim() ~= 2 or m:size(1) ~= B or m:size(2) ~= P + L then
      error(string.format("GPT2Model: attention_mask must be (%d, %d) (batch, cached + new positions), got %s", B,
        P + L, cocola.is_tensor(m) and m:shape_string() or type(m)), 2)
    end
    mask_rows = m:to("float64"):cpu():contiguous():totable()
  end
  local bias = attention_bias(B, L, P, mask_rows)
  if bias ~= nil and bias:device() ~= x:device() then bias = bias:to(x:device()) end
  local h = x + self.wpe.weight:narrow(1, P + 1, L)
  local cache = {}
  for i = 1, self.n_layer do
    h, cache[i] = self.h[i](h, bias, opts.past and opts.past[i])
  end
  return self.ln_f(h), cache
end

--- GPT2Model.generate_embeddings(model, inputs_embeds (B, L, n_embd), {max_new_tokens = model.max_new_tokens
--- (8), attention_mask = (B, L)}) -> (B, max_new_tokens, n_embd): diffusers' generate_language_model. The
--- first step runs on the whole input; each later step feeds only the previous step's output with the KV
--- cache. Every step's last hidden state (after ln_f) is appended to the sequence, and the mask (when given)
--- grows by a 1. The new hidden states are returned.
function GPT2Model.generate_embeddings(model, inputs_embeds, opts)
  opts = opts or {}
  local n = opts.max_new_tokens or model.max_new_tokens or 8
  if math.type(n) ~= "integer" or n < 1 then
    error("generate_embeddings: max_new_tokens must be a positive integer", 2)
  end
  local mask = opts.attention_mask
  if mask ~= nil then mask = mask:to(inputs_embeds:dtype()) end
  local step_input, past = inputs_embeds, nil
  local generated = {}
  for s = 1, n do
    local ok, h, cache = pcall(model.forward, model, step_input, { attention_mask = mask, past = past })
    if not ok then error(tostring(h):gsub("^.-:%d+: ", ""), 2) end
    local last = h:narrow(2, h:size(2), 1)
    generated[s] = last
    step_input, past = last, cache
    if mask ~= nil then
      mask = cocola.cat({ mask, cocola.ones({ mask:size(1), 1 }, { dtype = mask:dtype() }):to(mask:device()) }, 2)
    end
  end
  return cocola.cat(generated, 2)
end

function GPT2Model:extra_repr()
  return string.format("n_embd=%d, n_layer=%d, n_head=%d, n_positions=%d", self.n_embd, self.n_layer, self.n_head,
    self.n_positions)
end

return GPT2Model
