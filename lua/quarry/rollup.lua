--- quarry.rollup: the day-grain rollups declared in defs/summaries.lua
-- (M.rollups), kept exact by every write quarry makes.
--
-- A rollup row is one GROUP BY of its source rows for one settlement date,
-- so refreshing a date is "delete its rollup rows, aggregate its source rows
-- again". Writers (ingest, difficulty recalculation, seed) call refresh in
-- the transaction that changed the rows and under the same per-date
-- advisory locks, so the rollup commits with the rows or not at all, and two
-- writers of one date take turns. Writes made outside quarry are noted and
-- mended before a figure of them is served (lua/quarry/outside.lua); those
-- the triggers cannot see are caught by `quarry rollup verify` and the
-- integrity report, and mended by `quarry rollup refresh --date D`.
local dbmod = require "quarry.db"
local defs = require "quarry.defs.summaries"

local M = {}

local ident, idents = dbmod.ident, dbmod.idents

local function names(list)
  local out = {}
  for i, c in ipairs(list) do out[i] = c[1] end
  return out
end

--- SELECT grain..., measures... FROM source WHERE <where> GROUP BY grain.
local function aggregate(r, where)
  local cols = {}
  for _, g in ipairs(r.grain) do cols[#cols + 1] = ident(g[1]) end
  for _, m in ipairs(r.measures) do cols[#cols + 1] = m[3] .. " AS " .. ident(m[1]) end
  return ("SELECT %s FROM %s WHERE %s GROUP BY %s"):format(table.concat(cols, ", "), ident(r.source), where,
    idents(names(r.grain)))
end

local function all_columns(r)
  local cols = names(r.grain)
  for _, m in ipairs(r.measures) do cols[#cols + 1] = m[1] end
  return cols
end

-- One rollup's table, filled from the rows already there.
local function table_ddl(r)
  local cols = {}
  for _, g in ipairs(r.grain) do
    cols[#cols + 1] = ("%s %s%s"):format(ident(g[1]), g[2], g[1] == "settlement_date" and " NOT NULL" or "")
  end
  for _, m in ipairs(r.measures) do cols[#cols + 1] = ("%s %s NOT NULL"):format(ident(m[1]), m[2]) end
  return table.concat({
    ("CREATE TABLE %s (\n  %s\n);"):format(ident(r.table), table.concat(cols, ",\n  ")),
    ("CREATE INDEX %s ON %s (settlement_date);"):format(ident(r.table .. "_date_idx"), ident(r.table)),
    ("INSERT INTO %s (%s) %s;"):format(ident(r.table), idents(all_columns(r)), aggregate(r, "true")),
  }, "\n")
end

-- A rollup changed by hand is noted like its source (lua/quarry/outside.lua).
local function watched(r) return { table = r.table, column = "settlement_date", reach = "rows" } end

-- The rollups whose table lacks the triggers noting writes made outside quarry.
local function unwatched(conn)
  local out = {}
  for _, r in ipairs(defs.rollups) do
    if not conn:query_one([[SELECT 1 AS x FROM pg_trigger WHERE tgrelid = to_regclass($1)
        AND tgname = 'quarry_outside_ins']], ident(r.table)) then
      out[#out + 1] = r
    end
  end
  return out
end

--- The names of the rollups whose table is missing or no longer matches
-- its declaration (columns and types, in order): one catalog query.
function M.mismatched(conn)
  local tables = {} -- a text[] literal: each name double-quoted, \ and " escaped
  for i, r in ipairs(defs.rollups) do tables[i] = '"' .. r.table:gsub('[\\"]', "\\%0") .. '"' end
  local have = {}
  for _, row in ipairs(conn:query({ name = "rollup.columns", sql = [[
      SELECT c.relname::text AS t,
             string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attnum) AS cols
      FROM unnest($1::text[]) AS x(name) JOIN pg_class c ON c.oid = to_regclass(quote_ident(x.name))
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      GROUP BY c.relname]] }, "{" .. table.concat(tables, ",") .. "}")) do
    have[row.t] = row.cols
  end
  local out = {}
  for _, r in ipairs(defs.rollups) do
    local want = {}
    for _, c in ipairs(r.grain) do want[#want + 1] = c[1] .. " " .. c[2] end
    for _, c in ipairs(r.measures) do want[#want + 1] = c[1] .. " " .. c[2] end
    if have[r.table] ~= table.concat(want, ",") then out[#out + 1] = r.name end
  end
  return out
end

--- Make each rollup table match its declaration (`quarry db migrate` runs
-- this): one that is missing or whose columns differ (an analyst changed
-- defs/summaries.lua) is created afresh and filled from its source, with
-- writers of the source held off meanwhile; rollups built on it follow.
-- conn: a connection or an open transaction (each rollup is a savepoint).
-- Returns the names of the rollups recreated.
function M.ensure(conn)
  local redone, stale, wrong = {}, {}, {}
  for _, name in ipairs(M.mismatched(conn)) do wrong[name] = true end
  for _, r in ipairs(defs.rollups) do
    if stale[r.source] or wrong[r.name] then
      local ok, err = conn:transaction(function(tx)
        tx:exec(("LOCK TABLE %s IN SHARE MODE"):format(ident(r.source)))
        tx:exec(("DROP TABLE IF EXISTS %s"):format(ident(r.table)))
        tx:exec(table_ddl(r))
      end)
      if not ok then error(err, 0) end
      conn:exec(("ANALYZE %s"):format(ident(r.table))) -- plans fit from the first report on
      stale[r.table] = true
      redone[#redone + 1] = r.name
    end
  end
  local outside = require "quarry.outside"
  for _, r in ipairs(unwatched(conn)) do
    for _, sql in ipairs(outside.triggers(watched(r))) do conn:exec(sql) end
  end
  return redone
end

--- Dates as a PostgreSQL array literal, for `= ANY($1::date[])`.
local function date_array(dates) return "{" .. table.concat(dates, ",") .. "}" end

--- Take the per-date write locks, in date order: two writers of one date
-- take turns, writers of different dates never wait for each other (or
-- deadlock). Every writer of curtailment, bitcoin or rollup rows takes them.
function M.lock_dates(tx, dates)
  if #dates == 0 then return end
  local sorted = {}
  for i, d in ipairs(dates) do sorted[i] = d end
  table.sort(sorted)
  -- one round trip for them all (a year's load: 365): unnest yields the
  -- array in order, and the aggregate takes each lock as its row arrives
  tx:exec({ name = "rollup.lock_dates", sql = [[
    SELECT count(pg_advisory_xact_lock(hashtext('quarry.date'), d - DATE '2000-01-01'))
    FROM unnest($1::date[]) AS d]] }, date_array(sorted))
end

--- Recompute the rollup rows of `dates` inside tx (which holds their date
-- locks). changed: the source tables whose rows changed (default: all);
-- rollups built on a refreshed rollup follow, in declaration order.
function M.refresh(tx, dates, changed)
  if #dates == 0 then return end
  local arr = date_array(dates)
  local stale = {}
  for _, t in ipairs(changed or {}) do stale[t] = true end
  for _, r in ipairs(defs.rollups) do
    if not changed or stale[r.source] then
      stale[r.table] = true
      tx:exec({ name = "rollup.delete." .. r.name,
                sql = ("DELETE FROM %s WHERE settlement_date = ANY($1::date[])"):format(ident(r.table)) }, arr)
      tx:exec({ name = "rollup.refresh." .. r.name, sql = ("INSERT INTO %s (%s) %s"):format(ident(r.table),
        idents(all_columns(r)), aggregate(r, "settlement_date = ANY($1::date[])")) }, arr)
    end
  end
end

--- SQL naming the dates in $1..$2 whose rollup rows differ from a fresh
-- aggregation of their source rows: (settlement_date, rollups). Values are
-- compared as text, so even a different number of decimal places counts.
function M.mismatch_sql()
  local parts = {}
  for _, r in ipairs(defs.rollups) do
    local cols = {}
    for _, g in ipairs(r.grain) do cols[#cols + 1] = ident(g[1]) end
    for _, m in ipairs(r.measures) do cols[#cols + 1] = ident(m[1]) .. "::text" end
    local list = table.concat(cols, ", ")
    local range = "settlement_date BETWEEN $1::date AND $2::date"
    parts[#parts + 1] = ([[
      SELECT settlement_date::text AS settlement_date, %s AS rollup FROM (
        (SELECT %s FROM (%s) fresh EXCEPT SELECT %s FROM %s WHERE %s)
        UNION ALL
        (SELECT %s FROM %s WHERE %s EXCEPT SELECT %s FROM (%s) fresh)) d]]):format(
      "'" .. r.name:gsub("'", "''") .. "'", list, aggregate(r, range), list, ident(r.table), range,
      list, ident(r.table), range, list, aggregate(r, range))
  end
  return "SELECT settlement_date, string_agg(DISTINCT rollup, ', ') AS rollups FROM ("
    .. table.concat(parts, "\nUNION ALL\n") .. ") m GROUP BY 1 ORDER BY 1"
end

--- Every date with source or rollup rows in from..to (conn: a connection
-- or a transaction).
function M.dates_in(conn, from, to)
  local parts = {}
  for _, r in ipairs(defs.rollups) do
    parts[#parts + 1] = ("SELECT DISTINCT settlement_date FROM %s WHERE settlement_date BETWEEN $1::date AND $2::date")
      :format(ident(r.source))
    parts[#parts + 1] = ("SELECT DISTINCT settlement_date FROM %s WHERE settlement_date BETWEEN $1::date AND $2::date")
      :format(ident(r.table))
  end
  local out = {}
  for _, row in ipairs(conn:query("SELECT settlement_date::text AS d FROM (" .. table.concat(parts, " UNION ")
      .. ") x ORDER BY 1", from, to)) do
    out[#out + 1] = row.d
  end
  return out
end

--- Recompute the rollups of every date in from..to from the raw rows, a
-- month of dates per transaction. progress(done, total) after each.
-- Returns the dates refreshed.
function M.rebuild(db, from, to, progress)
  local conn <close> = db:acquire()
  conn:expect_long_hold()
  local dates = M.dates_in(conn, from or "0001-01-01", to or "9999-12-31")
  local i = 1
  while i <= #dates do
    local chunk = table.move(dates, i, math.min(i + 30, #dates), 1, {})
    -- a dated write of its own: the dates locked, their rollups refreshed and
    -- the invalidation recorded; the caller's cache catches up at the end
    require("quarry.write").dated(conn, nil, { tables = { "curtailment_records", "historical_bitcoin_calculations" },
      bitcoin = false }, function(_, w) w:dates(chunk) end)
    i = i + #chunk
    if progress then progress(i - 1, #dates) end
  end
  M.analyze(conn)
  return dates
end

--- ANALYZE the rollup tables (small) through db (a Db or a connection):
-- after a bulk load or rebuild, so reports plan for their real sizes before
-- autovacuum gets to them.
function M.analyze(db)
  for _, r in ipairs(defs.rollups) do db:exec(("ANALYZE %s"):format(ident(r.table))) end
end

--- Compare the rollups with their raw rows over from..to: the day grain
-- (every measure of every rollup row) and, month by month, the monthly
-- summary read both ways. Returns a list of {date=, what=} (empty: equal).
function M.verify(db, from, to)
  from, to = from or "0001-01-01", to or "9999-12-31"
  local conn <close> = db:acquire()
  local out = {}
  for _, r in ipairs(conn:query({ name = "rollup.verify", sql = M.mismatch_sql() }, from, to)) do
    out[#out + 1] = { date = r.settlement_date,
                      what = "rollup rows differ from their source rows (" .. r.rollups .. ")" }
  end
  local months = conn:query([[SELECT DISTINCT date_trunc('month', settlement_date)::date::text AS m
    FROM rollup_day WHERE settlement_date BETWEEN $1::date AND $2::date ORDER BY 1]], from, to)
  local both = ("SELECT (SELECT string_agg(a::text, '|') FROM (%s) a) AS direct, "
    .. "(SELECT string_agg(b::text, '|') FROM (%s) b) AS rollup"):format(defs.monthly.sql, defs.monthly_rollup.sql)
  for _, m in ipairs(months) do
    local r = conn:query_one({ name = "rollup.verify.monthly", sql = both }, m.m)
    if r.direct ~= r.rollup then
      out[#out + 1] = { date = m.m:sub(1, 7), what = "monthly summary differs from the direct CTE" }
    end
  end
  return out
end

--- Whether any (date, farm) in from..to has rows under two lead parties: a
-- lead-party breakdown then reads the raw rows (the bitcoin rollup has no
-- lead party of its own).
M.MIXED_PARTIES_SQL = [[
    SELECT EXISTS (SELECT 1 FROM rollup_farm_day WHERE settlement_date BETWEEN $1::date AND $2::date
                   GROUP BY settlement_date, farm_id HAVING count(*) > 1) AS mixed]]

function M.mixed_parties(tx, from, to)
  return tx:query_one({ name = "rollup.mixed_parties", sql = M.MIXED_PARTIES_SQL }, from, to).mixed
end

return M
