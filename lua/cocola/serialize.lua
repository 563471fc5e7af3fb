-- cocola.serialize — safetensors files: load(path) -> {name = tensor}, metadata and
-- save(path, {name = tensor}, {dtype = "float16", metadata = {...}}). The header is JSON (lua-cjson);
-- raw bytes are read and written in C. Every malformed file is a clear error naming the problem.
local core = require "cocola.core"
local cjson = require "cjson"

local M = {}

local ELEMENT_SIZE = { F32 = 4, F64 = 8, I64 = 8, F16 = 2, BF16 = 2, I32 = 4, I8 = 1, U8 = 1, BOOL = 1 }
local FILE_DTYPE = { float32 = "F32", float64 = "F64", int64 = "I64" }

local function fail(path, fmt, ...)
  error(string.format("safetensors '%s': " .. fmt, path, ...), 3)
end

local function as_int(x)
  return type(x) == "number" and math.tointeger(x) or nil
end

-- Parses and checks the header: entries {name, dtype, shape, b, e} sorted by offset, the metadata, the
-- byte where the data starts. Every entry is checked against the file's size and against each other.
local function read_header(path)
  local header_json, data_start, file_size = core._st_header(path)
  local ok, header = pcall(cjson.decode, header_json)
  if not ok then fail(path, "the header is not valid JSON (%s)", tostring(header)) end
  if type(header) ~= "table" then fail(path, "the header is not a JSON object") end
  local data_size = file_size - data_start
  local metadata, entries = {}, {}
  for name, info in pairs(header) do
    if name == "__metadata__" then
      if type(info) ~= "table" then fail(path, "__metadata__ is not an object") end
      for k, v in pairs(info) do metadata[k] = v end
    else
      if type(info) ~= "table" then fail(path, "entry '%s' is not an object", name) end
      local dtype = info.dtype
      if type(dtype) ~= "string" or not ELEMENT_SIZE[dtype] then
        fail(path, "tensor '%s' has an unsupported dtype %s", name, tostring(dtype))
      end
      if type(info.shape) ~= "table" then fail(path, "tensor '%s' has no shape", name) end
      local shape, numel = {}, 1
      for i, s in ipairs(info.shape) do
        local si = as_int(s)
        if not si or si < 0 then fail(path, "tensor '%s' has an invalid size at dim %d", name, i) end
        -- a product past 2^63 would wrap around (and could then match the byte range)
        if si > 0 and numel > math.maxinteger // si // 8 then
          fail(path, "tensor '%s' has a shape of more than 2^60 elements", name)
        end
        shape[i] = si
        numel = numel * si
      end
      local offs = info.data_offsets
      local b, e = type(offs) == "table" and as_int(offs[1]), type(offs) == "table" and as_int(offs[2])
      if not b or not e or b < 0 or e < b then fail(path, "tensor '%s' has invalid data_offsets", name) end
      if e > data_size then
        fail(path, "tensor '%s' data_offsets [%d, %d] are out of range (the data holds %d bytes)", name, b, e, data_size)
      end
      if e - b ~= numel * ELEMENT_SIZE[dtype] then
        fail(path, "tensor '%s' occupies %d bytes but its shape and dtype need %d", name, e - b, numel * ELEMENT_SIZE[dtype])
      end
      entries[#entries + 1] = { name = name, dtype = dtype, shape = shape, b = b, e = e }
    end
  end
  -- the tensors must tile the data buffer exactly
  table.sort(entries, function(x, y) return x.b < y.b or (x.b == y.b and x.e < y.e) end)
  local pos = 0
  for _, ent in ipairs(entries) do
    if ent.b ~= pos then fail(path, "tensor '%s' starts at byte %d where %d was expected (gap or overlap)", ent.name, ent.b, pos) end
    pos = ent.e
  end
  if pos ~= data_size then fail(path, "%d trailing bytes after the last tensor", data_size - pos) end
  return entries, metadata, data_start
end

--- Reads a safetensors file. Returns a table name -> tensor and the metadata table (or {}).
-- F16/BF16 are widened to float32; I32/I8/U8/BOOL to int64.
-- A PyTorch zip checkpoint (.pt/.ckpt, starting with "PK\3\4") is read by the safe native reader
-- instead and returns its nested value (see csrc/lua/ltorch.c; None is cocola.None).
function M.load(path)
  if type(path) ~= "string" then error("load: expected a file path", 2) end
  local fh = io.open(path, "rb")
  if fh then
    local magic = fh:read(4)
    fh:close()
    if magic == "PK\3\4" then return core._torch_load(path) end
  end
  local entries, metadata, data_start = read_header(path)
  local out = {}
  for _, ent in ipairs(entries) do
    out[ent.name] = core._st_read(path, ent.dtype, ent.shape, data_start + ent.b, data_start + ent.e)
  end
  return out, metadata
end

--- Opens a safetensors file without reading its tensors: returns an object with
--   .entries: name -> {dtype = "F32" | ..., shape = {...}} (the file's own dtype names),
--   .metadata, :read(name) -> the tensor (F16/BF16 widened to float32), read when asked.
-- Loading a large checkpoint into a model one tensor at a time keeps a single copy in memory.
function M.open(path)
  if type(path) ~= "string" then error("open: expected a file path", 2) end
  local list, metadata, data_start = read_header(path)
  local entries = {}
  for _, ent in ipairs(list) do entries[ent.name] = ent end
  local file = { path = path, entries = entries, metadata = metadata }
  function file:read(name)
    local ent = entries[name]
    if not ent then error(string.format("safetensors '%s': no tensor named '%s'", path, tostring(name)), 2) end
    return core._st_read(path, ent.dtype, ent.shape, data_start + ent.b, data_start + ent.e)
  end
  return file
end

--- Writes tensors to a safetensors file atomically (a temporary file renamed into place).
-- opts.dtype = "float16" stores float tensors as F16; opts.metadata: string -> string.
function M.save(path, tensors, opts)
  opts = opts or {}
  if type(path) ~= "string" then error("save: expected a file path", 2) end
  if type(tensors) ~= "table" then error("save: expected a table of name -> tensor", 2) end
  local names = {}
  for name, t in pairs(tensors) do
    if type(name) ~= "string" then error("save: tensor names must be strings", 2) end
    if not core.is_tensor(t) then error(string.format("save: '%s' is not a tensor", name), 2) end
    names[#names + 1] = name
  end
  table.sort(names)
  local half = opts.dtype == "float16" or opts.dtype == "F16"
  if opts.dtype and not half then error("save: dtype option must be 'float16' (or nil to keep dtypes)", 2) end
  local parts, list, kinds, pos = {}, {}, {}, 0
  if opts.metadata then
    local md = {}
    for k, v in pairs(opts.metadata) do md[tostring(k)] = tostring(v) end
    -- keys sorted: the same tensors and metadata are the same bytes in every process
    local keys, fields = {}, {}
    for k in pairs(md) do keys[#keys + 1] = k end
    table.sort(keys)
    for i, k in ipairs(keys) do fields[i] = cjson.encode(k) .. ":" .. cjson.encode(md[k]) end
    parts[#parts + 1] = '"__metadata__":{' .. table.concat(fields, ",") .. "}"
  end
  for _, name in ipairs(names) do
    local t = tensors[name]
    local dtype = FILE_DTYPE[t:dtype()]
    if half and dtype ~= "I64" then dtype = "F16" end
    local nbytes = t:numel() * ELEMENT_SIZE[dtype]
    local shape = t.shape
    parts[#parts + 1] = string.format('%s:{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}',
      cjson.encode(name), dtype, table.concat(shape, ","), pos, pos + nbytes)
    pos = pos + nbytes
    list[#list + 1] = t
    kinds[#kinds + 1] = dtype
  end
  core._st_write(path, "{" .. table.concat(parts, ",") .. "}", list, kinds)
end

return M
