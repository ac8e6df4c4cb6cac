-- Would mining the curtailed energy have earned more than the constraint
-- payment? The bitcoin each day's energy could have mined, at that day's
-- price (bitcoin_prices; a day with curtailment and no price is refused,
-- never priced at another day's), beside what was paid for it.
-- key: the SQL of the grouping; column: its name in csv and json, as the
-- other reports name it (docs/OUTPUT.md)
local BY = {
  day = { key = "settlement_date", label = "date", column = "settlement_date" },
  month = { key = "to_char(settlement_date, 'YYYY-MM')", label = "month", column = "month" },
  farm = { key = "farm_id", label = "farm", column = "farm_id" },
  lead_party = { key = "lead_party_name", label = "lead party", column = "lead_party" },
}

-- One row per key: energy, payment, bitcoin and its value at each day's price.
local SQL = [[
WITH days AS (  -- per day and key: energy and payment
  SELECT settlement_date, %s AS key, sum(volume_abs) AS mwh, sum(payment_abs) AS paid
  FROM rollup_farm_day WHERE settlement_date BETWEEN $1::date AND $2::date GROUP BY 1, 2
),
btc AS (        -- per day and key: bitcoin, with the farm's lead party of that day
  SELECT b.settlement_date, %s AS key, sum(b.bitcoin) AS btc
  FROM rollup_farm_miner_day b
  JOIN (SELECT settlement_date, farm_id, min(lead_party_name) AS lead_party_name FROM rollup_farm_day
        WHERE settlement_date BETWEEN $1::date AND $2::date GROUP BY 1, 2) f USING (settlement_date, farm_id)
  WHERE b.settlement_date BETWEEN $1::date AND $2::date AND b.miner_model = $3 GROUP BY 1, 2
)
SELECT d.key, sum(d.mwh) AS curtailed_mwh, sum(d.paid) AS paid_gbp, coalesce(sum(b.btc), 0) AS btc,
       %s AS price_gbp, round(coalesce(sum(b.btc * p.gbp_per_btc), 0), 2) AS value_gbp
FROM days d LEFT JOIN btc b USING (settlement_date, key)
JOIN bitcoin_prices p ON p.price_date = d.settlement_date
GROUP BY d.key ORDER BY d.key]]

local function per_mwh(gbp, mwh)
  local m = tonumber(mwh)
  if not m or m == 0 then return nil end
  return ("%.2f"):format(tonumber(gbp) / m)
end

return {
  name = "value",
  description = "What the curtailed energy's bitcoin was worth at each day's price, against the payment",
  params = {
    month = { type = "month" }, year = { type = "year" },
    miner = { type = "miner", default = "S19J_PRO" },
    by = { type = "choice", choices = { "day", "month", "farm", "lead_party" }, default = "day" },
  },
  cache = { key = "value:{by}:{miner}", ttl = "LONG" },
  chart = { x = "key", y = "difference_gbp" },
  decimals = { curtailed_mwh = 1, paid_gbp = 0, value_gbp = 0, difference_gbp = 0 },
  run = function(ctx, p)
    local from, to = ctx.range(p)
    if not from then ctx.refuse("the value report needs --month or --year") end
    -- every day with curtailment needs its own price
    local missing = ctx.query([[SELECT settlement_date::text AS d FROM rollup_day
      WHERE settlement_date BETWEEN $1::date AND $2::date
        AND NOT EXISTS (SELECT 1 FROM bitcoin_prices WHERE price_date = settlement_date) ORDER BY 1]], from, to)
    if #missing > 0 then
      local shown = {}
      for i = 1, math.min(5, #missing) do shown[i] = missing[i].d end
      ctx.refuse(("no bitcoin price for %s%s (load them: quarry fetch price --from %s --to %s, or quarry ingest "
        .. "price FILE.csv)"):format(table.concat(shown, ", "), #missing > 5 and (" and %d more"):format(#missing - 5)
        or "", missing[1].d, missing[#missing].d))
    end
    local by = BY[p.by]
    local btc_key = p.by == "day" and "b.settlement_date"
      or p.by == "month" and "to_char(b.settlement_date, 'YYYY-MM')" or ("f." .. by.key)
    local rows = ctx.query(SQL:format(by.key, btc_key, p.by == "day" and "min(p.gbp_per_btc)" or "NULL::numeric"),
      from, to, p.miner)
    local wins = 0
    for _, r in ipairs(rows) do
      r.difference_gbp = ("%.2f"):format(tonumber(r.value_gbp) - tonumber(r.paid_gbp))
      r.value_per_mwh, r.paid_per_mwh = per_mwh(r.value_gbp, r.curtailed_mwh), per_mwh(r.paid_gbp, r.curtailed_mwh)
      r.mining_wins = tonumber(r.value_gbp) > tonumber(r.paid_gbp)
      if r.mining_wins then wins = wins + 1 end
    end
    local t = ctx.query_one(([[SELECT coalesce(sum(d.volume_abs), 0) AS curtailed_mwh,
        coalesce(sum(d.payment_abs), 0) AS paid_gbp,
        coalesce(sum(m.bitcoin), 0) AS btc, round(coalesce(sum(m.bitcoin * p.gbp_per_btc), 0), 2) AS value_gbp
      FROM rollup_day d JOIN bitcoin_prices p ON p.price_date = d.settlement_date
      LEFT JOIN rollup_miner_day m ON m.settlement_date = d.settlement_date AND m.miner_model = $3
      WHERE d.settlement_date BETWEEN $1::date AND $2::date]]), from, to, p.miner)
    local total = t
    total.difference_gbp = ("%.2f"):format(tonumber(t.value_gbp) - tonumber(t.paid_gbp))
    total.value_per_mwh = per_mwh(t.value_gbp, t.curtailed_mwh)
    total.paid_per_mwh = per_mwh(t.paid_gbp, t.curtailed_mwh)
    total.mining_wins = tonumber(t.value_gbp) > tonumber(t.paid_gbp)
    total.key = "total"
    local fields = {
      { name = "key", type = p.by == "day" and "date" or "text", label = by.label, column = by.column },
      { name = "curtailed_mwh", type = "numeric", unit = "MWh" },
      { name = "paid_gbp", type = "numeric", unit = "GBP" },
      { name = "btc", type = "numeric", label = "btc " .. p.miner, unit = "BTC" },
      { name = "price_gbp", type = "numeric", label = "price", unit = "GBP/BTC" },
      { name = "value_gbp", type = "numeric", unit = "GBP" },
      { name = "value_per_mwh", type = "numeric", unit = "GBP/MWh" },
      { name = "paid_per_mwh", type = "numeric", unit = "GBP/MWh" },
      { name = "difference_gbp", type = "numeric", label = "value - paid", unit = "GBP" },
      { name = "mining_wins", type = "bool", label = "mining wins" },
    }
    return {
      fields = fields, rows = rows, totals = total,
      title = ("Mining vs the payment, %s (%s, each day at its own price)"):format(p.month or p.year, p.miner),
      footer = ("mining %s would have beaten the payment for %d of %d %s"):format(p.miner, wins, #rows,
        ({ day = "days", month = "months", farm = "farms", lead_party = "lead parties" })[p.by]),
    }
  end,
}
