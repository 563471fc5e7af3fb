-- cocola.data — stem datasets. cocola.data.open(layout, root, split, opts) -> tracks, skipped for
-- the layouts "musdb", "moisesdb", "slakh", "cocochorales", "stems_folder"; cocola.data.mixture
-- concatenates several (the reference's "All": MoisesDB + Slakh2100 + CocoChorales random, each
-- weighing by its number of chunks).
local data = {}

local LAYOUTS = {
  musdb = "cocola.data.musdb", moisesdb = "cocola.data.moisesdb", slakh = "cocola.data.slakh",
  cocochorales = "cocola.data.cocochorales", stems_folder = "cocola.data.stems_folder",
}

function data.open(layout, root, split, opts)
  local name = LAYOUTS[layout]
  if not name then
    local known = {}
    for k in pairs(LAYOUTS) do known[#known + 1] = k end
    table.sort(known)
    error(string.format("unknown dataset layout '%s' (known: %s)", tostring(layout), table.concat(known, ", ")), 2)
  end
  if type(root) ~= "string" then error("data.open: root must be a directory path", 2) end
  return require(name)(root, split, opts)
end

--- mixture{{layout, root, split, opts}, ...} -> all their tracks, in order
function data.mixture(parts)
  local tracks, skipped = {}, {}
  for _, p in ipairs(parts) do
    local t, s = data.open(p[1], p[2], p[3], p[4])
    table.move(t, 1, #t, #tracks + 1, tracks)
    table.move(s, 1, #s, #skipped + 1, skipped)
  end
  return tracks, skipped
end

return data
