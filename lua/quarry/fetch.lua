--- quarry.fetch: public sources into the database, day by day.
--
--   fetch.curtailment(db, cache, {from=, to=, refresh=, dry_run=, verify=, repair=})
--   fetch.bmus(db)
--   fetch.ingest_files(db, cache, paths)    saved settlement-stack answers
--
-- Each day is fetched whole (every period, both sides of the stack, many
-- requests in flight: src/fetch.c), checked, then stored in one dated
-- write with its row in elexon_fetch_days -- so an interrupted fetch
-- (Ctrl-C, kill -9, the network gone) loses nothing and the next run goes
-- on from the first day not stored. Days stored with no period missing are
-- skipped unless refresh. A day whose answers are malformed is refused
-- (URL and reason) and the others go on; the run then exits 1. A request
-- that fails after its retries stops the run: nothing later is fetched
-- against a source that is down.
local core = require "quarry.core"
local elexon = require "quarry.elexon"
local log = require "quarry.log"

local M = {}

local days_between = require("quarry.dates").days
M.days_between = days_between

--- The settings and the HTTP options (src/fetch.c) every public source is
-- fetched with.
function M.settings()
  local cfg = require("quarry").settings()
  return cfg, { per_minute = cfg.fetch_rate, max_in_flight = cfg.fetch_in_flight,
                timeout_ms = cfg.fetch_timeout_s * 1000, retries = elexon.defs.retries,
                backoff_ms = cfg.fetch_backoff_ms,
                wait_429_ms = math.max(cfg.fetch_429_wait_s * 1000, 1) }
end

local function base_url(cfg) return (cfg.elexon_api_url:gsub("/+$", "")) end

--- GET the urls (src/fetch.c); their answers, or raises a connection error
-- naming the first URL that failed after its retries or answered another
-- status than 200 (or 404, with allow_404).
function M.get(urls, http, allow_404)
  local got = core.http_get_all(urls, http)
  for i, g in ipairs(got) do
    if g.error then error(core.error({ code = "connection", message = g.error }), 0) end
    if g.status ~= 200 and not (allow_404 and g.status == 404) then
      error(core.error({ code = "connection", message = ("GET %s: HTTP %d"):format(urls[i], g.status) }), 0)
    end
  end
  return got
end

