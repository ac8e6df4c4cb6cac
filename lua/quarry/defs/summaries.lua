--- The summary queries, as data: SQL with bound parameters ($1, $2, ...),
-- never text spliced from input. The daily and monthly summaries are the
-- seed platform's CTEs (its miner list is ordered here, so output is
-- stable); yearly follows the same shape. Each entry's SQL says its
-- parameters ($1 ...) in the comment above it.
local M = {}

--- The seed's curtailmentBitcoinJoinCTE, with the date range bound:
-- WITH curtailment_data AS (...), bitcoin_data AS (...) for $1..$2.
function M.join_cte()
  return [[
    WITH curtailment_data AS (
      SELECT settlement_date, settlement_period, farm_id,
             SUM(ABS(volume)) AS total_volume, SUM(payment) AS total_payment
      FROM curtailment_records
      WHERE settlement_date BETWEEN $1::date AND $2::date
      GROUP BY settlement_date, settlement_period, farm_id
    ),
    bitcoin_data AS (
      SELECT settlement_date, settlement_period, farm_id, miner_model,
             SUM(bitcoin_mined) AS total_bitcoin, MAX(difficulty) AS max_difficulty
      FROM historical_bitcoin_calculations
      WHERE settlement_date BETWEEN $1::date AND $2::date
      GROUP BY settlement_date, settlement_period, farm_id, miner_model
    )]]
end

-- The outer SELECTs the summaries share, over their two CTEs.
local DAILY_SELECT = [[
    SELECT dc.settlement_date, dc.period_count, dc.farm_count, dc.total_volume, dc.total_payment,
           json_agg(json_build_object('minerModel', db.miner_model, 'bitcoinMined', db.total_bitcoin,
                                      'difficulty', db.max_difficulty) ORDER BY db.miner_model) AS miner_data
    FROM daily_curtailment dc
    LEFT JOIN daily_bitcoin db ON dc.settlement_date = db.settlement_date
    GROUP BY dc.settlement_date, dc.period_count, dc.farm_count, dc.total_volume, dc.total_payment]]

local PERIOD_SELECT = [[
    SELECT TO_CHAR(pc.period, '{fmt}') AS {label}, pc.day_count, pc.period_count, pc.farm_count,
           pc.total_volume, pc.total_payment,
           json_agg(json_build_object('minerModel', pb.miner_model, 'bitcoinMined', pb.total_bitcoin,
                                      'avgDifficulty', pb.avg_difficulty) ORDER BY pb.miner_model) AS miner_data
    FROM period_curtailment pc
    LEFT JOIN period_bitcoin pb ON pc.period = pb.period
    GROUP BY pc.period, pc.day_count, pc.period_count, pc.farm_count, pc.total_volume, pc.total_payment]]

M.daily = {
  sql = [[
    WITH daily_curtailment AS (
      SELECT settlement_date, COUNT(DISTINCT settlement_period) AS period_count,
             COUNT(DISTINCT farm_id) AS farm_count, SUM(ABS(volume)) AS total_volume,
             SUM(payment) AS total_payment
      FROM curtailment_records WHERE settlement_date = $1::date
      GROUP BY settlement_date
    ),
    daily_bitcoin AS (
      SELECT settlement_date, miner_model, COUNT(DISTINCT settlement_period) AS period_count,
             SUM(bitcoin_mined) AS total_bitcoin, MAX(difficulty) AS max_difficulty
      FROM historical_bitcoin_calculations WHERE settlement_date = $1::date
      GROUP BY settlement_date, miner_model
    )
  ]] .. DAILY_SELECT,
}

