--- quarry.chart: a report's bar chart as SVG, laid out so that a reader can
-- trust it: round ticks (1, 2 or 5 times a power of ten) with their units,
-- axis titles, and margins measured from the widest label so no text is
-- clipped at any magnitude. The html format embeds it; the browser test
-- (tests/spec/html_spec.lua) checks every text element lies inside the box.
local F = require "quarry.formats"

local M = {}

local FONT = 13    -- tick and axis labels, px in the viewBox
local TITLE = 14
local WIDE = 900   -- viewBox width of the desktop chart; html.lua also asks for a phone-width one
local PLOT_H = 280

--- An upper bound of the width of `s` at font size `size` in a sans-serif
-- face (per character class, rounded up): layout uses it for margins and
-- label spacing, so overestimating only costs whitespace.
function M.text_width(s, size)
  local w = 0
  for _, c in utf8.codes(tostring(s)) do
    local ch = utf8.char(c)
    if ch:match("%d") then w = w + 0.60
    elseif ch:match("[%u]") then w = w + (ch:match("[MW]") and 0.95 or 0.74)
    elseif ch:match("[%l]") then w = w + (ch:match("[mw]") and 0.90 or 0.60)
    elseif ch:match("[ .,:;'!|il]") then w = w + 0.34
    else w = w + 0.70 end
  end
  return w * size * 1.1 -- faces differ (DejaVu Sans is wide): a tenth to spare
end

--- Round ticks covering [lo, hi]: { step=, decimals=, values = {...} } with
-- about `want` intervals; the step is 1, 2 or 5 times a power of ten, so
-- labels are short and exact.
function M.ticks(lo, hi, want)
  want = want or 5
  lo, hi = math.min(lo, 0), math.max(hi, 0)
  if hi - lo <= 0 then hi = lo + 1 end
  local raw = (hi - lo) / want
  local exp = math.floor(math.log(raw, 10))
  local base = 10.0 ^ exp
  local step
  for _, m in ipairs({ 1, 2, 5, 10 }) do
    if m * base >= raw * (1 - 1e-9) then step = m * base; break end
  end
  if step >= 10 * base then exp = exp + 1 end
  local decimals = math.max(0, -exp)
  local first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
  local values = {}
  for i = first, last do values[#values + 1] = i * step end
  return { step = step, decimals = decimals, values = values, lo = first * step, hi = last * step }
end

--- A tick value as its label: exact at the tick's decimals, thousands grouped.
function M.tick_label(v, decimals)
  local s = ("%." .. decimals .. "f"):format(v)
  if s:match("^%-0%.?0*$") then s = s:sub(2) end
  return F.group_thousands(s)
end

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
                                          ["'"] = "&#39;" }))
end
M.esc = esc

local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }

