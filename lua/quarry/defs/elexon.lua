--- Elexon BMRS (Insights API): where quarry fetches curtailment and the BM
-- unit reference, and which settlement-stack items count as wind
-- curtailment. Edit here; `quarry fetch curtailment --dry-run` shows what a
-- change would load before anything is written.
return {
  -- ELEXON_API_URL overrides it (tests point it at a local server)
  base_url = "https://data.elexon.co.uk/bmrs/api/v1",
  -- one GET per side of the stack per settlement period: side, date, period
  stack_path = "/balancing/settlement/stack/all/%s/%s/%d",
  sides = { "bid", "offer" },
  bmunits_path = "/reference/bmunits/all",

  -- An item is wind curtailment when all of these hold (the old platform's
  -- rule): its unit is a wind unit of the reference list, it was accepted
  -- by the system operator (soFlag) -- or, when cadl counts, flagged CADL
  -- -- its volume is negative (energy given up) and it has a price.
  rule = {
    fuel_type = "WIND",
    so_flag = true,
    cadl_counts = false, -- true: an item with cadlFlag and no soFlag counts too
    volume = "negative",
    price = "originalPrice",
  },
  -- The most one unit can give up in one half hour: capacity (MW) x 0.5 h.
  -- A row beyond it is refused (with its URL) where the capacity is known.
  period_hours = 0.5,

  -- Politeness (the API publishes 5,000 requests a minute).
  requests_per_minute = 4000, -- QUARRY_FETCH_RATE
  in_flight = 16,             -- QUARRY_FETCH_IN_FLIGHT
  timeout_s = 30,             -- QUARRY_FETCH_TIMEOUT, one attempt
  retries = 4,                -- after the first attempt: 5xx, time-outs, resets, short bodies
  backoff_ms = 500,           -- QUARRY_FETCH_BACKOFF: before the first retry, doubling (at most 30 s)
  wait_after_429_s = 60,      -- QUARRY_FETCH_429_WAIT, when a 429 has no Retry-After
}
