-- Leaderboard: who was curtailed most, and what that energy could have mined.
return {
  name = "farms",
  description = "Farms (or lead parties) ranked by curtailed energy, with bitcoin",
  params = {
    date = { type = "date" }, month = { type = "month" }, year = { type = "year" },
    miner = { type = "miner", default = "S19J_PRO" },
    by = { type = "choice", choices = { "farm", "lead_party" }, default = "farm" },
    limit = { type = "integer", default = 20, min = 1, max = 10000 },
  },
  cache = { key = "farms:{by}:{miner}:{limit}", ttl = "LONG" },
  chart = { x = "key", y = "curtailed_mwh" },
  decimals = { curtailed_mwh = 1, paid_gbp = 0 },
  run = function(ctx, p)
    local r = ctx.breakdown(p.by, p, p.miner)
    table.sort(r.rows, function(a, b) return tonumber(a.curtailed_mwh) > tonumber(b.curtailed_mwh) end)
    local top = {}
    for i = 1, math.min(p.limit, #r.rows) do top[i] = r.rows[i] end
    r.rows = top
    r.title = ("Top %d %s by curtailed energy, %s"):format(p.limit, p.by == "farm" and "farms" or "lead parties",
      p.date or p.month or p.year)
    r.totals = ctx.breakdown("all", p, p.miner).rows[1] -- of the whole period, not just the rows shown
    return r
  end,
}