-- Month and year summaries share one shape; only the truncation differs.
-- The bounds are written out (not a CTE) so the planner sees constants and
-- prunes partitions other than the month's or year's.
local function period_summary(unit, label, fmt)
  return {
    sql = ([[
    WITH period_curtailment AS (
      SELECT DATE_TRUNC('{unit}', settlement_date) AS period, COUNT(DISTINCT settlement_date) AS day_count,
             COUNT(DISTINCT settlement_period) AS period_count, COUNT(DISTINCT farm_id) AS farm_count,
             SUM(ABS(volume)) AS total_volume, SUM(payment) AS total_payment
      FROM curtailment_records
      WHERE settlement_date BETWEEN $1::date AND ($1::date + interval '1 {unit}' - interval '1 day')::date
      GROUP BY DATE_TRUNC('{unit}', settlement_date)
    ),
    period_bitcoin AS (
      SELECT DATE_TRUNC('{unit}', settlement_date) AS period, miner_model,
             COUNT(DISTINCT settlement_date) AS day_count, SUM(bitcoin_mined) AS total_bitcoin,
             AVG(difficulty) AS avg_difficulty
      FROM historical_bitcoin_calculations
      WHERE settlement_date BETWEEN $1::date AND ($1::date + interval '1 {unit}' - interval '1 day')::date
      GROUP BY DATE_TRUNC('{unit}', settlement_date), miner_model
    )
  ]] .. PERIOD_SELECT):gsub("{(%a+)}", { unit = unit, fmt = fmt, label = label }),
  }
end

M.monthly = period_summary("month", "year_month", "YYYY-MM")
M.yearly = period_summary("year", "year", "YYYY")

--- The miner models side by side over $1..$2, optionally one farm ($3) or
-- the farms of one lead party ($4): energy, bitcoin, bitcoin per GWh.
local function miners_sql(source, energy, bitcoin, party_source)
  return {
    sql = ([[
      SELECT m.name AS miner_model, m.hashrate_th, m.power_watts,
             round(m.power_watts / m.hashrate_th, 3) AS joules_per_th,
             coalesce(sum(h.{energy}), 0) AS curtailed_mwh,
             coalesce(sum(h.{bitcoin}), 0) AS bitcoin_mined,
             CASE WHEN sum(h.{energy}) > 0
                  THEN round(sum(h.{bitcoin}) / sum(h.{energy}) * 1000, 9) END AS btc_per_gwh
      FROM miner_models m
      LEFT JOIN {source} h ON h.miner_model = m.name
        AND h.settlement_date BETWEEN $1::date AND $2::date
        AND ($3::text IS NULL OR h.farm_id = $3)
        AND ($4::text IS NULL OR h.farm_id IN (SELECT farm_id FROM {party_source}
                                               WHERE lead_party_name = $4 AND settlement_date BETWEEN $1 AND $2))
      GROUP BY m.name, m.hashrate_th, m.power_watts
      ORDER BY bitcoin_mined DESC, m.name]]):gsub("{([%a_]+)}",
      { energy = energy, bitcoin = bitcoin, source = source, party_source = party_source }),
  }
end

M.miners = miners_sql("historical_bitcoin_calculations", "curtailed_energy", "bitcoin_mined", "curtailment_records")
M.miners_rollup = miners_sql("rollup_farm_miner_day", "energy", "bitcoin", "rollup_farm_day")

