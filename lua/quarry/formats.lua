--- quarry.formats: a report result as text, by format, and what formats share.
-- Each format is a file of its own, lua/quarry/formats/NAME.lua, returning
-- function(result) -> text; M.NAMES lists them (and is what --format takes).
-- A result is { title=, params=, fields = {{name=, type=}...}, rows = {...},
-- chart = {x=, y=} }. Numbers stay exact: a numeric column arrives as the
-- string of digits PostgreSQL sent and leaves unquoted in csv and json; only
-- the table format, meant for eyes, rounds and groups digits.
local M = {}

local NUMERIC = { int2 = true, int4 = true, int8 = true, oid = true, numeric = true, float4 = true,
                  float8 = true, number = true, integer = true }

local function is_numeric_field(f) return NUMERIC[f.type or ""] == true end
M.is_numeric_field = is_numeric_field

--- A value as the text csv and tsv write: tables as json, numbers with
-- every digit, nil as nothing.
function M.text(v)
  if v == nil then return "" end
  if type(v) == "table" then return M.json_value(v) end
  if type(v) == "number" then return M.number_text(v) or "" end
  return tostring(v)
end

--- Text as a terminal may show it: each control character (C0, DEL, and the
-- C1 range terminals obey too) as \xNN or \u{NN}, so a value read from a
-- file or a plugin can neither move the cursor, recolour the screen nor
-- start a line of its own. keep: control characters left as they are ("\n"
-- for a message of several lines).
function M.visible(s, keep)
  s = tostring(s)
  if not s:find("[%c\194]") then return s end -- the common case, one scan
  s = s:gsub("%c", function(c)
    if keep and keep:find(c, 1, true) then return c end
    return ("\\x%02x"):format(c:byte())
  end)
  return (s:gsub("\194([\128-\159])", function(c) return ("\\u{%x}"):format(c:byte()) end))
end

--- Whether s holds a control character of those visible escapes (C0, DEL,
-- C1): what a name from a file must not (elexon.lua refuses it).
function M.has_control(s) return s:find("%c") ~= nil or s:find("\194[\128-\159]") ~= nil end

--- A value as csv and tsv write its cell (before their own quoting): a
-- number of a numeric field as it is; text that Excel, LibreOffice or Sheets
-- would take for a formula (first character = + - @, or a tab or carriage
-- return) with a leading apostrophe, which they hide and read as "text". A
-- lead party named =HYPERLINK(...) in a feed must not become a link, a DDE
-- command or a sum in an analyst's sheet. f: the field, if any.
function M.sheet_text(v, f)
  local s = M.text(v)
  -- no spaces in a number: Lua's tonumber takes a trailing tab, which would split a TSV line
  if f and is_numeric_field(f) and tonumber(s) ~= nil and not s:find("%s") then return s end
  if s:find("^[=+%-@\t\r]") then return "'" .. s end
  return s
end

--- The name csv, tsv and json give a field: its column, else its name.
function M.column(f) return f.column or f.name end

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

local json_kind = require("quarry.core").json_kind

-- quoted and escaped in C (core.json_string), the escaping json_objects
-- gives the rows too
local json_string = require("quarry.core").json_string

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
    if exact_numeric and json_kind(v) == 0 then return v end
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
M.number_text = number_text
M.json_string = json_string

--- A value as the table and html formats show it: the digits PostgreSQL
-- sent, grouped by thousands (unless `ungrouped`); rounded only where the plugin declares display
-- decimals for the column (0.0025 BTC is never shown as 0.00).
function M.display(v, f, places, ungrouped)
  if v == nil then return "" end
  if type(v) == "table" then return M.json_value(v) end
  if M.is_numeric_field(f) or type(v) == "number" then
    local s = type(v) == "number" and (M.number_text(v) or tostring(v)) or tostring(v)
    if not s:match("^[-+]?%d+%.?%d*$") then return s end
    local p = places[f.name]
    if p then s = M.round_decimal(s, p) end
    return ungrouped and s or M.group_thousands(s)
  end
  return tostring(v)
end

--- The formats, in the order --help shows them: a new one is its file plus
-- its name here.
M.NAMES = { "table", "csv", "tsv", "json", "html" }

local known = {}
for _, n in ipairs(M.NAMES) do known[n] = true end

--- The function of a format (loaded on first use); nil for an unknown name.
function M.get(name)
  if not known[name] then return nil end
  return require("quarry.formats." .. name)
end

function M.render(result, format)
  local f = M.get(format) or error(("unknown format '%s' (formats: %s)"):format(tostring(format),
    table.concat(M.NAMES, ", ")), 2)
  return f(result)
end

-- formats.csv(result) and the like, as before.
return setmetatable(M, { __index = function(_, k) return M.get(k) end })
