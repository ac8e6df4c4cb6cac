--- quarry.formats.json: the result as one JSON document, shape
-- "quarry.report/1" (docs/OUTPUT.md): numbers exact and unquoted, the
-- fields with their types and units, the rows, and the totals.
-- A format is a function(result) -> text; lua/quarry/formats.lua lists them.
local F = require "quarry.formats"


-- keys: each field's quoted name and "":", made once for all the rows
local function object(row, fields, keys, numeric)
  local parts = {}
  for i, f in ipairs(fields) do parts[i] = keys[i] .. F.json_value(row[f.name], numeric[i]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

return function(r)
  local keys, numeric = {}, {}
  for i, f in ipairs(r.fields) do keys[i], numeric[i] = F.json_string(F.column(f)) .. ":", F.is_numeric_field(f) end
  local rows = {}
  for i, row in ipairs(r.rows) do rows[i] = object(row, r.fields, keys, numeric) end
  local fields = {}
  for i, f in ipairs(r.fields) do
    fields[i] = ("{%s:%s,%s:%s,%s:%s,%s:%s}"):format(F.json_string("name"), F.json_string(F.column(f)),
      F.json_string("type"), F.json_string(f.type or "unknown"), F.json_string("unit"),
      f.unit and F.json_string(f.unit) or "null", F.json_string("label"), F.json_string(f.label or F.column(f)))
  end
  return ("{\"schema\":\"quarry.report/1\",\"report\":%s,\"title\":%s,\"params\":%s,\"fields\":[%s],"
    .. "\"rows\":[%s],\"totals\":%s,\"footer\":%s}\n"):format(
    F.json_string(r.name or ""), F.json_string(r.title or ""), F.json_value(r.params or {}),
    table.concat(fields, ","), table.concat(rows, ",\n"),
    r.totals and object(r.totals, r.fields, keys, numeric) or "null",
    r.footer and F.json_string(r.footer) or "null")
end
