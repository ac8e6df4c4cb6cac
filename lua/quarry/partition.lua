--- quarry.partition: the partition executor. It turns a plain table into a
-- range-partitioned one by its plan (lua/quarry/defs/partitions.lua) while
-- the table stays in use, and back again.
--
-- apply, in steps that each commit, so a crash or kill loses nothing and a
-- rerun continues where the last commit left off:
--   1. build   T_partitioned (same columns, defaults, checks) with one
--              partition per interval of the data plus `ahead`, and a default
--              partition; statement triggers on T log the keys of every row
--              written from now on (quarry_partition_changes)
--   2. copy    rows in batches by batch_key, each batch committed with its
--              checkpoint (quarry_partition_state.last_key)
--   3. index   primary key, unique keys, indexes and foreign keys, built once
--              the rows are in (much faster than maintaining them per row)
--   4. catch up the logged keys: their rows are copied afresh (or removed)
--   5. verify  per partition: row count and a checksum of every column
--   6. swap    in one short transaction under lock_timeout: the last logged
--              keys, T -> T_unpartitioned, T_partitioned -> T. The old table
--              is kept and mirrored by triggers, so rollback is a rename.
-- Readers only ever wait for the swap's rename; writers also wait while the
-- triggers are created.
local core = require "quarry.core"
local dbmod = require "quarry.db"
local log = require "quarry.log"
local outside = require "quarry.outside"

local M = {}

local ident, idents = dbmod.ident, dbmod.idents
M.OLD, M.NEW = "_unpartitioned", "_partitioned"

local function fail(code, msg) error(core.error({ code = code, message = msg }), 0) end
local function usage(msg) fail("usage", msg) end

