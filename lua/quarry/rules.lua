--- quarry.rules: apply lua/quarry/defs/rules.lua to the cache.
local M = {}

local bad = require("quarry.core").usage -- a bad definition is bad input: exit 2

local PLACEHOLDERS = { date = true, month = true, quarter = true, year = true }

--- The quarter of a date: "2024-02-10" -> "2024-Q1".
function M.quarter(date)
  return ("%s-Q%d"):format(date:sub(1, 4), (tonumber(date:sub(6, 7)) - 1) // 3 + 1)
end

--- Check a rules table; raises an error naming the file and the entry.
function M.validate(rules, source)
  source = source or "rules"
  if type(rules) ~= "table" then bad(("%s: must return a list of rules"):format(source)) end
  for i, rule in ipairs(rules) do
    local where = ("%s: rule %d"):format(source, i)
    if type(rule.table) ~= "string" or not rule.table:match("^[%a_][%w_]*$") then
      bad(where .. ": 'table' must be a table name")
    end
    if type(rule.stale) ~= "table" or #rule.stale == 0 then
      bad(where .. ": 'stale' must be a non-empty list of key patterns")
    end
    for j, pattern in ipairs(rule.stale) do
      if type(pattern) ~= "string" or pattern == "" then
        bad(("%s: stale[%d] must be a string"):format(where, j))
      end
      for name in pattern:gmatch("{([^}]*)}") do
        if not PLACEHOLDERS[name] then
          bad(("%s: stale[%d] uses unknown placeholder {%s} (date, month, quarter, year)"):format(where, j, name))
        end
      end
    end
  end
  return rules
end

local function load_defs()
  return M.validate(require("quarry.defs.rules"), "lua/quarry/defs/rules.lua")
end

local range = require("quarry.defs.bounds").dates

--- What a date must be, for messages.
M.DATE_HELP = ("is not a date (YYYY-MM-DD, %s..%s)"):format(range.from, range.to)

--- A real calendar date "YYYY-MM-DD" within the dates quarry takes
-- (lua/quarry/defs/bounds.lua), or nil.
local days_in = require("quarry.dates").days_in_month

function M.check_date(s)
  if type(s) ~= "string" then return nil end
  local y, m, d = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  if not y then return nil end
  if s < range.from or s > range.to then return nil end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  -- by the calendar's rule, not a round trip through mktime (which reads
  -- the time zone each call: a date check cost more than a cache hit)
  if m < 1 or m > 12 or d < 1 or d > days_in(y, m) then return nil end
  return s
end

--- A number as people write it, or nil: decimal digits with an optional
-- sign, point and exponent. Lua's tonumber also takes "0x10", " 5" and a
-- trailing tab, which PostgreSQL's numeric refuses or a reader would not mean.
function M.decimal(s)
  if math.type(s) then return s end
  if type(s) ~= "string" then return nil end
  local mantissa = s:gsub("[eE][-+]?%d+$", "", 1)
  if not mantissa:match("^%-?%d*%.?%d*$") or not mantissa:find("%d") then return nil end
  return tonumber(s)
end

--- An integer of decimal digits (optional minus), or nil.
function M.integer(s)
  if math.type(s) then return math.tointeger(s) end
  return type(s) == "string" and s:match("^%-?%d+$") and math.tointeger(tonumber(s)) or nil
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
    local fields = { date = date, month = date:sub(1, 7), quarter = M.quarter(date), year = date:sub(1, 4) }
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

--- In a write's transaction, as its last statement: log what the change to
-- `tbl` on `dates` makes stale (lua/quarry/stale.lua), so the invalidation
-- commits with the data whatever happens to Redis. Returns the patterns.
function M.record(tx, tbl, dates, rules)
  local patterns = M.patterns(tbl, dates, rules)
  if #patterns > 0 then require("quarry.stale").record(tx, patterns) end
  return patterns
end