-- ---- the day-grain rollups ----
--
-- Per settlement date, what every summary above needs, so a month or a year
-- reads a few hundred rows instead of millions. Each rollup is one SELECT
-- ... GROUP BY over its source (raw rows, or a finer rollup declared above
-- it) for some dates; quarry's writes (ingest, difficulty, seed) rerun them
-- for exactly the dates they touch, in their own transaction. Measures are
-- exact: sums of numeric, and distinct counts kept as sets (a bitmask of
-- settlement periods 1-50, an array of farms), never as counts that cannot
-- be added. Columns: { name, type, aggregate }. A rollup built on another
-- must add up exactly from it (sums, maxima, ORs of bitmasks, unions of
-- sets: quarry_array_union is the union of sorted arrays, migration 4).
M.rollups = {
  { -- per date, farm and lead party: farm and lead-party breakdowns and filters
    name = "farm_day",
    table = "rollup_farm_day",
    source = "curtailment_records",
    grain = { { "settlement_date", "date" }, { "farm_id", "text" }, { "lead_party_name", "text" } },
    measures = {
      { "period_mask", "bigint", "bit_or(1::bigint << (settlement_period - 1))" },
      { "acceptances", "integer", "count(*)::integer" },
      { "volume_abs", "numeric", "sum(abs(volume))" },
      { "payment", "numeric", "sum(payment)" },
      { "payment_abs", "numeric", "sum(abs(payment))" },
    },
  },
  { -- per date and settlement period: the per-period breakdown
    name = "period_day",
    table = "rollup_period_day",
    source = "curtailment_records",
    grain = { { "settlement_date", "date" }, { "settlement_period", "integer" } },
    measures = {
      { "acceptances", "integer", "count(*)::integer" },
      { "volume_abs", "numeric", "sum(abs(volume))" },
      { "payment", "numeric", "sum(payment)" },
      { "payment_abs", "numeric", "sum(abs(payment))" },
      { "farms", "text[]", "array_agg(DISTINCT farm_id ORDER BY farm_id)" },
    },
  },
  { -- per date, from the rollup above: the summaries, the day, month and total breakdowns
    name = "day",
    table = "rollup_day",
    source = "rollup_period_day",
    grain = { { "settlement_date", "date" } },
    measures = {
      { "period_mask", "bigint", "bit_or(1::bigint << (settlement_period - 1))" },
      { "farm_periods", "integer", "sum(cardinality(farms))::integer" },
      { "acceptances", "integer", "sum(acceptances)::integer" },
      { "volume_abs", "numeric", "sum(volume_abs)" },
      { "payment", "numeric", "sum(payment)" },
      { "payment_abs", "numeric", "sum(payment_abs)" },
      { "farms", "text[]", "quarry_array_union(farms)" },
    },
  },
  { -- per date, farm and miner model: bitcoin of farm and lead-party questions
    name = "farm_miner_day",
    table = "rollup_farm_miner_day",
    source = "historical_bitcoin_calculations",
    grain = { { "settlement_date", "date" }, { "farm_id", "text" }, { "miner_model", "text" } },
    measures = {
      { "energy", "numeric", "sum(curtailed_energy)" },
      { "bitcoin", "numeric", "sum(bitcoin_mined)" },
    },
  },
  { -- per date, settlement period and miner model: bitcoin of the per-period breakdown
    name = "period_miner_day",
    table = "rollup_period_miner_day",
    source = "historical_bitcoin_calculations",
    grain = { { "settlement_date", "date" }, { "settlement_period", "integer" }, { "miner_model", "text" } },
    measures = {
      { "calculations", "integer", "count(*)::integer" },
      { "energy", "numeric", "sum(curtailed_energy)" },
      { "bitcoin", "numeric", "sum(bitcoin_mined)" },
      { "difficulty_sum", "numeric", "sum(difficulty)" },
      { "difficulty_max", "numeric", "max(difficulty)" },
    },
  },
  { -- per date and miner model, from the rollup above
    name = "miner_day",
    table = "rollup_miner_day",
    source = "rollup_period_miner_day",
    grain = { { "settlement_date", "date" }, { "miner_model", "text" } },
    measures = {
      { "period_mask", "bigint", "bit_or(1::bigint << (settlement_period - 1))" },
      { "calculations", "integer", "sum(calculations)::integer" },
      { "energy", "numeric", "sum(energy)" },
      { "bitcoin", "numeric", "sum(bitcoin)" },
      { "difficulty_sum", "numeric", "sum(difficulty_sum)" },
      { "difficulty_max", "numeric", "max(difficulty_max)" },
    },
  },
}

-- The number of periods in a bitmask.
local function periods(mask) return ("bit_count((%s)::bit(64))"):format(mask) end

