-- cocola.cuda — device queries; the CUDA backend registers itself when the library was built
-- with it and a driver and GPU are present.
local core = require "cocola.core"

local cuda = {}

function cuda.is_available() return core.device_available("cuda") end

function cuda.device_count() return cuda.is_available() and 1 or 0 end

function cuda.synchronize() end

function cuda.memory_stats()
  return { live_bytes = core.live_bytes("cuda") }
end

function cuda.empty_cache() end

return cuda
