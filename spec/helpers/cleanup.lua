-- spec/helpers/cleanup.lua — loaded by busted before the specs (.busted: helper): every path that
-- os.tmpname() hands out during the run (the temporary files and, through helpers.files.tmpdir, the
-- temporary directories the specs make) is removed when busted exits, whatever the specs left there.
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
    if path:match("^/tmp/lua_[%w]+$") then os.execute("rm -rf '" .. path .. "'") end
  end
  made = {}
  return nil, true
end)