--- The monthly and yearly summaries over the rollups: the same columns and,
-- digit for digit, the same figures as M.monthly and M.yearly.
local function period_summary_rollup(unit, label, fmt)
  local range = ("settlement_date BETWEEN $1::date AND ($1::date + interval '1 %s' - interval '1 day')::date")
    :format(unit)
  return {
    sql = ([[
    WITH days AS (SELECT * FROM rollup_day WHERE {range}),
    period_curtailment AS (
      SELECT DATE_TRUNC('{unit}', settlement_date) AS period, COUNT(DISTINCT settlement_date) AS day_count,
             {periods} AS period_count,
             (SELECT COUNT(*) FROM (SELECT DISTINCT f FROM days, unnest(days.farms) AS f) x) AS farm_count,
             SUM(volume_abs) AS total_volume, SUM(payment) AS total_payment
      FROM days
      GROUP BY DATE_TRUNC('{unit}', settlement_date)
    ),
    period_bitcoin AS (
      SELECT DATE_TRUNC('{unit}', settlement_date) AS period, miner_model,
             COUNT(DISTINCT settlement_date) AS day_count, SUM(bitcoin) AS total_bitcoin,
             SUM(difficulty_sum) / SUM(calculations) AS avg_difficulty
      FROM rollup_miner_day
      WHERE {range}
      GROUP BY DATE_TRUNC('{unit}', settlement_date), miner_model
    )
  ]] .. PERIOD_SELECT):gsub("{(%a+)}", { range = range, unit = unit, periods = periods("bit_or(period_mask)"),
                                         fmt = fmt, label = label }),
  }
end

M.monthly_rollup = period_summary_rollup("month", "year_month", "YYYY-MM")
M.yearly_rollup = period_summary_rollup("year", "year", "YYYY")

M.daily_rollup = {
  sql = ([[
    WITH daily_curtailment AS (
      SELECT settlement_date, %s AS period_count, cardinality(farms)::bigint AS farm_count,
             volume_abs AS total_volume, payment AS total_payment
      FROM rollup_day WHERE settlement_date = $1::date
    ),
    daily_bitcoin AS (
      SELECT settlement_date, miner_model, %s AS period_count,
             bitcoin AS total_bitcoin, difficulty_max AS max_difficulty
      FROM rollup_miner_day WHERE settlement_date = $1::date
    )
  ]] .. DAILY_SELECT)
    :format(periods("period_mask"), periods("period_mask")),
}

--- Mining potential per day over $1..$2 for miner $3, optionally one farm
-- ($4) or one lead party ($5): the breakdown rows of the reports.
M.daily_rows = {
  sql = [[
    WITH c AS (
      SELECT settlement_date, COUNT(DISTINCT (settlement_period, farm_id)) AS farm_periods,
             COUNT(DISTINCT farm_id) AS farms, SUM(ABS(volume)) AS curtailed_mwh,
             SUM(ABS(payment)) AS paid_gbp
      FROM curtailment_records
      WHERE settlement_date BETWEEN $1::date AND $2::date
        AND ($4::text IS NULL OR farm_id = $4) AND ($5::text IS NULL OR lead_party_name = $5)
      GROUP BY settlement_date
    ),
    b AS (
      SELECT h.settlement_date, SUM(h.bitcoin_mined) AS bitcoin_mined, MAX(h.difficulty) AS difficulty
      FROM historical_bitcoin_calculations h
      WHERE h.settlement_date BETWEEN $1::date AND $2::date AND h.miner_model = $3
        AND ($4::text IS NULL OR h.farm_id = $4)
        AND ($5::text IS NULL OR h.farm_id IN (SELECT DISTINCT farm_id FROM curtailment_records
                                               WHERE lead_party_name = $5
                                                 AND settlement_date BETWEEN $1::date AND $2::date))
      GROUP BY h.settlement_date
    )
    SELECT c.settlement_date::text AS settlement_date, c.farms, c.farm_periods, c.curtailed_mwh, c.paid_gbp,
           coalesce(b.bitcoin_mined, 0) AS bitcoin_mined, b.difficulty
    FROM c LEFT JOIN b USING (settlement_date)
    ORDER BY c.settlement_date]],
}

