--- quarry.ingest: load CSV files into the database, all or nothing.
--
-- The file streams through COPY into a temporary staging table of text
-- columns (so no value can make COPY itself fail half-way), every row is
-- validated in SQL, and only then, in one transaction, the dates present are
-- replaced, their bitcoin recomputed and -- after COMMIT -- the cache
-- invalidation rules applied. A bad row stops everything with an error
-- naming the line and the field; nothing is committed.
local core = require "quarry.core"
local formats = require "quarry.formats"
local log = require "quarry.log"
local mining = require "quarry.mining"
local rollup = require "quarry.rollup"
local rules = require "quarry.rules"
local write = require "quarry.write"

local M = {}

M.CURTAILMENT_COLUMNS = { "settlement_date", "settlement_period", "farm_id", "lead_party_name", "volume",
  "payment", "original_price", "final_price", "so_flag", "cadl_flag" }

local bad_input = core.usage

local function split_header(line)
  line = line:gsub("^\239\187\191", ""):gsub("\r$", "") -- UTF-8 BOM, CRLF
  local cols = {}
  for field in (line .. ","):gmatch("([^,]*),") do
    cols[#cols + 1] = field:gsub('^%s*"?', ""):gsub('"?%s*$', ""):lower()
  end
  return cols
end

--- Check a header against the expected columns (any order, each once).
local function check_header(path, cols, expected)
  local want, seen = {}, {}
  for _, c in ipairs(expected) do want[c] = true end
  for _, c in ipairs(cols) do
    if not want[c] then
      bad_input(("%s:1: unknown column '%s' (expected %s)"):format(path, c, table.concat(expected, ",")))
    end
    if seen[c] then bad_input(("%s:1: column '%s' appears twice"):format(path, c)) end
    seen[c] = true
  end
  for _, c in ipairs(expected) do
    if not seen[c] then bad_input(("%s:1: missing column '%s'"):format(path, c)) end
  end
end

-- Progress on a terminal for files of 4 MB or more: bytes read, rate, ETA.
-- total is nil for a pipe (its size is not known): no progress then.
local function progress(total)
  if not total or total < 4 * 1024 * 1024 then return function() end end
  return log.progress(total, function(done, all, rate, eta)
    return ("reading %5.1f%%  %6.1f MB/s  ETA %4.0fs "):format(100 * done / all, rate / 1e6, eta)
  end)
end

-- The file line (1-based, header included) of the first line holding only
-- \. -- PostgreSQL's end-of-data mark, which would end a COPY there and
-- drop every line after it without an error.
local function end_mark_line(f)
  if not f:seek("set") then return nil end -- a pipe: what was read is gone
  local n = 0
  for line in f:lines() do
    n = n + 1
    if n > 1 and (line == "\\." or line == "\\.\r") then return n end
  end
  return nil
end

local END_MARK = {} -- raised by the COPY source to abort at an end-of-data mark

--- Stream the rest of an open file into tx's COPY; returns rows staged.
-- Raises END_MARK, before the COPY ends, if a line holds only \. .
local function copy_file(tx, f, sql, size, repeats)
  local show = progress(size)
  local read = 0
  local tail = "\n" -- the data starts at a line start, after the header
  local rows = tx:copy_in(sql, function()
    local chunk = f:read(256 * 1024)
    if chunk then
      if repeats then repeats:feed(chunk) end
      read = read + #chunk
      show(read)
      -- the mark may straddle two chunks: look at the end of the last one too
      local seen = tail .. chunk
      if seen:find("\n\\%.\r?\n") or (#chunk < 256 * 1024 and seen:find("\n\\%.\r?$")) then error(END_MARK) end
      tail = seen:sub(-3)
    end
    return chunk
  end)
  show(size, true)
  return rows
end

-- path names the file in messages; file, when given, is already open.
local function open_csv(path, expected, file)
  local f, err = file, nil
  if not f then f, err = io.open(path, "rb") end
  if not f then -- io.open's message starts with the path already
    bad_input(("cannot open %s: %s"):format(path, require("quarry.files").reason(path, err)))
  end
  local size = f:seek("end") -- nil for a pipe (/dev/stdin, <(...)): read as it comes
  if size then f:seek("set") end
  local header, rerr = f:read("l")
  if not header then
    f:close()
    if rerr then bad_input(("cannot read %s: %s"):format(path, rerr)) end -- a directory, say
    bad_input(path .. ": empty file (expected a header line)")
  end
  local cols = split_header(header)
  check_header(path, cols, expected)
  return f, cols, size
end

local ident_list = require("quarry.db").idents

-- Turn a COPY error into one naming the file line, where PostgreSQL said.
local function copy_error(path, err)
  if type(err) == "table" and err.sqlstate then
    local line = tonumber(tostring(err.context or ""):match("line (%d+)"))
    bad_input(("%s:%s: %s"):format(path, line and tostring(line + 1) or "?", err.message))
  end
  error(err, 0)
end

-- A number as PostgreSQL's numeric input takes it (no NaN or Infinity).
local NUM = [['^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d{1,4})?\s*$']]

local bounds = require "quarry.defs.bounds"

-- The definitions' bounds as SQL literals: numbers formatted by us, dates
-- checked for their shape (lua/quarry/defs/bounds.lua is code we trust,
-- and still nothing but a number or a date reaches the SQL text).
local function sql_number(n)
  assert(type(n) == "number" and n == n, "bounds: not a number")
  return ("%.17g"):format(n)
end
local function sql_date(d)
  assert(type(d) == "string" and d:match("^%d%d%d%d%-%d%d%-%d%d$"), "bounds: not a date")
  return "DATE '" .. d .. "'"
end
local BOUNDS = {
  NUM = NUM, DFROM = sql_date(bounds.dates.from), DTO = sql_date(bounds.dates.to),
  VMIN = sql_number(bounds.volume_mwh.min), PRICEMAX = sql_number(bounds.price_gbp_per_mwh.max_abs),
  PAYMAX = sql_number(bounds.payment_gbp.max_abs), PARTYMAX = sql_number(bounds.lead_party_chars.max),
  DIFFMIN = sql_number(bounds.difficulty.min), DIFFMAX = sql_number(bounds.difficulty.max),
  PERIODH = sql_number(require("quarry.defs.elexon").period_hours),
  CTRL = [['[\x01-\x1f\x7f-\x9f]']], -- control characters, C1 too: what formats.visible escapes
  RANGE = ("'is outside the dates quarry takes (%s..%s)'"):format(bounds.dates.from, bounds.dates.to),
}
local function with_bounds(sql)
  return (sql:gsub("%f[%w](%u+)%f[^%w]", function(name) return BOUNDS[name] end))
end

-- The first bad staged row: line (file line), field, value, problem. One
-- pass over the rows, each row's first problem found by a CASE in column
-- order; dates (and how many settlement periods each has in Europe/London:
-- 46 or 50 on clock-change days) are worked out once per distinct value.
local CURTAILMENT_CHECK = with_bounds([[
WITH days AS (
  SELECT d, day, CASE WHEN day BETWEEN DFROM AND DTO THEN quarry_periods_in_day(day) END AS periods
  FROM (SELECT d, quarry_try_date(d) AS day FROM (SELECT DISTINCT settlement_date AS d FROM quarry_stage) x) y
),
checked AS (
  SELECT line, CASE
    WHEN s.settlement_date IS NULL OR days.day IS NULL
      THEN ARRAY['settlement_date', coalesce(s.settlement_date, ''), 'is not a date (YYYY-MM-DD)']
    WHEN days.periods IS NULL THEN ARRAY['settlement_date', s.settlement_date, RANGE]
    WHEN NOT coalesce(CASE WHEN settlement_period ~ '^\s*\d{1,2}\s*$'
                           THEN btrim(settlement_period)::int BETWEEN 1 AND days.periods END, false)
      THEN ARRAY['settlement_period', coalesce(settlement_period, ''),
                 'is not a settlement period of ' || days.d || ' (1..' || days.periods || ' in Europe/London)']
    WHEN s.farm_id IS NULL OR s.farm_id !~ '^[A-Za-z0-9_.-]{1,40}$'
      THEN ARRAY['farm_id', coalesce(s.farm_id, ''), 'is not a BMU id']
    WHEN length(s.lead_party_name) > PARTYMAX
      THEN ARRAY['lead_party_name', s.lead_party_name, 'is longer than PARTYMAX characters']
    WHEN s.lead_party_name ~ CTRL
      THEN ARRAY['lead_party_name', s.lead_party_name, 'has a control character (a line break, tab or escape)']
    WHEN volume IS NULL OR volume !~ NUM THEN ARRAY['volume', coalesce(volume, ''), 'is not a number']
    WHEN volume::numeric >= 0 THEN ARRAY['volume', volume, 'must be negative (the MWh given up)']
    WHEN volume::numeric < VMIN
      THEN ARRAY['volume', volume, 'is implausible: below VMIN MWh for one unit in one half hour']
    WHEN -volume::numeric > b.capacity_mw * PERIODH
      THEN ARRAY['volume', volume, 'is more than ' || s.farm_id || ' can give up in one period (' || b.capacity_mw
                 || ' MW x PERIODH h, the BM unit reference)']
    WHEN payment IS NULL OR payment !~ NUM THEN ARRAY['payment', coalesce(payment, ''), 'is not a number']
    WHEN abs(payment::numeric) > PAYMAX
      THEN ARRAY['payment', payment, 'is implausible: beyond PAYMAX GBP for one row']
    WHEN original_price IS NULL OR original_price !~ NUM
      THEN ARRAY['original_price', coalesce(original_price, ''), 'is not a number']
    WHEN abs(original_price::numeric) > PRICEMAX
      THEN ARRAY['original_price', original_price, 'is implausible: beyond PRICEMAX GBP/MWh']
    WHEN final_price IS NULL OR final_price !~ NUM
      THEN ARRAY['final_price', coalesce(final_price, ''), 'is not a number']
    WHEN abs(final_price::numeric) > PRICEMAX
      THEN ARRAY['final_price', final_price, 'is implausible: beyond PRICEMAX GBP/MWh']
    WHEN quarry_try_bool(so_flag) IS NULL
      THEN ARRAY['so_flag', coalesce(so_flag, ''), 'is not a boolean (true/false)']
    WHEN nullif(btrim(cadl_flag), '') IS NOT NULL AND quarry_try_bool(cadl_flag) IS NULL
      THEN ARRAY['cadl_flag', cadl_flag, 'is not a boolean (true/false, or empty)']
  END AS problem
  FROM quarry_stage s LEFT JOIN days ON days.d = s.settlement_date
  LEFT JOIN bmus b ON b.farm_id = s.farm_id
)
SELECT line + 1 AS line, problem[1] AS field,
       CASE WHEN length(problem[2]) > 60 THEN left(problem[2], 57) || '...' ELSE problem[2] END AS value,
       problem[3] AS problem
FROM checked WHERE problem IS NOT NULL ORDER BY line LIMIT 1]])

local function reject(path, bad)
  bad_input(("%s:%d: %s '%s' %s"):format(path, bad.line, bad.field, formats.visible(bad.value or ""), bad.problem))
end

-- Number the staged rows by file line (column line; the header is line
-- 0), for the checks that name a line. COPY appends to the fresh temporary
-- table in file order, and the rewrite this makes reads it in that order.
-- Numbering every row as it arrived cost a quarter of the staging, paid
-- for the messages of a load that fails; now only that load pays.
local function number_lines(tx)
  tx:exec("ALTER TABLE quarry_stage ADD COLUMN line bigserial")
end

-- Stream the open file into a temporary staging table of text columns
-- (`expected`) and validate it with `check`, a query returning the first
-- bad row; prepare (SQL) runs on the rows before. Lines are numbered when
-- either is given. repeats: a core.repeats the file's lines are fed to.
-- Returns the rows staged; raises on bad input.
local function stage(tx, path, f, cols, size, expected, check, prepare, repeats)
  local defs = {}
  for i, c in ipairs(expected) do defs[i] = '"' .. c .. '" text' end -- names from a fixed list
  tx:exec("DROP TABLE IF EXISTS pg_temp.quarry_stage") -- a second load in one transaction (seed)
  tx:exec(("CREATE TEMP TABLE quarry_stage (%s) ON COMMIT DROP"):format(table.concat(defs, ", ")))
  local ok, rows = pcall(copy_file, tx, f, ("COPY quarry_stage (%s) FROM STDIN WITH (FORMAT csv)")
    :format(ident_list(cols)), size, repeats)
  if not ok and rows == END_MARK then
    bad_input(("%s:%s: a line holding only \\. would end the load there (PostgreSQL's end-of-data mark); "
      .. "remove it, or quote it if it is a value"):format(path, end_mark_line(f) or "?"))
  end
  if not ok then copy_error(path, rows) end
  if prepare or check then number_lines(tx) end -- before prepare moves rows
  if prepare then tx:exec(prepare) end
  if check then
    local bad = tx:query_one(check)
    if bad then reject(path, bad) end
  end
  return rows
end

-- What makes a row unique upstream (lua/quarry/elexon.lua fills them; a CSV
-- leaves them empty).
M.UPSTREAM_COLUMNS = { "acceptance_id", "bid_offer", "bid_offer_pair_id" }
local STAGE_COLUMNS = { table.unpack(M.CURTAILMENT_COLUMNS) }
for _, c in ipairs(M.UPSTREAM_COLUMNS) do STAGE_COLUMNS[#STAGE_COLUMNS + 1] = c end

-- The staged rows into curtailment_records in one pass, cast strictly, the
-- bounds checked on the typed values as they go: any text the full check
-- would refuse fails a cast here, or fails the bounds, which casts text
-- that is not a boolean (not a constant, which the planner would fold and
-- fail on at once). Then the full check says which line. $1: the dates.
-- Number text the casts take and the check does not (NaN, Infinity) is out
-- of every bound.
local ROW_COLUMNS = "settlement_date, settlement_period, farm_id, lead_party_name, volume, payment, "
  .. "original_price, final_price, so_flag, cadl_flag, acceptance_id, bid_offer, bid_offer_pair_id"
local CAST_STAGED = with_bounds([[
  SELECT d AS settlement_date, p AS settlement_period, farm_id, party AS lead_party_name, v AS volume,
         pay AS payment, op AS original_price, fp AS final_price, so AS so_flag, cadl AS cadl_flag,
         acc AS acceptance_id, side AS bid_offer, pair AS bid_offer_pair_id
  FROM (
    SELECT s.ctid AS row_id, s.settlement_date::date AS d, btrim(s.settlement_period)::int AS p, s.farm_id,
           coalesce(nullif(btrim(s.lead_party_name), ''), b.lead_party_name) AS party, -- else the reference's
           s.volume::numeric AS v, s.payment::numeric AS pay, s.original_price::numeric AS op,
           s.final_price::numeric AS fp,
           coalesce(quarry_try_bool(s.so_flag), ('not a boolean: ' || coalesce(s.so_flag, ''))::boolean) AS so,
           CASE WHEN nullif(btrim(s.cadl_flag), '') IS NULL THEN NULL
                ELSE coalesce(quarry_try_bool(s.cadl_flag), ('not a boolean: ' || s.cadl_flag)::boolean) END AS cadl,
           nullif(s.acceptance_id, '')::bigint AS acc, nullif(s.bid_offer, '') AS side,
           nullif(s.bid_offer_pair_id, '')::int AS pair, b.capacity_mw AS cap
    FROM quarry_stage s LEFT JOIN bmus b ON b.farm_id = s.farm_id
    OFFSET 0 -- each cast once per row: flattened, the bounds below cast again
  ) t
  JOIN (SELECT day, quarry_periods_in_day(day) AS periods FROM unnest($1::date[]) day
        OFFSET 0) days ON days.day = t.d -- once per day: inlined, the time zone sums ran per row
  WHERE CASE WHEN t.p <= days.periods AND length(t.farm_id) BETWEEN 1 AND 40 -- a bounded regex costs 6x this:
                  AND t.farm_id !~ '[^A-Za-z0-9_.-]'
                  AND coalesce(length(t.party), 0) <= PARTYMAX AND t.v >= VMIN AND abs(t.pay) <= PAYMAX
                  AND coalesce(t.party !~ CTRL, true) -- one line of text: CURTAILMENT_CHECK
                  AND abs(t.op) <= PRICEMAX AND abs(t.fp) <= PRICEMAX
                  AND (t.cap IS NULL OR -t.v <= t.cap * PERIODH)
             THEN true ELSE ('out of bounds: row ' || t.row_id::text)::boolean END]])
local INSERT_STAGED = ("INSERT INTO curtailment_records (%s) %s"):format(ROW_COLUMNS, CAST_STAGED)

-- The same rows cast into a temporary table, for comparing with the stored
-- ones first (a reload), and the dates whose rows differ from the stored
-- ones, compared as multisets of every column a user reads (numbers with
-- their scale: 1.50 and 1.5 print differently). $1: the dates.
local TYPE_STAGED = "CREATE TEMP TABLE quarry_typed ON COMMIT DROP AS " .. CAST_STAGED
local SCALED = { volume = true, payment = true, original_price = true, final_price = true }
local compared, grouped = {}, {} -- the columns, and the numbers' scales after each
for c in ROW_COLUMNS:gmatch("[%w_]+") do
  compared[#compared + 1], grouped[#grouped + 1] = c, c
  if SCALED[c] then
    compared[#compared + 1], grouped[#grouped + 1] = ("scale(%s) AS %s_scale"):format(c, c), c .. "_scale"
  end
end
-- One pass: each distinct row counted +1 per staged copy and -1 per stored
-- one; a date with any row whose count is not 0 changed (the two EXCEPT ALLs
-- this replaces hashed every row twice).
-- stored: which stored rows of the dates are compared (a merge compares the
-- file's farms' only, for the others' stay as they are).
local function changed_dates(stored)
  return ([[
  SELECT DISTINCT settlement_date::text AS d FROM (
    SELECT settlement_date FROM (
      SELECT %s, 1 AS side FROM quarry_typed
      UNION ALL
      SELECT %s, -1 FROM curtailment_records c WHERE settlement_date = ANY($1::date[])%s) x
    GROUP BY %s HAVING sum(side) <> 0) y ORDER BY 1]]):format(table.concat(compared, ", "),
    table.concat(compared, ", "), stored, table.concat(grouped, ", "))
end
-- a stored row of a farm the file has rows of that date for
local OF_FILE_FARMS = [[EXISTS (SELECT 1 FROM quarry_typed t
  WHERE t.settlement_date = c.settlement_date AND t.farm_id = c.farm_id)]]
local CHANGED_DATES, CHANGED_FARM_DATES = changed_dates(""), changed_dates(" AND " .. OF_FILE_FARMS)

-- The dates present, in one pass over the stage, each with whether all its
-- period texts are one or two digits: text the casts would take and the
-- check does not (a period with a sign or three digits, a date in another
-- format, which rules.check_date refuses) is looked at once per value.
local STAGED_DATES = [[
  SELECT settlement_date AS d, bool_and(settlement_period ~ '^\s*\d{1,2}\s*$') AS periods_ok
  FROM (SELECT DISTINCT settlement_date, settlement_period FROM quarry_stage) x GROUP BY 1 ORDER BY 1]]

--- Inside a dated write (write.dated's fn, its tx and w): stage curtailment
-- rows read from f (CSV in the order of cols, past any header), check them
-- and replace the dates given -- or, without dates, every date present --
-- with them. name names the source in messages; prepare: SQL run on the
-- staged rows before the check (filling derived columns). Returns rows,
-- dates, the dates whose rows changed (the others are left as they are:
-- their bitcoin, rollups and cached figures stand) and how many stored rows
-- the new ones replaced (a file of one farm's rows removes the others').
--
-- Checking each text field of every row before casting it took a fifth of
-- an ingest; so the rows are cast, bounds-checked and inserted in one pass
-- in a savepoint, and only when that fails is the savepoint rolled back and
-- the full check run, for its message naming the line and the field. When
-- the dates have rows already (a re-run, a refresh, a repair), the rows are
-- cast into a temporary table first and only the dates whose rows differ
-- are rewritten: a reload of what is there writes nothing.
-- The dates a load replaced are loaded (lua/quarry/schema.lua, version 11):
-- which of them were not before.
local MARK_LOADED = [[INSERT INTO curtailment_loaded_days AS l (settlement_date, source)
  SELECT unnest($1::date[]), $2
  ON CONFLICT (settlement_date) DO UPDATE SET loaded_at = now(), source = EXCLUDED.source
  RETURNING l.settlement_date::text AS d, (l.xmax = 0) AS new]]

-- The dates of $1 that a source other than a seed loaded, as ranges. A
-- day loaded before quarry kept the source (NULL) is real data too.
local REAL_DAYS = [[SELECT min(d)::text AS first, max(d)::text AS last, count(*)::int AS n,
    array_to_string(array_agg(DISTINCT source ORDER BY source), ',') AS sources
  FROM (SELECT settlement_date AS d, coalesce(source, 'unrecorded') AS source,
          settlement_date - (row_number() OVER (ORDER BY settlement_date))::int AS g
        FROM curtailment_loaded_days WHERE settlement_date = ANY($1::date[])
          AND source IS DISTINCT FROM 'seed') x
  GROUP BY g ORDER BY 1]]

M.SOURCE_NAMES = { csv = "quarry ingest curtailment", elexon = "Elexon (quarry fetch or ingest elexon)",
                   seed = "quarry db seed", outside = "writes made outside quarry (psql or a script)",
                   unrecorded = "an earlier quarry (before it kept the source)" }

--- Refuse (bad input) when any of `dates` holds data a source other than a
-- seed loaded: synthetic figures must never stand in for real ones, nor
-- alter them. why: what the seed would do to those days ("replace", "change
-- the difficulty in force on"); advice: what to do instead (default: seed
-- elsewhere).
function M.refuse_over_real(tx, dates, why, advice)
  local ranges = tx:query(REAL_DAYS, mining.pg_array(dates))
  if #ranges == 0 then return end
  local shown, n, by, seen = {}, 0, {}, {}
  for i, r in ipairs(ranges) do
    n = n + r.n
    if i <= 3 then shown[#shown + 1] = r.first == r.last and r.first or (r.first .. ".." .. r.last) end
    for src in r.sources:gmatch("[^,]+") do
      if not seen[src] then seen[src], by[#by + 1] = true, M.SOURCE_NAMES[src] or src end
    end
  end
  bad_input(("quarry db seed writes synthetic data and would %s %d day(s) loaded by %s (%s%s); %s"):format(why, n,
    table.concat(by, " and "), table.concat(shown, ", "), #ranges > 3 and ", ..." or "",
    advice or "seed other dates, or a database of its own (the embedded default: DATABASE_URL unset)"))
end

-- The dates of $1 a merge cannot go into: not loaded (the other farms are
-- unknown, and the day would read as whole), made up by a seed, or holding
-- only rows written by hand (as unknown).
local NOT_MERGEABLE = [[SELECT d::text AS d, l.source FROM unnest($1::date[]) AS d
  LEFT JOIN curtailment_loaded_days l ON l.settlement_date = d
  WHERE l.settlement_date IS NULL OR l.source IN ('seed', 'outside') ORDER BY 1]]

-- Per date of $1 being rewritten, the stored rows of farms the file has no
-- row of that date for: what replacing the date whole would remove unasked.
local DROPPED_FARMS = [[SELECT c.settlement_date::text AS d, count(DISTINCT c.farm_id)::int AS farms,
    count(*)::int AS rows, min(c.farm_id) AS example
  FROM curtailment_records c
  WHERE c.settlement_date = ANY($1::date[])
    AND NOT ]] .. OF_FILE_FARMS .. [[
  GROUP BY 1 ORDER BY 1]]

--- Replace the curtailment of the staged dates. opts: dates (the dates the
-- file holds whole; without, those present, and a file lacking farms stored
-- for one of them is refused), prepare (SQL run on the stage), source
-- ('csv', 'elexon', 'seed': curtailment_loaded_days.source; a seed refuses
-- dates another source loaded), merge (replace only the file's farms of each
-- date, which must be loaded, not by a seed), repeats (a core.repeats the
-- file's lines are fed to).
function M.replace_curtailment(tx, w, name, f, cols, size, opts)
  local dates, prepare, source, merge = opts.dates, opts.prepare, opts.source or "csv", opts.merge
  local rows = stage(tx, name, f, cols, size, STAGE_COLUMNS, nil, prepare, opts.repeats)
  local function slow(original)
    if not prepare then number_lines(tx) end
    local bad = tx:query_one(CURTAILMENT_CHECK)
    if bad then reject(name, bad) end
    error(original, 0) -- a failure the check does not explain (a duplicate upstream key, say)
  end
  local present = {}
  for _, r in ipairs(tx:query(STAGED_DATES)) do
    if not rules.check_date(r.d) or r.periods_ok ~= true then slow("staged rows refused") end
    present[#present + 1] = r.d
  end
  local whole = dates ~= nil -- the caller says the file holds these dates whole
  if not dates then
    dates = present
  else
    local wanted = {}
    for _, d in ipairs(dates) do wanted[d] = true end
    for _, d in ipairs(present) do
      if not wanted[d] then bad_input(("%s: a row of %s, outside the dates replaced"):format(name, d)) end
    end
  end
  rollup.lock_dates(tx, dates) -- before looking at what the dates hold
  if source == "seed" then M.refuse_over_real(tx, dates, "replace") end
  if merge then
    local bad = tx:query(NOT_MERGEABLE, mining.pg_array(dates))
    if #bad > 0 then
      bad_input(("%s: --farms-only replaces some farms of a loaded day, and %s %s%s; load %s whole first "
        .. "(quarry fetch curtailment, or ingest curtailment --dates)"):format(name, bad[1].d,
        bad[1].source == "seed" and "holds made-up data from quarry db seed"
          or bad[1].source == "outside" and "holds only rows written outside quarry" or "is not loaded",
        #bad > 1 and (" (and %d more date(s))"):format(#bad - 1) or "", #bad > 1 and "them" or "it"))
    end
  end
  local arr = mining.pg_array(dates)
  local stored = tx:query_one([[SELECT EXISTS (SELECT 1 FROM curtailment_records
    WHERE settlement_date = ANY($1::date[])) AS e]], arr).e
  local changed -- the dates whose rows differ (below), and those loaded for the first time
  local removed = 0
  local ok, err = tx:transaction(function(sp)
    local n = sp:exec(stored and TYPE_STAGED or INSERT_STAGED, arr)
    if n ~= rows then error(("%d of %d staged rows cast"):format(n, rows), 0) end
  end)
  if not ok then slow(err) end
  if stored then
    changed = {}
    for _, r in ipairs(tx:query(merge and CHANGED_FARM_DATES or CHANGED_DATES, arr)) do changed[#changed + 1] = r.d end
    if #changed > 0 and not whole and not merge then
      -- A file of some farms' rows of a day (a correction of one farm)
      -- would remove the others' rows of it: refused unless --dates says
      -- the file is those days whole.
      local dropped = tx:query(DROPPED_FARMS, mining.pg_array(changed))
      if #dropped > 0 then
        local d, more = dropped[1], #dropped - 1
        bad_input(("%s: %s holds %d stored row(s) of %d farm(s) the file has no row of (%s%s)%s; a load replaces "
          .. "each date whole, so they would go. If the file is %s whole, say so: --dates %s; if it holds "
          .. "only its farms' rows, --farms-only replaces just those"):format(name, d.d, d.rows, d.farms, d.example,
          d.farms > 1 and ", ..." or "", more > 0 and (" (and %d more date(s) like it)"):format(more) or "",
          more > 0 and "those dates" or "that day", more > 0 and (d.d .. ".." .. dropped[#dropped].d) or d.d))
      end
    end
    if #changed > 0 then
      -- in a savepoint too: the table's own checks (a volume that is not
      -- negative, say) are met only here, and the full check names the line
      local carr = mining.pg_array(changed)
      local wok, werr = tx:transaction(function(sp)
        removed = sp:exec("DELETE FROM curtailment_records c WHERE settlement_date = ANY($1::date[])"
          .. (merge and (" AND " .. OF_FILE_FARMS) or ""), carr)
        sp:exec(("INSERT INTO curtailment_records (%s) SELECT %s FROM quarry_typed "
          .. "WHERE settlement_date = ANY($1::date[])"):format(ROW_COLUMNS, ROW_COLUMNS), carr)
      end)
      if not wok then slow(werr) end
    end
    tx:exec("DROP TABLE quarry_typed") -- a second load in one transaction (seed) makes its own
  else
    changed = {} -- none of the dates held rows: those the file gives some changed
    for i, d in ipairs(present) do changed[i] = d end
  end
  -- a date loaded for the first time changed even with no rows (unknown
  -- before, a day without curtailment now): its cached reports are stale
  local listed = {}
  for _, d in ipairs(changed) do listed[d] = true end
  if not merge then -- a merge's days are loaded already, and keep their source
    for _, r in ipairs(tx:query(MARK_LOADED, arr, source)) do
      if r.new and not listed[r.d] then changed[#changed + 1] = r.d end
    end
  end
  table.sort(changed)
  w:dates(changed)
  mining.require_difficulty(tx, dates) -- after the rows: a bad row is the first thing to fix
  return rows, dates, changed, removed
end

--- Load a curtailment CSV (header: the columns of curtailment_records).
-- The dates present are replaced whole, through the dated-write path
-- (lua/quarry/write.lua). file: an open file to read instead of opening
-- path (then path only names it); it is closed. opts.dates: the dates the
-- file holds whole (a date of them with no row had no curtailment; a row of
-- another date is refused); without, the dates present. opts.source: 'csv'
-- (default) or 'seed' (curtailment_loaded_days.source). opts.merge: replace
-- only the farms the file has rows of (--farms-only). opts.quiet: no log
-- line (a dry run, which is rolled back).
-- Returns {rows=, dates={...} (those replaced), changed={...} (those whose
-- rows differ from what was stored, or loaded for the first time:
-- rewritten), replaced= (stored rows those dates held before), bitcoin_rows=}.
function M.curtailment(db, path, cache, file, opts)
  opts = opts or {}
  local f, cols, size = open_csv(path, M.CURTAILMENT_COLUMNS, file)
  local result = {}
  -- Lines that repeat another exactly: two acceptances with the same
  -- figures look like this, and so does a file holding rows twice (two
  -- overlapping exports joined), which would count them twice. Said, not
  -- refused: a CSV row has no acceptance id to tell the two apart.
  local repeats = (opts.source or "csv") == "csv" and core.repeats(2) or nil
  local ok, err, info = pcall(write.dated, db, cache, { tables = { "curtailment_records" }, long = true },
    function(tx, w)
      local rows, replaced_dates, _, replaced = M.replace_curtailment(tx, w, path, f, cols, size,
        { dates = opts.dates, source = opts.source, merge = opts.merge, repeats = repeats })
      result.rows, result.dates, result.replaced = rows, replaced_dates, replaced
    end)
  f:close()
  if not ok then error(err, 0) end
  result.changed, result.bitcoin_rows = info.dates, info.bitcoin_rows
  if repeats then
    local n, line, of = repeats:finish()
    if n > 0 then
      log.warn(("%s:%d repeats line %d exactly%s: each is counted, as two acceptances with the same figures "
        .. "would be; if the file holds rows twice (two exports joined), remove them and load it again")
        :format(path, line, of, n > 1 and (" (and %d more line(s) repeat others)"):format(n - 1) or ""),
        { module = "ingest" })
    end
  end
  if opts.quiet then return result end
  log.info("ingested curtailment", { module = "ingest", context = { file = path, rows = result.rows,
    dates = #result.dates, changed = #result.changed, replaced = result.replaced,
    bitcoin_rows = result.bitcoin_rows } })
  return result
end

-- Per date: its rows, MWh given up and GBP paid (positive), and whether
-- it is loaded. $1: the dates.
local DATE_TOTALS = [[SELECT d::text AS date, count(c.id)::int AS rows, coalesce(sum(-c.volume), 0) AS mwh,
    coalesce(sum(abs(c.payment)), 0) AS gbp, EXISTS (SELECT 1 FROM curtailment_loaded_days l
      WHERE l.settlement_date = d) AS loaded
  FROM unnest($1::date[]) AS d LEFT JOIN curtailment_records c ON c.settlement_date = d GROUP BY d ORDER BY d]]

--- What M.curtailment(db, path, nil, nil, {dates = dates}) would do, done and rolled
-- back: the file checked as a load checks it (a bad row is the same
-- error), then per date replaced {date=, before={rows=, mwh=, gbp=,
-- loaded=}, after={...}}, and the load's result. Nothing is committed and
-- no cached figure is touched.
function M.preview_curtailment(db, path, dates, merge)
  local ROLLBACK = {}
  local preview = {}
  local ok, err = db:transaction(function(tx)
    local after, result
    local _, serr = tx:transaction(function(sp) -- the load, undone before the "before" is read
      result = M.curtailment(sp, path, nil, nil, { dates = dates, merge = merge, quiet = true })
      after = sp:query(DATE_TOTALS, mining.pg_array(result.dates))
      error(ROLLBACK, 0)
    end)
    if serr ~= ROLLBACK then error(serr, 0) end
    local before = tx:query(DATE_TOTALS, mining.pg_array(result.dates))
    for i, b in ipairs(before) do preview[i] = { date = b.date, before = b, after = after[i] } end
    preview.result = result
    error(ROLLBACK, 0)
  end)
  if not ok and err ~= ROLLBACK then error(err, 0) end
  return preview
end

local DIFFICULTY_CHECK = with_bounds([[
SELECT line + 1 AS line, field,
       CASE WHEN length(value) > 60 THEN left(value, 57) || '...' ELSE value END AS value, problem FROM (
  SELECT line, 1 AS ord, 'date' AS field, date AS value, 'is not a date (YYYY-MM-DD)' AS problem
    FROM quarry_stage WHERE quarry_try_date(date) IS NULL
  UNION ALL
  SELECT line, 1, 'date', date, RANGE
    FROM quarry_stage WHERE quarry_try_date(date) NOT BETWEEN DFROM AND DTO
  UNION ALL
  SELECT line, 2, 'difficulty', difficulty, 'is not a positive number'
    FROM quarry_stage WHERE coalesce(quarry_try_numeric(difficulty) <= 0, true)
  UNION ALL
  SELECT line, 2, 'difficulty', difficulty, 'is implausible: outside DIFFMIN..DIFFMAX'
    FROM quarry_stage WHERE quarry_try_numeric(difficulty) > 0
      AND quarry_try_numeric(difficulty) NOT BETWEEN DIFFMIN AND DIFFMAX
  UNION ALL
  SELECT s.line, 1, 'date', s.date, 'appears twice in the file'
    FROM quarry_stage s
    WHERE quarry_try_date(s.date) IS NOT NULL
      AND EXISTS (SELECT 1 FROM quarry_stage o
                  WHERE o.line < s.line AND quarry_try_date(o.date) = quarry_try_date(s.date))
) bad ORDER BY line, ord LIMIT 1]])

-- The difficulty in force on every curtailment date from $1 on.
local IN_FORCE = [[
  SELECT c.d AS settlement_date, p.difficulty
  FROM (SELECT DISTINCT settlement_date AS d FROM curtailment_records WHERE settlement_date >= $1::date) c
  LEFT JOIN LATERAL (SELECT difficulty FROM bitcoin_difficulty WHERE effective_date <= c.d
                     ORDER BY effective_date DESC LIMIT 1) p ON true]]

--- Load difficulty points (header: date,difficulty), each in force from its
-- date. Dates whose difficulty in force changes get their bitcoin
-- recalculated in the same transaction. opts.source: 'csv' (default),
-- 'fetch' or 'seed' (bitcoin_difficulty.source): a seed's point never
-- replaces another's, nor changes the difficulty of a day another source
-- loaded. opts.quiet: no log line (the caller's transaction may yet fail).
-- Returns {points=, dates={...}}.
function M.difficulty(db, path, cache, file, opts)
  opts = opts or {}
  local source = opts.source or "csv"
  local f, cols, size = open_csv(path, { "date", "difficulty" }, file)
  local result = {}
  local ok, err, info = pcall(write.dated, db, cache,
    { tables = { "historical_bitcoin_calculations" }, bitcoin = true, long = true }, function(tx, w)
      local rows = stage(tx, path, f, cols, size, { "date", "difficulty" }, DIFFICULTY_CHECK)
      result.points = rows
      if rows == 0 then return end
      tx:exec("LOCK TABLE bitcoin_difficulty IN SHARE ROW EXCLUSIVE MODE")
      local from = tx:query_one("SELECT min(date::date)::text AS d FROM quarry_stage").d
      tx:exec("DROP TABLE IF EXISTS pg_temp.quarry_before")
      tx:exec("CREATE TEMP TABLE quarry_before ON COMMIT DROP AS " .. IN_FORCE, from)
      tx:exec([[
        INSERT INTO bitcoin_difficulty AS b (effective_date, difficulty, source)
        SELECT date::date, quarry_try_numeric(difficulty), $1 FROM quarry_stage
        ON CONFLICT (effective_date) DO UPDATE SET difficulty = EXCLUDED.difficulty, source = EXCLUDED.source
        WHERE EXCLUDED.source <> 'seed' OR b.source = 'seed'
          OR (b.source IS NULL AND b.difficulty = EXCLUDED.difficulty)]], source)
      -- a seed's point replaces only a seed's: one of before the source was kept is known by its value
      local dates = {}
      for _, r in ipairs(tx:query([[
          SELECT a.settlement_date::text AS d FROM (]] .. IN_FORCE .. [[) a
          JOIN quarry_before b USING (settlement_date)
          WHERE a.difficulty IS DISTINCT FROM b.difficulty ORDER BY 1]], from)) do
        dates[#dates + 1] = r.d
      end
      if source == "seed" then M.refuse_over_real(tx, dates, "change the difficulty in force on") end
      w:dates(dates) -- their bitcoin is recomputed by the write path
    end)
  f:close()
  if not ok then error(err, 0) end
  result.dates, result.bitcoin_rows = info.dates, info.bitcoin_rows
  if opts.quiet then return result end
  log.info("ingested difficulty", { module = "ingest", context = { file = path, points = result.points,
    recalculated_dates = #result.dates } })
  return result
end

return M
