--- quarry.outside: writes made outside quarry, noticed and mended.
--
-- Every figure quarry serves rests on what its own writers keep in step:
-- the bitcoin rows computed from curtailment, difficulty and miner models,
-- the rollups aggregated from both, and the cache. An UPDATE typed into
-- psql, or a script's db:exec, changes the rows and none of the rest: the
-- next report would print yesterday's figure as a success.
--
-- So the tables figures come from carry statement triggers (M.triggers)
-- that note the dates such a write touched in quarry_outside_writes, in
-- the writer's own transaction. quarry's writers say who they are first
-- (M.WRITER_ON, in write.dated), and the triggers leave their writes be.
-- A noted date is mended (M.repair: its bitcoin recomputed, its rollups
-- refreshed, its cache invalidation logged) before a figure of it is
-- served: by the first cache read, which reads the list in the round trip
-- it already makes to the invalidation log (lua/quarry/stale.lua), and by a
-- report computed uncached, which finds the dates of its range in its
-- coverage (lua/quarry/report.lua). Until then nothing cached is trusted.
--
-- The rollup tables carry the same triggers (lua/quarry/rollup.lua).
--
-- Not seen: writes made with quarry.writer set by hand, and rows changed
-- before these triggers existed (`rollup verify` and the integrity report
-- are there for those).
local M = {}

local ident = require("quarry.db").ident

--- Sent first in every quarry write's transaction (answering what it was
-- before), and, once a write nested in a script's transaction is done, the
-- setting put back: the script's later statements are noticed again.
M.WRITER_ON = "SELECT current_setting('quarry.writer', true) AS was, set_config('quarry.writer', 'on', true)"
M.WRITER_AS_WAS = "SELECT set_config('quarry.writer', coalesce($1, ''), true)"

-- The tables watched, the column holding each row's date, and how a
-- change there reaches settlement dates: 'rows' (the dates of the rows
-- changed), 'in_force' (a difficulty point: the loaded days it is in force
-- for), 'all' (a miner model: every day with data; so does a TRUNCATE).
M.WATCHED = {
  { table = "curtailment_records", column = "settlement_date", reach = "rows" },
  { table = "historical_bitcoin_calculations", column = "settlement_date", reach = "rows" },
  { table = "bitcoin_difficulty", column = "effective_date", reach = "in_force" },
  { table = "bitcoin_prices", column = "price_date", reach = "rows" },
  { table = "miner_models", reach = "all" },
  -- what a report's coverage says of a day (loaded, periods missing)
  { table = "curtailment_loaded_days", column = "settlement_date", reach = "rows" },
  { table = "elexon_fetch_days", column = "settlement_date", reach = "rows" },
}