--- Breakdowns for the reports: curtailment and bitcoin over $1..$2 grouped
-- by day, month, farm, lead party or settlement period, optionally for one
-- farm ($3) or lead party ($4). Bitcoin comes per miner model, in rows, so
-- numeric values stay exact (no JSON on the way).
--
-- The shapes a breakdown can take, one declaration each: the label of the
-- first column, the SQL of its key (over the raw rows and the rollups
-- alike: both have these columns), and the columns that key reads, which
-- decide which rollup can answer (checked below when this file loads).
-- `calendar` shapes list every key of the period, with zeros where nothing
-- was curtailed: "dates" (every day, week or month the range touches),
-- "periods" (every settlement period of its days, 46/48/50 aware). A new
-- shape is one entry here; plugins use it as ctx.breakdown(NAME, p).
M.shapes = {
  day = { label = "settlement_date", key = "settlement_date::text", columns = { "settlement_date" },
          calendar = "dates" },
  week = { label = "week", key = [[to_char(settlement_date, 'IYYY-"W"IW')]], columns = { "settlement_date" },
           calendar = "dates" },
  month = { label = "month", key = "to_char(settlement_date, 'YYYY-MM')", columns = { "settlement_date" },
            calendar = "dates" },
  farm = { label = "farm_id", key = "farm_id", columns = { "farm_id" } },
  lead_party = { label = "lead_party", key = "coalesce(lead_party_name, '(none)')", columns = { "lead_party_name" } },
  period = { label = "settlement_period", key = "settlement_period", columns = { "settlement_period" },
             calendar = "periods" },
  all = { label = "total", key = "'total'", columns = {} },
}

--- The keys a calendar shape has over $1..$2, in order, and whether any
-- day of each is loaded (curtailment_loaded_days: a key with none is no
-- data, not zero): SQL.
function M.calendar_sql(shape)
  if shape.calendar == "dates" then
    return ("SELECT %s AS key, count(l.settlement_date) > 0 AS loaded FROM (SELECT d::date AS settlement_date "
      .. "FROM generate_series($1::date, $2::date, interval '1 day') AS d) days "
      .. "LEFT JOIN curtailment_loaded_days l USING (settlement_date) GROUP BY 1 ORDER BY 1"):format(shape.key)
  elseif shape.calendar == "periods" then
    return "SELECT generate_series(1, (SELECT max(quarry_periods_in_day(d::date)) FROM generate_series($1::date, "
      .. "$2::date, interval '1 day') AS d)) AS key, EXISTS (SELECT 1 FROM curtailment_loaded_days "
      .. "WHERE settlement_date BETWEEN $1::date AND $2::date) AS loaded"
  end
  return nil
end

--- The two queries of a breakdown. Parameters: $1 first date, $2 last
-- date, $3 farm or NULL, and -- only when party is true -- $4 lead party or
-- NULL. Bitcoin rows carry no lead party, so they are joined to curtailment
-- only when a lead party is asked for.
local function reads(shape, column)
  for _, c in ipairs(shape.columns) do if c == column then return true end end
  return false
end

-- The bitcoin of a breakdown with its value: each source row's bitcoin at
-- its day's price (bitcoin_prices), and how many rows had no price (then
-- report.lua shows no value at all rather than a partial one).
local function priced(sum_of, date_col)
  return ("SUM(%s) AS bitcoin, round(SUM(%s * p.gbp_per_btc), 2) AS value_gbp, "
    .. "COUNT(*) FILTER (WHERE p.gbp_per_btc IS NULL) AS unpriced"):format(sum_of, sum_of),
    ("LEFT JOIN bitcoin_prices p ON p.price_date = %s"):format(date_col)
