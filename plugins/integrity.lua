-- The reconciliation the old platform did by hand in about ninety one-off
-- scripts, as one report. Every row is a problem; no rows, no problems.
return {
  name = "integrity",
  description = "Reconcile curtailment with bitcoin rows: gaps, stale difficulty or reward, missing days",
  params = { month = { type = "month" }, year = { type = "year" } },
  run = function(ctx, p)
    local from, to = ctx.range(p)
    local span = ctx.query_one([[SELECT min(settlement_date)::text AS first, max(settlement_date)::text AS last
                                 FROM curtailment_records]])
    from, to = from or span.first or "1970-01-01", to or span.last or "1970-01-01"
    local rows = ctx.query(([[
      WITH fp AS (  -- curtailment farm-periods
        SELECT DISTINCT settlement_date, settlement_period, farm_id FROM curtailment_records
        WHERE settlement_date BETWEEN $1::date AND $2::date
      ),
      missing_bitcoin AS (
        SELECT 'farm-periods without bitcoin rows' AS problem, fp.settlement_date::text AS date,
               m.name AS detail, count(*) AS count
        FROM fp CROSS JOIN miner_models m
        WHERE NOT EXISTS (SELECT 1 FROM historical_bitcoin_calculations h
                          WHERE h.settlement_date = fp.settlement_date AND h.settlement_period = fp.settlement_period
                            AND h.farm_id = fp.farm_id AND h.miner_model = m.name)
        GROUP BY fp.settlement_date, m.name
      ),
      orphans AS (
        SELECT 'bitcoin rows without curtailment' AS problem, h.settlement_date::text, h.miner_model, count(*)
        FROM historical_bitcoin_calculations h
        WHERE h.settlement_date BETWEEN $1::date AND $2::date
          AND NOT EXISTS (SELECT 1 FROM fp WHERE fp.settlement_date = h.settlement_date
                            AND fp.settlement_period = h.settlement_period AND fp.farm_id = h.farm_id)
        GROUP BY h.settlement_date, h.miner_model
      ),
      in_force AS (
        SELECT d.settlement_date,
               (SELECT difficulty FROM bitcoin_difficulty WHERE effective_date <= d.settlement_date
                ORDER BY effective_date DESC LIMIT 1) AS difficulty
        FROM (SELECT DISTINCT settlement_date FROM historical_bitcoin_calculations
              WHERE settlement_date BETWEEN $1::date AND $2::date) d
      ),
      stale_difficulty AS (
        SELECT 'bitcoin rows with a difficulty no longer in force', h.settlement_date::text,
               'stored ' || min(h.difficulty)::text || ', in force ' || coalesce(f.difficulty::text, 'none'), count(*)
        FROM historical_bitcoin_calculations h JOIN in_force f USING (settlement_date)
        WHERE h.difficulty IS DISTINCT FROM f.difficulty
        GROUP BY h.settlement_date, f.difficulty
      ),
      wrong_reward AS (
        SELECT 'bitcoin rows with the wrong block reward', settlement_date::text,
               'stored ' || min(block_reward)::text, count(*)
        FROM historical_bitcoin_calculations
        WHERE settlement_date BETWEEN $1::date AND $2::date
          AND block_reward <> REWARD
        GROUP BY settlement_date
      ),
      days AS (
        SELECT d::date AS day FROM generate_series($1::date, $2::date, interval '1 day') d
      ),
      per_day AS (
        SELECT days.day, count(DISTINCT c.settlement_period) AS periods
        FROM days LEFT JOIN curtailment_records c ON c.settlement_date = days.day
        GROUP BY days.day
      ),
      thin_days AS (  -- far fewer periods than both neighbours (a day with none: loaded calm, or listed below)
        SELECT 'dates with missing periods among their neighbours',
               cur.day::text, cur.periods::text || ' period(s); neighbours ' || prev.periods::text || ' and '
                 || next.periods::text, 1::bigint
        FROM per_day cur JOIN per_day prev ON prev.day = cur.day - 1 JOIN per_day next ON next.day = cur.day + 1
        WHERE cur.periods > 0 AND cur.periods * 4 < least(prev.periods, next.periods)
      )
      SELECT * FROM missing_bitcoin UNION ALL SELECT * FROM orphans UNION ALL SELECT * FROM stale_difficulty
      UNION ALL SELECT * FROM wrong_reward UNION ALL SELECT * FROM thin_days
      ORDER BY 1, 2, 3]]):gsub("REWARD", ctx.reward_sql("settlement_date")), from, to)
    -- Days no load replaced: no data, which reports show empty (not as calm days).
    local cov = ctx.coverage(from, to)
    for _, m in ipairs(cov.missing) do
      rows[#rows + 1] = { problem = "dates with no data loaded (quarry fetch curtailment or ingest loads them)",
                          date = m[1], detail = m[1] == m[2] and "" or ("to " .. m[2]), count = m[3] }
    end
    -- Real rows whose bitcoin rests on a difficulty point quarry db seed
    -- made up (loaded over a seeded range): a fetch of the real one mends it.
    for _, m in ipairs(cov.seed_difficulty) do
      rows[#rows + 1] = { problem = "dates whose bitcoin uses quarry db seed's synthetic difficulty",
                          date = m[1], detail = ("quarry fetch difficulty --from %s --to %s"):format(m[1], m[2]),
                          count = m[3] }
    end
    -- Days whose only rows were written by hand (psql, a script): no load
    -- checked them, and the day is only as whole as whoever typed it.
    for _, m in ipairs(cov.written_outside) do
      rows[#rows + 1] = { problem = "dates holding only rows written outside quarry",
                          date = m[1], detail = ("quarry fetch curtailment --from %s --to %s replaces them"):format(
                            m[1], m[2]), count = m[3] }
    end
    -- Days whose rollup rows disagree with their raw rows (a write made
    -- outside quarry): 'quarry rollup refresh --date D' mends them.
    for _, m in ipairs(ctx.summaries.rollup_mismatches(from, to)) do
      rows[#rows + 1] = { problem = "rollup days that disagree with their rows", date = m.settlement_date,
                          detail = m.rollups .. ": run quarry rollup refresh --date " .. m.settlement_date,
                          count = 1 }
    end
    -- Settlement periods Elexon answered 404 or an empty list for when the
    -- day was fetched: not zero, unknown until a later fetch fills them.
    for _, d in ipairs(ctx.query([[SELECT settlement_date::text AS date, array_to_string(missing, ',') AS missing
        FROM elexon_fetch_days WHERE settlement_date BETWEEN $1::date AND $2::date AND cardinality(missing) > 0
        ORDER BY 1]], from, to)) do
      local list = {}
      for n in d.missing:gmatch("%d+") do list[#list + 1] = tonumber(n) end
      rows[#rows + 1] = { problem = "settlement periods Elexon had no data for (quarry fetch curtailment fills them)",
                          date = d.date, detail = ctx.period_runs(list), count = #list }
    end
    -- Market data: curtailment with no price (value reports refuse those
    -- days), a difficulty in force older than mining allows (writes refuse
    -- those dates), and prices that move implausibly from one day to the next.
    for _, r in ipairs(ctx.query([[
        SELECT 'dates with curtailment and no price (value reports refuse them)' AS problem,
               d.settlement_date::text AS date, 'quarry fetch price --from ' || d.settlement_date AS detail,
               1::bigint AS count
        FROM rollup_day d WHERE d.settlement_date BETWEEN $1::date AND $2::date
          AND NOT EXISTS (SELECT 1 FROM bitcoin_prices p WHERE p.price_date = d.settlement_date)
        UNION ALL
        SELECT 'dates whose difficulty point is older than ' || $3::int || ' days', d.settlement_date::text,
               'latest point ' || coalesce(pt.effective_date::text, 'none'), 1
        FROM rollup_day d
        LEFT JOIN LATERAL (SELECT effective_date FROM bitcoin_difficulty WHERE effective_date <= d.settlement_date
                           ORDER BY effective_date DESC LIMIT 1) pt ON true
        WHERE d.settlement_date BETWEEN $1::date AND $2::date
          AND (pt.effective_date IS NULL OR d.settlement_date - pt.effective_date > $3::int)
        UNION ALL
        SELECT 'prices that move more than ' || round($4::numeric * 100) || '% in a day', p.price_date::text,
               prev.gbp_per_btc::text || ' -> ' || p.gbp_per_btc::text || ' GBP', 1
        FROM bitcoin_prices p JOIN bitcoin_prices prev ON prev.price_date = p.price_date - 1
        WHERE p.price_date BETWEEN $1::date AND $2::date
          AND abs(p.gbp_per_btc - prev.gbp_per_btc) > $4::numeric * prev.gbp_per_btc
        ORDER BY 1, 2]], from, to, ctx.market.difficulty_max_age_days, ctx.market.max_daily_move)) do
      rows[#rows + 1] = r
    end
    return { rows = rows, fields = rows.fields,
             title = ("Integrity of %s..%s: %d problem row(s)"):format(from, to, #rows) }
  end,
}
