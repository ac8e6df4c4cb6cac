--- quarry.formats.tsv: the result as tab-separated values, what a
-- spreadsheet takes from the clipboard: a header line, one line per row,
-- exact digits; a tab or line break inside a value becomes a space, since
-- TSV has no quoting.
local F = require "quarry.formats"

local function cell(v, f) return (F.sheet_text(v, f):gsub("[\t\r\n]", " ")) end

return function(r)
  local lines, head = {}, {}
  for i, f in ipairs(r.fields) do head[i] = cell(F.column(f)) end
  lines[1] = table.concat(head, "\t")
  for _, row in ipairs(r.rows) do
    local cells = {}
    for i, f in ipairs(r.fields) do cells[i] = cell(row[f.name], f) end
    lines[#lines + 1] = table.concat(cells, "\t")
  end
  if r.totals then
    local cells = {}
    for i, f in ipairs(r.fields) do cells[i] = i == 1 and "total" or cell(r.totals[f.name], f) end
    lines[#lines + 1] = table.concat(cells, "\t")
  end
  return table.concat(lines, "\n") .. "\n"
end