end

function M.breakdown_sql(by, party)
  local shape = assert(M.shapes[by], "unknown breakdown")
  local g = shape.key
  party = party or reads(shape, "lead_party_name")
  local curtailment = ([[
      WITH fp AS (  -- farm-periods first: acceptances of one farm in one period become one row
        SELECT %s AS key, settlement_date, settlement_period, farm_id,
               SUM(ABS(volume)) AS mwh, SUM(ABS(payment)) AS paid, COUNT(*) AS n
        FROM curtailment_records
        WHERE settlement_date BETWEEN $1::date AND $2::date AND ($3::text IS NULL OR farm_id = $3) %s
        GROUP BY 1, settlement_date, settlement_period, farm_id
      )
      SELECT key, COUNT(DISTINCT farm_id) AS farms, COUNT(DISTINCT (settlement_date, settlement_period)) AS periods,
             COUNT(*) AS farm_periods, SUM(mwh) AS curtailed_mwh, SUM(paid) AS paid_gbp, SUM(n) AS acceptances
      FROM fp GROUP BY key ORDER BY key]]):format(g, party and "AND ($4::text IS NULL OR lead_party_name = $4)" or "")
  local bitcoin
  if party then
    bitcoin = ([[
      SELECT %s AS key, h.miner_model, %s
      FROM historical_bitcoin_calculations h
      JOIN (SELECT DISTINCT settlement_date, settlement_period, farm_id, lead_party_name FROM curtailment_records
            WHERE settlement_date BETWEEN $1::date AND $2::date AND ($3::text IS NULL OR farm_id = $3)) c
        USING (settlement_date, settlement_period, farm_id) %s
      WHERE h.settlement_date BETWEEN $1::date AND $2::date
        AND ($3::text IS NULL OR h.farm_id = $3) AND ($4::text IS NULL OR c.lead_party_name = $4)
      GROUP BY 1, 2 ORDER BY 1, 2]]):format(g, priced("h.bitcoin_mined", "h.settlement_date"))
  else
    bitcoin = ([[
      SELECT %s AS key, miner_model, %s
      FROM historical_bitcoin_calculations h %s
      WHERE settlement_date BETWEEN $1::date AND $2::date AND ($3::text IS NULL OR farm_id = $3)
      GROUP BY 1, 2 ORDER BY 1, 2]]):format(g, priced("bitcoin_mined", "h.settlement_date"))
  end
  return { curtailment = curtailment, bitcoin = bitcoin, party = party }
end

--- The same breakdowns over the day-grain rollups, column for column and
-- digit for digit; nil for what no rollup answers (settlement periods of
-- one farm or lead party). Without a farm or lead party, the per-date (or
-- per-period) rollups answer; otherwise the per-farm ones. Farm-periods and periods come from
-- the period bitmasks: OR-ed per farm and day (or per day), then counted.
local function by_day_sql(g)
  return {
    curtailment = ([[
      WITH r AS (
        SELECT %s AS key, * FROM rollup_day
        WHERE settlement_date BETWEEN $1::date AND $2::date AND $3::text IS NULL
      ),
      fc AS (  -- distinct farms per key: hashed, not sorted
        SELECT key, COUNT(*) AS farms FROM (SELECT DISTINCT key, f FROM r, unnest(r.farms) AS f) x GROUP BY key
      )
      SELECT key, fc.farms, SUM(%s)::bigint AS periods, SUM(farm_periods)::bigint AS farm_periods,
             SUM(volume_abs) AS curtailed_mwh, SUM(payment_abs) AS paid_gbp, SUM(acceptances) AS acceptances
      FROM r JOIN fc USING (key) GROUP BY key, fc.farms ORDER BY key]]):format(g, periods("period_mask")),
    bitcoin = ([[
      SELECT %s AS key, miner_model, %s
      FROM rollup_miner_day r %s
      WHERE settlement_date BETWEEN $1::date AND $2::date AND $3::text IS NULL
      GROUP BY 1, 2 ORDER BY 1, 2]]):format(g, priced("bitcoin", "r.settlement_date")),
    party = false,
    rollup = "day",
  }
