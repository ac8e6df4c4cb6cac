--- quarry.formats: a report result as table, csv, json or html text.
-- A result is { title=, params=, fields = {{name=, type=}...}, rows = {...},
-- chart = {x=, y=} }. Numbers stay exact: a numeric column arrives as the
-- string of digits PostgreSQL sent and leaves unquoted in csv and json; only
-- the table format, meant for eyes, rounds and groups digits.
local M = {}

local NUMERIC = { int2 = true, int4 = true, int8 = true, oid = true, numeric = true, float4 = true,
                  float8 = true, number = true, integer = true }

local function is_numeric_field(f) return NUMERIC[f.type or ""] == true end

--- Round a decimal string to `places` digits (half away from zero), exactly.
function M.round_decimal(s, places)
  s = tostring(s)
  local sign, int, frac = s:match("^([-+]?)(%d*)%.?(%d*)$")
  if not int then return s end
  if #frac <= places then
    frac = frac .. string.rep("0", places - #frac)
  else
    local keep, next_digit = frac:sub(1, places), tonumber(frac:sub(places + 1, places + 1))
    local digits = int .. keep
    if next_digit >= 5 then -- add one at the last kept place
      local t, carry = {}, 1
      for i = #digits, 1, -1 do
        local d = tonumber(digits:sub(i, i)) + carry
        carry = d // 10
        t[i] = tostring(d % 10)
      end
      digits = (carry > 0 and "1" or "") .. table.concat(t)
    end
    int, frac = digits:sub(1, #digits - places), digits:sub(#digits - places + 1)
  end
  if int == "" then int = "0" end
  if sign == "-" and not (int .. frac):find("[1-9]") then sign = "" end
  return sign .. int .. (places > 0 and ("." .. frac) or "")
end

--- 1234567.891 -> "1,234,567.891"
function M.group_thousands(s)
  local sign, int, rest = tostring(s):match("^([-+]?)(%d+)(.*)$")
  if not int then return tostring(s) end
  int = int:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
  return sign .. int .. rest
end

local function number_text(v)
  if math.type(v) == "float" then
    if v ~= v or v == math.huge or v == -math.huge then return nil end
    for prec = 15, 17 do
      local s = ("%." .. prec .. "g"):format(v)
      if tonumber(s) == v then return s end
    end
  end
  return tostring(v)
end

-- ---- json ----

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local map = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
    return map[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local function is_array(t)
  local n = #t
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
  end
  return true
end

local function json_value(v, exact_numeric)
  local t = type(v)
  if v == nil then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then return number_text(v) or "null" end
  if t == "string" then
    if exact_numeric and v:match("^-?%d+%.?%d*$") then return v end
    return json_string(v)
  end
  if t == "table" then
    local parts = {}
    if is_array(v) then
      for i = 1, #v do parts[i] = json_value(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do parts[#parts + 1] = json_string(k) .. ":" .. json_value(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  if t == "userdata" then return "null" end -- cjson.null
  return json_string(tostring(v))
end
M.json_value = json_value

function M.json(r)
  local rows = {}
  for i, row in ipairs(r.rows) do
    local parts = {}
    for _, f in ipairs(r.fields) do
      parts[#parts + 1] = json_string(f.name) .. ":" .. json_value(row[f.name], is_numeric_field(f))
    end
    rows[i] = "{" .. table.concat(parts, ",") .. "}"
  end
  local fields = {}
  for i, f in ipairs(r.fields) do fields[i] = json_value({ name = f.name, type = f.type }) end
  return ("{\"report\":%s,\"title\":%s,\"params\":%s,\"fields\":[%s],\"rows\":[%s]}\n"):format(
    json_string(r.name or ""), json_string(r.title or ""), json_value(r.params or {}),
    table.concat(fields, ","), table.concat(rows, ",\n"))
end

-- ---- csv (RFC 4180) ----

local function csv_cell(v, f)
  if v == nil then return "" end
  local s
  if type(v) == "table" then s = json_value(v)
  elseif type(v) == "number" then s = number_text(v) or ""
  else s = tostring(v) end
  if f and is_numeric_field(f) and s:match("^-?%d+%.?%d*$") then return s end
  if s:find('[,"\r\n]') then s = '"' .. s:gsub('"', '""') .. '"' end
  return s
end

function M.csv(r)
  local lines, head = {}, {}
  for i, f in ipairs(r.fields) do head[i] = csv_cell(f.name) end
  lines[1] = table.concat(head, ",")
  for _, row in ipairs(r.rows) do
    local cells = {}
    for i, f in ipairs(r.fields) do cells[i] = csv_cell(row[f.name], f) end
    lines[#lines + 1] = table.concat(cells, ",")
  end
  return table.concat(lines, "\r\n") .. "\r\n"
end

-- ---- table (for a terminal) ----

local function display(v, f, places)
  if v == nil then return "" end
  if type(v) == "table" then return json_value(v) end
  if is_numeric_field(f) or type(v) == "number" then
    local s = type(v) == "number" and (number_text(v) or tostring(v)) or tostring(v)
    if not s:match("^[-+]?%d+%.?%d*$") then return s end
    local p = places[f.name]
    if p == nil and s:find("%.") then p = 2 end
    if p then s = M.round_decimal(s, p) end
    return M.group_thousands(s)
  end
  return tostring(v)
end

function M.table(r)
  local places = r.decimals or {}
  local w, cells, right = {}, {}, {}
  for i, f in ipairs(r.fields) do
    w[i] = #(f.label or f.name)
    right[i] = is_numeric_field(f)
  end
  for ri, row in ipairs(r.rows) do
    cells[ri] = {}
    for i, f in ipairs(r.fields) do
      local s = display(row[f.name], f, places)
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
  if r.title then out[#out + 1] = r.title end
  local head, rule = {}, {}
  for i, f in ipairs(r.fields) do
    head[i] = f.label or f.name
    rule[i] = string.rep("-", w[i])
  end
  out[#out + 1] = line(head)
  out[#out + 1] = line(rule)
  for _, c in ipairs(cells) do out[#out + 1] = line(c) end
  if #r.rows == 0 then out[#out + 1] = "(no rows)" end
  if r.footer then out[#out + 1] = r.footer end
  return table.concat(out, "\n") .. "\n"
end

-- ---- html: one self-contained page with an SVG chart ----

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
      :format(L - 6, y + 4, esc(M.group_thousands(M.round_decimal(number_text(maxy * t / 4), 4))))
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

function M.html(r)
  local places = r.decimals or {}
  local rows = {}
  for _, row in ipairs(r.rows) do
    local cells = {}
    for i, f in ipairs(r.fields) do
      local cls = is_numeric_field(f) and ' class="num"' or ""
      cells[i] = ("<td%s>%s</td>"):format(cls, esc(display(row[f.name], f, places)))
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

M.NAMES = { table = true, csv = true, json = true, html = true }

function M.render(result, format)
  return M[format](result)
end

return M
