-- One month, day by day: curtailed energy, payments and the bitcoin it could
-- have mined per miner model, with the month's totals.
local function fmt_total(t, miner)
  return ("total: %s MWh curtailed, £%s paid, %s BTC (%s)"):format(t.curtailed_mwh, t.paid_gbp,
    t["btc_" .. miner] or "0", miner)
end

return {
  name = "monthly",
  description = "Curtailment and mining potential for one month, by day",
  params = {
    month = { type = "month", required = true },
    miner = { type = "miner", default = "S19J_PRO" },
    farm = { type = "farm" },
    lead_party = { type = "lead_party" },
  },
  cache = { key = "monthly_mining:{month}:{miner}:{farm}:{lead_party}", ttl = "LONG" },
  chart = { x = "key", y = "btc_S19J_PRO" },
  decimals = { curtailed_mwh = 1, paid_gbp = 0 },
  run = function(ctx, p)
    -- the days and the month's totals, on one snapshot (ctx.together: at once with --direct)
    local r, all = ctx.together(function(c) return c.breakdown("day", p) end,
                                function(c) return c.breakdown("all", p) end)
    local total = all.rows[1]
    r.title = ("Curtailment and bitcoin, %s%s"):format(p.month, p.farm and (", farm " .. p.farm) or
      p.lead_party and (", " .. p.lead_party) or "")
    r.chart = { x = "key", y = "btc_" .. p.miner }
    r.totals = total
    r.footer = total and fmt_total(total, p.miner) or "no curtailment in this month"
    return r
  end,
}
