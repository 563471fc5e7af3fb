-- cocola.models — the model constructors, loaded on first use:
--   models.cocola{input = "hpss" | "mel", embedding_dim = 512, dropout = 0.1, ...} (the COCOLA
--   coherence model, cocola.models.cocola), models.EfficientNet{...} (the B0 feature extractor).
local lazy = {
  cocola = "cocola.models.cocola",
  CoCola = "cocola.models.cocola",
  EfficientNet = "cocola.models.efficientnet.EfficientNet",
}

local models = {}

return setmetatable(models, {
  __index = function(t, key)
    local name = lazy[key]
    if name then
      local m = require(name)
      rawset(t, key, m)
      return m
    end
  end,
})