-- The x label of a key: dates as "1 Mar" (the year is in the title and the
-- axis title), months as "Mar 2024", anything else as it is, cut at 24
-- characters (the bar's tooltip keeps the whole).
local function x_label(v)
  local s = tostring(v)
  local y, m, d = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  if y then return ("%d %s"):format(tonumber(d), MONTHS[tonumber(m)]) end
  y, m = s:match("^(%d%d%d%d)%-(%d%d)$")
  if y then return ("%s %s"):format(MONTHS[tonumber(m)], y) end
  if utf8.len(s) and utf8.len(s) > 24 then s = s:sub(1, utf8.offset(s, 24) - 1) .. "…" end
  return s
end

-- Which bars get an x label: every k-th, k the smallest of 1, 2, 7, 14 ...
-- (weeks for days) that keeps labels apart.
local function label_every(n, slot, need)
  for _, k in ipairs({ 1, 2, 3, 4, 6, 7, 12, 14, 24, 28, 48, 96, 192, 366 }) do
    if slot * k >= need then return k end
  end
  return math.max(1, n)
end

local function axis_title(f)
  if not f then return "" end
  if f.label then return f.label .. (f.unit and (" (" .. f.unit .. ")") or "") end
  local s = f.name:gsub("_", " ")
  if f.unit then -- curtailed_mwh in MWh: "curtailed (MWh)"
    s = s:gsub(" " .. f.unit:lower() .. "$", "") .. " (" .. f.unit .. ")"
  end
  return s
end

--- The SVG of result `r` (see quarry.formats), `width` units wide (900 by
-- default), or "" when it has no chart or no rows.
function M.svg(r, width)
  local W = width or WIDE
  local c = r.chart
  if not c or #r.rows == 0 then return "" end
  local field = {}
  for _, f in ipairs(r.fields) do field[f.name] = f end
  local ys, lo, hi = {}, 0, 0
  for i, row in ipairs(r.rows) do
    ys[i] = tonumber(row[c.y]) or 0
    lo, hi = math.min(lo, ys[i]), math.max(hi, ys[i])
  end
  local t = M.ticks(lo, hi, 5)
  local labels, widest_tick = {}, 0
  for i, v in ipairs(t.values) do
    labels[i] = M.tick_label(v, t.decimals)
    widest_tick = math.max(widest_tick, M.text_width(labels[i], FONT))
  end
  local n = #r.rows
  local xs, widest_x = {}, 0
  for i, row in ipairs(r.rows) do
    xs[i] = x_label(row[c.x])
    widest_x = math.max(widest_x, M.text_width(xs[i], FONT))
  end
  local ytitle, xtitle = axis_title(field[c.y]), axis_title(field[c.x])
  local L = math.ceil(10 + TITLE + 12 + widest_tick + 8) -- y title, gap, tick labels, tick mark
  local TOP = 40
  -- Upright labels if some spacing keeps them apart (the last one may reach
  -- past its bar into the right margin); else at 45 degrees, the first one
  -- hanging left of its bar.
  -- A time axis (dates, months, periods) may label every k-th bar; names
  -- (farms, lead parties) each keep theirs, turned if need be.
  local timeline = true
  for _, row in ipairs(r.rows) do
    if not tostring(row[c.x]):match("^[%d%-]+$") then timeline = false; break end
  end
  local R = math.max(20, math.ceil(widest_x / 2 + 4))
  local slot = (W - L - R) / n
  local every = timeline and label_every(n, slot, widest_x + 8) or 1
  local rotate = slot * every < widest_x + 8
  if rotate then
    R = 20
    L = math.max(L, math.ceil(widest_x * 0.71 - (W - L - R) / n / 2 + 8))
    slot = (W - L - R) / n
    every = label_every(n, slot, FONT * 1.9) -- turned lines of text 1.3 font heights apart
  end
  local label_h = rotate and math.ceil(widest_x * 0.71 + FONT) or FONT + 4
  local B = 8 + label_h + 10 + TITLE + 8 -- tick, labels, gap, x title, bottom
  local H = TOP + PLOT_H + B
  local function ypos(v) return TOP + PLOT_H * (t.hi - v) / (t.hi - t.lo) end

  local out = { ('<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 %d %d" '
    .. 'preserveAspectRatio="xMinYMin meet" role="img" aria-label="%s by %s" font-family="system-ui, sans-serif">')
    :format(W, H, esc(ytitle), esc(xtitle)) }
  local function add(fmt, ...) out[#out + 1] = fmt:format(...) end
  local title, tx = ytitle .. " by " .. xtitle, L -- over the plot; else from the edge; else the y title alone
  if M.text_width(title, TITLE) > W - L - R then tx = 10 end
  if M.text_width(title, TITLE) > W - 20 then title = ytitle end
  add('<text class="title" x="%d" y="%d" font-size="%d" font-weight="600">%s</text>', tx, 22, TITLE, esc(title))
  for i, v in ipairs(t.values) do
    local y = ypos(v)
    add('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>', L, y, W - R, y, v == 0 and "#555" or "#e3e3e3")
    add('<text class="tick" x="%d" y="%.1f" font-size="%d" text-anchor="end">%s</text>', L - 8, y + FONT * 0.35,
      FONT, esc(labels[i]))
  end
  add('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555"/>', L, TOP, L, TOP + PLOT_H)
  local zero = ypos(0)
  for i, y in ipairs(ys) do
    local x = L + (i - 1) * slot
    local top, h = math.min(ypos(y), zero), math.abs(ypos(y) - zero)
    add('<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#2b7bb9"><title>%s: %s%s</title></rect>',
      x + slot * 0.12, top, slot * 0.76, h, esc(r.rows[i][c.x]), esc(F.display(r.rows[i][c.y], field[c.y] or {}, {})),
      field[c.y] and field[c.y].unit and (" " .. esc(field[c.y].unit)) or "")
    if (i - 1) % every == 0 then
      local cx, ly = x + slot / 2, TOP + PLOT_H + 8 + FONT
      if rotate then
        add('<text class="xlabel" x="%.1f" y="%d" font-size="%d" text-anchor="end" transform="rotate(-45 %.1f %d)">'
          .. '%s</text>', cx + FONT * 0.3, ly - 4, FONT, cx + FONT * 0.3, ly - 4, esc(xs[i]))
      else
        add('<text class="xlabel" x="%.1f" y="%d" font-size="%d" text-anchor="middle">%s</text>', cx, ly, FONT,
          esc(xs[i]))
      end
      add('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#555"/>', cx, TOP + PLOT_H, cx, TOP + PLOT_H + 4)
    end
  end
  add('<text class="axis-title" x="%.1f" y="%d" font-size="%d" text-anchor="middle">%s</text>',
    L + (W - L - R) / 2, H - 8, TITLE, esc(xtitle))
  local ty = TOP + PLOT_H / 2
  add('<text class="axis-title" x="%d" y="%.1f" font-size="%d" text-anchor="middle" transform="rotate(-90 %d %.1f)">'
    .. '%s</text>', 10 + TITLE, ty, TITLE, 10 + TITLE, ty, esc(ytitle))
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n")
end

return M
