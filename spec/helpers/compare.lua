-- spec/helpers/compare.lua — norm-wise comparison of a cocola tensor with a reference tensor:
-- rel_err(a, b) = ||a - b||_2 / max(||b||_2, tiny). Computed in plain Lua from totable() so the
-- check does not depend on the engine's own arithmetic. Shapes must match exactly. Also raises(fn, ...): the
-- error a call must raise, with the plain strings its message must contain.
local M = {}

M.TINY = 1e-12

local function flatten(v, out)
  if type(v) == "table" then
    for i = 1, #v do flatten(v[i], out) end
  else
    out[#out + 1] = v
  end
  return out
end

--- "{2,3}" for messages
function M.shape_string(t)
  local s = t.shape
  for i = 1, #s do s[i] = tostring(s[i]) end
  return "{" .. table.concat(s, ",") .. "}"
end

--- Returns the relative error (a number; math.huge on a shape mismatch or a NaN) and, when the
-- shapes differ, a message saying how.
function M.rel_err(a, b)
  local sa, sb = a.shape, b.shape
  local same = #sa == #sb
  for i = 1, #sa do same = same and sa[i] == sb[i] end
  if not same then
    return math.huge, string.format("shape %s, expected %s", M.shape_string(a), M.shape_string(b))
  end
  local va, vb = flatten(a:contiguous():totable(), {}), flatten(b:contiguous():totable(), {})
  if #va ~= #vb then return math.huge, string.format("%d values, expected %d", #va, #vb) end
  local diff, ref = 0.0, 0.0
  for i = 1, #vb do
    local d = va[i] - vb[i]
    diff = diff + d * d
    ref = ref + vb[i] * vb[i]
  end
  local err = math.sqrt(diff) / math.max(math.sqrt(ref), M.TINY)
  if err ~= err then return math.huge, "NaN in the result" end
  return err
end

--- Asserts rel_err(a, b) <= tol; `what` names the comparison in the failure message.
function M.assert_close(a, b, tol, what)
  local err, why = M.rel_err(a, b)
  if not (err <= tol) then
    error(string.format("%s: relative error %.3e exceeds %.1e%s", what, err, tol, why and (" (" .. why .. ")") or ""), 2)
  end
  return err
end

--- raises(fn, ...) -> the message: asserts fn() raises an error whose message contains every given plain string
function M.raises(fn, ...)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error, but the call succeeded")
  err = tostring(err)
  for _, s in ipairs({ ... }) do
    assert(err:find(s, 1, true), string.format("error message %q does not contain %q", err, s))
  end
  return err
end

return M
