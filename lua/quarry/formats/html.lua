--- quarry.formats.html: the result as one self-contained HTML page with an SVG chart.
-- A format is a function(result) -> text; lua/quarry/formats.lua lists them.
local F = require "quarry.formats"

local chart = require "quarry.chart"
local esc = chart.esc

-- The chart twice: 900 wide for screens, 420 for phones (the CSS shows one),
-- so that text stays readable at both without scrolling.
local function charts(r)
  local wide = chart.svg(r)
  if wide == "" then return "" end
  return ('<div class="chart wide">%s</div>\n<div class="chart narrow">%s</div>'):format(wide, chart.svg(r, 420))
end

return function(r)
  local places = r.decimals or {}
  local rows = {}
  for _, row in ipairs(r.rows) do
    local cells = {}
    for i, f in ipairs(r.fields) do
      local cls = F.is_numeric_field(f) and ' class="num"' or ""
      cells[i] = ("<td%s>%s</td>"):format(cls, esc(F.display(row[f.name], f, places)))
    end
    rows[#rows + 1] = "<tr>" .. table.concat(cells) .. "</tr>"
  end
  local head = {}
  for i, f in ipairs(r.fields) do head[i] = "<th>" .. esc(f.label or f.name) .. "</th>" end
  local params = {}
  for k, v in pairs(r.params or {}) do params[#params + 1] = esc(k) .. " = " .. esc(v) end
  table.sort(params)
  return ([[<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>%s</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
@media (max-width: 600px) { body { margin: 1em; } }
.rows { overflow-x: auto; }
.chart svg { display: block; width: 100%%; max-width: 900px; height: auto; }
.chart.narrow { display: none; }
@media (max-width: 640px) { .chart.wide { display: none; } .chart.narrow { display: block; } }
table { border-collapse: collapse; margin-top: 1em; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; white-space: nowrap; }
th { text-align: left; background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.params { color: #666; }
</style></head><body>
<h1>%s</h1>
<p class="params">%s</p>
%s
<div class="rows"><table>
<thead><tr>%s</tr></thead>
<tbody>
%s
</tbody></table></div>
<p class="params">%s</p>
</body></html>
]]):format(esc(r.title or r.name or "quarry report"), esc(r.title or r.name or "quarry report"),
    table.concat(params, " · "), charts(r), table.concat(head), table.concat(rows, "\n"),
    (esc(r.footer or ""):gsub("\n", "<br>\n"))) -- its lines (the totals, the days with no data) apart
end
