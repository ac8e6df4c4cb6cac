--- Market data: where quarry fetches bitcoin's difficulty and price, and
-- what it takes as plausible. Edit here.
return {
  -- QUARRY_DIFFICULTY_URL overrides it: the JSON shape of mempool.space's
  -- difficulty adjustments, [[unix time, block height, difficulty, change], ...]
  difficulty_url = "https://mempool.space/api",
  difficulty_path = "/v1/mining/difficulty-adjustments",
  -- QUARRY_PRICE_URL overrides it: the JSON shape of CoinGecko's
  -- market_chart/range in GBP, {"prices": [[ms, price], ...]}; a day's price
  -- is its last sample (UTC)
  price_url = "https://api.coingecko.com/api/v3",
  price_path = "/coins/bitcoin/market_chart/range?vs_currency=gbp&from=%d&to=%d",
  bounds = {
    gbp_per_btc = { min = 0.01, max = 10000000 },
    usd_per_btc = { min = 0.01, max = 10000000 },
    gbp_per_usd = { min = 0.3, max = 2 },
  },
  -- The integrity report flags a price that moves more than this fraction
  -- from one day to the next (bitcoin's worst day since 2013 was about -40%).
  max_daily_move = 0.5,
}
