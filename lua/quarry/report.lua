--- quarry.report: find, load and run report plugins.
--
-- A plugin is a Lua file returning a table (see plugins/monthly.lua). It is
-- untrusted code, held in by four walls:
--   * its own environment, built from an allow-list: no os.execute, io,
--     require, load, debug; getmetatable hides the shared string metatable,
--     so nothing it changes reaches the host or the next plugin;
--   * limits on instructions, wall-clock time and memory (M.limits), while
--     its file loads and while it runs; once a limit trips it stays tripped,
--     so a pcall inside the plugin cannot catch it and carry on;
--   * its SQL runs on a restricted connection (src/pg.h): reading
--     statements only, one per call, through the extended protocol, inside a
--     READ ONLY transaction it cannot end, with a statement_timeout;
--   * as the role quarry_reader (SET LOCAL ROLE), which may only SELECT and
--     cannot set_config() itself back to another role.
-- It reaches the data only through ctx: ctx.query / ctx.query_one and
-- ctx.summaries (the definitions in lua/quarry/defs/summaries.lua).
local core = require "quarry.core"
local dates = require "quarry.dates"
local rollup = require "quarry.rollup"
local params = require "quarry.params"
local rules = require "quarry.rules"
local summaries_defs = require "quarry.defs.summaries"

local M = {}

-- What a plugin may spend, loading and running (the CLI sets memory and
-- seconds from QUARRY_PLUGIN_MEMORY and QUARRY_PLUGIN_TIMEOUT).
M.limits = { instructions = 200000000, seconds = 300, memory_mb = 256 }
M.READER_ROLE = "quarry_reader"

-- The limits of the plugin running now in each coroutine (quarry serve runs
-- several at once): its pcall checks whether one tripped.
local running_in = setmetatable({}, { __mode = "k" })

local usage = core.usage

-- ---- finding and loading ----