--- After the write's COMMIT: bring `cache` up to the log, which applies
-- what M.record logged. True when applied; false when Redis could not take
-- it now: then it stays in the log, and no process trusts a cached value
-- until it is applied (cache.lua). A cache without a log (a script's own)
-- gets the patterns directly.
function M.apply(cache, tbl, dates, rules)
  if not cache or not cache.enabled then return true end
  local ok, applied
  if cache.log then
    ok, applied = cache:catch_up()
    -- the writer keeps the log small; a failure to prune costs nothing now
    if ok and applied then pcall(cache.log.prune, cache.log, applied) end
  else
    ok = true
    for _, p in ipairs(M.patterns(tbl, dates, rules)) do ok = cache:invalidate(p) ~= nil and ok end
  end
  if not ok then
    require("quarry.log").warn("the cache could not take the invalidation now; it is kept in PostgreSQL and "
      .. "applied before any cached value is served again", { module = "cache" })
  end
  return ok
end

--- After a write that makes every cached figure stale (it logged "*"): a
-- cache with the log catches up (a new epoch); one without is cleared.
function M.apply_all(cache)
  if not cache or not cache.enabled then return true end
  if cache.log then return M.apply(cache, nil, {}) end
  return cache:clear() ~= nil
end

--- Invalidate now, by hand (`quarry cache invalidate --date D`): the
-- patterns applied, or nil, err when Redis did not take one of them.
function M.invalidate(cache, tbl, dates, rules)
  local patterns = M.patterns(tbl, dates, rules)
  for _, p in ipairs(patterns) do
    local r, err = cache:invalidate(p)
    if r == nil then return nil, err end
  end
  return patterns
end

--- The groups a cached value that depends on some data must carry, so that
-- every write the rules cover makes it stale. depends: {dates = {...}},
-- {months = {"YYYY-MM", ...}}, {years = {"YYYY", ...}}, {from = D, to = D}
-- or "all". They are the groups of the "data:" patterns in defs/rules.lua.
function M.depends_groups(depends)
  if depends == "all" then return { "data:all" } end
  if type(depends) ~= "table" then error("depends must be a table of dates, months, years, from/to, or 'all'", 3) end
  local out = {}
  -- dates, months and years: each checked as the first day it stands for
  for _, kind in ipairs({ { "dates", "date", "" }, { "months", "month", "-01" }, { "years", "year", "-01-01" } }) do
    for _, v in ipairs(depends[kind[1]] or {}) do
      if not (type(v) == "string" and M.check_date(v .. kind[3])) then
        error(("depends: not a %s: '%s'"):format(kind[2], tostring(v)), 3)
      end
      out[#out + 1] = "data:" .. v
    end
  end
  if depends.from or depends.to then
    local from, to = M.check_date(depends.from), M.check_date(depends.to)
    if not (from and to) or from > to then error("depends: from and to must be dates, from <= to", 3) end
    -- whole years, then whole months, then single days: the fewest groups
    local y, m, d = tonumber(from:sub(1, 4)), tonumber(from:sub(6, 7)), tonumber(from:sub(9, 10))
    while true do
      local cur = ("%04d-%02d-%02d"):format(y, m, d)
      if cur > to then break end
      local year_end, month_end = ("%04d-12-31"):format(y), ("%04d-%02d-%02d"):format(y, m, days_in(y, m))
      if m == 1 and d == 1 and year_end <= to then
        out[#out + 1] = ("data:%04d"):format(y)
        y, m, d = y + 1, 1, 1
      elseif d == 1 and month_end <= to then
        out[#out + 1] = ("data:%04d-%02d"):format(y, m)
        if m == 12 then y, m = y + 1, 1 else m = m + 1 end
      else
        out[#out + 1] = "data:" .. cur
        if d < days_in(y, m) then d = d + 1 elseif m == 12 then y, m, d = y + 1, 1, 1 else m, d = m + 1, 1 end
      end
    end
  end
  return out
end

return M
