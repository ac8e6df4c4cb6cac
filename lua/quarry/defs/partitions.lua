--- Partition plans: how each big table is range-partitioned. Edit here;
-- `quarry partition plan` shows what a change would do before `apply`.
--
--   key          the partition key column (a date)
--   interval     "year" or "month": one partition per interval
--   ahead        how many partitions past today (or the newest row) to keep ready
--   default      a default partition catches rows no partition covers yet;
--                `quarry partition maintain` moves them to their own
--   batch_key    a unique bigint column: the copy walks it in committed batches
--   primary_key, unique, indexes: column lists; every primary or unique key
--                must contain the partition key (PostgreSQL enforces
--                uniqueness per partition only)
--   retain       optional: detach partitions whose whole range is older than
--                this many intervals (they stay as plain tables; their dates
--                leave the rollups and the reports). Runs after `finish` only.
return {
  curtailment_records = {
    key = "settlement_date",
    interval = "year",
    ahead = 1,
    default = true,
    batch_key = "id",
    primary_key = { "id", "settlement_date" },
    unique = { -- what makes a row unique upstream (Elexon); CSV rows leave it NULL
      { "settlement_date", "settlement_period", "farm_id", "bid_offer", "acceptance_id", "bid_offer_pair_id" } },
    -- by date alone: the unique key, which starts with settlement_date; by
    -- lead party: the rollups, and the raw rows through the date (migration 12)
    indexes = { { "farm_id", "settlement_date" } },
  },
  historical_bitcoin_calculations = {
    key = "settlement_date",
    interval = "year",
    ahead = 1,
    default = true,
    batch_key = "id",
    primary_key = { "id", "settlement_date" },
    unique = { { "settlement_date", "settlement_period", "farm_id", "miner_model" } },
    -- by date (and miner): the unique key, which starts with settlement_date;
    -- by farm: rollup_farm_miner_day (migration 10)
    indexes = {},
  },
}