local function plugin_dirs(root)
  local dirs = { root .. "/plugins" }
  for dir in (os.getenv("QUARRY_PLUGIN_PATH") or ""):gmatch("[^:]+") do dirs[#dirs + 1] = dir end
  return dirs
end

-- pcall and xpcall for plugins: a tripped limit passes through them.
local function rethrow_if_tripped(...)
  local running = running_in[coroutine.running()]
  if running and (running.tripped or core.memory_tripped()) then
    error(running.tripped or running.memory_message, 0)
  end
  return ...
end

-- Metatables plugins set themselves: the only ones their getmetatable shows
-- (the host's -- strings', error objects' -- stay out of reach).
local own_metatables = setmetatable({}, { __mode = "k" })

local function sandbox_setmetatable(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("a plugin cannot set __gc (a finalizer would run outside its limits)", 2)
  end
  if mt ~= nil then own_metatables[mt] = true end
  return setmetatable(t, mt)
end

local function sandbox_getmetatable(v)
  local mt = getmetatable(v)
  if own_metatables[mt] then return mt end
  return nil
end

-- A copy of what a plugin handed over, made of plain tables (no metatables,
-- read with next): nothing the host reads later can run plugin code.
local function copy(v, depth)
  if type(v) ~= "table" then return v end
  depth = depth + 1
  if depth > 32 then error("nested more than 32 tables deep", 0) end
  local out = {}
  for k, x in next, v do out[copy(k, depth)] = copy(x, depth) end
  return out
end

-- Whether v holds no table with a metatable (rows from queries are such):
-- then it is handed on as it is, not copied.
local getmt = debug.getmetatable
local function is_plain(v, depth)
  if type(v) ~= "table" then return true end
  if getmt(v) ~= nil then return false end
  depth = depth + 1
  if depth > 32 then error("nested more than 32 tables deep", 0) end
  for k, x in next, v do
    if (type(k) == "table" and not is_plain(k, depth)) or (type(x) == "table" and not is_plain(x, depth)) then
      return false
    end
  end
  return true
end

-- (for what a run returned: no plugin code runs after it)
local function plain(v)
  if is_plain(v, 0) then return v end
  return copy(v, 0)
end

-- The libraries a plugin sees, copied into tables of its own at each load
-- (one that replaces string.format changes only its copy), by table
-- constructors generated once from the libraries' keys: filled key by key,
-- a table rehashes as it grows, and that made the environment the most
-- costly part of loading a plugin, which a cached request does each time.
local LIB_COPY = {}
for _, lib in ipairs({ "math", "string", "table", "utf8" }) do
  local fields = {}
  for k in pairs(_G[lib]) do
    if type(k) == "string" and not (lib == "string" and k == "dump") -- no bytecode of the host's functions
        and not (lib == "math" and k == "randomseed") then -- the generator is the host's too
      fields[#fields + 1] = ("[%q] = L[%q]"):format(k, k)
    end
  end
  table.sort(fields)
  LIB_COPY[lib] = assert(load("local L = ...; return { " .. table.concat(fields, ", ") .. " }", "=" .. lib, "t", {}))
end

-- load: the state of one load of a plugin file. What its code asks of the
-- clock or the random generator marks it (load.varies: a top level that
-- does may declare something else at its next load), and so does setting
-- a metatable (load.metatables: only then can what it hands over hold one
-- of its own, whose metamethods would run its code in the host).
local function sandbox_env(load)
  local function marking(f) return function(...) load.varies = true return f(...) end end
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    pcall = function(...) return rethrow_if_tripped(pcall(...)) end,
    xpcall = function(...) return rethrow_if_tripped(xpcall(...)) end,
    select = select, tonumber = tonumber, tostring = tostring, type = type,
    setmetatable = function(t, mt)
      load.metatables = true
      return sandbox_setmetatable(t, mt)
    end,
    getmetatable = sandbox_getmetatable,
    rawequal = rawequal, rawget = rawget, rawlen = rawlen, rawset = rawset,
    _VERSION = _VERSION,
    math = LIB_COPY.math(math), string = LIB_COPY.string(string), table = LIB_COPY.table(table),
    utf8 = LIB_COPY.utf8(utf8),
    os = { date = marking(os.date), time = marking(os.time), clock = marking(os.clock), difftime = os.difftime },
  }
  env.math.random = marking(math.random)
  env._G = env
  return env
end

-- Run fn under M.limits; what names the plugin in messages.
local function limited(what, fn)
  local lim = M.limits
  local state = { memory_message = ("%s stopped: it used more than %d MiB of memory (QUARRY_PLUGIN_MEMORY)")
    :format(what, lim.memory_mb) }
  local count, deadline = 0, core.now_ns() + lim.seconds * 1000000000
  local function trip(msg)
    state.tripped = state.tripped or msg
    error(state.tripped, 0)
  end
  local co = coroutine.running()
  local outer = running_in[co]
  running_in[co] = state
  debug.sethook(function()
    if state.tripped then error(state.tripped, 0) end
    count = count + 1
    if count * 1000 > lim.instructions then
      trip(("%s stopped: it ran more than %d instructions"):format(what, lim.instructions))
    end
    if count % 64 == 0 and core.now_ns() > deadline then
      trip(("%s stopped: it ran longer than %d s (QUARRY_PLUGIN_TIMEOUT)"):format(what, lim.seconds))
    end
  end, "", 1000)
  core.memory_limit(lim.memory_mb * 1024 * 1024)
  local r = table.pack(pcall(fn))
  local out_of_memory = core.memory_tripped()
  core.memory_limit(nil)
  debug.sethook()
  running_in[co] = outer
  if not r[1] then
    if state.tripped then error(state.tripped, 0) end
    if out_of_memory then error(state.memory_message, 0) end
    local e = r[2]
    -- only what the host made (a string, a quarry error) leaves: a table of
    -- the plugin's could run its own __tostring outside the limits
    if type(e) ~= "string" and getmetatable(e) ~= core.error_mt then
      error(("%s failed: it raised a %s, not an error message"):format(what, type(e)), 0)
    end
    error(e, 0)
  end
  return table.unpack(r, 2, r.n)
end

local TTL_TIERS = { SHORT = true, MEDIUM = true, LONG = true, VERY_LONG = true }

--- Check a plugin table; errors name the file and the key.
function M.validate(p, file)
  local function bad(key, what) usage(("%s: '%s' %s"):format(file, key, what)) end
  if type(p) ~= "table" then usage(file .. ": a plugin must return a table") end
  if type(p.name) ~= "string" or not p.name:match("^[%a_][%w_]*$") then bad("name", "must be an identifier") end
  if type(p.description) ~= "string" then bad("description", "must be a string") end
  if type(p.run) ~= "function" then bad("run", "must be a function(ctx, params)") end
  p.params = p.params or {}
  if type(p.params) ~= "table" then bad("params", "must be a table") end
  for name, spec in pairs(p.params) do
    local field, problem = params.problem(name, spec)
    if problem then bad("params." .. tostring(name) .. field, problem) end
  end
  if p.cache ~= nil then
    if type(p.cache) ~= "table" or type(p.cache.key) ~= "string" then bad("cache", "needs a 'key' template") end
    if not TTL_TIERS[p.cache.ttl or ""] then bad("cache.ttl", "must be SHORT, MEDIUM, LONG or VERY_LONG") end
    for ph in p.cache.key:gmatch("{([^}]*)}") do
      if not p.params[ph] then bad("cache.key", "uses {" .. ph .. "}, which is not a param") end
    end
  end
  local chart = p.chart
  if chart ~= nil and (type(chart) ~= "table" or type(chart.x) ~= "string" or type(chart.y) ~= "string") then
    bad("chart", "must be {x = column, y = column}")
  end
  return p
end

-- path -> {text=, chunk=, declared=}: the plugin files this process
-- compiled, and the declaration of each (see M.declaration)
local compiled = {}
-- the plugin tables M.declaration hands out: never run (report.run loads
-- one of its own to compute)
local declarations = setmetatable({}, { __mode = "k" })

-- plugin table -> the state of the load that made it (see sandbox_env)
local loads = setmetatable({}, { __mode = "k" })

-- One fresh instance of a compiled plugin: its table and whether its load
-- asked the clock or the random generator.
local function instantiate(path, chunk)
  local state = {}
  -- handed on as it is when it is plain tables (the host's reads of it then
  -- run no plugin code), else copied into such: a copy made by Lua costs
  -- more than all the rest of a load
  local ok, p = pcall(limited, "plugin file " .. path, function()
    local def = chunk(sandbox_env(state))
    if state.metatables then def = plain(def) end
    return def
  end)
  if not ok then
    local msg = type(p) == "table" and p.message or tostring(p)
    usage(msg:find(path, 1, true) and msg or ("%s: %s"):format(path, msg))
  end
  p = M.validate(p, path)
  p.file = path
  loads[p] = state
  return p, state.varies == true
end

local function read_plugin(path)
  local f, err = io.open(path, "rb")
  if not f then usage(("cannot read plugin %s: %s"):format(path, err)) end
  local text = f:read("a")
  f:close()
  return text
end

-- Read at every use, so an edited plugin counts at once; compiled once per
-- text, as a function of its environment (`local _ENV = ...` ahead of the
-- text, on its first line: line numbers stay). Each use calls it afresh
-- with a new environment: new closures, new upvalues, so nothing of one
-- run reaches the next.
local function compiled_file(path)
  local text = read_plugin(path)
  local seen = compiled[path]
  if not seen or seen.text ~= text then
    local chunk, lerr = load("local _ENV = ...; " .. text, "@" .. path, "t", {})
    if not chunk then usage(lerr) end -- a syntax error names the file and line
    seen = { text = text, chunk = chunk }
    compiled[path] = seen
  end
  return seen
end

--- Load one plugin file in its sandbox: a fresh instance of its own.
function M.load_file(path)
  local seen = compiled_file(path)
  return (instantiate(path, seen.chunk))
end

--- What a plugin file declares (name, params, cache, ...), to decide what
-- to answer; not for running (report.run loads the plugin afresh when it
-- computes, so a cache hit runs no plugin code). The file is read each
-- time; while it stays the same, and its top level asked neither the
-- clock nor the random generator, it declares the same at every load, so
-- one instance, kept from the first load and never run, answers: a load
-- was most of what a cached request of `quarry serve` cost.
function M.declaration(path)
  local seen = compiled_file(path)
  if seen.declared then return seen.declared end
  local p, varies = instantiate(path, seen.chunk)
  declarations[p] = true
  if not varies then seen.declared = p end
  return p
end

--- Every plugin, by name (later folders of QUARRY_PLUGIN_PATH override),
-- and the files that do not load, {{file=, message=}}: one broken file
-- hides no other report from a listing.
function M.all(root)
  local found, broken = {}, {}
  for _, dir in ipairs(plugin_dirs(root)) do
    local p = io.popen(("ls -1 %s 2>/dev/null"):format("'" .. dir:gsub("'", "'\\''") .. "'"))
    for name in p:lines() do
      if name:match("%.lua$") then
        local ok, plugin = pcall(M.load_file, dir .. "/" .. name)
        if ok then
          found[plugin.name] = plugin
        else
          broken[#broken + 1] = { file = dir .. "/" .. name,
                                  message = type(plugin) == "table" and plugin.message or tostring(plugin) }
        end
      end
    end
    p:close()
  end
  return found, broken
end

-- The plugin `name` through load(path): a plugin's file is named after it,
-- so just that one is read when it is there (the last folder wins, as in
-- M.all); they are all listed only to say what exists.
local function lookup(root, name, load_path)
  if name:match("^[%a_][%w_]*$") then
    local dirs = plugin_dirs(root)
    for i = #dirs, 1, -1 do
      local path = dirs[i] .. "/" .. name .. ".lua"
      local f = io.open(path, "r")
      if f then
        f:close()
        local p = load_path(path)
        if p.name == name then return p end
      end
    end
  end
  local all, broken = M.all(root)
  local p = all[name]
  if not p then
    local names = {}
    for n in pairs(all) do names[#names + 1] = n end
    table.sort(names)
    local unloaded = {}
    for _, b in ipairs(broken) do unloaded[#unloaded + 1] = b.file:match("[^/]+$") end
    -- bad input (exit 2), and `missing` tells a caller (quarry serve's 404) without reading the words
    error(core.error({ code = "usage", missing = name,
      message = ("unknown report '%s' (reports: %s%s)"):format(name, table.concat(names, ", "),
        #unloaded > 0 and ("; not loading: " .. table.concat(unloaded, ", ")) or "") }), 0)
  end
  return p
end

--- The plugin `name`, loaded afresh.
function M.find(root, name) return lookup(root, name, M.load_file) end

--- The plugin `name` as M.declaration gives it: to check params and answer
-- from the cache; report.run computes with a fresh load.
function M.find_declared(root, name) return lookup(root, name, M.declaration) end

-- ---- parameters (lua/quarry/params.lua) ----

-- Their form only: what must exist in the database (a miner model, a farm)
-- is looked up in the report's transaction, so a cached answer needs none.
M.params = params.check
M.range = params.range

local FAMILIES = { "daily_mining:", "monthly_mining:", "quarterly_mining:", "yearly_mining:" }

-- Fill a cache key template; values are percent-encoded so no two param
-- sets share a key and keys stay free of '@' and spaces. A key that does
-- not start with a mining family is put in the family of the period it
-- covers (monthly_mining:2024-03:farms:...), so the invalidation rules
-- (lua/quarry/defs/rules.lua) reach every report of a changed date.
-- The shape of a result (fields, rows, totals, ...): part of every key, so a
-- cached result of an older shape is never served after an upgrade.
M.RESULT_SHAPE = "r5" -- r3: coverage, and days with no data loaded empty, not zero; r4: synthetic days;
-- r5: days written outside quarry

local function percent(c) return ("%%%02X"):format(c:byte()) end
local function key_part(v)
  v = tostring(v)
  if not v:find("[^%w_.-]") then return v end
  return (v:gsub("[^%w_.-]", percent))
end

function M.cache_key(plugin, p)
  local named = {}
  local key = plugin.cache.key:gsub("{([^}]*)}", function(name)
    named[name] = true
    local v = p[name]
    if v == nil then return "all" end
    return key_part(v)
  end)
  -- A param the template forgot still tells results apart: a key that
  -- left out --sort would serve one ranking for another.
  local extra = {}
  for name in pairs(plugin.params or {}) do
    if not named[name] and p[name] ~= nil then extra[#extra + 1] = name end
  end
  table.sort(extra)
  for _, name in ipairs(extra) do key = key .. ":" .. name .. "=" .. key_part(p[name]) end
  key = key .. ":" .. M.RESULT_SHAPE
  for _, f in ipairs(FAMILIES) do
    if key:find(f, 1, true) == 1 then return key end
  end
  return params.family(p, plugin.params) .. ":" .. plugin.name .. ":" .. key
end

-- ---- running ----

-- The named summary queries of defs/summaries.lua as statements, made once.
local SUMMARY_STATEMENTS = {}
for name, def in pairs(summaries_defs) do
  if type(def) == "table" and def.sql then SUMMARY_STATEMENTS[name] = { name = "summary." .. name, sql = def.sql } end
end

local function make_summaries(tx)
  local s = {}
  for name, stmt in pairs(SUMMARY_STATEMENTS) do
    s[name] = function(...) return tx:query(stmt, ...) end
  end
  s.join_cte = summaries_defs.join_cte
  s.rollup_mismatches = function(from, to)
    return tx:query({ name = "rollup.verify", sql = rollup.mismatch_sql() }, from, to)
  end
  return s
end


-- A breakdown's statement, {query=, party=}: built from the definitions
-- once per process and shape (a few KB of SQL formatted, then scanned and
-- hashed by the statement cache, on every call otherwise). source "rollup"
-- may be nil: the shape is finer than any rollup.
local statements = {}
local function statement(source, by, party, farm)
  local key = ("%s:%s:%s:%s"):format(source, by, party, farm)
  local st = statements[key]
  if st == nil then
    local sql
    if source == "rollup" then sql = summaries_defs.breakdown_rollup_sql(by, party, farm)
    else sql = summaries_defs.breakdown_sql(by, party) end
    st = false
    if sql then
      local tag = (sql.rollup and ("rollup." .. sql.rollup .. ".") or "breakdown.") .. by
        .. (sql.party and ".party" or "")
      st = { query = { name = tag, sql = summaries_defs.combined(sql) }, party = sql.party }
    end
    statements[key] = st
  end
  return st or nil
end

-- ctx.breakdown(by, p [, miner]): curtailment and bitcoin over the period
-- of p grouped `by` (a shape of defs/summaries.lua: day, week, month, farm,
-- lead_party, period, all), with one
-- bitcoin column per miner model (or just `miner`).
-- Read from the day-grain rollups unless direct is asked for or the grouping
-- needs finer grain (settlement period) or lead parties mix within a farm-day.
local function breakdown(tx, by, p, miner, direct, specs, memo)
  local from, to = params.range(p, specs)
  if not from then usage("this report needs " .. params.period_flags(specs)) end
  if not summaries_defs.shapes[by] then
    local names = {}
    for n in pairs(summaries_defs.shapes) do names[#names + 1] = n end
    table.sort(names)
    usage(("no breakdown by '%s' (lua/quarry/defs/summaries.lua has %s)"):format(tostring(by),
      table.concat(names, ", ")))
  end
  local party, farm = p.lead_party ~= nil, p.farm ~= nil
  local sql = not direct and statement("rollup", by, party, farm) or nil
  if sql and sql.party and rollup.mixed_parties(tx, from, to) then sql = nil end
  sql = sql or statement("raw", by, party)
  local args = { from, to, p.farm, p.lead_party }
  local c = tx:query(sql.query, table.unpack(args, 1, sql.party and 4 or 3))
  local models = {}
  if miner then models[1] = miner
  else
    -- once per report run: its breakdowns share one snapshot, so one list
    for _, r in ipairs(params.miner_models(tx, memo)) do models[#models + 1] = r.name end
  end
  -- the column names of each model, made once (not per row)
  local btc_col, value_col = {}, {}
  for _, m in ipairs(models) do btc_col[m], value_col[m] = "btc_" .. m, "value_gbp_" .. m end
  local by_key = {}
  for _, row in ipairs(c) do by_key[tostring(row.key)] = row end
  -- Value columns only where every bitcoin row of the period has its day's
  -- price: a value missing some days would read as a smaller one.
  local valued = false
  for _, row in ipairs(c) do
    if row.q_miners then
      if row.q_unpriced ~= 0 then valued = false break end
      valued = true
    end
  end
  for _, row in ipairs(c) do
    local ms, btc, val = row.q_miners, row.q_bitcoin, row.q_value
    if ms then
      for i, m in ipairs(ms) do
        row[btc_col[m] or ("btc_" .. m)] = btc[i]
        if valued then row[value_col[m] or ("value_gbp_" .. m)] = val[i] end
      end
    end
    row.q_miners, row.q_bitcoin, row.q_value, row.q_unpriced = nil, nil, nil, nil
  end
  local key_type = c.fields[1].type
  -- `column` is the name csv and json give a field (the key is named after
  -- what it holds); `unit` travels with it.
  local label = summaries_defs.shapes[by].label
  local fields = { { name = "key", type = key_type, label = label, column = label },
    { name = "farms", type = "int8" }, { name = "periods", type = "int8" },
    { name = "farm_periods", type = "int8" }, { name = "curtailed_mwh", type = "numeric", unit = "MWh" },
    { name = "paid_gbp", type = "numeric", unit = "GBP" } }
  for _, m in ipairs(models) do
    fields[#fields + 1] = { name = btc_col[m], type = "numeric", label = "btc " .. m, unit = "BTC" }
  end
  if valued then -- at each day's price (bitcoin_prices); the value report sets it against the payment
    for _, m in ipairs(models) do
      fields[#fields + 1] = { name = value_col[m], type = "numeric", label = "value " .. m, unit = "GBP" }
    end
  end
  for _, row in ipairs(c) do
    for _, m in ipairs(models) do
      local b, v = btc_col[m], value_col[m]
      if row[b] == nil then row[b] = "0" end
      if valued and row[v] == nil then row[v] = "0" end
    end
  end
  local rows = {}
  local calendar = summaries_defs.calendar_sql(summaries_defs.shapes[by])
  if calendar then -- every day (month, period) of the range, zeros where nothing was curtailed
    local listed = {}
    for _, k in ipairs(tx:query({ name = "breakdown.calendar." .. by, sql = calendar }, from, to)) do
      local row = by_key[tostring(k.key)]
      if not row and not k.loaded then
        row = { key = k.key } -- no data loaded: empty (null), never a zero that reads as a calm day
      elseif not row then
        row = { key = k.key, farms = 0, periods = 0, farm_periods = 0, curtailed_mwh = "0", paid_gbp = "0" }
        for _, m in ipairs(models) do
          row[btc_col[m]] = "0"
          if valued then row[value_col[m]] = "0" end
        end
      end
      listed[tostring(k.key)] = true
      rows[#rows + 1] = row
    end
    for _, row in ipairs(c) do -- a key the calendar lacks (a period 49 loaded before the check): kept, last
      if not listed[tostring(row.key)] then rows[#rows + 1] = row end
    end
  else
    for i, row in ipairs(c) do rows[i] = row end
  end
  return { fields = fields, rows = rows }
end

-- The days of from..to that hold no data (not in curtailment_loaded_days),
-- as ranges: a report's figures cover the other days only, and saying "no
-- curtailment" of a day nobody loaded would be a figure quarry does not have.
-- Days fetched with settlement periods Elexon had nothing for yet
-- (elexon_fetch_days.missing) are loaded but partial: listed too. So are the
-- days whose figures are synthetic: rows loaded by `quarry db seed`
-- ('seed'), or real rows whose bitcoin rests on a seed's difficulty point
-- ('seed_difficulty'): a figure made up for a demo must say so; and the
-- days whose only rows were written by hand, not loaded ('written_outside').
M.COVERAGE_SQL = [[
WITH gaps AS (
  SELECT d::date AS day, d::date - (row_number() OVER (ORDER BY d))::int AS g
  FROM generate_series($1::date, $2::date, interval '1 day') AS d
  WHERE NOT EXISTS (SELECT 1 FROM curtailment_loaded_days l WHERE l.settlement_date = d::date)),
synthetic AS (
  SELECT l.settlement_date AS day, CASE WHEN l.source = 'seed' THEN 'seed' ELSE 'seed_difficulty' END AS kind
  FROM curtailment_loaded_days l
  LEFT JOIN LATERAL (SELECT b.source FROM bitcoin_difficulty b WHERE b.effective_date <= l.settlement_date
                     ORDER BY b.effective_date DESC LIMIT 1) p ON true
  WHERE l.settlement_date BETWEEN $1::date AND $2::date AND (l.source = 'seed' OR p.source = 'seed')
  UNION ALL
  SELECT settlement_date, 'written_outside' FROM curtailment_loaded_days
  WHERE settlement_date BETWEEN $1::date AND $2::date AND source = 'outside'),
runs AS (SELECT day, kind, day - (row_number() OVER (PARTITION BY kind ORDER BY day))::int AS g FROM synthetic)
SELECT 'missing' AS kind, min(day)::text AS first, max(day)::text AS last, count(*)::int AS n, NULL AS periods
FROM gaps GROUP BY g
UNION ALL
SELECT 'partial', settlement_date::text, settlement_date::text, 1, array_to_string(missing, ',') FROM elexon_fetch_days
WHERE settlement_date BETWEEN $1::date AND $2::date AND cardinality(missing) > 0
UNION ALL
SELECT kind, min(day)::text, max(day)::text, count(*)::int, NULL FROM runs GROUP BY kind, g
UNION ALL
SELECT 'outside', min(settlement_date)::text, max(settlement_date)::text, count(*)::int, NULL
FROM quarry_outside_writes WHERE settlement_date BETWEEN $1::date AND $2::date HAVING count(*) > 0
ORDER BY 1, 2]]
M.COVERAGE_RANGES = 20 -- the most ranges (and partial days) a result lists; their days are all counted

local function coverage(tx, from, to)
  local days = dates.day_number(to) - dates.day_number(from) + 1
  local c = { from = from, to = to, days = days, loaded = days, missing = {}, ranges = 0, partial = {},
              partial_days = 0, synthetic = {}, synthetic_days = 0, seed_difficulty = {}, seed_difficulty_days = 0,
              written_outside = {}, written_outside_days = 0 }
  for _, r in ipairs(tx:query({ name = "report.coverage", sql = M.COVERAGE_SQL }, from, to)) do
    if r.kind == "partial" then
      c.partial_days = c.partial_days + 1
      if #c.partial < M.COVERAGE_RANGES then
        local periods = {}
        for n in r.periods:gmatch("%d+") do periods[#periods + 1] = tonumber(n) end
        c.partial[#c.partial + 1] = { date = r.first, periods = periods }
      end
    elseif r.kind == "outside" then
      -- changed outside quarry since their bitcoin and rollups were made:
      -- the run's figures of them are not served (M.run mends and runs again)
      c.outside_days = r.n
    elseif r.kind == "missing" then
      c.loaded, c.ranges, c.last_missing = c.loaded - r.n, c.ranges + 1, r.last
      if #c.missing < M.COVERAGE_RANGES then c.missing[#c.missing + 1] = { r.first, r.last, r.n } end
    else -- seed, seed_difficulty, written_outside
      local list = r.kind == "seed" and c.synthetic or c[r.kind]
      local key = r.kind == "seed" and "synthetic_days" or (r.kind .. "_days")
      c[key] = c[key] + r.n
      if #list < M.COVERAGE_RANGES then list[#list + 1] = { r.first, r.last, r.n } end
    end
  end
  return c
end

-- The fetched days of c that lack settlement periods, as a line, or nil.
local function partial_note(c)
  if c.partial_days == 0 then return nil end
  local runs = require("quarry.fetch").period_runs
  local shown = {}
  for i = 1, math.min(3, #c.partial) do
    shown[i] = ("%s lacks %s"):format(c.partial[i].date, runs(c.partial[i].periods))
  end
  local more = c.partial_days > 3 and (" and %d more day(s)"):format(c.partial_days - 3) or ""
  return ("%s%s (Elexon had nothing yet for those settlement periods): those days' figures are partial; "
    .. "quarry fetch curtailment --from %s --to %s fills them once published"):format(table.concat(shown, ", "),
    more, c.partial[1].date, c.partial[#c.partial].date)
end

-- "a..b, c and 2 more range(s)" of the first ranges of a list.
local function ranges_text(list, total)
  local shown = {}
  for i = 1, math.min(3, #list) do
    local r = list[i]
    shown[i] = r[1] == r[2] and r[1] or (r[1] .. ".." .. r[2])
  end
  return table.concat(shown, ", ") .. (total > 3 and (" and %d more range(s)"):format(total - 3) or "")
end

-- The lines saying which days' figures are synthetic or written by hand, or nil.
local function synthetic_note(c)
  local lines = {}
  if c.synthetic_days > 0 then
    lines[#lines + 1] = ("%ssynthetic data from quarry db seed, not real curtailment (%s)"):format(
      c.synthetic_days == c.loaded and "" or ("%d of the %d days are "):format(c.synthetic_days, c.days),
      ranges_text(c.synthetic, #c.synthetic))
  end
  if c.seed_difficulty_days > 0 then
    local first, last = c.seed_difficulty[1][1], c.seed_difficulty[#c.seed_difficulty][2]
    lines[#lines + 1] = ("the bitcoin of %d day(s) (%s) uses quarry db seed's synthetic difficulty; "
      .. "load the real one: quarry fetch difficulty --from %s --to %s"):format(c.seed_difficulty_days,
      ranges_text(c.seed_difficulty, #c.seed_difficulty), first, last)
  end
  if c.written_outside_days > 0 then
    local first, last = c.written_outside[1][1], c.written_outside[#c.written_outside][2]
    lines[#lines + 1] = ("%d day(s) (%s) hold only rows written outside quarry (psql or a script), which no "
      .. "quarry load checked: check them, or load the days: quarry fetch curtailment --from %s --to %s, or "
      .. "quarry ingest curtailment FILE"):format(c.written_outside_days,
      ranges_text(c.written_outside, #c.written_outside), first, last)
  end
  return #lines > 0 and table.concat(lines, "\n") or nil
end

--- The line a result whose period is not all loaded carries (footer, the
-- CLI's note), or nil: which days, and how to load them.
function M.coverage_note(c)
  if not c then return nil end
  local synthetic = synthetic_note(c)
  local function with(...) -- the lines given, nil ones left out
    local lines, all = {}, table.pack(...)
    for i = 1, all.n do if all[i] then lines[#lines + 1] = all[i] end end
    return #lines > 0 and table.concat(lines, "\n") or nil
  end
  if c.loaded == c.days then return with(partial_note(c), synthetic) end
  local how = ("load it: quarry fetch curtailment --from %s --to %s, or quarry ingest curtailment FILE")
    :format(c.missing[1][1], c.last_missing)
  if c.loaded == 0 then
    return ("no data loaded for %s: nothing to report (%s)"):format(c.from == c.to and c.from
      or (c.from .. ".." .. c.to), how)
  end
  return with(("no data loaded for %d of the %d days (%s): the figures cover the other %d only; %s")
    :format(c.days - c.loaded, c.days, ranges_text(c.missing, c.ranges), c.loaded, how), partial_note(c), synthetic)
end

-- Normalise what run returned into a result table.
local function result_of(plugin, out, p)
  if type(out) ~= "table" then error(("report %s: run must return rows or a result table"):format(plugin.name), 0) end
  -- checked (and copied if need be) unless the plugin never set a metatable:
  -- the check walked every value of every row, a fifth of a computed report
  local load = loads[plugin]
  if not load or load.metatables then out = plain(out) end
  local rows = out.rows or out
  local fields = out.fields or rows.fields
  if type(fields) ~= "table" then
    error(("report %s: the result has no fields"):format(plugin.name), 0)
  end
  local list = {}
  for i, row in ipairs(rows) do list[i] = row end
  local f = {}
  for i, fd in ipairs(fields) do
    f[i] = { name = fd.name, type = fd.type, label = fd.label, column = fd.column, unit = fd.unit }
  end
  local totals = out.totals
  if totals ~= nil and type(totals) ~= "table" then
    error(("report %s: totals must be a row (a table keyed by field name)"):format(plugin.name), 0)
  end
  return { name = plugin.name, title = out.title or plugin.description, params = p, fields = f, rows = list,
           totals = totals, chart = out.chart or plugin.chart, decimals = plugin.decimals, footer = out.footer }
end

-- The most functions one ctx.parallel call runs (each takes a connection).
M.MAX_PARALLEL = 8

-- A plugin's transaction: read-only, REPEATABLE READ, and, in BEGIN's own
-- round trip, its time limit and its role, set by the host before the
-- plugin's first statement (integers we made, an identifier quoted). Read
-- from the rollups, its statements take generic plans: they are planned once
-- per connection, where a custom plan cost several times their execution
-- (docs/BENCHMARKS.md); raw rows (direct) keep plans made for their values.
-- snapshot: the first statement, the same data as the plugin's main
-- transaction. The options of db:transaction (bench/pgbench_daily.lua
-- reads them too).
function M.sandbox_tx(snapshot, direct)
  local sql = {}
  if snapshot then
    if not snapshot:match("^[%x%-]+$") then error("unexpected snapshot id from the server", 0) end
    sql[1] = ("SET TRANSACTION SNAPSHOT '%s'"):format(snapshot)
  end
  sql[#sql + 1] = ("SET LOCAL statement_timeout = %d"):format(M.limits.seconds * 1000)
  sql[#sql + 1] = "SET LOCAL ROLE " .. require("quarry.db").ident(M.READER_ROLE)
  if not direct then sql[#sql + 1] = "SET LOCAL plan_cache_mode = force_generic_plan" end
  if not snapshot then sql[#sql + 1] = params.MINER_MODELS_SQL end -- what most runs need, in the same round trip
  return { read_only = true, isolation = "repeatable read", setup = table.concat(sql, "; ") }
end

local SHARE = { share = true }

-- A session-level advisory lock is what a reading role can take that
-- outlives its transaction: a plugin's pg_advisory_lock on a pooled
-- connection of `quarry serve` stalled every quarry writer waiting for it
-- until that process ended. Where the locking functions are still PUBLIC's
-- (a database migrated by a role that is not a superuser: schema.lua,
-- migration 16), a plugin's connection gives back every session lock before
-- it returns to the pool; elsewhere that costs nothing (asked once per Db).
local READER_MAY_LOCK = [[
  SELECT coalesce(bool_or(has_function_privilege($1, p.oid, 'EXECUTE')), false) AS may
  FROM pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace
    AND p.proname ~ '^pg_(try_)?advisory_lock']]
local may_lock = setmetatable({}, { __mode = "k" }) -- Db -> whether its reader can
local function sandboxed(db, fn, txopts)
  local conn <close> = db:acquire()
  local r = table.pack(conn:transaction(fn, txopts))
  if may_lock[db] == nil then
    local ok, row = pcall(conn.query_one, conn, READER_MAY_LOCK, M.READER_ROLE)
    if ok then may_lock[db] = row.may end
  end
  -- not given back: the connection is broken, and the pool drops it
  if may_lock[db] ~= false then pcall(conn.exec, conn, "SELECT pg_advisory_unlock_all()") end
  return table.unpack(r, 1, r.n)
end

-- What a run that read dates changed outside quarry answers, and how a run
-- of no dates finds them.
local OUTSIDE = setmetatable({}, { __name = "outside" })
local ANY_OUTSIDE = { name = "report.outside",
  sql = "SELECT EXISTS (SELECT 1 FROM quarry_outside_writes WHERE failed IS NULL) AS outside" }

--- Run a plugin: {result=, cached=}. opts: no_cache; direct (read the raw
-- rows, not the rollups: slow, for checking); share (the caller does not
-- change the result: a cached one may be the table an earlier hit returned).
function M.run(db, cache, plugin, p, opts)
  opts = opts or {}
  -- a script's report on a database not migrated is told so, not "relation does not exist" (once per handle)
  require("quarry.migrate").require_current(db)
  local function compute()
    -- a declaration is never run: the run has a fresh load of its own
    local live = declarations[plugin] and M.load_file(plugin.file) or plugin
    local most_bytes = M.limits.memory_mb * 1048576 -- no query result bigger than the plugin may hold
    local ok, res = sandboxed(db, function(tx, models)
      tx:restrict(true, most_bytes)
      local exported
      local make_ctx
      local memo = { models = models } -- what every breakdown of this run reads alike (the miner models)
      params.check_known(live, p, tx, memo) -- before any of the plugin's code: it sees only known values
      -- ctx.parallel(f1, f2, ...): each f(ctx) on a connection of its own,
      -- at the same time, in a transaction that sees exactly the data of
      -- this one (an exported snapshot, REPEATABLE READ); their first
      -- results in order. With no connection to spare, one after another here.
      -- The same functions one after another, in the report's transaction.
      local function sequence(...)
        local fns, out = table.pack(...), {}
        for i = 1, fns.n do
          if type(fns[i]) ~= "function" then error(("ctx.sequence: argument %d is not a function"):format(i), 2) end
          out[i] = (fns[i](make_ctx(tx)))
        end
        return table.unpack(out, 1, fns.n)
      end
      local function parallel(...)
        local fns = table.pack(...)
        if fns.n > M.MAX_PARALLEL then error(("ctx.parallel takes at most %d functions"):format(M.MAX_PARALLEL), 2) end
        for i = 1, fns.n do
          if type(fns[i]) ~= "function" then error(("ctx.parallel: argument %d is not a function"):format(i), 2) end
        end
        local st = db:stats()
        if st.max - st.in_use < 1 then return sequence(...) end
        exported = exported or tx:query_one("SELECT pg_export_snapshot() AS s").s
        local state = running_in[coroutine.running()]
        local wrapped = {}
        for i = 1, fns.n do
          local f = fns[i]
          wrapped[i] = function()
            running_in[coroutine.running()] = state -- the plugin's limits, in this coroutine too
            local cok, r = sandboxed(db, function(ctx_tx)
              ctx_tx:restrict(true, most_bytes)
              local v = f(make_ctx(ctx_tx))
              ctx_tx:restrict(false)
              return v
            end, M.sandbox_tx(exported, opts.direct))
            if not cok then error(r, 0) end
            return r
          end
        end
        return require("quarry.parallel").run(table.unpack(wrapped, 1, fns.n))
      end
      -- one ctx per connection of the run: ctx.sequence hands each function
      -- the report's own, not a new one each
      local ctxs = {}
      make_ctx = function(t)
        if ctxs[t] then return ctxs[t] end
        ctxs[t] = {
          query = function(sql, ...) return t:query(sql, ...) end,
          query_one = function(sql, ...) return t:query_one(sql, ...) end,
          summaries = make_summaries(t),
          range = function(pp) return params.range(pp, live.params) end,
          -- which days of from..to hold loaded data: {days=, loaded=, missing={{first, last, days}...}, partial=...}
          coverage = function(from, to)
            if not rules.check_date(from) or not rules.check_date(to) or from > to then
              error(("ctx.coverage: expected two dates, the first not after the second (%s, %s)")
                :format(tostring(from), tostring(to)), 2)
            end
            return coverage(t, from, to)
          end,
          -- the block reward of a date column, from lua/quarry/defs/mining.lua
          reward_sql = require("quarry.mining").reward_sql,
          breakdown = function(by, bp, miner) return breakdown(t, by, bp, miner, opts.direct, live.params, memo) end,
          parallel = parallel,
          sequence = sequence,
          -- independent pieces, the faster way: at the same time when they read
          -- the raw rows (--direct); from the rollups each breakdown takes less
          -- than setting up another transaction (docs/BENCHMARKS.md), so in turn
          together = function(...) if opts.direct then return parallel(...) end return sequence(...) end,
          direct = opts.direct == true,
          -- limits of the market data (defs/mining.lua, defs/market.lua), for integrity checks
          market = { difficulty_max_age_days = require("quarry.defs.mining").difficulty_max_age_days,
                     max_daily_move = require("quarry.defs.market").max_daily_move },
          -- settlement periods as runs for a message: {20, 35, ..., 48} -> "SP20,SP35-48"
          period_runs = function(list) return require("quarry.fetch").period_runs(list) end,
          -- refuse the params with a one-line message: exit 2, HTTP 400
          refuse = function(msg) usage(tostring(msg)) end,
        }
        return ctxs[t]
      end
      local ctx = make_ctx(tx)
      local out = limited("report " .. live.name, function() return result_of(live, live.run(ctx, p), p) end)
      tx:restrict(false)
      local from, to = params.range(p, live.params)
      if not from and tx:query_one(ANY_OUTSIDE).outside then return OUTSIDE end
      if from then -- on the report's snapshot: what its figures were computed from
        out.coverage = coverage(tx, from, to)
        if out.coverage.outside_days then return OUTSIDE end
        local note = M.coverage_note(out.coverage)
        if out.coverage.loaded == 0 then out.footer = note -- the plugin's words are of figures there are not
        elseif note then out.footer = (out.footer and out.footer .. "\n" or "") .. note end
      end
      return out
    end, M.sandbox_tx(nil, opts.direct))
    if not ok then error(res, 0) end
    return res
  end
  -- A run that read dates changed outside quarry (lua/quarry/outside.lua)
  -- read stale bitcoin or rollups: they are mended, and it runs again.
  -- A date that cannot be mended fails the runs of it, saying why.
  local function compute_mended()
    local from, to = params.range(p, plugin.params)
    for _ = 1, 3 do
      local res = compute()
      if res ~= OUTSIDE then return res end
      local _, failed = require("quarry.outside").repair(db, cache)
      for _, f in ipairs(failed) do
        if from and f.date >= from and f.date <= to then
          error(core.error({ code = "usage", message = ("%s was changed outside quarry and cannot be brought "
            .. "up to date, so no figure of it is served: %s"):format(f.date, f.reason) }), 0)
        end
      end
    end
    error(core.error({ code = "query", message = "dates of this report keep being changed outside quarry while "
      .. "it runs; run it again once those writes are done" }), 0)
  end
  if not plugin.cache or opts.no_cache or opts.direct or not cache then
    return { result = compute_mended(), cached = false }
  end
  local computed = false
  local res = cache:get_or_compute(M.cache_key(plugin, p), cache.TTL[plugin.cache.ttl], function()
    computed = true
    return compute_mended()
  end, opts.share and SHARE or nil)
  return { result = res, cached = not computed }
end

return M
