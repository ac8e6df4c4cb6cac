--- How curtailed energy becomes bitcoin. Data, validated on load by
-- lua/quarry/mining.lua; miner models themselves live in the miner_models
-- table (S19J_PRO, S9, M20S, and any a user adds).
--
-- BTC = (E * 3.6e9 / watts) * TH * 1e12 / (D * 2^32) * reward
--   E MWh * 3.6e9 J/MWh / watts = miner-seconds; * hashrate = hashes;
--   / (D * 2^32) = expected blocks; * reward = bitcoin.
return {
  -- Block reward by date: the halving at block 840,000 (2024-04-20 00:09
  -- UTC). The platform quarry replaces used 3.125 throughout: pre-halving
  -- figures were half what they should be.
  rewards = {
    { from = "2009-01-03", btc = "50" },
    { from = "2012-11-28", btc = "25" },
    { from = "2016-07-09", btc = "12.5" },
    { from = "2020-05-11", btc = "6.25" },
    { from = "2024-04-20", btc = "3.125" },
  },
  -- The difficulty in force on a date is the latest point on or before it.
  -- Adjustments come every 2016 blocks (about two weeks), so a point older
  -- than this many days does not tell the difficulty of the date: such a
  -- date is refused, naming it -- never a silent default.
  difficulty_max_age_days = 31,
  -- Digits kept for bitcoin_mined (numeric, so sums stay exact).
  bitcoin_scale = 12,
}
