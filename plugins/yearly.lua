-- One year, month by month.
return {
  name = "yearly",
  description = "Curtailment and mining potential for one year, by month",
  params = {
    year = { type = "year", required = true },
    miner = { type = "miner", default = "S19J_PRO" },
    farm = { type = "farm" },
    lead_party = { type = "lead_party" },
  },
  cache = { key = "yearly_mining:{year}:{miner}:{farm}:{lead_party}", ttl = "VERY_LONG" },
  chart = { x = "key", y = "btc_S19J_PRO" },
  decimals = { curtailed_mwh = 1, paid_gbp = 0 },
  run = function(ctx, p)
    -- the months and the year's totals, on one snapshot (ctx.together: at once with --direct)
    local r, all = ctx.together(function(c) return c.breakdown("month", p) end,
                                function(c) return c.breakdown("all", p) end)
    local t = all.rows[1]
    r.title = "Curtailment and bitcoin, " .. p.year
    r.chart = { x = "key", y = "btc_" .. p.miner }
    r.totals = t
    r.footer = t and ("total: %s MWh curtailed, £%s paid, %s BTC (%s)"):format(t.curtailed_mwh, t.paid_gbp,
      t["btc_" .. p.miner], p.miner) or "no curtailment in this year"
    return r
  end,
}
