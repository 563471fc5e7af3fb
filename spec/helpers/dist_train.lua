-- spec/helpers/dist_train.lua — runs cocola.recipes.train with key=value arguments, alone or as one rank of
-- `mpirun ... lua5.4 spec/helpers/dist_train.lua ...`, and (rank 0) writes the step losses, one per line, to
-- the file named by result=; stems=<dir> first writes the tiny stem dataset the distributed spec trains on.
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
local recipe = require "cocola.recipe"
local train = require "cocola.recipes.train"

local args, result = {}, nil
for _, a in ipairs(arg) do
  local k, v = a:match("^([%w_]+)=(.*)$")
  if k == "result" then result = v else args[#args + 1] = a end
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