--- The list and the functions the triggers call: migration 14 (shipped,
-- they change only through a new migration).
M.FUNCTIONS_SQL = [[
CREATE TABLE quarry_outside_writes (
  settlement_date date PRIMARY KEY,
  tables text[] NOT NULL,
  noticed_at timestamptz NOT NULL DEFAULT now(),
  noticed_role text NOT NULL DEFAULT current_user,
  -- why the last mend could not bring the date up to date (its difficulty
  -- is not known): reports of it fail saying so; a new write clears it
  failed text
);
GRANT SELECT ON quarry_outside_writes TO quarry_reader;

-- As its owner: a role allowed to change curtailment but not this table
-- still has its write noted, not refused.
CREATE FUNCTION quarry_note_outside(dates date[], tbl text, who text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT AS $$
  INSERT INTO quarry_outside_writes AS o (settlement_date, tables, noticed_role)
  SELECT DISTINCT d, ARRAY[tbl], who FROM unnest(dates) AS d WHERE d IS NOT NULL
  ON CONFLICT (settlement_date) DO UPDATE SET
    tables = CASE WHEN tbl = ANY (o.tables) THEN o.tables ELSE o.tables || tbl END,
    noticed_at = now(), noticed_role = who, failed = NULL
$$;

CREATE FUNCTION quarry_outside_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  reach text := TG_ARGV[0];
  col text := TG_ARGV[1];
  tbl text := TG_ARGV[2]; -- the watched table, also when the write named one of its partitions
  dates date[];
BEGIN
  IF coalesce(current_setting('quarry.writer', true), '') = 'on' THEN RETURN NULL; END IF;
  IF TG_OP = 'TRUNCATE' OR reach = 'all' THEN
    -- every day with data: loaded, or with rows (one written in psql need not be loaded)
    SELECT array_agg(d) INTO dates FROM (
      SELECT settlement_date FROM curtailment_loaded_days
      UNION SELECT settlement_date FROM curtailment_records
      UNION SELECT settlement_date FROM historical_bitcoin_calculations) AS s(d);
  ELSE
    EXECUTE format(CASE TG_OP
        WHEN 'INSERT' THEN 'SELECT array_agg(DISTINCT d) FROM (SELECT %1$I FROM quarry_new) s(d)'
        WHEN 'DELETE' THEN 'SELECT array_agg(DISTINCT d) FROM (SELECT %1$I FROM quarry_old) s(d)'
        ELSE 'SELECT array_agg(DISTINCT d) FROM (SELECT %1$I FROM quarry_new UNION SELECT %1$I FROM quarry_old) s(d)'
      END, col) INTO dates;
    IF reach = 'in_force' THEN
      -- a point changed, added or removed at P changes the difficulty of
      -- the days from P to the next point
      SELECT array_agg(l.settlement_date) INTO dates FROM curtailment_loaded_days l
      WHERE EXISTS (SELECT 1 FROM unnest(dates) AS p(d) WHERE l.settlement_date >= p.d
        AND l.settlement_date < coalesce((SELECT min(b.effective_date) FROM bitcoin_difficulty b
                                          WHERE b.effective_date > p.d), 'infinity'));
    END IF;
  END IF;
  PERFORM quarry_note_outside(dates, tbl, current_user::text);
  RETURN NULL;
END $$;
]]

local TRIGGER_NAMES = { "ins", "upd", "del", "trunc", "write" }

--- The triggers of one watched table (w, an entry of M.WATCHED), on the
-- relation named rel (the table itself, its partitioned successor at the
-- swap, or one of its partitions: a statement naming a partition fires
-- that partition's statement triggers, not the parent's): DDL statements.
function M.triggers(w, rel)
  rel = ident(rel or w.table)
  local out = {}
  local function add(name, event, referencing)
    out[#out + 1] = ("CREATE TRIGGER %s AFTER %s ON %s %sFOR EACH STATEMENT EXECUTE FUNCTION "
      .. "quarry_outside_write('%s', '%s', '%s')"):format(ident("quarry_outside_" .. name), event, rel,
      referencing and ("REFERENCING " .. referencing .. " ") or "", w.reach, w.column or "", w.table)
  end
  if w.reach == "all" then
    add("write", "INSERT OR UPDATE OR DELETE OR TRUNCATE")
  else
    -- a trigger with transition tables fires on one event
    add("ins", "INSERT", "NEW TABLE AS quarry_new")
    add("upd", "UPDATE", "OLD TABLE AS quarry_old NEW TABLE AS quarry_new")
    add("del", "DELETE", "OLD TABLE AS quarry_old")
    add("trunc", "TRUNCATE")
  end
  return out
end

--- DDL dropping those triggers from rel (a partition detached by retention).
function M.drop_triggers(rel)
  local out = {}
  for i, n in ipairs(TRIGGER_NAMES) do
    out[i] = ("DROP TRIGGER IF EXISTS %s ON %s"):format(ident("quarry_outside_" .. n), ident(rel))
  end
  return out
end

--- The triggers of watched table tbl on rel (default tbl: a partition of
-- it, or its partitioned successor), or none when tbl is not watched.
function M.triggers_of(tbl, rel)
  for _, w in ipairs(M.WATCHED) do
    if w.table == tbl then return M.triggers(w, rel) end
  end
  return {}
end

--- Migration 14: the list, its functions and every watched table's triggers.
function M.migration_sql()
  local sql = { M.FUNCTIONS_SQL }
  for _, w in ipairs(M.WATCHED) do
    for _, s in ipairs(M.triggers(w)) do sql[#sql + 1] = s .. ";" end
  end
  return table.concat(sql, "\n")
end

--- The dates noted and not yet mended, in order: {date=, tables={...}, at=,
-- role=, failed= (why the last mend could not, or nil)}.
function M.pending(q)
  local out = {}
  for _, r in ipairs(q:query([[
      SELECT settlement_date::text AS d, array_to_string(tables, ',') AS t,
             to_char(noticed_at, 'YYYY-MM-DD HH24:MI:SS TZ') AS at, noticed_role AS role, failed
      FROM quarry_outside_writes ORDER BY settlement_date]])) do
    local tables = {}
    for t in r.t:gmatch("[^,]+") do tables[#tables + 1] = t end
    out[#out + 1] = { date = r.d, tables = tables, at = r.at, role = r.role, failed = r.failed }
  end
  return out
end

-- What mending a noted table takes: the tables write.dated is told of, and
-- whether the bitcoin of the dates is recomputed.
local MENDS = {
  curtailment_records = { tables = { "curtailment_records" }, bitcoin = true },
  historical_bitcoin_calculations = { tables = { "historical_bitcoin_calculations" }, bitcoin = true },
  bitcoin_difficulty = { tables = { "historical_bitcoin_calculations" }, bitcoin = true },
  miner_models = { tables = { "historical_bitcoin_calculations" }, bitcoin = true, everything = true },
  bitcoin_prices = { tables = { "bitcoin_prices" } },
  curtailment_loaded_days = { tables = { "curtailment_loaded_days" } },
  elexon_fetch_days = { tables = { "curtailment_loaded_days" } },
  -- a rollup table changed by hand (rollup.lua puts the triggers on each):
  -- every rollup of the dates aggregated again
  rollup = { tables = { "curtailment_records", "historical_bitcoin_calculations" } },
}

-- The rollups' table names (lua/quarry/defs/summaries.lua), as a set.
local function rollup_tables()
  local out = {}
  for _, r in ipairs(require("quarry.defs.summaries").rollups) do out[r.table] = true end
  return out
end

-- Of the dates $1 being mended: those holding rows though no quarry load
-- loaded them (written by hand) become loaded days, source 'outside', so
-- their figures are not summed under a note that the day holds no data;
-- such a day whose rows are gone again is no longer loaded.
local LOADED_BY_HAND = [[
WITH d AS (SELECT unnest($1::date[]) AS d),
marked AS (
  INSERT INTO curtailment_loaded_days (settlement_date, source)
  SELECT d.d, 'outside' FROM d WHERE EXISTS (SELECT 1 FROM curtailment_records c WHERE c.settlement_date = d.d)
  ON CONFLICT (settlement_date) DO NOTHING RETURNING 1),
unmarked AS (
  DELETE FROM curtailment_loaded_days l USING d
  WHERE l.settlement_date = d.d AND l.source = 'outside'
    AND NOT EXISTS (SELECT 1 FROM curtailment_records c WHERE c.settlement_date = d.d) RETURNING 1)
SELECT (SELECT count(*) FROM marked) + (SELECT count(*) FROM unmarked) AS n]]

--- Mend every noted date: recompute its bitcoin, refresh its rollups, log
-- its invalidation, as one dated write, and take it off the list. A date
-- whose bitcoin cannot be computed (its difficulty is not known) stays
-- listed with the reason, its cached figures invalidated: reports of it
-- fail saying why, the others are served. cache: brought up to the log
-- after the commit (nil: left to the next reader). Concurrent menders take
-- turns on the dates; the later finds them mended.
-- Returns the dates mended and those that could not be ({date=, reason=}),
-- both lists; logs a warning naming them unless opts.quiet.
function M.repair(db, cache, opts)
  local listed = db:query("SELECT settlement_date::text AS d FROM quarry_outside_writes ORDER BY 1")
  if #listed == 0 then return {}, {} end
  local mining = require "quarry.mining"
  local range = require("quarry.defs.bounds").dates
  local mended, failed = {}, {}
  -- filled in below from what the dates' entries name; write.dated reads
  -- them once fn has run
  local how = { tables = {}, bitcoin = false, long = true }
  local ok, err = pcall(require("quarry.write").dated, db, cache, how, function(tx, w)
    local dates = {}
    for _, r in ipairs(listed) do
      if r.d >= range.from and r.d <= range.to then dates[#dates + 1] = r.d end
    end
    -- the locks every writer of these dates takes, first; then what is
    -- still listed (another mender may have been first)
    require("quarry.rollup").lock_dates(tx, dates)
    local rows = tx:query([[SELECT settlement_date::text AS d, array_to_string(tables, ',') AS t
      FROM quarry_outside_writes WHERE settlement_date = ANY($1::date[]) ORDER BY 1 FOR UPDATE]],
      mining.pg_array(dates))
    local seen, needs_bitcoin, rollups = {}, {}, rollup_tables()
    for _, r in ipairs(rows) do
      for t in r.t:gmatch("[^,]+") do
        local m = MENDS[t] or (rollups[t] and MENDS.rollup) or MENDS.curtailment_records
        if m.bitcoin then needs_bitcoin[#needs_bitcoin + 1] = r.d end
        how.bitcoin = how.bitcoin or m.bitcoin == true
        how.everything = how.everything or m.everything
        for _, name in ipairs(m.tables) do
          if not seen[name] then seen[name] = true; how.tables[#how.tables + 1] = name end
        end
      end
    end
    local lacking = {}
    local missing = mining.lacking_difficulty(tx, needs_bitcoin)
    if #missing > 0 then
      local reason = mining.lacking_message(missing)
      for _, d in ipairs(missing) do lacking[d] = true; failed[#failed + 1] = { date = d, reason = reason } end
      local newly = {}
      for _, r in ipairs(tx:query([[UPDATE quarry_outside_writes SET failed = $2
          WHERE settlement_date = ANY($1::date[]) AND failed IS NULL RETURNING settlement_date::text AS d]],
          mining.pg_array(missing), reason)) do
        newly[#newly + 1] = r.d
      end
      -- what was cached of them is not served again (once: no report of them is cached meanwhile)
      if #newly > 0 then
        require("quarry.rules").record(tx, { "curtailment_records", "historical_bitcoin_calculations" }, newly)
      end
    end
    for _, r in ipairs(rows) do if not lacking[r.d] then mended[#mended + 1] = r.d end end
    tx:exec("DELETE FROM quarry_outside_writes WHERE settlement_date = ANY($1::date[])", mining.pg_array(mended))
    if tonumber(tx:query_one(LOADED_BY_HAND, mining.pg_array(mended)).n) > 0 and not seen.curtailment_loaded_days then
      how.tables[#how.tables + 1] = "curtailment_loaded_days" -- their coverage changed: what is cached of it too
    end
    w:dates(mended) -- held already: this only says which dates the write's steps are for
    -- dates quarry does not take (a typo's year 1900) are in no figure: off the list
    tx:exec("DELETE FROM quarry_outside_writes WHERE settlement_date NOT BETWEEN $1::date AND $2::date",
      range.from, range.to)
  end)
  if not ok then
    -- nothing of it committed: the dates stay listed, and no figure of them is served
    local e = type(err) == "table" and err or { message = tostring(err) }
    local names = {}
    for i, r in ipairs(listed) do names[i] = r.d end
    error(require("quarry.core").error({ code = e.code or "query", sqlstate = e.sqlstate, message =
      ("%d date(s) changed outside quarry (%s) could not be brought up to date, so no figure of them is "
      .. "served: %s"):format(#names, M.dates_text(names), e.message or tostring(err)) }), 0)
  end
  if not (opts and opts.quiet) then
    local log = require "quarry.log"
    if #mended > 0 then
      log.warn(("%d date(s) changed outside quarry (%s): their bitcoin, rollups and cache are brought up to "
        .. "date"):format(#mended, M.dates_text(mended)), { module = "outside" })
    end
    if #failed > 0 then
      log.warn(("%d date(s) changed outside quarry cannot be brought up to date, and no figure of them is "
        .. "served: %s"):format(#failed, failed[1].reason), { module = "outside" })
    end
  end
  return mended, failed
end

--- "2024-03-04, 2024-03-05 and 3 more" of a sorted list of dates.
function M.dates_text(list)
  local shown = {}
  for i = 1, math.min(3, #list) do shown[i] = list[i] end
  return table.concat(shown, ", ") .. (#list > 3 and (" and %d more"):format(#list - 3) or "")
end

return M
