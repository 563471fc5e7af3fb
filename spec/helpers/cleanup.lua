-- spec/helpers/cleanup.lua — loaded by busted before the specs (.busted: helper): every path that
-- os.tmpname() hands out during the run (the temporary files and, through helpers.files.tmpdir, the
-- temporary directories the specs make), and any file named after it with an extension added, is
-- removed when busted exits, whatever the specs left there (a failing spec skips its own clean-up).
local busted = require "busted"

local made = {}
local tmpname = os.tmpname
os.tmpname = function()
  local path = tmpname()
  made[#made + 1] = path
  return path
end

busted.subscribe({ "exit" }, function()
  for i = #made, 1, -1 do
    local path = made[i]
    -- the path and what the specs made beside it by adding an extension (os.tmpname() .. ".wav")
    if path:match("^/tmp/lua_[%w]+$") then os.execute("rm -rf '" .. path .. "' '" .. path .. "'.*") end
  end
  made = {}
  return nil, true
end)
