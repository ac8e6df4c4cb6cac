--- quarry.routes: what each URL of `quarry serve` answers. A route is
-- function(q) -> status, body, content type, where q = { path=, params =
-- {name = value}, accept=, parts = {path segments} }. Errors are raised as
-- quarry errors and turned into JSON by serve.lua ({error=, message=}).
-- Reports answer exactly what `quarry report` prints; the old platform's
-- read routes answer from the same reports with its JSON field names.
local cjson = require "cjson"
local core = require "quarry.core"
local quarry = require "quarry"
local formats = require "quarry.formats"
local services = require "quarry.services"

local M = {}

local usage = core.usage

local function not_found(msg) error(core.error({ code = "not_found", message = msg }), 0) end

local CONTENT = { json = "application/json", csv = "text/csv; charset=utf-8", tsv = "text/tab-separated-values",
                  html = "text/html; charset=utf-8", table = "text/plain; charset=utf-8" }
local ACCEPT = { ["application/json"] = "json", ["text/csv"] = "csv", ["text/html"] = "html",
                 ["text/tab-separated-values"] = "tsv", ["text/plain"] = "table" }

-- format=, else the first Accept type quarry writes, else json.
local function format_of(q)
  local f = q.params.format
  if f then
    if not CONTENT[f] then usage(("format '%s': expected one of %s"):format(f, table.concat(formats.NAMES, ", "))) end
    return f
  end
  for t in (q.accept or ""):gmatch("([^,;%s]+)[^,]*") do
    if ACCEPT[t] then return ACCEPT[t] end
  end
  return "json"
end

local function reports()
  local report = require("quarry.cli.common").reports() -- the plugin limits of the settings
  return report
end

-- Run report `name` with raw params as `quarry report` would: the result,
-- and whether it came from the cache. Routes only read it (share).
local function run_report(name, raw, no_cache)
  local report = reports()
  local plugin = report.find_declared(services.root(), name)
  local params = {}
  for k, v in pairs(raw) do params[k] = v end
  local db = quarry.db
  local p = report.params(plugin, params)
  local cache = quarry.cache
  local run = report.run(db, cache.enabled and cache or nil, plugin, p, { no_cache = no_cache, share = true })
  return run.result, run.cached
end

-- A cached result (one table for as long as the cache holds the same bytes)
-- rendered once per format.
local rendered = setmetatable({}, { __mode = "k" })
local function render(result, format, cached)
  if not cached then return formats.render(result, format) end
  local by_format = rendered[result]
  if not by_format then by_format = {} rendered[result] = by_format end
  local body = by_format[format]
  if not body then body = formats.render(result, format) by_format[format] = body end
  return body
end

-- ---- quarry's own routes ----