local function literal(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end

local function note(fmt, ...)
  log.info(fmt:format(...), { module = "partition" })
end

-- ---- plans ----

local function is_name(s) return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil and #s <= 40 end

local function has(list, x)
  for _, v in ipairs(list) do if v == x then return true end end
  return false
end

--- Check a plan; raise a clear message naming what is wrong.
function M.check_plan(name, p)
  local function bad(msg) usage(("partition plan '%s': %s"):format(tostring(name), msg)) end
  if not is_name(name) then bad("table name must be a plain identifier of at most 40 characters") end
  if type(p) ~= "table" then bad("must be a table") end
  if not is_name(p.key) then bad("key must name the partition key column") end
  if p.interval ~= "year" and p.interval ~= "month" then bad("interval must be \"year\" or \"month\"") end
  if math.type(p.ahead) ~= "integer" or p.ahead < 0 or p.ahead > 120 then bad("ahead must be an integer 0..120") end
  if not is_name(p.batch_key) then bad("batch_key must name a unique bigint column") end
  if p.retain ~= nil and (math.type(p.retain) ~= "integer" or p.retain < 1) then
    bad("retain must be a positive integer (intervals to keep)")
  end
  local function cols(list, what)
    if type(list) ~= "table" or #list == 0 then bad(what .. " must be a list of columns") end
    for _, c in ipairs(list) do if not is_name(c) then bad(what .. " has a bad column name") end end
  end
  cols(p.primary_key, "primary_key")
  if not has(p.primary_key, p.key) then
    bad(("primary key (%s) lacks the partition key %s: PostgreSQL can only enforce a key that "
      .. "includes it"):format(table.concat(p.primary_key, ", "), p.key))
  end
  if not has(p.primary_key, p.batch_key) then bad("primary key must include batch_key " .. p.batch_key) end
  for _, u in ipairs(p.unique or {}) do
    cols(u, "unique key")
    if not has(u, p.key) then
      bad(("unique key (%s) lacks the partition key %s: PostgreSQL can only enforce a key that includes it")
        :format(table.concat(u, ", "), p.key))
    end
  end
  for _, ix in ipairs(p.indexes or {}) do cols(ix, "index") end
  return p
end

--- {name, plan} for TABLE, or for every plan (sorted) when name is nil.
function M.plans(name, defs)
  defs = defs or require "quarry.defs.partitions"
  local out = {}
  if name then
    if not defs[name] then
      local known = {}
      for k in pairs(defs) do known[#known + 1] = k end
      table.sort(known)
      usage(("no partition plan for '%s' (plans: %s)"):format(name, table.concat(known, ", ")))
    end
    out[1] = { name = name, plan = M.check_plan(name, defs[name]) }
  else
    for k, p in pairs(defs) do out[#out + 1] = { name = k, plan = M.check_plan(k, p) } end
    table.sort(out, function(a, b) return a.name < b.name end)
  end
  return out
end

-- ---- intervals: dates as 'YYYY-MM-DD' strings ----

local function bucket(date, interval)
  return interval == "year" and date:sub(1, 4) .. "-01-01" or date:sub(1, 7) .. "-01"
end

local function next_bucket(b, interval, n)
  local y, m = tonumber(b:sub(1, 4)), tonumber(b:sub(6, 7))
  n = n or 1
  if interval == "year" then return ("%04d-01-01"):format(y + n) end
  local k = y * 12 + (m - 1) + n
  return ("%04d-%02d-01"):format(k // 12, k % 12 + 1)
end

function M.partition_name(tname, b, interval)
  return interval == "year" and ("%s_y%s"):format(tname, b:sub(1, 4))
    or ("%s_m%s_%s"):format(tname, b:sub(1, 4), b:sub(6, 7))
end

-- An index or constraint name of at most 63 bytes, distinct from the plain
-- table's (index names share one namespace per schema): T_part_<words>.
local function index_name(tname, words)
  local n = ("%s_part_%s"):format(tname, table.concat(words, "_"))
  if #n <= 63 then return n end
  local h = 5381
  for i = 1, #n do h = (h * 33 + n:byte(i)) % 4294967296 end
  return ("%s_%08x"):format(n:sub(1, 54), h)
end

-- ---- the catalog ----

local function relkind(conn, rel)
  local r = conn:query_one("SELECT c.relkind::text AS k FROM pg_class c WHERE c.oid = to_regclass($1)", ident(rel))
  return r and r.k
end

local function columns(conn, rel)
  local out = {}
  for _, r in ipairs(conn:query([[SELECT attname::text AS name FROM pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum]], ident(rel))) do
    out[#out + 1] = r.name
  end
  return out
end

-- Sequences owned by columns of rel (bigserial): {column, sequence (quoted by PostgreSQL)}.
local function owned_sequences(conn, rel, cols)
  local out = {}
  for _, c in ipairs(cols) do
    local r = conn:query_one("SELECT pg_get_serial_sequence($1, $2) AS s", ident(rel), c)
    if r.s then out[#out + 1] = { column = c, sequence = r.s } end
  end
  return out
end

--- Partitions of a partitioned table: {name, lo, hi} sorted by lo; the
-- default partition as {name, default = true} last.
local function partitions(conn, rel)
  local out, default = {}, nil
  for _, r in ipairs(conn:query([[SELECT c.relname::text AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = $1::regclass]], ident(rel))) do
    local lo, hi = r.bound:match("FROM %('([%d-]+)'%) TO %('([%d-]+)'%)")
    if lo then out[#out + 1] = { name = r.name, lo = lo, hi = hi }
    elseif r.bound == "DEFAULT" then default = { name = r.name, default = true }
    end
  end
  table.sort(out, function(a, b) return a.lo < b.lo end)
  return out, default
end

local function find_partition(parts, default, b)
  for _, p in ipairs(parts) do
    if b >= p.lo and b < p.hi then return p.name end
  end
  return default and default.name or "(no partition)"
end

local function state(conn, tname)
  return conn:query_one([[SELECT phase, last_key, rows_copied FROM quarry_partition_state
    WHERE table_name = $1]], tname)
end

-- ---- DDL ----

-- The last interval to have a partition: `ahead` past today or the newest row.
local function horizon(p, max_key, day)
  local top = (max_key and max_key > day) and max_key or day
  return next_bucket(bucket(top, p.interval), p.interval, p.ahead)
end

--- The partitions a table's rows (min_key..max_key) need, up to the horizon.
local function ranges(p, min_key, max_key, day)
  local last = horizon(p, max_key, day)
  local out, b = {}, bucket(min_key or day, p.interval)
  while b <= last do
    out[#out + 1] = { lo = b, hi = next_bucket(b, p.interval) }
    b = out[#out].hi
  end
  return out
end

-- The four statement triggers of kind ("capture" or "mirror") on rel,
-- calling f with the rows each statement wrote as qp_old / qp_new.
local TRIGGER_OPS = { { "ins", "INSERT", "NEW TABLE AS qp_new" },
                      { "upd", "UPDATE", "OLD TABLE AS qp_old NEW TABLE AS qp_new" },
                      { "del", "DELETE", "OLD TABLE AS qp_old" },
                      { "trunc", "TRUNCATE" } }

local function triggers(kind, rel, f, truncate_when)
  local out = {}
  for _, op in ipairs(TRIGGER_OPS) do
    out[#out + 1] = ("CREATE TRIGGER %s %s %s ON %s %sFOR EACH STATEMENT EXECUTE FUNCTION %s()"):format(
      ident(("quarry_%s_%s"):format(kind, op[1])), op[3] and "AFTER" or truncate_when, op[2], ident(rel),
      op[3] and ("REFERENCING " .. op[3] .. " ") or "", f)
  end
  return out
end

local function build_ddl(tname, p, rngs)
  local new = tname .. M.NEW
  local ddl = {
    ("CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS) "
      .. "PARTITION BY RANGE (%s)"):format(ident(new), ident(tname), ident(p.key)),
  }
  -- a write naming a partition is noted as one naming the table (lua/quarry/outside.lua)
  local function note_writes(part)
    for _, sql in ipairs(outside.triggers_of(tname, part)) do ddl[#ddl + 1] = sql end
  end
  for _, r in ipairs(rngs) do
    local part = M.partition_name(tname, r.lo, p.interval)
    ddl[#ddl + 1] = ("CREATE TABLE %s PARTITION OF %s FOR VALUES FROM (%s) TO (%s)"):format(
      ident(part), ident(new), literal(r.lo), literal(r.hi))
    note_writes(part)
  end
  if p.default then
    ddl[#ddl + 1] = ("CREATE TABLE %s PARTITION OF %s DEFAULT"):format(ident(tname .. "_default"), ident(new))
    note_writes(tname .. "_default")
  end
  -- The change log: statement triggers see every row a statement wrote.
  local f = ident("quarry_capture_" .. tname)
  local k = ident(p.batch_key)
  ddl[#ddl + 1] = ([[CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO quarry_partition_changes (table_name, row_key) SELECT %s, %s FROM qp_new;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO quarry_partition_changes (table_name, row_key)
      SELECT %s, %s FROM qp_old UNION SELECT %s, %s FROM qp_new;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO quarry_partition_changes (table_name, row_key) SELECT %s, %s FROM qp_old;
  ELSE
    RAISE EXCEPTION 'quarry: %% is being partitioned; TRUNCATE it after ''quarry partition rollback''',
      TG_TABLE_NAME;
  END IF;
  RETURN NULL;
END $f$]]):format(f, literal(tname), k, literal(tname), k, literal(tname), k, literal(tname), k)
  -- BEFORE TRUNCATE: a TRUNCATE cannot be caught up, so it is refused.
  table.move(triggers("capture", tname, f, "BEFORE"), 1, 4, #ddl + 1, ddl)
  return ddl
end

local function index_ddl(tname, p, fkeys)
  local new = ident(tname .. M.NEW)
  local out = {}
  local function add(name, sql) out[#out + 1] = { name = name, sql = sql } end
  local pk = index_name(tname, { "pkey" })
  add(pk, ("ALTER TABLE %s ADD CONSTRAINT %s PRIMARY KEY (%s)"):format(new, ident(pk), idents(p.primary_key)))
  for _, u in ipairs(p.unique or {}) do
    local n = index_name(tname, { table.concat(u, "_"), "key" })
    add(n, ("ALTER TABLE %s ADD CONSTRAINT %s UNIQUE (%s)"):format(new, ident(n), idents(u)))
  end
  for _, ix in ipairs(p.indexes or {}) do
    local n = index_name(tname, { table.concat(ix, "_"), "idx" })
    add(n, ("CREATE INDEX IF NOT EXISTS %s ON %s (%s)"):format(ident(n), new, idents(ix)))
  end
  for _, fk in ipairs(fkeys or {}) do
    add(fk.name, ("ALTER TABLE %s ADD CONSTRAINT %s %s"):format(new, ident(fk.name), fk.def))
  end
  return out
end

local function mirror_ddl(tname, p, cols)
  local old, f, k = ident(tname .. M.OLD), ident("quarry_mirror_" .. tname), ident(p.batch_key)
  local c = idents(cols)
  return {
    ([[CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    DELETE FROM %s WHERE %s IN (SELECT %s FROM qp_old);
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO %s (%s) SELECT %s FROM qp_new;
  END IF;
  IF TG_OP = 'TRUNCATE' THEN
    TRUNCATE %s;
  END IF;
  RETURN NULL;
END $f$]]):format(f, old, k, k, old, c, c, old),
    table.unpack(triggers("mirror", tname, f, "AFTER")),
  }
end

local function drop_triggers(tx, rel, kind)
  for _, op in ipairs(TRIGGER_OPS) do
    tx:exec(("DROP TRIGGER IF EXISTS %s ON %s"):format(ident(("quarry_%s_%s"):format(kind, op[1])), ident(rel)))
  end
end

-- ---- shared steps ----

local function lock_timeout(tx, ms)
  tx:exec(("SET LOCAL lock_timeout = '%dms'"):format(ms))
end

local function today(conn) return conn:query_one("SELECT current_date::text AS d").d end

local function key_range(conn, rel, key)
  local r = conn:query_one(("SELECT min(%s)::text AS lo, max(%s)::text AS hi FROM %s")
    :format(ident(key), ident(key), ident(rel)))
  return r.lo, r.hi
end

-- Run fn(tx) in a transaction, retrying when a lock is not granted in time
-- (so a long reader delays the swap instead of queueing every query behind it).
local function with_lock_retry(conn, what, tries, fn)
  for attempt = 1, tries do
    local ok, a, b = conn:transaction(fn)
    if ok then return a, b end
    if type(a) ~= "table" or a.sqlstate ~= "55P03" or attempt == tries then error(a, 0) end
    log.warn(("%s: lock not granted in time, retrying (%d/%d)"):format(what, attempt, tries),
      { module = "partition" })
    core.sleep(math.min(attempt, 5))
  end
end

local function checked(ok, err)
  if not ok then error(err, 0) end
  return err
end

--- Copy the rows whose keys were logged since the copy began; returns how many keys.
local function catch_up(conn, tname, src, dst, p, cols)
  local c, k = idents(cols), ident(p.batch_key)
  local total = 0
  while true do
    local n = checked(conn:transaction(function(tx)
      local r = tx:query_one([[WITH d AS (
          DELETE FROM quarry_partition_changes WHERE seq IN (
            SELECT seq FROM quarry_partition_changes WHERE table_name = $1 ORDER BY seq LIMIT 20000)
          RETURNING row_key)
        SELECT count(DISTINCT row_key) AS n, array_agg(DISTINCT row_key)::text AS keys FROM d]], tname)
      if r.n == 0 then return 0 end
      tx:exec(("DELETE FROM %s WHERE %s = ANY($1::bigint[])"):format(ident(dst), k), r.keys)
      tx:exec(("INSERT INTO %s (%s) SELECT %s FROM %s WHERE %s = ANY($1::bigint[])")
        :format(ident(dst), c, c, ident(src), k), r.keys)
      return r.n
    end))
    if n == 0 then return total end
    total = total + n
  end
end

--- Row count and checksum per interval of rel: {[bucket] = {n=, h=}}. The
-- checksum hashes each column with its type's own hash function (2.4 times
-- faster than hashing the row's text); both sides have the same column
-- types, so a copied row hashes alike and a lost or changed one does not.
local function sums(conn, rel, p, cols)
  local out = {}
  for _, r in ipairs(conn:query(([[SELECT date_trunc(%s, %s)::date::text AS b, count(*) AS n,
      sum(hash_record_extended(ROW(%s), 0))::text AS h FROM %s GROUP BY 1]])
      :format(literal(p.interval), ident(p.key), idents(cols), ident(rel)))) do
    out[r.b or "(null)"] = { n = r.n, h = r.h }
  end
  return out
end

--- Compare src with the partitioned dst interval by interval; returns the
-- list of differences and the per-partition table {partition, rows}.
local function compare(conn, src, dst, p, cols)
  local a, b = sums(conn, src, p, cols), sums(conn, dst, p, cols)
  local parts, default = partitions(conn, dst)
  local diffs, per = {}, {}
  for _, part in ipairs(parts) do per[part.name] = 0 end
  if default then per[default.name] = 0 end
  local seen = {}
  for k in pairs(a) do seen[#seen + 1] = k end
  for k in pairs(b) do if not a[k] then seen[#seen + 1] = k end end
  table.sort(seen)
  for _, k in ipairs(seen) do
    local x, y = a[k] or { n = 0, h = "0" }, b[k] or { n = 0, h = "0" }
    local part = find_partition(parts, default, k)
    per[part] = (per[part] or 0) + y.n
    if x.n ~= y.n or x.h ~= y.h then
      diffs[#diffs + 1] = { bucket = k, partition = part, source = x.n, partitioned = y.n,
                            checksum = x.n == y.n }
    end
  end
  return diffs, per
end

local function describe_diffs(diffs)
  local s = {}
  for i, d in ipairs(diffs) do
    if i > 5 then s[#s + 1] = ("and %d more"):format(#diffs - 5) break end
    s[#s + 1] = ("%s from %s: %d vs %d rows%s"):format(d.partition, d.bucket, d.source, d.partitioned,
      d.checksum and " (checksums differ)" or "")
  end
  return table.concat(s, "; ")
end

-- Progress of the copy on a terminal: rows, rate, ETA.
local function progress(tname, total)
  return log.progress(total, function(done, all, rate, eta)
    return ("copying %s: %5.1f%%  %d rows  %7.0f rows/s  ETA %4.0fs "):format(tname,
      all > 0 and math.min(100, 100 * done / all) or 100, done, rate, eta)
  end)
end

-- ---- plan ----

--- What apply would do, as text lines; changes nothing.
function M.plan(db, tname, p)
  local conn <close> = db:acquire()
  local kind = relkind(conn, tname)
  local lines = {}
  local function say(fmt, ...) lines[#lines + 1] = fmt:format(...) end
  if not kind then usage(("table '%s' does not exist"):format(tname)) end
  if kind == "p" then
    local parts, default = partitions(conn, tname)
    say("-- %s is partitioned by %s (%d partitions%s); 'quarry partition maintain' keeps it", tname, p.key,
      #parts, default and " and a default" or "")
    for _, part in ipairs(parts) do
      local n = conn:query_one(("SELECT count(*) AS n FROM %s"):format(ident(part.name))).n
      say("--   %-45s [%s, %s)  %d rows", part.name, part.lo, part.hi, n)
    end
    if default then
      say("--   %-45s DEFAULT                   %d rows", default.name,
        conn:query_one(("SELECT count(*) AS n FROM %s"):format(ident(default.name))).n)
    end
    return lines
  end
  local st = state(conn, tname)
  local cols = columns(conn, tname)
  local lo, hi = key_range(conn, tname, p.key)
  local rngs = ranges(p, lo, hi, today(conn))
  local counts, n = {}, 0
  for _, r in ipairs(conn:query(("SELECT date_trunc(%s, %s)::date::text AS b, count(*) AS n FROM %s GROUP BY 1")
      :format(literal(p.interval), ident(p.key), ident(tname)))) do
    if r.b then counts[r.b] = r.n end
    n = n + r.n
  end
  say("-- %s: %d rows, %s from %s to %s; by %s, %d partition(s)%s", tname, n, p.key, lo or "-", hi or "-",
    p.interval, #rngs, p.default and " and a default" or "")
  if st then say("-- an apply is in progress (%s, %d rows copied): apply continues it", st.phase, st.rows_copied) end
  for _, r in ipairs(rngs) do
    say("--   %-45s [%s, %s)  %d rows", M.partition_name(tname, r.lo, p.interval), r.lo, r.hi, counts[r.lo] or 0)
  end
  for _, sql in ipairs(build_ddl(tname, p, rngs)) do say("%s;", sql) end
  say("-- copy in batches: INSERT INTO %s (%s) SELECT ... ORDER BY %s", ident(tname .. M.NEW), idents(cols),
    ident(p.batch_key))
  for _, ix in ipairs(index_ddl(tname, p, {})) do say("%s;", ix.sql) end
  say("-- then: catch up logged changes, verify counts and checksums per partition, and swap names:")
  say("ALTER TABLE %s RENAME TO %s;", ident(tname), ident(tname .. M.OLD))
  say("ALTER TABLE %s RENAME TO %s;", ident(tname .. M.NEW), ident(tname))
  return lines
end

-- ---- apply ----

local function refuse_dependents(conn, tname)
  local r = conn:query_one([[SELECT string_agg(DISTINCT conrelid::regclass::text, ', ') AS t FROM pg_constraint
    WHERE confrelid = $1::regclass AND contype = 'f']], ident(tname))
  if r.t then usage(("%s is referenced by foreign keys from %s; partitioning would break them"):format(tname, r.t)) end
  r = conn:query_one([[SELECT string_agg(DISTINCT v.oid::regclass::text, ', ') AS v FROM pg_depend d
    JOIN pg_rewrite w ON w.oid = d.objid JOIN pg_class v ON v.oid = w.ev_class
    WHERE d.refobjid = $1::regclass AND v.oid <> $1::regclass]], ident(tname))
  if r.v then usage(("views depend on %s (%s); drop them before partitioning"):format(tname, r.v)) end
end

local function build(conn, tname, p, opts)
  local cols = columns(conn, tname)
  for _, c in ipairs({ p.key, p.batch_key }) do
    if not has(cols, c) then usage(("plan for %s names column %s, which the table lacks"):format(tname, c)) end
  end
  refuse_dependents(conn, tname)
  if relkind(conn, tname .. M.NEW) or relkind(conn, tname .. M.OLD) then
    usage(("%s or %s already exists without an apply in progress; drop it or rename it first")
      :format(tname .. M.NEW, tname .. M.OLD))
  end
  local lo, hi = key_range(conn, tname, p.key)
  local rngs = ranges(p, lo, hi, today(conn))
  -- Creating the triggers waits for writers in flight: under lock_timeout,
  -- retried, so a long ingest delays the start instead of queueing others.
  with_lock_retry(conn, tname .. " build", opts.lock_tries, function(tx)
    lock_timeout(tx, opts.lock_timeout_ms)
    for _, sql in ipairs(build_ddl(tname, p, rngs)) do tx:exec(sql) end
    tx:exec("INSERT INTO quarry_partition_state (table_name, phase) VALUES ($1, 'copying')", tname)
  end)
  note("%s: built %s with %d partition(s); copying", tname, tname .. M.NEW, #rngs)
end

local function copy(conn, tname, p, cols, opts)
  local st = state(conn, tname)
  local src, dst, k, c = ident(tname), ident(tname .. M.NEW), ident(p.batch_key), idents(cols)
  local last = st.last_key or math.mininteger
  local total = conn:query_one(("SELECT count(*) AS n FROM %s WHERE %s > $1"):format(src, k), last).n
  local show = progress(tname, total)
  local t0, done = core.now_ns(), 0
  local hi_sql = ("SELECT max(k) AS hi FROM (SELECT %s AS k FROM %s WHERE %s > $1 ORDER BY %s LIMIT $2) s")
    :format(k, src, k, k)
  local ins_sql = ("INSERT INTO %s (%s) SELECT %s FROM %s WHERE %s > $1 AND %s <= $2"):format(dst, c, c, src, k, k)
  while true do
    local n = checked(conn:transaction(function(tx)
      local hi = tx:query_one(hi_sql, last, opts.batch_size).hi
      if not hi then return 0 end
      local rows = tx:exec(ins_sql, last, hi)
      tx:exec([[UPDATE quarry_partition_state SET last_key = $2, rows_copied = rows_copied + $3, updated_at = now()
        WHERE table_name = $1]], tname, hi, rows)
      last = hi
      return rows
    end))
    if n == 0 then break end
    done = done + n
    show(done)
    if opts.after_batch then opts.after_batch(done) end
  end
  show(done, true)
  local secs = (core.now_ns() - t0) / 1e9
  return done, secs
end

local function build_indexes(conn, tname, p)
  local fkeys = conn:query([[SELECT conname::text AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint
    WHERE conrelid = $1::regclass AND contype = 'f' ORDER BY conname]], ident(tname))
  for _, ix in ipairs(index_ddl(tname, p, fkeys)) do
    local exists = conn:query_one([[SELECT 1 AS x FROM pg_class WHERE relname = $1 AND relkind IN ('i', 'I')
      UNION ALL SELECT 1 FROM pg_constraint WHERE conname = $1 AND conrelid = $2::regclass]],
      ix.name, ident(tname .. M.NEW))
    if not exists then conn:exec(ix.sql) end
  end
  conn:exec("UPDATE quarry_partition_state SET phase = 'built', updated_at = now() WHERE table_name = $1", tname)
end

local function swap(conn, tname, p, cols, opts)
  local held_ms
  with_lock_retry(conn, tname .. " swap", opts.lock_tries, function(tx)
    lock_timeout(tx, opts.lock_timeout_ms)
    tx:exec(("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE"):format(ident(tname)))
    local t0 = core.now_ns()
    catch_up(tx, tname, tname, tname .. M.NEW, p, cols)
    drop_triggers(tx, tname, "capture")
    tx:exec(("DROP FUNCTION %s()"):format(ident("quarry_capture_" .. tname)))
    local seqs = owned_sequences(tx, tname, cols)
    tx:exec(("ALTER TABLE %s RENAME TO %s"):format(ident(tname), ident(tname .. M.OLD)))
    tx:exec(("ALTER TABLE %s RENAME TO %s"):format(ident(tname .. M.NEW), ident(tname)))
    for _, s in ipairs(seqs) do
      tx:exec(("ALTER SEQUENCE %s OWNED BY %s.%s"):format(s.sequence, ident(tname), ident(s.column)))
    end
    for _, sql in ipairs(mirror_ddl(tname, p, cols)) do tx:exec(sql) end
    -- writes made outside quarry are noted on the new table as on the old
    for _, sql in ipairs(outside.triggers_of(tname)) do tx:exec(sql) end
    tx:exec("UPDATE quarry_partition_state SET phase = 'swapped', updated_at = now() WHERE table_name = $1", tname)
    held_ms = (core.now_ns() - t0) / 1e6
  end)
  return held_ms
end

--- Partition tname by plan p. opts: batch_size, lock_timeout_ms, lock_tries,
-- after_batch(rows) (for tests and progress). Returns a summary table.
-- One partition command per table at a time, across processes: a session
-- advisory lock on the command's connection, released when the returned
-- value goes out of scope (<close>), on any exit.
local function exclusive(conn, tname)
  local key = "SELECT %s(hashtext('quarry.partition'), hashtext($1)) AS ok"
  if not conn:query_one(key:format("pg_try_advisory_lock"), tname).ok then
    usage(("another quarry partition command (apply, rollback, maintain or finish) is working on %s; "
      .. "run this one when it has ended"):format(tname))
  end
  return setmetatable({}, { __close = function() pcall(conn.query, conn, key:format("pg_advisory_unlock"), tname) end })
end

function M.apply(db, tname, p, opts)
  opts = opts or {}
  opts.batch_size = opts.batch_size or 50000
  opts.lock_timeout_ms = opts.lock_timeout_ms or 2000
  opts.lock_tries = opts.lock_tries or 10
  local conn <close> = db:acquire()
  conn:expect_long_hold() -- a big table's copy takes minutes
  local _ <close> = exclusive(conn, tname)
  local kind = relkind(conn, tname)
  if not kind then usage(("table '%s' does not exist"):format(tname)) end
  local st = state(conn, tname)
  if kind == "p" then
    usage(("%s is already partitioned%s; use 'quarry partition verify', 'maintain' or 'rollback'")
      :format(tname, st and " (by quarry, the plain table is kept as " .. tname .. M.OLD .. ")" or ""))
  end
  local t0 = core.now_ns()
  if st and not relkind(conn, tname .. M.NEW) then
    usage(("%s: an apply is recorded but %s is missing; run 'quarry partition rollback %s' to clear it")
      :format(tname, tname .. M.NEW, tname))
  end
  if not st then build(conn, tname, p, opts)
  else note("%s: continuing the apply (%s, %d rows copied)", tname, st.phase, st.rows_copied) end
  local cols = columns(conn, tname)
  local copied, copy_s = 0, 0
  st = state(conn, tname)
  if st.phase == "copying" then
    copied, copy_s = copy(conn, tname, p, cols, opts)
    note("%s: copied %d rows in %.1f s; building keys and indexes", tname, copied, copy_s)
    local ti = core.now_ns()
    build_indexes(conn, tname, p)
    note("%s: keys and indexes built in %.1f s; catching up and verifying", tname, (core.now_ns() - ti) / 1e9)
  end
  local tv = core.now_ns()
  local caught = catch_up(conn, tname, tname, tname .. M.NEW, p, cols)
  -- Writers may still be busy: a difference is caught up and compared again.
  local diffs
  for _ = 1, 3 do
    diffs = compare(conn, tname, tname .. M.NEW, p, cols)
    if #diffs == 0 then break end
    caught = caught + catch_up(conn, tname, tname, tname .. M.NEW, p, cols)
  end
  if #diffs > 0 then
    fail("mismatch", ("%s: the partitioned copy differs from the table: %s (the table is unchanged; rerun apply, "
      .. "or 'quarry partition rollback %s' to abandon)"):format(tname, describe_diffs(diffs), tname))
  end
  note("%s: %d change(s) caught up, every partition verified in %.1f s; swapping", tname, caught,
    (core.now_ns() - tv) / 1e9)
  -- Statistics before the swap, so the first queries after it plan well
  -- (autovacuum never analyzes a partitioned parent).
  conn:exec(("ANALYZE %s"):format(ident(tname .. M.NEW)))
  local held_ms = swap(conn, tname, p, cols, opts)
  local total_s = (core.now_ns() - t0) / 1e9
  note("%s: partitioned; the parent was locked for %.1f ms; the plain table is kept as %s", tname, held_ms,
    tname .. M.OLD)
  return { copied = copied, copy_s = copy_s, caught_up = caught, lock_ms = held_ms, total_s = total_s }
end

-- ---- verify ----

--- Compare a partitioned table with the plain one it came from (or an
-- apply in progress with its source). Returns {partition = rows}, default rows.
function M.verify(db, tname, p)
  local conn <close> = db:acquire()
  local kind = relkind(conn, tname)
  if not kind then usage(("table '%s' does not exist"):format(tname)) end
  local st = state(conn, tname)
  local src, dst
  if kind == "p" and st then src, dst = tname .. M.OLD, tname
  elseif kind ~= "p" and st and st.phase ~= "copying" then
    src, dst = tname, tname .. M.NEW
    catch_up(conn, tname, tname, tname .. M.NEW, p, columns(conn, tname))
  elseif kind ~= "p" and st then
    usage(("%s: the copy is not finished (%d rows so far); rerun 'quarry partition apply %s'")
      :format(tname, st.rows_copied, tname))
  elseif kind == "p" then
    src = nil
  else
    usage(("%s is not partitioned; nothing to verify"):format(tname))
  end
  local parts, default = partitions(conn, kind == "p" and tname or dst)
  local out = { partitions = parts, default = default, rows = {} }
  if src then
    local diffs, per = compare(conn, src, dst, p, columns(conn, tname))
    out.rows = per
    if #diffs > 0 then
      fail("mismatch", ("%s differs from %s: %s"):format(dst, src, describe_diffs(diffs)))
    end
    out.against = src
  else
    for _, part in ipairs(parts) do
      out.rows[part.name] = conn:query_one(("SELECT count(*) AS n FROM %s"):format(ident(part.name))).n
    end
  end
  if default then
    out.default_rows = conn:query_one(("SELECT count(*) AS n FROM %s"):format(ident(default.name))).n
  end
  return out
end

-- ---- rollback ----

--- Back to a plain table holding every row: after a swap, the kept plain
-- table (mirrored all along) takes the name back; before it, the unfinished
-- apply is abandoned.
function M.rollback(db, tname, p, opts)
  opts = opts or {}
  local conn <close> = db:acquire()
  local _ <close> = exclusive(conn, tname)
  local kind = relkind(conn, tname)
  local st = state(conn, tname)
  if not st then
    if kind == "p" then
      usage(("%s was not partitioned by quarry apply (or it was finished); nothing to roll back"):format(tname))
    end
    usage(("%s is not partitioned; nothing to roll back"):format(tname))
  end
  local cols = columns(conn, tname)
  if kind ~= "p" then
    with_lock_retry(conn, tname .. " rollback", opts.lock_tries or 10, function(tx)
      lock_timeout(tx, opts.lock_timeout_ms or 2000)
      drop_triggers(tx, tname, "capture")
      tx:exec(("DROP FUNCTION IF EXISTS %s()"):format(ident("quarry_capture_" .. tname)))
      tx:exec(("DROP TABLE IF EXISTS %s"):format(ident(tname .. M.NEW)))
      tx:exec("DELETE FROM quarry_partition_changes WHERE table_name = $1", tname)
      tx:exec("DELETE FROM quarry_partition_state WHERE table_name = $1", tname)
    end)
    return { abandoned = true }
  end
  local old = tname .. M.OLD
  if relkind(conn, old) ~= "r" then
    usage(("%s: the plain table %s is gone; cannot roll back"):format(tname, old))
  end
  local diffs = compare(conn, old, tname, p, cols)
  if #diffs > 0 then
    fail("mismatch", ("%s: the kept plain table differs (%s); not rolling back"):format(tname, describe_diffs(diffs)))
  end
  local held_ms
  with_lock_retry(conn, tname .. " rollback", opts.lock_tries or 10, function(tx)
    lock_timeout(tx, opts.lock_timeout_ms or 2000)
    tx:exec(("LOCK TABLE %s, %s IN ACCESS EXCLUSIVE MODE"):format(ident(tname), ident(old)))
    local t0 = core.now_ns()
    local a = tx:query_one(("SELECT count(*) AS n FROM %s"):format(ident(tname))).n
    local b = tx:query_one(("SELECT count(*) AS n FROM %s"):format(ident(old))).n
    if a ~= b then fail("mismatch", ("%s: %d rows, %s: %d; not rolling back"):format(tname, a, old, b)) end
    drop_triggers(tx, tname, "mirror")
    tx:exec(("DROP FUNCTION %s()"):format(ident("quarry_mirror_" .. tname)))
    -- The sequences first: dropping the table that owns them would drop them.
    for _, s in ipairs(owned_sequences(tx, tname, cols)) do
      tx:exec(("ALTER SEQUENCE %s OWNED BY %s.%s"):format(s.sequence, ident(old), ident(s.column)))
    end
    tx:exec(("DROP TABLE %s"):format(ident(tname)))
    tx:exec(("ALTER TABLE %s RENAME TO %s"):format(ident(old), ident(tname)))
    tx:exec("DELETE FROM quarry_partition_state WHERE table_name = $1", tname)
    held_ms = (core.now_ns() - t0) / 1e6
  end)
  conn:exec(("ANALYZE %s"):format(ident(tname)))
  return { rows = conn:query_one(("SELECT count(*) AS n FROM %s"):format(ident(tname))).n, lock_ms = held_ms }
end

--- Drop the kept plain table and its mirror triggers: writes cost one table
-- again, and rollback is no longer possible.
function M.finish(db, tname)
  local conn <close> = db:acquire()
  local _ <close> = exclusive(conn, tname)
  local st = state(conn, tname)
  if not st or st.phase ~= "swapped" then usage(("%s has no finished apply to keep or drop"):format(tname)) end
  checked(conn:transaction(function(tx)
    lock_timeout(tx, 2000)
    drop_triggers(tx, tname, "mirror")
    tx:exec(("DROP FUNCTION IF EXISTS %s()"):format(ident("quarry_mirror_" .. tname)))
    tx:exec(("DROP TABLE %s"):format(ident(tname .. M.OLD)))
    tx:exec("DELETE FROM quarry_partition_state WHERE table_name = $1", tname)
  end))
end

-- ---- maintain ----

-- Move the rows of [lo, hi) out of the default partition into a partition of
-- their own. Only the default partition is locked exclusively, and only
-- while its rows of that range move; the parent gets SHARE UPDATE EXCLUSIVE
-- (ATTACH), which readers and writers do not wait for.
local function attach(conn, tname, p, default, lo, hi, opts)
  local name = M.partition_name(tname, lo, p.interval)
  local cols = columns(conn, tname)
  local moved = 0
  with_lock_retry(conn, "maintain " .. name, opts.lock_tries or 10, function(tx)
    lock_timeout(tx, opts.lock_timeout_ms or 2000)
    tx:exec(outside.WRITER_ON) -- moving rows out of the default partition changes no figure
    tx:exec(("CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)")
      :format(ident(name), ident(tname)))
    if default then
      tx:exec(("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE"):format(ident(default.name)))
      moved = tx:exec(("WITH m AS (DELETE FROM %s WHERE %s >= $1 AND %s < $2 RETURNING %s) "
        .. "INSERT INTO %s (%s) SELECT %s FROM m"):format(ident(default.name), ident(p.key), ident(p.key),
        idents(cols), ident(name), idents(cols), idents(cols)), lo, hi)
    end
    -- A CHECK matching the bound lets ATTACH skip scanning the new partition.
    local chk = ident(name .. "_bound")
    tx:exec(("ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s IS NOT NULL AND %s >= %s AND %s < %s)")
      :format(ident(name), chk, ident(p.key), ident(p.key), literal(lo), ident(p.key), literal(hi)))
    tx:exec(("ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%s) TO (%s)")
      :format(ident(tname), ident(name), literal(lo), literal(hi)))
    tx:exec(("ALTER TABLE %s DROP CONSTRAINT %s"):format(ident(name), chk))
    for _, sql in ipairs(outside.triggers_of(tname, name)) do tx:exec(sql) end
  end)
  return name, moved
end

--- Create partitions ahead, move rows out of the default partition, detach
-- partitions past retention. Idempotent. Returns a list of actions (strings).
function M.maintain(db, tname, p, opts)
  opts = opts or {}
  local conn <close> = db:acquire()
  local _ <close> = exclusive(conn, tname)
  local kind = relkind(conn, tname)
  if kind ~= "p" then
    return { ("%s is not partitioned (run 'quarry partition apply %s'); skipped"):format(tname, tname) },
      true
  end
  local actions = {}
  local parts, default = partitions(conn, tname)
  local have = {}
  for _, part in ipairs(parts) do have[part.lo] = true end
  -- Rows in the default partition, by interval: each gets its partition.
  local stray = {}
  if default then
    for _, r in ipairs(conn:query(("SELECT date_trunc(%s, %s)::date::text AS b, count(*) AS n FROM %s "
        .. "GROUP BY 1 ORDER BY 1"):format(literal(p.interval), ident(p.key), ident(default.name)))) do
      if r.b then stray[#stray + 1] = r.b end
    end
  end
  local day = today(conn)
  local newest = parts[#parts] and parts[#parts].lo or bucket(day, p.interval)
  local _, max_key = key_range(conn, tname, p.key)
  local want_to = horizon(p, max_key, day)
  local todo = {}
  for _, b in ipairs(stray) do todo[b] = true end
  local b = newest
  while b <= want_to do
    if not have[b] then todo[b] = true end
    b = next_bucket(b, p.interval)
  end
  local list = {}
  for k in pairs(todo) do if not have[k] then list[#list + 1] = k end end
  table.sort(list)
  for _, lo in ipairs(list) do
    local name, moved = attach(conn, tname, p, default, lo, next_bucket(lo, p.interval), opts)
    actions[#actions + 1] = moved > 0 and ("created %s and moved %d row(s) into it from %s")
      :format(name, moved, default.name) or ("created %s"):format(name)
  end
  if p.retain and state(conn, tname) then
    actions[#actions + 1] = ("retention skipped: the plain table %s still holds every row for rollback; "
      .. "run 'quarry partition finish %s' first"):format(tname .. M.OLD, tname)
  elseif p.retain then
    local cutoff = next_bucket(bucket(today(conn), p.interval), p.interval, -p.retain)
    for _, part in ipairs(parts) do
      if part.hi <= cutoff then
        -- The rollups of its dates go with it, in the same transaction,
        -- under the date locks every writer takes (first, as writers do).
        local rollup, write = require "quarry.rollup", require "quarry.write"
        local dates = with_lock_retry(conn, "detach " .. part.name, opts.lock_tries or 10, function(tx)
          lock_timeout(tx, opts.lock_timeout_ms or 2000)
          tx:exec(outside.WRITER_ON) -- quarry's own write: its days are no longer loaded
          local last = tx:query_one("SELECT ($1::date - 1)::text AS d", part.hi).d
          local d = rollup.dates_in(tx, part.lo, last)
          rollup.lock_dates(tx, d)
          tx:exec(("ALTER TABLE %s DETACH PARTITION %s"):format(ident(tname), ident(part.name)))
          -- a plain table now, in no figure: writes to it are nobody's to mend
          for _, sql in ipairs(outside.drop_triggers(part.name)) do tx:exec(sql) end
          if tname == "curtailment_records" then -- its days are no longer loaded: reports show them empty
            local seen = {}
            for _, x in ipairs(d) do seen[x] = true end
            for _, r in ipairs(tx:query([[DELETE FROM curtailment_loaded_days WHERE settlement_date
                BETWEEN $1::date AND $2::date RETURNING settlement_date::text AS d]], part.lo, last)) do
              if not seen[r.d] then d[#d + 1] = r.d end
            end
            table.sort(d)
          end
          write.finish(tx, { tname }, d, { bitcoin = false }) -- the dated-write path's closing steps
          return d
        end)
        write.after(opts.cache, { tname }, dates)
        actions[#actions + 1] = ("detached %s (older than %d %s(s)); it stays as a plain table")
          :format(part.name, p.retain, p.interval)
      end
    end
  end
  if #list > 0 then conn:exec(("ANALYZE %s"):format(ident(tname))) end
  return actions
end

return M
