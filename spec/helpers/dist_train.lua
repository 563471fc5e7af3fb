-- spec/helpers/dist_train.lua — runs cocola.recipes.train with key=value arguments, alone or as one rank of
-- `mpirun ... lua5.4 spec/helpers/dist_train.lua ...`, and (rank 0) writes the step losses, one per line, to
-- the file named by result=. fault=kill@N or fault=hang@N makes rank 1 kill itself (SIGKILL) or stop
-- (SIGSTOP) when step N averages its gradients (a rank that dies or hangs in the middle of a run).
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local recipe = require "cocola.recipe"
local train = require "cocola.recipes.train"

local args, result, fault, fault_step = {}, nil, nil, nil
for _, a in ipairs(arg) do
  local k, v = a:match("^([%w_]+)=(.*)$")
  if k == "result" then result = v
  elseif k == "fault" then
    fault, fault_step = v:match("^(%a+)@(%d+)$")
    fault_step = tonumber(fault_step)
  else args[#args + 1] = a end
end
if fault then
  local dist = require "cocola.distributed"
  local average, steps = dist.average_gradients, 0
  dist.average_gradients = function(...)
    steps = steps + 1
    if dist.rank == 1 and steps == fault_step then
      local pid = io.open("/proc/self/stat"):read("n")
      os.execute(string.format("kill -%s %d", fault == "kill" and "KILL" or "STOP", pid))
    end
    return average(...)
  end
end
local cfg = recipe.config(train.DEFAULTS, args)
local ok, losses = pcall(train.run, cfg, function(line) io.stderr:write(line, "\n") end)
if not ok then
  io.stderr:write("dist_train: ", tostring(losses), "\n")
  os.exit(1)
end
local dist = require "cocola.distributed"
if result and dist.rank == 0 then
  local f = assert(io.open(result, "w"))
  for _, l in ipairs(losses) do f:write(string.format("%.9g\n", l)) end
  f:close()
end
os.exit(0)
