--- quarry.formats.json: the result as one JSON document, shape
-- "quarry.report/1" (docs/OUTPUT.md): numbers exact and unquoted, the
-- fields with their types and units, the rows, and the totals.
-- A format is a function(result) -> text; lua/quarry/formats.lua lists them.
local F = require "quarry.formats"

local type, concat = type, table.concat
local json_value, json_string = F.json_value, F.json_string
local json_kind = require("quarry.core").json_kind -- 0 number text, 1 quotable as is, 2 to escape

-- Append row as a JSON object to buf after position n; the new end. Every
-- piece goes into the one buffer, concatenated once for the document: the
-- rows are most of a report's bytes, and a string per value and per row
-- cost three times this (a served report is rendered on every request).
-- heads: '{"name":' for the first field, ',"name":' for the others.
local function object(buf, n, row, names, heads, numeric)
  for i = 1, #names do
    n = n + 1
    buf[n] = heads[i]
    local v = row[names[i]]
    if type(v) == "string" then
      local kind = json_kind(v)
      if kind == 0 and numeric[i] then
        n = n + 1
        buf[n] = v
      elseif kind < 2 then
        buf[n + 1], buf[n + 2], buf[n + 3] = '"', v, '"'
        n = n + 3
      else
        n = n + 1
        buf[n] = json_string(v)
      end
    else
      n = n + 1
      buf[n] = json_value(v, numeric[i])
    end
  end
  n = n + 1
  buf[n] = #names == 0 and "{}" or "}"
  return n
end

return function(r)
  local names, heads, numeric = {}, {}, {}
  for i, f in ipairs(r.fields) do
    names[i], numeric[i] = f.name, F.is_numeric_field(f)
    heads[i] = (i == 1 and "{" or ",") .. json_string(F.column(f)) .. ":"
  end
  local fields = {}
  for i, f in ipairs(r.fields) do
    fields[i] = ("{%s:%s,%s:%s,%s:%s,%s:%s}"):format(json_string("name"), json_string(F.column(f)),
      json_string("type"), json_string(f.type or "unknown"), json_string("unit"),
      f.unit and json_string(f.unit) or "null", json_string("label"), json_string(f.label or F.column(f)))
  end
  local buf = { ("{\"schema\":\"quarry.report/1\",\"report\":%s,\"title\":%s,\"params\":%s,\"fields\":[%s],"
    .. "\"rows\":["):format(json_string(r.name or ""), json_string(r.title or ""),
    next(r.params or {}) == nil and "{}" or json_value(r.params), -- an object even when empty, not []
    concat(fields, ",")) }
  local n = 1
  for i, row in ipairs(r.rows) do
    if i > 1 then n = n + 1 buf[n] = ",\n" end
    n = object(buf, n, row, names, heads, numeric)
  end
  n = n + 1
  buf[n] = "],\"totals\":"
  if r.totals then n = object(buf, n, r.totals, names, heads, numeric)
  else n = n + 1 buf[n] = "null" end
  n = n + 1
  buf[n] = (",\"footer\":%s}\n"):format(r.footer and json_string(r.footer) or "null")
  return concat(buf, "", 1, n)
end
