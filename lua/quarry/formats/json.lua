--- quarry.formats.json: the result as one JSON document, shape
-- "quarry.report/1" (docs/OUTPUT.md): numbers exact and unquoted, the
-- fields with their types and units, the rows, and the totals.
-- A format is a function(result) -> text; lua/quarry/formats.lua lists them.
local F = require "quarry.formats"

local json_value, json_string = F.json_value, F.json_string
-- each row an object, the values as formats.json_value writes them (in C:
-- the rows are most of a report's bytes, rendered on every computed request)
local json_objects = require("quarry.core").json_objects

return function(r)
  local names, heads, numeric = {}, {}, {}
  for i, f in ipairs(r.fields) do
    names[i], numeric[i] = f.name, F.is_numeric_field(f)
    heads[i] = (i == 1 and "{" or ",") .. json_string(F.column(f)) .. ":"
  end
  local fields = {}
  for i, f in ipairs(r.fields) do
    fields[i] = ('{"name":%s,"type":%s,"unit":%s,"label":%s}'):format(json_string(F.column(f)),
      json_string(f.type or "unknown"), f.unit and json_string(f.unit) or "null", json_string(f.label or F.column(f)))
  end
  local buf = { ("{\"schema\":\"quarry.report/1\",\"report\":%s,\"title\":%s,\"params\":%s,\"fields\":[%s],"
    .. "\"rows\":["):format(json_string(r.name or ""), json_string(r.title or ""),
    next(r.params or {}) == nil and "{}" or json_value(r.params), -- an object even when empty, not []
    table.concat(fields, ",")) }
  buf[2] = json_objects(r.rows, names, heads, numeric, json_value, ",\n")
  buf[3] = "],\"totals\":"
  buf[4] = r.totals and json_objects({ r.totals }, names, heads, numeric, json_value, "") or "null"
  buf[5] = (",\"footer\":%s"):format(r.footer and json_string(r.footer) or "null")
  local c = r.coverage -- the days of the period with data loaded, and the ranges without (docs/OUTPUT.md)
  if c then
    local partial = {}
    for i, d in ipairs(c.partial) do
      partial[i] = ('{"date":%s,"missing_periods":[%s]}'):format(json_string(d.date), table.concat(d.periods, ","))
    end
    local function ranges(list)
      local out = {}
      for i, m in ipairs(list) do out[i] = ("[%s,%s]"):format(json_string(m[1]), json_string(m[2])) end
      return table.concat(out, ",")
    end
    buf[6] = (',"coverage":{"from":%s,"to":%s,"days":%d,"loaded":%d,"missing":[%s],"partial":[%s],'
      .. '"synthetic_days":%d,"synthetic":[%s],"seed_difficulty_days":%d,"seed_difficulty":[%s],'
      .. '"written_outside_days":%d,"written_outside":[%s]}'):format(
      json_string(c.from), json_string(c.to), c.days, c.loaded, ranges(c.missing), table.concat(partial, ","),
      c.synthetic_days, ranges(c.synthetic), c.seed_difficulty_days, ranges(c.seed_difficulty),
      c.written_outside_days, ranges(c.written_outside))
  end
  buf[#buf + 1] = "}\n"
  return table.concat(buf)
end
