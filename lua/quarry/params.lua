--- quarry.params: the types of report params, in one registry.
--
-- Each type says what a raw value (a string from the command line, a value
-- from a script) must be and what it becomes (check), the help its flag
-- shows, and, for the types that are periods, the dates a value covers and
-- the cache family it belongs to (so the invalidation rules reach it). A
-- plugin declares params by type; the command line, report.run and the
-- cache key all read them from here:
--
--   params = { month = { type = "month", required = true },
--              min_mwh = { type = "integer", min = 0, default = 0 },
--              unit = { type = "choice", choices = { "mwh", "gwh" } } }
local rules = require "quarry.rules"

local M = {}

local month_end = require("quarry.dates").month_end

-- check(value, spec) -> the value to use | nil, what is wrong with it: its
-- form. known(value, db, memo) -> the same, for a type whose values must
-- exist in the database (a miner model, a farm): asked in the report's own
-- transaction (report.run), so a cached answer needs no database at all and
-- the check sees the data the report reads.
M.types = {
  date = {
    help = "A settlement date (YYYY-MM-DD).",
    check = function(v) return rules.check_date(v), rules.DATE_HELP end,
    covers = function(v) return v, v end, family = "daily_mining", grain = 1,
  },
  month = {
    help = "A month (YYYY-MM).",
    check = function(v)
      local ok = tostring(v):match("^%d%d%d%d%-%d%d$") and rules.check_date(v .. "-01")
      return ok and v or nil, "is not a month (YYYY-MM) of the dates quarry takes"
    end,
    covers = function(v) return v .. "-01", month_end(v) end,
    family = "monthly_mining", grain = 2,
  },
  quarter = {
    help = "A calendar quarter (YYYY-Qn, e.g. 2024-Q1 for January to March).",
    check = function(v)
      local y, q = tostring(v):match("^(%d%d%d%d)%-[Qq]([1-4])$")
      local ok = y and rules.check_date(y .. "-01-01")
      return ok and (y .. "-Q" .. q) or nil, "is not a quarter (YYYY-Qn, n 1 to 4) of the dates quarry takes"
    end,
    covers = function(v)
      local y, q = v:match("^(%d+)%-Q(%d)$")
      local first, last = (tonumber(q) - 1) * 3 + 1, tonumber(q) * 3
      local m = ("%s-%02d"):format(y, last)
      return ("%s-%02d-01"):format(y, first), month_end(m)
    end,
    family = "quarterly_mining", grain = 2.5,
  },
  year = {
    help = "A year (YYYY).",
    check = function(v)
      local ok = tostring(v):match("^%d%d%d%d$") and rules.check_date(v .. "-01-01")
      return ok and v or nil, "is not a year (YYYY) of the dates quarry takes"
    end,
    covers = function(v) return v .. "-01-01", v .. "-12-31" end, family = "yearly_mining", grain = 3,
  },
  miner = {
    help = "A miner model (quarry miners lists them).",
    check = function(v)
      if not (tostring(v):match("^[%w_]+$") and #v <= 32) then return nil, "is not a miner model name" end
      return v
    end,
    known = function(v, db, memo)
      local known = {}
      for _, r in ipairs(M.miner_models(db, memo)) do
        if r.name == v then return v end
        known[#known + 1] = r.name
      end
      return nil, ": unknown miner model (known: " .. table.concat(known, ", ") .. ")"
    end,
  },
  farm = {
    help = "A farm (BMU id, e.g. T_SGRWO-1).",
    check = function(v)
      if not (tostring(v):match("^[A-Za-z0-9_.-]+$") and #v <= 40) then return nil, "is not a BMU id" end
      return v
    end,
    known = function(v, db) return M.known(db, "farm_id", v, "farm") end,
  },
  lead_party = {
    help = "A lead party (e.g. 'SSE Generation Ltd').",
    check = function(v)
      if #tostring(v) > 200 then return nil, "is too long" end
      return v
    end,
    known = function(v, db) return M.known(db, "lead_party_name", v, "lead party") end,
  },
  integer = {
    help = function(spec)
      return "An integer" .. ((spec.min or spec.max) and (" (%s..%s)"):format(spec.min or "", spec.max or "") or "")
        .. "."
    end,
    check = function(v, spec)
      local n = rules.integer(v)
      if n and (n < (spec.min or math.mininteger) or n > (spec.max or math.maxinteger)) then
        return nil, ("is out of range (%s..%s)"):format(spec.min or "", spec.max or "")
      end
      return n, "is not an integer"
    end,
  },
  choice = {
    help = function(spec) return "One of: " .. table.concat(spec.choices, ", ") .. "." end,
    check = function(v, spec)
      for _, c in ipairs(spec.choices) do if c == v then return v end end
      return nil, ": expected one of " .. table.concat(spec.choices, ", ")
    end,
  },
}

-- Edit distance (Levenshtein), for "did you mean".
local function distance(a, b)
  a, b = a:lower(), b:lower()
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- v if it is a farm (column farm_id) or lead party (lead_party_name) quarry
-- knows -- in the BM unit reference or in the data -- else nil and the
-- nearest names. Without a database (a plugin's own checks) v passes.
function M.known(db, column, v, what)
  if not db then return v end
  assert(column == "farm_id" or column == "lead_party_name")
  local sql = ([[SELECT name FROM (SELECT %s AS name FROM bmus UNION SELECT DISTINCT %s FROM rollup_farm_day) x
    WHERE name IS NOT NULL]]):format(column, column)
  local names = {}
  for _, r in ipairs(db:query(sql)) do
    if r.name == v then return v end
    names[#names + 1] = r.name
  end
  if #names == 0 then return nil, (": unknown %s (quarry knows none yet: load data, or the BM unit reference "
    .. "with quarry fetch bmus)"):format(what) end
  table.sort(names, function(x, y)
    local dx, dy = distance(v, x), distance(v, y)
    if dx ~= dy then return dx < dy end
    return x < y
  end)
  return nil, (": unknown %s (nearest: %s)"):format(what, table.concat(names, ", ", 1, math.min(3, #names)))
end

local function type_names()
  local names = {}
  for k in pairs(M.types) do names[#names + 1] = k end
  table.sort(names)
  return table.concat(names, ", ")
end

--- What is wrong with a param declaration, or nil: (field, problem).
function M.problem(name, spec)
  if type(name) ~= "string" or not name:match("^[%a][%w_]*$") then return "", "must be named like an identifier" end
  if type(spec) ~= "table" or not M.types[spec.type] then return "", "needs a type: " .. type_names() end
  if spec.type == "choice" and (type(spec.choices) ~= "table" or #spec.choices == 0) then
    return "", "needs 'choices', a list of strings"
  end
  for _, k in ipairs({ "min", "max" }) do
    if spec[k] ~= nil and math.type(spec[k]) ~= "integer" then return "." .. k, "must be an integer" end
  end
  return nil
end

--- The help of a param's flag.
function M.help(spec)
  local h = M.types[spec.type].help
  return type(h) == "function" and h(spec) or h
end

--- The flag of a param: min_mwh -> --min-mwh.
function M.flag(name) return "--" .. name:gsub("_", "-") end

local usage = require("quarry.core").usage
local visible = require("quarry.formats").visible

M.MINER_MODELS_SQL = "SELECT name FROM miner_models ORDER BY name"

--- The miner models (rows with .name), once per memo (a report run's).
function M.miner_models(db, memo)
  memo.models = memo.models or db:query(M.MINER_MODELS_SQL)
  return memo.models
end

local function refuse(name, v, problem) -- the value shown as typed, one line whatever it holds
  usage(("%s '%s'%s%s"):format(M.flag(name), visible(v), problem:sub(1, 1) == ":" and "" or " ", problem))
end

--- Check raw values (strings from the command line, or values from a
-- script) against a plugin's params; the values to run it with. Bad input
-- is a usage error naming the flag. The values that must exist in the
-- database are looked up by M.check_known, in the report's transaction.
function M.check(plugin, raw)
  -- One period of each kind: --month 2024-03 --date 2024-05-01 ran the day
  -- alone (the finest wins), under a title few would read twice. A period
  -- the plugin defaults gives way to one the user gives.
  local given = {}
  for name, spec in pairs(plugin.params) do
    if M.types[spec.type].covers and raw[name] ~= nil then given[#given + 1] = name end
  end
  table.sort(given)
  local out = {}
  for name, spec in pairs(plugin.params) do
    local v = raw[name]
    if v == nil and not (#given > 0 and M.types[spec.type].covers) then v = spec.default end
    if v == nil and spec.required and spec.default == nil then
      usage(("report %s needs %s"):format(plugin.name, M.flag(name)))
    end
    if v ~= nil then
      local checked, problem = M.types[spec.type].check(v, spec)
      if checked == nil then refuse(name, v, problem) end
      out[name] = checked
    end
  end
  for name in pairs(raw) do
    if not plugin.params[name] then usage(("report %s takes no %s"):format(plugin.name, M.flag(name))) end
  end
  for i = 2, #given do
    local a, b = plugin.params[given[1]].type, plugin.params[given[i]].type
    if a ~= b then
      usage(("give one period: %s '%s' and %s '%s' are two (%s)"):format(M.flag(given[1]), visible(raw[given[1]]),
        M.flag(given[i]), visible(raw[given[i]]), M.period_flags(plugin.params)))
    end
  end
  return out
end

--- The values of p (checked by M.check) that must exist in the database,
-- looked up there; a usage error names the first that does not.
function M.check_known(plugin, p, db, memo)
  for name, spec in pairs(plugin.params) do
    local known = M.types[spec.type].known
    if known and p[name] ~= nil then
      local v, problem = known(p[name], db, memo)
      if v == nil then refuse(name, p[name], problem) end
    end
  end
end

-- The set period param of p with the finest grain: its type and value.
-- specs (a plugin's params) give each param's type; without them a param's
-- name is taken for its type (date, month, year).
local function period_of(p, specs)
  local best, value, best_name
  for name, v in pairs(p) do
    local spec = specs and specs[name]
    local t = M.types[spec and spec.type or name]
    if t and t.covers and (not best or t.grain < best.grain or (t.grain == best.grain and name < best_name)) then
      best, value, best_name = t, v, name -- ties (two months of a comparison) by name: the same every run
    end
  end
  return best, value
end

--- "--date, --month, --quarter or --year": the period flags of a plugin's
-- params, finest first.
function M.period_flags(specs)
  local found = {}
  for name, spec in pairs(specs or {}) do
    local t = M.types[spec.type]
    if t.covers then found[#found + 1] = { grain = t.grain, flag = M.flag(name) } end
  end
  table.sort(found, function(a, b) return a.grain < b.grain or (a.grain == b.grain and a.flag < b.flag) end)
  local flags = {}
  for i, f in ipairs(found) do flags[i] = f.flag end
  if #flags < 2 then return flags[1] or "a period" end
  return table.concat(flags, ", ", 1, #flags - 1) .. " or " .. flags[#flags]
end

--- The first and last date the params cover (their date, month or year), or nil.
function M.range(p, specs)
  local t, v = period_of(p, specs)
  if t then return t.covers(v) end
  return nil
end

--- The cache family of the period the params cover ("monthly_mining:2024-03"), or "report".
function M.family(p, specs)
  local t, v = period_of(p, specs)
  return t and (t.family .. ":" .. v) or "report"
end

return M
