--- What quarry takes as plausible input, and why. A value outside these is
-- refused with the line and field (ingest) or as bad input (commands): it
-- is a typing or unit mistake, not data, and one such row can outweigh a
-- year of real ones in every total.
return {
  -- Settlement dates quarry handles: the balancing market's data starts in
  -- 2001; anything past 2100 is a typo (and PostgreSQL's own range is far
  -- wider, so a year 0000 would otherwise reach the server).
  dates = { from = "2001-01-01", to = "2100-12-31" },

  -- One row is one BM unit in one half hour: at most its capacity x 0.5 MWh.
  -- No UK BM unit reaches 4 GW.
  volume_mwh = { min = -2000 },

  -- Balancing prices in GBP/MWh; the market has never come near 100,000.
  price_gbp_per_mwh = { max_abs = 100000 },

  -- |volume| x price: the largest row by the two bounds above.
  payment_gbp = { max_abs = 200000000 },

  -- Bitcoin difficulty: 1 at the start; about 1.1e14 in 2025.
  difficulty = { min = 1, max = 1e18 },

  -- A miner model (quarry miners add): the fastest machines sold are
  -- around 1,000 TH/s at 5-10 kW.
  miner_hashrate_th = { max = 100000 },
  miner_watts = { max = 1000000 },

  -- Lead party (company) names: the longest real one is under 100 characters.
  lead_party_chars = { max = 200 },
}
