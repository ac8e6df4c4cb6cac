-- The half-hourly profile: when in the day curtailment happens.
return {
  name = "periods",
  description = "The 48 half-hour settlement periods of a day or month",
  params = {
    date = { type = "date" }, month = { type = "month" },
    miner = { type = "miner", default = "S19J_PRO" },
    farm = { type = "farm" }, lead_party = { type = "lead_party" },
  },
  cache = { key = "periods:{miner}:{farm}:{lead_party}", ttl = "LONG" },
  chart = { x = "key", y = "curtailed_mwh" },
  decimals = { curtailed_mwh = 1, paid_gbp = 0 },
  run = function(ctx, p)
    local r, all = ctx.together(function(c) return c.breakdown("period", p, p.miner) end,
                                function(c) return c.breakdown("all", p, p.miner) end)
    r.title = "Curtailment by settlement period, " .. (p.date or p.month)
    r.totals = all.rows[1] -- of the whole period, not just the rows shown
    return r
  end,
}
