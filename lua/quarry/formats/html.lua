--- quarry.formats.html: the result as one self-contained HTML page with an SVG chart.
-- A format is a function(result) -> text; lua/quarry/formats.lua lists them.
local F = require "quarry.formats"

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
                                          ["'"] = "&#39;" }))
end

local function svg_chart(r)
  local c = r.chart
  if not c or #r.rows == 0 then return "" end
  local W, H, L, B = 900, 320, 70, 40
  local ys, maxy = {}, 0
  for i, row in ipairs(r.rows) do
    ys[i] = tonumber(row[c.y]) or 0
    maxy = math.max(maxy, ys[i])
  end
  if maxy == 0 then maxy = 1 end
  local n = #r.rows
  local bw = (W - L - 10) / n
  local parts = { ('<svg xmlns="http://www.w3.org/2000/svg" id="chart" viewBox="0 0 %d %d" width="%d" height="%d" '
    .. 'role="img" aria-label="%s by %s">'):format(W, H, W, H, esc(c.y), esc(c.x)) }
  parts[#parts + 1] = ('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555"/>'):format(L, H - B, W - 5, H - B)
  parts[#parts + 1] = ('<line x1="%d" y1="10" x2="%d" y2="%d" stroke="#555"/>'):format(L, L, H - B)
  for t = 0, 4 do
    local y = H - B - (H - B - 10) * t / 4
    parts[#parts + 1] = ('<text x="%d" y="%.1f" font-size="11" text-anchor="end">%s</text>')
      :format(L - 6, y + 4, esc(F.group_thousands(F.round_decimal(F.number_text(maxy * t / 4), 4))))
  end
  for i, y in ipairs(ys) do
    local h = (H - B - 10) * y / maxy
    local x = L + (i - 1) * bw
    parts[#parts + 1] = ('<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#2b7bb9">'
      .. '<title>%s: %s</title></rect>'):format(x + bw * 0.1, H - B - h, bw * 0.8, h,
        esc(r.rows[i][c.x]), esc(r.rows[i][c.y]))
    if n <= 16 or i % math.ceil(n / 12) == 1 then
      parts[#parts + 1] = ('<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%s</text>')
        :format(x + bw / 2, H - B + 14, esc(r.rows[i][c.x]))
    end
  end
  local label = {}
  for _, f in ipairs(r.fields) do label[f.name] = f.label or f.name end
  parts[#parts + 1] = ('<text x="%d" y="%d" font-size="12">%s</text>'):format(L, H - 6,
    esc((label[c.y] or c.y) .. " by " .. (label[c.x] or c.x)))
  parts[#parts + 1] = "</svg>"
  return table.concat(parts, "\n")
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
<html lang="en"><head><meta charset="utf-8"><title>%s</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-top: 1em; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; }
th { text-align: left; background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.params { color: #666; }
</style></head><body>
<h1>%s</h1>
<p class="params">%s</p>
%s
<table>
<thead><tr>%s</tr></thead>
<tbody>
%s
</tbody></table>
<p class="params">%s</p>
</body></html>
]]):format(esc(r.title or r.name or "quarry report"), esc(r.title or r.name or "quarry report"),
    table.concat(params, " · "), svg_chart(r), table.concat(head), table.concat(rows, "\n"), esc(r.footer or ""))
end
