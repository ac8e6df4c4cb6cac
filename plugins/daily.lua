-- One day, farm by farm.
return {
  name = "daily",
  description = "Curtailment and mining potential for one day, by farm",
  params = {
    date = { type = "date", required = true },
    miner = { type = "miner", default = "S19J_PRO" },
    farm = { type = "farm" },
    lead_party = { type = "lead_party" },
  },
  cache = { key = "daily_mining:{date}:{miner}:{farm}:{lead_party}", ttl = "MEDIUM" },
  chart = { x = "key", y = "curtailed_mwh" },
  decimals = { curtailed_mwh = 1, paid_gbp = 0 },
  run = function(ctx, p)
    -- the farms and the day's totals, on one snapshot (ctx.together: at once with --direct)
    local r, all = ctx.together(function(c) return c.breakdown("farm", p) end,
                                function(c) return c.breakdown("all", p) end)
    local mwh = {} -- each row's figure read once, not at every comparison
    for _, row in ipairs(r.rows) do mwh[row] = tonumber(row.curtailed_mwh) end
    table.sort(r.rows, function(a, b)
      if mwh[a] ~= mwh[b] then return mwh[a] > mwh[b] end
      return a.key < b.key -- ties in a stable order
    end)
    local t = all.rows[1]
    r.title = "Curtailment and bitcoin on " .. p.date
    r.totals = t
    r.footer = t and ("total: %s MWh curtailed over %d farm-periods, £%s paid, %s BTC (%s)"):format(
      t.curtailed_mwh, t.farm_periods, t.paid_gbp, t["btc_" .. p.miner], p.miner) or "no curtailment on this day"
    return r
  end,
}
