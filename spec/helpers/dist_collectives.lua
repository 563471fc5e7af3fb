-- spec/helpers/dist_collectives.lua — run as `mpirun -np 2 lua5.4 spec/helpers/dist_collectives.lua`: exercises
-- cocola.distributed's collectives and prints one line per result ("<rank> <name> <value>") for
-- spec/distributed_spec.lua to check; at the end rank 1 leaves and rank 0's barrier must time out.
-- With a second argument "probe": one large all-reduce, its sum printed by rank 0.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local cocola = require "cocola"
local dist = require "cocola.distributed"
dist.init { timeout = tonumber(arg[1]) or 3 }
local r = dist.rank
if arg[2] == "probe" then
  -- a large all-reduce: shared-memory transfers of this size use the single-copy mechanism (CMA)
  local t = cocola.ones({ 1 << 22 })
  dist.all_reduce(t)
  if r == 0 then print("probe " .. t:sum():item()) end
  os.exit(0)
end
local function say(name, value) io.write(string.format("%d %s %s\n", r, name, tostring(value))); io.flush() end
local function list(t) return table.concat(t:reshape({ -1 }):totable(), ",") end

say("world", dist.world_size)
say("sum", list(dist.all_reduce(cocola.tensor({ 1, 2, 3 }) * (r + 1))))
say("mean", list(dist.all_reduce(cocola.tensor({ 2, 4 }) * (r + 1), "mean")))
say("max", list(dist.all_reduce(cocola.tensor({ r, -r }), "max")))
say("gather", list(dist.all_gather(cocola.tensor({ { r, 10 + r } }))))
say("broadcast", list(dist.broadcast(cocola.tensor({ r + 5, r + 6 }), 1)))
say("int64", list(dist.all_reduce(cocola.tensor({ 3 }, { dtype = "int64" }))))
dist.barrier()
-- the gathered rows' gradient: each rank's loss is the same function of the gathered tensor
local x = (cocola.tensor({ { 1.0, 2.0 } }) * (r + 1)):requires_grad(true)
local g = dist.gather_with_grad(x)
local w = cocola.tensor({ { 1, 2 }, { 3, 4 } })
local loss = (g * w):sum()
loss:backward()
say("gathered", list(g:detach()))
say("gather_grad", list(x.grad))
local y = cocola.tensor({ 1.0 * (r + 1), 2.0 }):requires_grad(true)
local s = dist.all_reduce_with_grad(y)
;(s * cocola.tensor({ r + 1, 1 })):sum():backward()
say("reduced", list(s:detach()))
say("reduce_grad", list(y.grad))
local p = cocola.zeros({ 3 }):requires_grad(true)
p.grad = cocola.tensor({ 1, 2, 3 }) * (r + 1)
local q = cocola.zeros({ 2, 2 }):requires_grad(true)
q.grad = cocola.ones({ 2, 2 }) * (r * 4)
dist.average_gradients({ p, q }, { bucket_mb = 12 / 1024 / 1024 }) -- 3 floats a bucket: two buckets
say("avg_p", list(p.grad))
say("avg_q", list(q.grad))
-- a cuda tensor goes through host staging (where a GPU is present)
if cocola.cuda.is_available() then
  say("cuda_sum", list(dist.all_reduce(cocola.tensor({ 1, 2 }):to("cuda") * (r + 1)):to("cpu")))
end
local ok, err = pcall(dist.all_reduce, cocola.zeros({ r + 1, 3 }))
say("mismatch", (ok and "none" or err:gsub("\n", " ")))
local t0 = cocola.wall_time()
if r == 1 then os.exit(0) end
local ok2, err2 = pcall(dist.barrier)
say("timeout", (ok2 and "none" or err2:gsub("\n", " ")))
say("waited", string.format("%.1f", cocola.wall_time() - t0))
local ok3, err3 = pcall(dist.barrier)
say("after", (ok3 and "none" or err3:gsub("\n", " ")))
os.exit(1)
