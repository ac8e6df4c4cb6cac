--- quarry.schema: the database schema as numbered migrations.
-- Append only: a migration that has shipped is never edited; a change is a
-- new entry. `quarry db migrate` applies the missing ones in order.
-- SQL that drops the plain index of tbl on exactly cols, found by its
-- columns: partitioning may have renamed it.
local function drop_index_on(tbl, cols)
  return ([[
DO $$
DECLARE r record;
BEGIN
  FOR r IN
    SELECT i.indexrelid::regclass::text AS name FROM pg_index i
    WHERE NOT i.indisunique AND i.indpred IS NULL
      AND i.indrelid = '%s'::regclass
      AND pg_get_indexdef(i.indexrelid) ~ '\(%s\)$'
  LOOP
    EXECUTE 'DROP INDEX ' || r.name;
  END LOOP;
END $$;
]]):format(tbl, cols)
end

return {
  {
    version = 1,
    name = "curtailment, bitcoin calculations, difficulty and miner models",
    sql = [[
CREATE TABLE miner_models (
  name         text PRIMARY KEY CHECK (name ~ '^[A-Z0-9_]+$'),
  hashrate_th  numeric NOT NULL CHECK (hashrate_th > 0),
  power_watts  numeric NOT NULL CHECK (power_watts > 0),
  description  text
);
INSERT INTO miner_models (name, hashrate_th, power_watts, description) VALUES
  ('S19J_PRO', 100,  3050, 'Bitmain Antminer S19j Pro'),
  ('S9',       13.5, 1323, 'Bitmain Antminer S9'),
  ('M20S',     68,   3360, 'MicroBT Whatsminer M20S');

-- The difficulty in force from effective_date until the next row.
CREATE TABLE bitcoin_difficulty (
  effective_date date PRIMARY KEY,
  difficulty     numeric NOT NULL CHECK (difficulty > 0)
);

-- One row per accepted bid: a farm may have several in one period, so there
-- is deliberately no unique key on (date, period, farm).
CREATE TABLE curtailment_records (
  id                bigserial PRIMARY KEY,
  settlement_date   date    NOT NULL,
  settlement_period integer NOT NULL CHECK (settlement_period BETWEEN 1 AND 50),
  farm_id           text    NOT NULL,
  lead_party_name   text,
  volume            numeric NOT NULL CHECK (volume < 0),
  payment           numeric NOT NULL,
  original_price    numeric NOT NULL,
  final_price       numeric NOT NULL,
  so_flag           boolean NOT NULL DEFAULT false,
  cadl_flag         boolean,
  created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX curtailment_records_date_idx ON curtailment_records (settlement_date);
CREATE INDEX curtailment_records_farm_date_idx ON curtailment_records (farm_id, settlement_date);
CREATE INDEX curtailment_records_party_date_idx ON curtailment_records (lead_party_name, settlement_date);

-- One row per (date, period, farm, miner): the bitcoin that farm's curtailed
-- energy in that period could have mined.
CREATE TABLE historical_bitcoin_calculations (
  id                bigserial PRIMARY KEY,
  settlement_date   date    NOT NULL,
  settlement_period integer NOT NULL CHECK (settlement_period BETWEEN 1 AND 50),
  farm_id           text    NOT NULL,
  miner_model       text    NOT NULL REFERENCES miner_models (name),
  curtailed_energy  numeric NOT NULL,
  bitcoin_mined     numeric NOT NULL,
  difficulty        numeric NOT NULL,
  block_reward      numeric NOT NULL,
  calculated_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (settlement_date, settlement_period, farm_id, miner_model)
);
CREATE INDEX historical_bitcoin_date_miner_idx
  ON historical_bitcoin_calculations (settlement_date, miner_model);
CREATE INDEX historical_bitcoin_farm_date_idx
  ON historical_bitcoin_calculations (farm_id, settlement_date);
]],
  },
  {
    version = 2,
    name = "ingest helpers: lenient casts that report bad input instead of failing",
    sql = [[
CREATE OR REPLACE FUNCTION quarry_try_date(t text) RETURNS date LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF t !~ '^\d{4}-\d{2}-\d{2}$' THEN RETURN NULL; END IF;
  RETURN t::date;
EXCEPTION WHEN others THEN RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION quarry_try_numeric(t text) RETURNS numeric LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE v numeric;
BEGIN
  v := btrim(t)::numeric;
  IF v = 'NaN'::numeric THEN RETURN NULL; END IF;
  RETURN v;
EXCEPTION WHEN others THEN RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION quarry_try_bool(t text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE lower(btrim(t)) WHEN 'true' THEN true WHEN 't' THEN true WHEN '1' THEN true
                              WHEN 'false' THEN false WHEN 'f' THEN false WHEN '0' THEN false END
$$;
]],
  },
  {
    version = 3,
    name = "partition executor: checkpoints and the change log of tables being partitioned",
    sql = [[
-- One row per table with a partition apply in progress or done and kept
-- reversible; last_key is the checkpoint of the batched copy.
CREATE TABLE quarry_partition_state (
  table_name  text PRIMARY KEY,
  phase       text NOT NULL CHECK (phase IN ('copying', 'built', 'swapped')),
  last_key    bigint,
  rows_copied bigint NOT NULL DEFAULT 0,
  started_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Keys of rows written to a table while its copy runs, for the catch-up.
CREATE TABLE quarry_partition_changes (
  seq        bigserial PRIMARY KEY,
  table_name text NOT NULL,
  row_key    bigint NOT NULL
);
CREATE INDEX quarry_partition_changes_table_idx ON quarry_partition_changes (table_name, seq);
]],
  },
  {
    version = 4,
    name = "rollup helpers: the union of sorted sets (the rollup tables follow defs/summaries.lua)",
    sql = [[
-- The sorted distinct elements of an array.
CREATE OR REPLACE FUNCTION quarry_sorted_distinct(a text[]) RETURNS text[]
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
$$ SELECT coalesce(array_agg(DISTINCT x ORDER BY x), '{}') FROM unnest(a) AS x $$;
-- quarry_array_union(farms): the sorted union of the arrays aggregated, so
-- a set measure of a rollup adds up from a finer rollup exactly.
CREATE AGGREGATE quarry_array_union(text[]) (
  SFUNC = array_cat, STYPE = text[], FINALFUNC = quarry_sorted_distinct, INITCOND = '{}'
);
]],
  },
  {
    version = 5,
    name = "the reading role report plugins run as, and the durable log of cache invalidations",
    sql = [[
-- Plugins run as quarry_reader: SELECT on quarry's tables and nothing else
-- (no writes, no superuser, no server files or programs). Creating it needs
-- CREATEROLE once; `quarry services up` has made it already for the embedded
-- default. A superuser migrating also keeps set_config() from PUBLIC here,
-- so a plugin cannot undo its SET LOCAL ROLE through set_config('role', ...).
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'quarry_reader') THEN
    BEGIN
      CREATE ROLE quarry_reader NOLOGIN;
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE EXCEPTION 'quarry needs the role quarry_reader for report plugins'
        USING HINT = 'as a superuser: CREATE ROLE quarry_reader NOLOGIN; GRANT quarry_reader TO '
                     || current_user || ';';
    END;
  END IF;
  IF NOT pg_has_role(current_user, 'quarry_reader', 'MEMBER') THEN
    EXECUTE format('GRANT quarry_reader TO %I', current_user);
  END IF;
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    REVOKE EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) FROM PUBLIC;
  END IF;
END $$;
GRANT USAGE ON SCHEMA public TO quarry_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO quarry_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO quarry_reader;

-- Every dated write records, in its own transaction, the cache patterns it
-- makes stale; seq follows commit order (writers take an advisory lock to
-- number them). Redis holds the last seq applied: a process that finds it
-- behind applies the rest before it trusts any cached value (cache.lua).
CREATE TABLE quarry_cache_invalidations (
  seq      bigint PRIMARY KEY,
  patterns text[] NOT NULL,
  at       timestamptz NOT NULL DEFAULT now()
);
-- Rows up to pruned_upto have been deleted (all applied, and old).
CREATE TABLE quarry_cache_log_state (
  id          int PRIMARY KEY CHECK (id = 1),
  pruned_upto bigint NOT NULL DEFAULT 0
);
INSERT INTO quarry_cache_log_state VALUES (1, 0);
GRANT SELECT ON quarry_cache_invalidations, quarry_cache_log_state TO quarry_reader;
]],
  },
  {
    version = 6,
    name = "settlement periods of a day in Europe/London: 46 or 50 on clock-change days",
    sql = [[
-- Half hours from local midnight to local midnight: 48, 46 on the spring
-- clock change (2024-03-31), 50 on the autumn one (2024-10-27).
CREATE OR REPLACE FUNCTION quarry_periods_in_day(d date) RETURNS int LANGUAGE sql STABLE STRICT AS $$
  SELECT (extract(epoch FROM ((d + 1)::timestamp AT TIME ZONE 'Europe/London')
                           - (d::timestamp AT TIME ZONE 'Europe/London')) / 1800)::int
$$;
]],
  },
  {
    version = 7,
    name = "Elexon data: upstream keys of curtailment rows, the BM unit reference, the fetch log",
    sql = [[
-- What makes a row unique upstream (Elexon's settlement stacks): the side
-- of the stack, the acceptance and the bid-offer pair, per unit and period.
-- CSV imports leave them NULL, which never collides.
ALTER TABLE curtailment_records
  ADD COLUMN acceptance_id bigint,
  ADD COLUMN bid_offer text CHECK (bid_offer IN ('bid', 'offer')),
  ADD COLUMN bid_offer_pair_id integer;
CREATE UNIQUE INDEX curtailment_records_upstream_key ON curtailment_records
  (settlement_date, settlement_period, farm_id, bid_offer, acceptance_id, bid_offer_pair_id);

-- The BM unit reference (Elexon's /reference/bmunits/all, or a saved copy):
-- farm_id is the Elexon BM unit id; capacity_mw NULL when unknown.
CREATE TABLE bmus (
  farm_id           text PRIMARY KEY,
  national_grid_bmu text,
  name              text,
  capacity_mw       numeric CHECK (capacity_mw > 0),
  lead_party_name   text,
  fuel_type         text,
  updated_at        timestamptz NOT NULL DEFAULT now()
);
-- Every lead party a unit has had, from when quarry first saw it.
CREATE TABLE bmu_lead_parties (
  farm_id         text NOT NULL REFERENCES bmus ON DELETE CASCADE,
  lead_party_name text,
  seen_from       timestamptz NOT NULL DEFAULT now(),
  seen_to         timestamptz,
  PRIMARY KEY (farm_id, seen_from)
);
-- One row per settlement date fetched from Elexon: what was loaded, and
-- the periods the API had nothing for yet (404 or an empty list), which a
-- later fetch fills.
CREATE TABLE elexon_fetch_days (
  settlement_date date PRIMARY KEY,
  fetched_at      timestamptz NOT NULL DEFAULT now(),
  periods         integer NOT NULL,
  missing         integer[] NOT NULL DEFAULT '{}',
  rows            integer NOT NULL,
  mwh             numeric NOT NULL,
  gbp             numeric NOT NULL,
  source          text NOT NULL
);
GRANT SELECT ON bmus, bmu_lead_parties, elexon_fetch_days TO quarry_reader;
]],
  },
  {
    version = 8,
    name = "faster dated writes: no foreign-key check per bitcoin row, no index another one covers",
    sql = [[
-- Every bitcoin row is made by joining miner_models (mining.lua), so the
-- key can never fail for quarry's own writes, and checking it cost a
-- trigger call per row: 40% of the bitcoin step of an ingest.
ALTER TABLE historical_bitcoin_calculations DROP CONSTRAINT IF EXISTS historical_bitcoin_calculations_miner_model_fkey;
-- Indexes whose columns lead another index of the table (the unique keys
-- start with settlement_date), found by their columns: partitioning may
-- have renamed them.
DO $$
DECLARE r record;
BEGIN
  FOR r IN
    SELECT i.indexrelid::regclass::text AS name FROM pg_index i
    WHERE NOT i.indisunique AND i.indpred IS NULL AND (
      (i.indrelid = 'curtailment_records'::regclass
       AND pg_get_indexdef(i.indexrelid) ~ '\(settlement_date\)$')
      OR (i.indrelid = 'historical_bitcoin_calculations'::regclass
       AND pg_get_indexdef(i.indexrelid) ~ '\(settlement_date, miner_model\)$'))
  LOOP
    EXECUTE 'DROP INDEX ' || r.name;
  END LOOP;
END $$;
]],
  },
  {
    version = 9,
    name = "bitcoin prices by day",
    sql = [[
-- The price of one bitcoin in GBP on a (UTC) day. From USD: the inputs are
-- kept beside it. Value reports refuse a day with no price.
CREATE TABLE bitcoin_prices (
  price_date  date PRIMARY KEY,
  gbp_per_btc numeric NOT NULL CHECK (gbp_per_btc > 0),
  usd_per_btc numeric CHECK (usd_per_btc > 0),
  gbp_per_usd numeric CHECK (gbp_per_usd > 0),
  source      text NOT NULL,
  loaded_at   timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT ON bitcoin_prices TO quarry_reader;
]],
  },
  {
    version = 10,
    name = "faster dated writes: no bitcoin index by farm",
    sql = [[
-- Every read of bitcoin by farm goes to rollup_farm_miner_day, but for the
-- settlement periods of one farm in a day or a month, which reads that
-- farm's rows of those dates through the unique key (date first) as fast
-- without this index (measured). Keeping it up cost 13% of an ingest.
-- Found by its columns: partitioning may have renamed it.
]] .. drop_index_on("historical_bitcoin_calculations", "farm_id, settlement_date"),
  },
  {
    version = 11,
    name = "the dates whose curtailment is loaded: a day with no rows is zero only if it was loaded",
    sql = [[
-- A date is here once a load replaced it (ingest, seed, fetch): its rows,
-- or none, are the day's curtailment. A date not here holds no data, and a
-- report shows it empty, not as a day without curtailment. Retention
-- removes a detached partition's dates.
CREATE TABLE curtailment_loaded_days (
  settlement_date date PRIMARY KEY,
  loaded_at       timestamptz NOT NULL DEFAULT now()
);
-- What earlier loads left: every date with rows, and every day fetched
-- (Elexon's empty days included). A calm day of an earlier seed or CSV is
-- not known to be loaded until it is loaded again.
INSERT INTO curtailment_loaded_days (settlement_date)
  SELECT DISTINCT settlement_date FROM curtailment_records
  UNION SELECT settlement_date FROM elexon_fetch_days;
GRANT SELECT ON curtailment_loaded_days TO quarry_reader;
]],
  },
  {
    version = 12,
    name = "faster dated writes: no curtailment index by lead party",
    sql = [[
-- Every read of curtailment by lead party goes to the rollups
-- (rollup_farm_day and its kin carry the lead party), but the raw rows of
-- --direct, which filter a date range first through the upstream key
-- (date first). Keeping this index up cost 12-16% of a first load
-- (docs/BENCHMARKS.md).
]] .. drop_index_on("curtailment_records", "lead_party_name, settlement_date"),
  },
  {
    version = 13,
    name = "where loaded days and difficulty points came from: a seed's synthetic data is never taken for real",
    sql = [[
-- 'seed' (quarry db seed: synthetic), 'csv' (quarry ingest), 'elexon' or
-- 'fetch' (quarry fetch, quarry ingest elexon). A seed never replaces what
-- another source loaded, and reports name the days whose figures are
-- synthetic. NULL: loaded before quarry kept the source (a fetched day is
-- known from elexon_fetch_days).
ALTER TABLE curtailment_loaded_days ADD COLUMN source text CHECK (source IN ('seed', 'csv', 'elexon'));
UPDATE curtailment_loaded_days l SET source = 'elexon' FROM elexon_fetch_days f
  WHERE f.settlement_date = l.settlement_date;
ALTER TABLE bitcoin_difficulty ADD COLUMN source text CHECK (source IN ('seed', 'csv', 'fetch'));
]],
  },
  {
    version = 14,
    name = "writes made outside quarry noted, so their dates are mended before a figure of them is served",
    -- the DDL is lua/quarry/outside.lua's, which partitioning uses too
    sql = function() return require("quarry.outside").migration_sql() end,
  },
  {
    version = 15,
    name = "days holding only rows written outside quarry are loaded, and say so",
    sql = [[
-- 'outside': rows written by hand (psql, a script) on a day no quarry load
-- loaded. A mend marks such a day, so its figures are counted as loaded
-- and the report says where they came from, instead of summing them under
-- a note that the day holds no data.
ALTER TABLE curtailment_loaded_days DROP CONSTRAINT IF EXISTS curtailment_loaded_days_source_check;
ALTER TABLE curtailment_loaded_days ADD CONSTRAINT curtailment_loaded_days_source_check
  CHECK (source IN ('seed', 'csv', 'elexon', 'outside'));
-- what was written so before migration 14 noted such writes
INSERT INTO curtailment_loaded_days (settlement_date, source)
  SELECT DISTINCT settlement_date, 'outside' FROM curtailment_records
  ON CONFLICT (settlement_date) DO NOTHING;
]],
  },
  {
    version = 16,
    name = "report plugins take no advisory locks",
    sql = [[
-- Advisory locks are what a reading role can still take, and a session
-- lock outlives the plugin's transaction: one plugin run by `quarry serve`
-- holding hashtext('quarry.cache_invalidations') stalled every quarry
-- writer until that process ended. A superuser migrating takes the locking
-- functions from PUBLIC and gives them to the role migrating and the
-- database's owner (quarry's writers lock as one of them); the unlocking
-- ones stay. Otherwise report.lua gives back, after each plugin's run, the
-- session locks it took.
DO $$
DECLARE
  f regprocedure;
  owner text := (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database());
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
             WHERE p.pronamespace = 'pg_catalog'::regnamespace
               AND p.proname ~ '^pg_(try_)?advisory_(xact_)?lock'
    LOOP
      EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
      EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I, %I', f, current_user, owner);
    END LOOP;
  END IF;
END $$;
]],
  },
}