end

-- Per settlement period (no farm or lead party): one rollup row is one
-- (date, period), so the distinct (date, period) pairs are its rows and the
-- farm-periods are its farm counts.
local function by_period_sql(g)
  return {
    curtailment = ([[
      WITH r AS (
        SELECT %s AS key, * FROM rollup_period_day
        WHERE settlement_date BETWEEN $1::date AND $2::date AND $3::text IS NULL
      ),
      fc AS (
        SELECT key, COUNT(*) AS farms FROM (SELECT DISTINCT key, f FROM r, unnest(r.farms) AS f) x GROUP BY key
      )
      SELECT key, fc.farms, COUNT(*) AS periods, SUM(cardinality(r.farms))::bigint AS farm_periods,
             SUM(volume_abs) AS curtailed_mwh, SUM(payment_abs) AS paid_gbp, SUM(acceptances) AS acceptances
      FROM r JOIN fc USING (key) GROUP BY key, fc.farms ORDER BY key]]):format(g),
    bitcoin = ([[
      SELECT %s AS key, miner_model, %s
      FROM rollup_period_miner_day r %s
      WHERE settlement_date BETWEEN $1::date AND $2::date AND $3::text IS NULL
      GROUP BY 1, 2 ORDER BY 1, 2]]):format(g, priced("bitcoin", "r.settlement_date")),
    party = false,
    rollup = "period",
  }
end

function M.breakdown_rollup_sql(by, party, farm)
  local shape = M.shapes[by]
  if not shape then return nil end
  local g = shape.key
  party = party or reads(shape, "lead_party_name")
  if reads(shape, "settlement_period") then
    if party or farm then return nil end -- finer than any rollup: the raw rows answer
    return by_period_sql(g)
  end
  if not party and not farm and not reads(shape, "farm_id") then return by_day_sql(g) end
  local curtailment = ([[
      WITH f AS (  -- one row per key, day and farm
        SELECT %s AS key, settlement_date, farm_id, bit_or(period_mask) AS mask,
               SUM(volume_abs) AS mwh, SUM(payment_abs) AS paid, SUM(acceptances) AS n
        FROM rollup_farm_day
        WHERE settlement_date BETWEEN $1::date AND $2::date AND ($3::text IS NULL OR farm_id = $3) %s
        GROUP BY 1, settlement_date, farm_id
      ),
      d AS (
        SELECT key, SUM(%s)::bigint AS periods
        FROM (SELECT key, settlement_date, bit_or(mask) AS m FROM f GROUP BY 1, 2) x GROUP BY key
      )
      SELECT key, COUNT(DISTINCT farm_id) AS farms, d.periods, SUM(%s)::bigint AS farm_periods,
             SUM(mwh) AS curtailed_mwh, SUM(paid) AS paid_gbp, SUM(n) AS acceptances
      FROM f JOIN d USING (key) GROUP BY key, d.periods ORDER BY key]]):format(g,
    party and "AND ($4::text IS NULL OR lead_party_name = $4)" or "", periods("m"), periods("mask"))
  local bitcoin
  if party then
    bitcoin = ([[
      SELECT %s AS key, h.miner_model, %s
      FROM rollup_farm_miner_day h
      JOIN (SELECT DISTINCT settlement_date, farm_id, lead_party_name FROM rollup_farm_day
            WHERE settlement_date BETWEEN $1::date AND $2::date AND ($3::text IS NULL OR farm_id = $3)) c
        USING (settlement_date, farm_id) %s
      WHERE h.settlement_date BETWEEN $1::date AND $2::date
        AND ($3::text IS NULL OR h.farm_id = $3) AND ($4::text IS NULL OR c.lead_party_name = $4)
      GROUP BY 1, 2 ORDER BY 1, 2]]):format(g, priced("h.bitcoin", "h.settlement_date"))
  else
    bitcoin = ([[
      SELECT %s AS key, miner_model, %s
      FROM rollup_farm_miner_day r %s
      WHERE settlement_date BETWEEN $1::date AND $2::date AND ($3::text IS NULL OR farm_id = $3)
      GROUP BY 1, 2 ORDER BY 1, 2]]):format(g, priced("bitcoin", "r.settlement_date"))
  end
  return { curtailment = curtailment, bitcoin = bitcoin, party = party, rollup = "farm" }