-- Every request of a day, answered (a period's 404 is an answer: missing).
local function get_day(reqs, http)
  local urls = {}
  for i, r in ipairs(reqs) do urls[i] = r.url end
  for i, g in ipairs(M.get(urls, http, true)) do reqs[i].status, reqs[i].body = g.status, g.body end
  return reqs
end

local function stored(db, date)
  return db:query_one([[SELECT missing::text AS missing, rows FROM elexon_fetch_days
    WHERE settlement_date = $1]], date)
end

local function now_totals(db, date)
  return db:query_one([[SELECT count(*)::int AS rows, coalesce(sum(-volume), 0) AS mwh,
    coalesce(sum(payment), 0) AS gbp FROM curtailment_records WHERE settlement_date = $1]], date)
end

--- Settlement periods as runs, for messages: {20, 35, 36, ..., 48} -> "SP20,SP35-48".
local function period_runs(list)
  if #list == 0 then return "" end
  local parts, i = {}, 1
  while i <= #list do -- runs: SP35-48
    local j = i
    while j < #list and list[j + 1] == list[j] + 1 do j = j + 1 end
    parts[#parts + 1] = i == j and ("SP%d"):format(list[i]) or ("SP%d-%d"):format(list[i], list[j])
    i = j + 1
  end
  return table.concat(parts, ",")
end
M.period_runs = period_runs

-- Stored and fetched totals per period, like with like (volume as MWh
-- given up, payment signed as stored); the periods that differ.
local function differences(db, day)
  local p1, p2, p3 = elexon.period_args(day)
  return db:query(([[
    WITH f AS (%s),
    s AS (SELECT settlement_period AS period, sum(-volume) AS mwh, sum(payment) AS gbp FROM curtailment_records
          WHERE settlement_date = $4 GROUP BY 1)
    SELECT p AS period, coalesce(s.mwh, 0) AS stored_mwh, coalesce(s.gbp, 0) AS stored_gbp,
           coalesce(f.mwh, 0) AS mwh, coalesce(f.gbp, 0) AS gbp
    FROM generate_series(1, $5::int) p LEFT JOIN s ON s.period = p LEFT JOIN f ON f.period = p
    WHERE coalesce(s.mwh, 0) <> coalesce(f.mwh, 0) OR coalesce(s.gbp, 0) <> coalesce(f.gbp, 0)
    ORDER BY p]]):format(elexon.PERIODS_SQL), p1, p2, p3, day.date, day.periods)
end

-- The fetched day's totals: {mwh=, gbp=}.
local function fetched_totals(db, day)
  return db:query_one(([[SELECT coalesce(sum(mwh), 0) AS mwh, coalesce(sum(gbp), 0) AS gbp FROM (%s) f]])
    :format(elexon.PERIODS_SQL), elexon.period_args(day))
end

--- Fetch curtailment for from..to. opts: refresh, dry_run, verify, repair,
-- say(line) for what is printed. Returns a summary table.
function M.curtailment(db, cache, opts)
  local cfg, http = M.settings()
  local base = base_url(cfg)
  local say = opts.say or print
  local units = elexon.units(db)
  if next(units) == nil then
    core.usage("no wind BM units known: run 'quarry fetch bmus' (or 'quarry ingest bmus FILE.json') first")
  end
  local days = days_between(opts.from, opts.to)
  local s = { days = #days, stored = 0, skipped = 0, unpublished = {}, refused = {}, missing = {}, requests = 0,
              rows = 0, differ = {}, repaired = 0, missing_periods = 0 }
  local show = log.progress(#days, function(done, all, rate, eta)
    return ("day %d/%d  %d requests  %.1f days/s  ETA %4.0fs "):format(done, all, s.requests, rate, eta)
  end)
  for i, date in ipairs(days) do
    local prev = not opts.refresh and not opts.verify and stored(db, date)
    if prev and prev.missing == "{}" then
      s.skipped = s.skipped + 1
    else
      local reqs = get_day(elexon.stack_requests(base, date), http)
      s.requests = s.requests + #reqs
      local ok, day = pcall(elexon.day, date, reqs, units)
      if not ok then
        if type(day) ~= "table" or day.code ~= "usage" then error(day, 0) end
        s.refused[#s.refused + 1] = { date = date, why = tostring(day.message) }
      elseif not day.published then
        s.unpublished[#s.unpublished + 1] = date
      elseif opts.verify then
        local diff = differences(db, day)
        if #diff > 0 then
          s.differ[#s.differ + 1] = { date = date, periods = diff }
          if opts.repair then
            elexon.store_day(db, cache, day, "elexon")
            s.repaired = s.repaired + 1
          end
        end
      elseif opts.dry_run then
        local now, after = now_totals(db, date), fetched_totals(db, day)
        say(("%s: would store %d row(s), %s MWh, GBP %s (now %d row(s), %s MWh, GBP %s)%s"):format(date,
          #day.rows, after.mwh, after.gbp, now.rows, now.mwh, now.gbp,
          #day.missing > 0 and ("; missing " .. period_runs(day.missing)) or ""))
      else
        local r = elexon.store_day(db, cache, day, "elexon")
        s.stored, s.rows = s.stored + 1, s.rows + r.rows
        if #day.missing > 0 then
          s.missing[#s.missing + 1] = { date = date, periods = day.missing }
          s.missing_periods = s.missing_periods + #day.missing
        end
      end
    end
    show(i)
  end
  show(#days, true)
  return s
end

--- The wind units of Elexon's reference list into bmus.
function M.bmus(db)
  local cfg, http = M.settings()
  local url = base_url(cfg) .. elexon.defs.bmunits_path
  return elexon.store_bmus(db, elexon.parse_bmus(M.get({ url }, http)[1].body, url))
end

-- ---- saved answers ----

local function list_files(path)
  local p = io.popen(("find %s -type f -name '*.json' 2>/dev/null | sort"):format("'" .. path:gsub("'", "'\\''")
    .. "'"))
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

--- A file's bytes, or a usage error naming it.
function M.read_file(path)
  local files = require "quarry.files"
  local f, err = io.open(path, "rb")
  if not f then core.usage(("cannot open %s: %s"):format(path, files.reason(path, err))) end
  local s, rerr = f:read("a")
  f:close()
  if not s then core.usage(("cannot read %s: %s"):format(path, files.reason(path, rerr))) end -- a directory
  return s
end
local read_file = M.read_file

--- Load saved settlement-stack answers (files, or folders of *.json). A
-- file's side of the stack comes from its path (a "bid" or "offer" folder
-- or name part); its date and period from its items, else from the path
-- (.../DATE/PERIOD.json). Each date found is stored whole, as a fetch
-- stores it; periods with no file are missing.
function M.ingest_files(db, cache, paths)
  local units = elexon.units(db)
  if next(units) == nil then
    core.usage("no wind BM units known: run 'quarry ingest bmus FILE.json' (or 'quarry fetch bmus') first")
  end
  local files = {}
  for _, p in ipairs(paths) do
    local found = list_files(p)
    if #found == 0 then core.usage(("%s: no .json files there"):format(p)) end
    for _, f in ipairs(found) do files[#files + 1] = f end
  end
  local by_date, dates = {}, {}
  for _, f in ipairs(files) do
    local side = f:match("[/_.-](bid)[/_.-]") or f:match("[/_.-](offer)[/_.-]") or f:match("^(bid)[/_.-]")
      or f:match("^(offer)[/_.-]")
    if not side then core.usage(f .. ": cannot tell the side of the stack (put 'bid' or 'offer' in its path)") end
    local date, period = f:match("(%d%d%d%d%-%d%d%-%d%d)[/_.-](%d+)%.json$")
    local body = read_file(f)
    local ok, doc = pcall(require("cjson").decode, body)
    local first = ok and type(doc) == "table" and type(doc.data) == "table" and doc.data[1]
    if type(first) == "table" and first.settlementDate then
      date, period = first.settlementDate, first.settlementPeriod
    end
    period = math.tointeger(tonumber(period))
    if type(date) ~= "string" or not date:match("^%d%d%d%d%-%d%d%-%d%d$") or not period then
      core.usage(f .. ": cannot tell its date and period (from its items or a path like .../DATE/PERIOD.json)")
    end
    if not by_date[date] then by_date[date], dates[#dates + 1] = {}, date end
    table.insert(by_date[date], { url = f, side = side, period = period, status = 200, body = body,
                                  doc = ok and doc or nil }) -- decoded once
  end
  table.sort(dates)
  local s = { files = #files, dates = #dates, rows = 0, missing = {} }
  for _, date in ipairs(dates) do
    local day = elexon.day(date, by_date[date], units)
    local have = {}
    for _, a in ipairs(by_date[date]) do have[a.period] = true end
    for p = 1, day.periods do
      if not have[p] then day.missing[#day.missing + 1] = p end
    end
    table.sort(day.missing)
    local r = elexon.store_day(db, cache, day, "file")
    s.rows = s.rows + r.rows
    if #day.missing > 0 then s.missing[#s.missing + 1] = { date = date, periods = day.missing } end
  end
  return s
end

return M
