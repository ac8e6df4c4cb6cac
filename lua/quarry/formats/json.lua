--- quarry.formats.json: the result as one JSON document: numbers exact and unquoted.
-- A format is a function(result) -> text; lua/quarry/formats.lua lists them.
local F = require "quarry.formats"

return function(r)
  local rows = {}
  for i, row in ipairs(r.rows) do
    local parts = {}
    for _, f in ipairs(r.fields) do
      parts[#parts + 1] = F.json_string(f.name) .. ":" .. F.json_value(row[f.name], F.is_numeric_field(f))
    end
    rows[i] = "{" .. table.concat(parts, ",") .. "}"
  end
  local fields = {}
  for i, f in ipairs(r.fields) do fields[i] = F.json_value({ name = f.name, type = f.type }) end
  return ("{\"report\":%s,\"title\":%s,\"params\":%s,\"fields\":[%s],\"rows\":[%s]}\n"):format(
    F.json_string(r.name or ""), F.json_string(r.title or ""), F.json_value(r.params or {}),
    table.concat(fields, ","), table.concat(rows, ",\n"))
end
