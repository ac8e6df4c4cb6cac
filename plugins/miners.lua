-- The miner models side by side on the same curtailed energy.
return {
  name = "miners",
  description = "Miner models side by side: bitcoin from the same curtailed energy",
  params = { date = { type = "date" }, month = { type = "month" }, year = { type = "year" },
             farm = { type = "farm" }, lead_party = { type = "lead_party" } },
  cache = { key = "miners:{farm}:{lead_party}", ttl = "LONG" },
  chart = { x = "miner_model", y = "bitcoin_mined" },
  decimals = { curtailed_mwh = 1, joules_per_th = 1, btc_per_gwh = 6 },
  run = function(ctx, p)
    local from, to = ctx.range(p)
    local rows = ctx.query([[
      SELECT m.name AS miner_model, m.hashrate_th, m.power_watts,
             round(m.power_watts / m.hashrate_th, 3) AS joules_per_th,
             coalesce(sum(h.curtailed_energy), 0) AS curtailed_mwh,
             coalesce(sum(h.bitcoin_mined), 0) AS bitcoin_mined,
             CASE WHEN sum(h.curtailed_energy) > 0
                  THEN round(sum(h.bitcoin_mined) / sum(h.curtailed_energy) * 1000, 9) END AS btc_per_gwh
      FROM miner_models m
      LEFT JOIN historical_bitcoin_calculations h ON h.miner_model = m.name
        AND h.settlement_date BETWEEN $1::date AND $2::date
        AND ($3::text IS NULL OR h.farm_id = $3)
        AND ($4::text IS NULL OR h.farm_id IN (SELECT farm_id FROM curtailment_records
                                               WHERE lead_party_name = $4 AND settlement_date BETWEEN $1 AND $2))
      GROUP BY m.name, m.hashrate_th, m.power_watts
      ORDER BY bitcoin_mined DESC, m.name]], from, to, p.farm, p.lead_party)
    return { rows = rows, fields = rows.fields, title = "Miner models compared, " .. (p.date or p.month or p.year) }
  end,
}
