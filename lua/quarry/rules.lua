--- quarry.rules: apply lua/quarry/defs/rules.lua to the cache.
local M = {}

local PLACEHOLDERS = { date = true, month = true, year = true }

--- Check a rules table; raises an error naming the file and the entry.
function M.validate(rules, source)
  source = source or "rules"
  if type(rules) ~= "table" then error(("%s: must return a list of rules"):format(source), 0) end
  for i, rule in ipairs(rules) do
    local where = ("%s: rule %d"):format(source, i)
    if type(rule.table) ~= "string" or not rule.table:match("^[%a_][%w_]*$") then
      error(where .. ": 'table' must be a table name", 0)
    end
    if type(rule.stale) ~= "table" or #rule.stale == 0 then
      error(where .. ": 'stale' must be a non-empty list of key patterns", 0)
    end
    for j, pattern in ipairs(rule.stale) do
      if type(pattern) ~= "string" or pattern == "" then
        error(("%s: stale[%d] must be a string"):format(where, j), 0)
      end
      for name in pattern:gmatch("{([^}]*)}") do
        if not PLACEHOLDERS[name] then
          error(("%s: stale[%d] uses unknown placeholder {%s} (date, month, year)"):format(where, j, name), 0)
        end
      end
    end
  end
  return rules
end

local function load_defs()
  return M.validate(require("quarry.defs.rules"), "lua/quarry/defs/rules.lua")
end

--- A real calendar date "YYYY-MM-DD", or nil.
function M.check_date(s)
  if type(s) ~= "string" then return nil end
  local y, m, d = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  if not y then return nil end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  local t = os.time({ year = y, month = m, day = d, hour = 12 })
  local back = os.date("*t", t)
  if back.year ~= y or back.month ~= m or back.day ~= d then return nil end
  return s
end

--- The patterns made stale by a change to `tbl` (a table name, a list of
-- them, or nil: every table) on `dates` (a list of YYYY-MM-DD), without
-- repeats, in a stable order.
function M.patterns(tbl, dates, rules)
  rules = rules or load_defs()
  local tables = type(tbl) == "table" and {} or nil
  for _, t in ipairs(tables and tbl or {}) do tables[t] = true end
  local seen, out = {}, {}
  for _, date in ipairs(dates) do
    if not M.check_date(date) then error(("not a date: '%s' (expected YYYY-MM-DD)"):format(tostring(date)), 2) end
    local fields = { date = date, month = date:sub(1, 7), year = date:sub(1, 4) }
    for _, rule in ipairs(rules) do
      if tbl == nil or rule.table == tbl or (tables and tables[rule.table]) then
        for _, pattern in ipairs(rule.stale) do
          local p = pattern:gsub("{(%a+)}", fields)
          if not seen[p] then
            seen[p] = true
            out[#out + 1] = p
          end
        end
      end
    end
  end
  return out
end

--- Invalidate in `cache` what a change to `tbl` on `dates` makes stale.
-- Returns the patterns applied. The cache fails open: an unreachable Redis
-- is logged by the cache, not raised here.
function M.apply(cache, tbl, dates, rules)
  local patterns = M.patterns(tbl, dates, rules)
  for _, p in ipairs(patterns) do cache:invalidate(p) end
  return patterns
end

return M