M["/reports"] = function()
  local out = {}
  local all, broken = reports().all(services.root())
  for name, pl in pairs(all) do
    local params = {}
    for pname, spec in pairs(pl.params) do
      params[pname] = { type = spec.type, required = spec.required or false, default = spec.default,
                        choices = spec.choices }
    end
    out[#out + 1] = { name = name, description = pl.description, params = params }
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  local body = { reports = out }
  if #broken > 0 then -- the files that do not load, by name and why: a listing, not a 500
    body.broken = {}
    for i, b in ipairs(broken) do body.broken[i] = { file = b.file:match("[^/]+$"), message = b.message } end
  end
  return 200, cjson.encode(body), CONTENT.json
end

M.report = function(q, name)
  local raw, no_cache = {}, false
  for k, v in pairs(q.params) do
    if k == "cache" then
      if v ~= "off" and v ~= "on" then usage("cache must be on or off") end
      no_cache = v == "off"
    elseif k ~= "format" then
      local key = k:gsub("%-", "_")
      if raw[key] ~= nil then usage(("%s and another spelling of it both given"):format(k)) end
      raw[key] = v
    end
  end
  local format = format_of(q)
  local ok, result, cached = pcall(run_report, name, raw, no_cache)
  if not ok then
    if type(result) == "table" and result.missing == name then
      not_found(result.message)
    end
    error(result, 0)
  end
  -- in every format, csv's too (it has no footer): how many days of the period hold data
  local c = result.coverage
  local extra = c and { ["Quarry-Coverage"] = ("loaded=%d; days=%d; synthetic=%d; written-outside=%d"):format(
    c.loaded, c.days, c.synthetic_days, c.written_outside_days) } or nil
  return 200, render(result, format, cached), CONTENT[format], extra
end

M["/healthz"] = function()
  local db_ok, db_err = pcall(function() return quarry.db:query_one("SELECT 1 AS ok").ok end)
  local cache = quarry.cache
  local redis = "off"
  if cache.enabled then redis = cache.conn:call("PING") == "PONG" and "up" or "down" end
  local body = { status = db_ok and "ok" or "unavailable", database = db_ok and "up" or "down", redis = redis,
                 pool = quarry.db:stats() }
  if not db_ok then body.message = tostring(type(db_err) == "table" and db_err.message or db_err) end
  return db_ok and 200 or 503, cjson.encode(body), CONTENT.json
end

-- ---- the old platform's read routes ----

-- The report's totals, and its coverage as fields the old API lacked (its 0
-- for a day nobody loaded read as a calm day): days, daysLoaded, and
-- daysSynthetic (days of quarry db seed's made-up data), daysWrittenOutside
-- (days whose only rows were written by hand, not loaded).
local function totals_of(name, raw, out)
  local r = run_report(name, raw, false)
  local c = r.coverage
  if c then
    out.days, out.daysLoaded, out.daysSynthetic, out.daysWrittenOutside = c.days, c.loaded, c.synthetic_days,
      c.written_outside_days
  end
  return r.totals or {}
end

local function num(v) return tonumber(v) or 0 end

local function summary(period_key, report_name, param)
  return function(q, value)
    local out = { [period_key] = value, leadParty = q.params.leadParty }
    local t = totals_of(report_name, { [param] = value, lead_party = q.params.leadParty }, out)
    out.totalCurtailedEnergy, out.totalPayment = num(t.curtailed_mwh), math.abs(num(t.paid_gbp))
    return 200, cjson.encode(out), CONTENT.json
  end
end

M["/api/summary/daily"] = summary("date", "daily", "date")
M["/api/summary/monthly"] = summary("yearMonth", "monthly", "month")
M["/api/summary/yearly"] = summary("year", "yearly", "year")

-- The difficulty the bitcoin of a range was computed with: the old API's
-- MAX for a day, AVG for a month or year, of the stored calculations.
local function difficulty(from, to, miner, farm, agg)
  local row = quarry.db:query_one(("SELECT %s(difficulty) AS d FROM historical_bitcoin_calculations "
    .. "WHERE settlement_date BETWEEN $1::date AND $2::date AND miner_model = $3 "
    .. "AND ($4::text IS NULL OR farm_id = $4)"):format(agg), from, to, miner, farm)
  return row and row.d and tonumber(row.d) or cjson.null
end

local function mining(report_name, param, agg)
  return function(q, value)
    value = value or q.params[param]
    if not value then usage(param .. " is needed") end
    local miner, farm = q.params.minerModel or "S19J_PRO", q.params.farmId
    local out = { [param == "month" and "yearMonth" or param] = value, minerModel = miner, farmId = farm }
    local t = totals_of(report_name, { [param] = value, miner = miner, farm = farm }, out)
    local from, to = require("quarry.params").range({ [param] = value }) -- the report checked the value
    out.bitcoinMined, out.curtailedEnergy = num(t["btc_" .. miner]), num(t.curtailed_mwh)
    out.difficulty = difficulty(from, to, miner, farm, agg)
    return 200, cjson.encode(out), CONTENT.json
  end
end

M["/api/mining-potential/daily"] = mining("daily", "date", "max")
M["/api/mining-potential/monthly"] = mining("monthly", "month", "avg")
M["/api/mining-potential/yearly"] = mining("yearly", "year", "avg")

M["/api/lead-parties"] = function()
  -- from the farm-day rollup (its grain holds the lead party): one row a farm and day, not one an acceptance
  local rows = quarry.db:query("SELECT DISTINCT lead_party_name AS name FROM rollup_farm_day "
    .. "WHERE lead_party_name IS NOT NULL ORDER BY 1")
  local names = {}
  for i, r in ipairs(rows) do names[i] = r.name end
  return 200, cjson.encode(names), CONTENT.json
end

-- What a browser opened on the server's address finds: the routes there are.
M["/"] = function()
  local api = {}
  for path in pairs(M) do
    if type(path) == "string" and path:match("^/api/") then
      api[#api + 1] = path .. (path:match("/api/summary/") and "/:value"
        or (path:match("/api/mining%-potential/[my]") and "/:value") or "")
    end
  end
  table.sort(api)
  return 200, cjson.encode({ reports = "/reports", report = "/reports/NAME?param=value&format=json|csv|tsv|html",
    healthz = "/healthz", metrics = "/metrics", api = api }), CONTENT.json
end

--- The route of a path: fn, and the value in its last segment (a date,
-- a month, a report's name), or nil.
function M.find(path)
  if M[path] and path:sub(1, 1) == "/" then return M[path] end
  local name = path:match("^/reports/([%w_]+)$")
  if name then return M.report, name end
  local base, value = path:match("^(/api/[%w%-]+/[%w]+)/([^/]+)$")
  if base and M[base] then return M[base], value end
  return nil
end

return M