end

--- A breakdown's two queries as one statement (one round trip): the
-- curtailment rows, each with its bitcoin by miner model as arrays in model
-- order (q_miners, q_bitcoin and q_value, as text: every digit) and how
-- many of its source rows had no price (q_unpriced); NULLs for a key
-- without bitcoin.
-- Each part is computed once (MATERIALIZED): under a generic plan (a
-- report's transaction reads the rollups with one) the planner expects a
-- row or two of a date range, and a nested loop re-ran the whole bitcoin
-- aggregate for every curtailment key: a daily report's statement cost
-- PostgreSQL 1.6-1.8 ms of CPU, 0.7-0.9 ms materialized (measured on the
-- backend's own CPU time).
function M.combined(sql)
  return ([[
      WITH c AS MATERIALIZED (%s
      ), b AS MATERIALIZED (%s
      ), bb AS MATERIALIZED (
        SELECT key, array_agg(miner_model ORDER BY miner_model) AS q_miners,
               array_agg(bitcoin::text ORDER BY miner_model) AS q_bitcoin,
               array_agg(value_gbp::text ORDER BY miner_model) AS q_value, SUM(unpriced)::bigint AS q_unpriced
        FROM b GROUP BY key)
      SELECT c.*, bb.q_miners, bb.q_bitcoin, bb.q_value, bb.q_unpriced
      FROM c LEFT JOIN bb USING (key)
      ORDER BY key]]):format(sql.curtailment, sql.bitcoin)
end

-- ---- checked when this file loads ----

-- A shape's columns must be columns of the raw rows, and every column a
-- rollup answers a shape from must be in that rollup's grain.
do
  local src = "lua/quarry/defs/summaries.lua"
  local raw = { settlement_date = true, settlement_period = true, farm_id = true, lead_party_name = true }
  local grains = {}
  for _, r in ipairs(M.rollups) do
    grains[r.table] = {}
    for _, c in ipairs(r.grain) do grains[r.table][c[1]] = true end
  end
  -- the rollups a shape is answered from, by the columns it reads (see breakdown_rollup_sql)
  local serving = { "rollup_day", "rollup_farm_day", "rollup_period_day" }
  for name, shape in pairs(M.shapes) do
    local field = "shapes." .. name
    if type(shape.label) ~= "string" or type(shape.key) ~= "string" or type(shape.columns) ~= "table" then
      require("quarry.core").usage(("%s: '%s' needs label, key and columns"):format(src, field))
    end
    for _, c in ipairs(shape.columns) do
      if not raw[c] then
        require("quarry.core").usage(("%s: '%s.columns' names '%s', not a column of the rows it groups"):format(
          src, field, c))
      end
    end
  end
  for _, t in ipairs(serving) do
    if not grains[t] then
      require("quarry.core").usage(("%s: 'rollups' lacks %s, which breakdowns read"):format(src, t))
    end
  end
  if not (grains.rollup_farm_day.farm_id and grains.rollup_farm_day.lead_party_name
          and grains.rollup_period_day.settlement_period) then
    require("quarry.core").usage(src .. ": 'rollups' grains lack the columns breakdowns group by")
  end
end

return M
