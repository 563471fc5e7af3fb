-- cocola.nn.Identity — returns its input unchanged (placeholder layer); ignores constructor args.
local Module = require "cocola.nn.Module"

local Identity = Module:extend("Identity")

function Identity:init() end

function Identity:forward(x) return x end

return Identity
