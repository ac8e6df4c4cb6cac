--- Cache invalidation rules: what a change to a table's rows on a
-- settlement date makes stale. Placeholders: {date} (YYYY-MM-DD), {month}
-- (YYYY-MM), {quarter} (YYYY-Qn), {year} (YYYY). Patterns of the form "literal:*" are dropped in
-- O(1) through group generations; other days, months and years stay cached.
--
-- Every write quarry makes (ingest, recalculation, seed) applies these for
-- the dates it touched; `quarry cache invalidate --date D` applies them by hand.
local mining = {
  "daily_mining:{date}:*",
  "monthly_mining:{month}:*",
  "quarterly_mining:{quarter}:*",
  "yearly_mining:{year}:*",
  -- what script values declare they depend on (cache get_or_compute's
  -- opts.depends): that day, its month, its year, or all the data
  "data:{date}:*",
  "data:{month}:*",
  "data:{year}:*",
  "data:all:*",
}

return {
  { table = "curtailment_records", stale = mining },
  { table = "historical_bitcoin_calculations", stale = mining },
  -- a day's price changes the value figures of that day, its month and year
  { table = "bitcoin_prices", stale = mining },
  -- whether a day is loaded (and which periods it lacks) is in every result's coverage
  { table = "curtailment_loaded_days", stale = mining },
}
