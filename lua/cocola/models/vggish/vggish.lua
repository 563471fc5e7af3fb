-- cocola.models.vggish.vggish — VGGish as torchvggish defines it (harritaylor/torchvggish vggish.py: VGG,
-- make_layers, Postprocessor), the default embedding of the FAD libraries (frechet_audio_distance, fadtk).
--   features: [64, M, 128, M, 256, 256, M, 512, 512, M], each number a Conv2d 3x3 padding 1 + ReLU, M a
--     MaxPool2d 2x2: (N, 1, 96, 64) -> (N, 512, 6, 4)
--   flattened in (H = 6, W = 4, C = 512) order (transpose(1, 3), transpose(1, 2), flatten), 12288 values
--   embeddings: Linear(12288, 4096) + ReLU, Linear(4096, 4096) + ReLU, Linear(4096, 128) [+ ReLU]
--   forward(examples (N, 1, 96, 64)) -> (N, 128)
-- State-dict names are torchvggish's: features.{0,3,6,8,11,13}.{weight,bias}, embeddings.{0,2,4}.{weight,bias}
--   (weights file vggish-10086976.pth, 72,141,184 parameters).
-- Options (VGGish(opts), VGGish.from_file(path, opts)):
--   activation = false: the final ReLU. The FAD libraries drop it (use_activation = False); torchvggish's own
--     model keeps it (activation = true).
--   pca = false: torchvggish's postprocess, with the PCA file vggish_pca_params-970ea276.pth (pca_path):
--     P = (pca_eigen_vectors @ (E^T - pca_means))^T, clamped to [-2, 2], quantised round((P + 2) * 255 / 4)
--     (round half to even, as torch.round); float32 values 0 .. 255. from_file turns it on when pca_path is
--     given, unless pca = false.
--   channels, embeddings: the widths (default the real ones, {64, "M", 128, "M", 256, 256, "M", 512, 512, "M"}
--     and {4096, 4096, 128}); the flatten size is last_channels * 6 * 4. Other widths serve for tests.
-- embed(wave, sr): wave (samples) or (channels, samples) float32/float64 at sr Hz -> mean of the channels ->
--   resampled to 16 kHz (soxr HQ; torchvggish uses resampy, so resampled inputs differ slightly) -> the log-mel
--   examples (vggish_features.lua) -> forward, without gradients -> (examples, 128). A clip shorter than one
--   example (15600 samples at 16 kHz, about 0.975 s) gives an empty (0, 128) result, as torchvggish's does;
--   a 10.23 s clip gives 10 rows. Unlike torchvggish's postprocess, the result is never squeezed.
local cocola = require "cocola"
local nn = require "cocola.nn"
local audio = require "cocola.audio"
local features = require "cocola.models.vggish.vggish_features"

local VGGish = nn.Module:extend("VGGish")

VGGish.WEIGHTS_FILE = "vggish-10086976.pth"
VGGish.PCA_FILE = "vggish_pca_params-970ea276.pth"
VGGish.RELEASE = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"
VGGish.PARAMETER_COUNT = 72141184 -- the real network's

local function real_channels() return { 64, "M", 128, "M", 256, 256, "M", 512, 512, "M" } end
local function real_embeddings() return { 4096, 4096, 128 } end

local OPTIONS = { activation = true, pca = true, channels = true, embeddings = true, pca_path = true }

