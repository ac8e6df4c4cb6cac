--- quarry.formats.csv: the result as RFC 4180 CSV, exact digits: a header
-- of column names, the rows, and -- when the report has totals -- a last
-- row whose first cell is "total" (docs/OUTPUT.md).
-- A format is a function(result) -> text; lua/quarry/formats.lua lists them.
local F = require "quarry.formats"

local function csv_cell(v, f)
  local s = F.sheet_text(v, f)
  if s:find('[,"\r\n]') then s = '"' .. s:gsub('"', '""') .. '"' end
  return s
end

return function(r)
  local lines, head = {}, {}
  for i, f in ipairs(r.fields) do head[i] = csv_cell(F.column(f)) end
  lines[1] = table.concat(head, ",")
  for _, row in ipairs(r.rows) do
    local cells = {}
    for i, f in ipairs(r.fields) do cells[i] = csv_cell(row[f.name], f) end
    lines[#lines + 1] = table.concat(cells, ",")
  end
  if r.totals then
    local cells = {}
    for i, f in ipairs(r.fields) do cells[i] = i == 1 and "total" or csv_cell(r.totals[f.name], f) end
    lines[#lines + 1] = table.concat(cells, ",")
  end
  return table.concat(lines, "\r\n") .. "\r\n"
end
