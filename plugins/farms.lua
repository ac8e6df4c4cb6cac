-- Leaderboard: who was curtailed (or paid) most, and what that energy could
-- have mined.
local SORTS = { curtailed_mwh = "curtailed energy", paid_gbp = "payment", btc = "bitcoin" }

return {
  name = "farms",
  description = "Farms (or lead parties) ranked by curtailed energy, payment or bitcoin",
  params = {
    date = { type = "date" }, month = { type = "month" }, quarter = { type = "quarter" }, year = { type = "year" },
    miner = { type = "miner", default = "S19J_PRO" },
    by = { type = "choice", choices = { "farm", "lead_party" }, default = "farm" },
    sort = { type = "choice", choices = { "curtailed_mwh", "paid_gbp", "btc" }, default = "curtailed_mwh" },
    limit = { type = "integer", default = 20, min = 1, max = 10000 },
  },
  cache = { key = "farms:{by}:{miner}:{sort}:{limit}", ttl = "LONG" },
  chart = { x = "key", y = "curtailed_mwh" },
  decimals = { curtailed_mwh = 1, paid_gbp = 0 },
  run = function(ctx, p)
    local r, all = ctx.together(function(c) return c.breakdown(p.by, p, p.miner) end,
                                function(c) return c.breakdown("all", p, p.miner) end)
    local col = p.sort == "btc" and ("btc_" .. p.miner) or p.sort
    table.sort(r.rows, function(a, b)
      local x, y = tonumber(a[col]) or 0, tonumber(b[col]) or 0
      if x ~= y then return x > y end
      return tostring(a.key) < tostring(b.key) -- ties in a stable order
    end)
    local top = {}
    for i = 1, math.min(p.limit, #r.rows) do top[i] = r.rows[i] end
    r.rows = top
    r.chart = { x = "key", y = col }
    r.title = ("Top %d %s by %s, %s"):format(p.limit, p.by == "farm" and "farms" or "lead parties", SORTS[p.sort],
      p.date or p.month or p.quarter or p.year)
    r.totals = all.rows[1] -- of the whole period, not just the rows shown
    return r
  end,
}
