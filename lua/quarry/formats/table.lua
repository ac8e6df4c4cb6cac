--- quarry.formats.table: the result as an aligned table for a terminal, digits
-- grouped by thousands unless result.grouping is false (the shell's tables).
-- A format is a function(result) -> text; lua/quarry/formats.lua lists them.
local F = require "quarry.formats"

return function(r)
  local places = r.decimals or {}
  local w, cells, right, head = {}, {}, {}, {}
  for i, f in ipairs(r.fields) do
    head[i] = F.visible(f.label or f.name) -- a value from a file or plugin never drives the terminal
    w[i] = utf8.len(head[i]) or #head[i]
    right[i] = F.is_numeric_field(f)
  end
  for ri, row in ipairs(r.rows) do
    cells[ri] = {}
    for i, f in ipairs(r.fields) do
      local s = F.visible(F.display(row[f.name], f, places, r.grouping == false))
      cells[ri][i] = s
      w[i] = math.max(w[i], utf8.len(s) or #s)
    end
  end
  local function line(vals)
    local parts = {}
    for i, s in ipairs(vals) do
      local pad = string.rep(" ", w[i] - (utf8.len(s) or #s))
      parts[i] = right[i] and (pad .. s) or (s .. pad)
    end
    return (table.concat(parts, "  "):gsub("%s+$", ""))
  end
  local out = {}
  if r.title then out[#out + 1] = F.visible(r.title, "\n") end
  local rule = {}
  for i in ipairs(r.fields) do
    rule[i] = string.rep("-", w[i])
  end
  out[#out + 1] = line(head)
  out[#out + 1] = line(rule)
  for _, c in ipairs(cells) do out[#out + 1] = line(c) end
  if #r.rows == 0 then out[#out + 1] = "(no rows)" end
  if r.footer then out[#out + 1] = F.visible(r.footer, "\n") end
  return table.concat(out, "\n") .. "\n"
end
