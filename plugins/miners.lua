-- The miner models side by side on the same curtailed energy.
return {
  name = "miners",
  description = "Miner models side by side: bitcoin from the same curtailed energy",
  params = { date = { type = "date" }, month = { type = "month" }, quarter = { type = "quarter" },
             year = { type = "year" }, farm = { type = "farm" }, lead_party = { type = "lead_party" } },
  cache = { key = "miners:{farm}:{lead_party}", ttl = "LONG" },
  chart = { x = "miner_model", y = "bitcoin_mined" },
  decimals = { curtailed_mwh = 1, joules_per_th = 1, btc_per_gwh = 6 },
  run = function(ctx, p)
    local from, to = ctx.range(p)
    if not from then ctx.refuse("the miners report needs --date, --month, --quarter or --year") end
    -- read from the rollups (ctx.direct: from the raw rows, for checking)
    local rows = ctx.summaries[ctx.direct and "miners" or "miners_rollup"](from, to, p.farm, p.lead_party)
    local period = p.date or p.month or p.quarter or p.year
    return { rows = rows, fields = rows.fields, title = "Miner models compared, " .. period }
  end,
}