local function check_options(opts, where)
  if type(opts) ~= "table" or cocola.is_tensor(opts) then error(where .. ": expected an options table", 4) end
  for k in pairs(opts) do
    if not OPTIONS[k] then
      error(string.format("%s: unknown option '%s' (known: activation, pca, pca_path, channels, embeddings)", where,
        tostring(k)), 4)
    end
  end
  for _, k in ipairs({ "activation", "pca" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then
      error(string.format("%s: %s must be true or false, got %s", where, k, tostring(opts[k])), 4)
    end
  end
end

--- VGGish({activation = false, pca = false, channels = real, embeddings = real}): random weights (PyTorch's
--- default initialisation); pca = true needs load_pca before use
function VGGish:init(opts)
  opts = opts or {}
  check_options(opts, "VGGish")
  local channels = opts.channels or real_channels()
  local widths = opts.embeddings or real_embeddings()
  if type(channels) ~= "table" or #channels == 0 then error("VGGish: channels must be a list of widths and \"M\"", 3) end
  if type(widths) ~= "table" or #widths ~= 3 then error("VGGish: embeddings must list 3 widths", 3) end
  local feats = nn.Sequential()
  local in_channels, h, w = 1, features.EXAMPLE_FRAMES, features.NUM_MEL_BINS
  for i, v in ipairs(channels) do
    if v == "M" then
      feats:append(nn.MaxPool2d(2, { stride = 2 }))
      h, w = h // 2, w // 2
    elseif math.type(v) == "integer" and v > 0 then
      feats:append(nn.Conv2d(in_channels, v, 3, { padding = 1 }))
      feats:append(nn.ReLU())
      in_channels = v
    else
      error(string.format("VGGish: channels[%d] must be a positive integer or \"M\", got %s", i, tostring(v)), 3)
    end
  end
  if h < 1 or w < 1 then error("VGGish: too many max-pools for a 96 x 64 example", 3) end
  for i = 1, 3 do
    if math.type(widths[i]) ~= "integer" or widths[i] < 1 then
      error(string.format("VGGish: embeddings[%d] must be a positive integer", i), 3)
    end
  end
  self.features = feats
  self.flat_size = in_channels * h * w
  self.embeddings = nn.Sequential(
    nn.Linear(self.flat_size, widths[1]), nn.ReLU(),
    nn.Linear(widths[1], widths[2]), nn.ReLU(),
    nn.Linear(widths[2], widths[3]), nn.ReLU())
  self.embedding_size = widths[3]
  self.activation = opts.activation == true
  self.pca = opts.pca == true
end

local function shape_of(t)
  return cocola.is_tensor(t) and (t:dtype() .. " " .. t:shape_string()) or type(t)
end

--- forward(examples (N, 1, 96, 64)) -> (N, embedding_size): the embeddings (final ReLU when activation),
--- postprocessed when pca
function VGGish:forward(x)
  if not cocola.is_tensor(x) or x:dim() ~= 4 or x:size(2) ~= 1 or x:size(3) ~= features.EXAMPLE_FRAMES
      or x:size(4) ~= features.NUM_MEL_BINS then
    error("VGGish: expected log-mel examples (N, 1, 96, 64), got " .. shape_of(x), 2)
  end
  if x:size(1) == 0 then
    return cocola.zeros({ 0, self.embedding_size }, { device = self.embeddings[1].weight:device() })
  end
  x = self.features(x)
  x = x:transpose(2, 4):transpose(2, 3):contiguous()
  x = x:view({ x:size(1), self.flat_size })
  local layers = self.embeddings:children()
  for i = 1, 5 do x = layers[i](x) end
  if self.activation then x = layers[6](x) end
  if self.pca then x = self:postprocess(x) end
  return x
end

--- pca_project(E (N, embedding_size)) -> (pca_eigen_vectors @ (E^T - pca_means))^T, before clamping
function VGGish:pca_project(e)
  local eig, means = self.pca_eigen_vectors, self.pca_means
  if not eig then
    error(string.format("VGGish: the PCA postprocess needs the PCA parameters (%s: from_file's pca_path or "
      .. "load_pca)", VGGish.PCA_FILE), 3)
  end
  if eig:device() ~= e:device() then eig, means = eig:to(e:device()), means:to(e:device()) end
  return eig:matmul(e:t() - means):t():contiguous()
end

--- postprocess(E) -> torchvggish's quantised PCA embeddings (float32 0 .. 255)
function VGGish:postprocess(e)
  local p = self:pca_project(e):clamp(-2.0, 2.0)
  return ((p + 2.0) * (255.0 / 4.0)):round()
end

-- the tensor of a value of a PyTorch file: a tensor, or a numpy array (float32/float64, C or Fortran order)
-- as pickled by numpy (numpy.core.multiarray._reconstruct); nil, reason otherwise
local function as_tensor(v)
  if cocola.is_tensor(v) then return v end
  if type(v) ~= "table" or v.__global ~= "numpy.core.multiarray._reconstruct" or type(v.state) ~= "table" then
    return nil, "not a tensor"
  end
  local st = v.state
  local shape, dtype, fortran, raw = st[2], st[3], st[4], st[5]
  if type(shape) ~= "table" or type(dtype) ~= "table" or type(raw) ~= "string" or type(dtype.args) ~= "table" then
    return nil, "a numpy array in an unknown layout"
  end
  local code = dtype.args[1]
  local order = type(dtype.state) == "table" and dtype.state[2] or "<"
  local fmt = ({ f4 = "f", f8 = "d" })[code]
  if not fmt then return nil, "a numpy array of dtype " .. tostring(code) .. " (float32 or float64 expected)" end
  if order == ">" then fmt = ">" .. fmt else fmt = "<" .. fmt end
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local size = code == "f4" and 4 or 8
  if #raw ~= n * size then return nil, "a numpy array whose data does not match its shape" end
  local vals = {}
  for i = 1, n do vals[i] = string.unpack(fmt, raw, (i - 1) * size + 1) end
  local dims = {}
  for i, s in ipairs(shape) do dims[i] = s end
  if #dims == 0 then return nil, "a numpy scalar" end
  if fortran == true then
    local rev = {}
    for i = #dims, 1, -1 do rev[#rev + 1] = dims[i] end
    local t = cocola.tensor(vals):view(rev)
    local perm = {}
    for i = #dims, 1, -1 do perm[#perm + 1] = i end
    return t:permute(perm):contiguous():to("float32")
  end
  return cocola.tensor(vals):view(dims):to("float32")
end
VGGish._as_tensor = as_tensor

local function read_file(path, what, supply)
  if type(path) ~= "string" then error(string.format("VGGish: %s must be a file path, got %s", what, type(path)), 4) end
  local f = io.open(path, "rb")
  if not f then
    error(string.format("VGGish: %s: no such file; supply torchvggish's %s (%s%s)", path, supply, VGGish.RELEASE,
      supply), 4)
  end
  f:close()
  local ok, v = pcall(cocola.load, path)
  if not ok then error(string.format("VGGish: %s: %s", path, tostring(v):gsub("^.-%.lua:%d+: ", "")), 4) end
  if type(v) ~= "table" or cocola.is_tensor(v) then
    error(string.format("VGGish: %s does not hold a state dict (a table of name -> tensor)", path), 4)
  end
  return v
end

--- load_weights(path): a torchvggish state dict (.pth) loaded strictly: every key of the network with its
--- shape, no other key; errors name the file and the keys
function VGGish:load_weights(path)
  local sd = read_file(path, "the weights path", VGGish.WEIGHTS_FILE)
  local expected = self:named_state()
  local missing, wrong, known, tensors = {}, {}, {}, {}
  for _, e in ipairs(expected) do
    local name, t = e[1], e[2]
    known[name] = true
    local v = sd[name]
    if v == nil then
      missing[#missing + 1] = name
    else
      local got, why = as_tensor(v)
      if not got then
        wrong[#wrong + 1] = string.format("%s is %s", name, why)
      else
        local same = got:dim() == t:dim()
        for d = 1, t:dim() do same = same and got:size(d) == t:size(d) end
        if not same then
          wrong[#wrong + 1] = string.format("%s has shape %s in the file, %s in the model", name, got:shape_string(),
            t:shape_string())
        end
        tensors[name] = got
      end
    end
  end
  local unexpected = {}
  for k in pairs(sd) do if not known[k] then unexpected[#unexpected + 1] = tostring(k) end end
  table.sort(unexpected)
  if #missing > 0 or #unexpected > 0 or #wrong > 0 then
    local parts = {}
    if #missing > 0 then parts[#parts + 1] = "missing: " .. table.concat(missing, ", ") end
    if #unexpected > 0 then parts[#parts + 1] = "unexpected: " .. table.concat(unexpected, ", ") end
    if #wrong > 0 then parts[#parts + 1] = "wrong: " .. table.concat(wrong, "; ") end
    error(string.format("VGGish: %s does not match the VGGish network: %s", path, table.concat(parts, "; ")), 3)
  end
  cocola.no_grad(function()
    for _, e in ipairs(expected) do
      local src, dst = tensors[e[1]], e[2]
      if src:dtype() ~= dst:dtype() then src = src:to(dst:dtype()) end
      if src:device() ~= dst:device() then src = src:to(dst:device()) end
      dst:copy_(src)
    end
  end)
  return self
end

--- load_pca(path): torchvggish's PCA parameters (pca_eigen_vectors (E, E), pca_means (E) or (E, 1); torch
--- tensors or numpy arrays), kept as float32 buffers outside the state dict; turns pca on
function VGGish:load_pca(path)
  local sd = read_file(path, "pca_path", VGGish.PCA_FILE)
  local E = self.embedding_size
  local vals = {}
  for _, k in ipairs({ "pca_eigen_vectors", "pca_means" }) do
    if sd[k] == nil then error(string.format("VGGish: %s has no key %s", path, k), 2) end
    local t, why = as_tensor(sd[k])
    if not t then error(string.format("VGGish: %s: %s is %s", path, k, why), 2) end
    vals[k] = t:to("float32")
  end
  for k in pairs(sd) do
    if k ~= "pca_eigen_vectors" and k ~= "pca_means" then
      error(string.format("VGGish: %s: unexpected key %s (expected pca_eigen_vectors, pca_means)", path, tostring(k)), 2)
    end
  end
  local eig, means = vals.pca_eigen_vectors, vals.pca_means
  if eig:dim() ~= 2 or eig:size(1) ~= E or eig:size(2) ~= E then
    error(string.format("VGGish: %s: pca_eigen_vectors has shape %s, expected {%d,%d}", path, eig:shape_string(), E, E), 2)
  end
  if not ((means:dim() == 1 and means:size(1) == E) or (means:dim() == 2 and means:size(1) == E and means:size(2) == 1)) then
    error(string.format("VGGish: %s: pca_means has shape %s, expected {%d} or {%d,1}", path, means:shape_string(), E, E), 2)
  end
  local dev = self.embeddings[1].weight:device()
  rawset(self, "pca_eigen_vectors", eig:contiguous():to(dev))
  rawset(self, "pca_means", means:reshape({ E, 1 }):contiguous():to(dev))
  self.pca = true
  return self
end

--- VGGish.from_file(path, {pca_path =, pca = (pca_path given), activation = false, channels =, embeddings =})
--- -> the network with torchvggish's weights (vggish-10086976.pth), in eval mode
function VGGish.from_file(path, opts)
  opts = opts or {}
  check_options(opts, "VGGish.from_file")
  local net_opts = { activation = opts.activation, channels = opts.channels, embeddings = opts.embeddings }
  local model = VGGish(net_opts)
  model:load_weights(path)
  local pca = opts.pca
  if pca == nil then pca = opts.pca_path ~= nil end
  if pca then
    if opts.pca_path == nil then
      error(string.format("VGGish.from_file: pca = true needs pca_path, torchvggish's %s (%s%s)", VGGish.PCA_FILE,
        VGGish.RELEASE, VGGish.PCA_FILE), 2)
    end
    model:load_pca(opts.pca_path)
  end
  model.pca = pca
  return model:eval()
end

VGGish.from_pretrained = VGGish.from_file

--- examples(wave, sr) -> (examples, 1, 96, 64): mean of the channels, resampled to 16 kHz, log-mel examples
function VGGish.examples(wave, sr)
  if not cocola.is_tensor(wave) or (wave:dim() ~= 1 and wave:dim() ~= 2) then
    error("VGGish: expected a wave (samples) or (channels, samples), got " .. shape_of(wave), 3)
  end
  if math.type(sr) ~= "integer" or sr <= 0 then
    error("VGGish: the sample rate must be a positive integer number of Hz, got " .. tostring(sr), 3)
  end
  local dt = wave:dtype()
  if dt ~= "float32" and dt ~= "float64" then error("VGGish: the wave must be float32 or float64, got " .. dt, 3) end
  local w = wave:to("cpu"):to("float32")
  if w:dim() == 2 then
    w = w:size(1) == 1 and w:select(1, 1) or w:mean(1)
  end
  w = w:contiguous()
  if sr ~= features.SAMPLE_RATE and w:size(1) > 0 then
    w = audio.resample(w:unsqueeze(1), sr, features.SAMPLE_RATE):select(1, 1):contiguous()
  end
  return features.examples(w)
end

--- embed(wave, sr) -> (examples, embedding_size), see the header
function VGGish:embed(wave, sr)
  local ok, ex = pcall(VGGish.examples, wave, sr)
  if not ok then error(tostring(ex):gsub("^.-%.lua:%d+: ", ""), 2) end
  local dev = self.embeddings[1].weight:device()
  if ex:device() ~= dev then ex = ex:to(dev) end
  return cocola.no_grad(function() return self:forward(ex) end)
end

--- embed_batch({{wave, sr}, ...}) -> {(examples_i, 128), ...}: embed for several clips in one forward pass
--- (the first fully connected layer then reads its weights once for them all); a clip shorter than one
--- example gives (0, 128)
function VGGish:embed_batch(clips)
  local parts, counts = {}, {}
  for i, clip in ipairs(clips) do
    local ok, ex = pcall(VGGish.examples, clip[1], clip[2])
    if not ok then error(tostring(ex):gsub("^.-%.lua:%d+: ", ""), 2) end
    counts[i] = ex:size(1)
    if counts[i] > 0 then parts[#parts + 1] = ex end
  end
  local all
  if #parts > 0 then
    local dev = self.embeddings[1].weight:device()
    local ex = cocola.cat(parts, 1)
    if ex:device() ~= dev then ex = ex:to(dev) end
    all = cocola.no_grad(function() return self:forward(ex) end)
  end
  local out, at = {}, 1
  for i, n in ipairs(counts) do
    out[i] = n > 0 and all:narrow(1, at, n):contiguous() or cocola.zeros({ 0, self.embedding_size })
    at = at + n
  end
  return out
end

return VGGish
