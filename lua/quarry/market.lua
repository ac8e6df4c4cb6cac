--- quarry.market: bitcoin's difficulty and price by date, from files or
-- public sources (lua/quarry/defs/market.lua names them).
--
--   market.ingest_price(db, cache, path [, usd_gbp_path])  date,gbp_per_btc | date,usd_per_btc (+ rates)
--   market.fetch_price(db, cache, from, to)
--   market.fetch_difficulty(db, cache, from, to)
--
-- Prices are per UTC day and go through the dated-write path, so every
-- cached figure of a day whose price changed is invalidated. Difficulty
-- adjustments are loaded as `quarry ingest difficulty` loads points: the
-- dates whose difficulty in force changes get their bitcoin recalculated.
-- The HTTP is src/fetch.c's, with the same retries and limits as Elexon's.
local cjson = require "cjson"
local core = require "quarry.core"
local defs = require "quarry.defs.market"
local fetch = require "quarry.fetch"
local rules = require "quarry.rules"
local write = require "quarry.write"

local M = { defs = defs }

local bad_input = core.usage

local read_file = fetch.read_file

-- "a, b, c and 4 more": the first dates of a list, for a message.
local function some(dates)
  return table.concat(dates, ", ", 1, math.min(5, #dates)) .. (#dates > 5 and (" and %d more"):format(#dates - 5) or "")
end

local function split(line)
  local out = {}
  for v in (line .. ","):gmatch("([^,]*),") do out[#out + 1] = v end
  return out
end

-- {date -> number text} from a CSV of `date,<column>`; raises naming lines.
local function read_series(path, column, bounds)
  local text = read_file(path):gsub("^\239\187\191", "")
  local out, order, n = {}, {}, 0
  for line in text:gmatch("[^\n]+") do
    line = line:gsub("\r$", "")
    n = n + 1
    local f = split(line)
    if n == 1 then
      if #f ~= 2 or f[1]:lower() ~= "date" or f[2]:lower() ~= column then
        bad_input(("%s:1: expected the header date,%s"):format(path, column))
      end
    elseif line:match("%S") then
      local d, v = f[1], f[2]
      if #f ~= 2 then bad_input(("%s:%d: expected 2 fields, got %d"):format(path, n, #f)) end
      if not rules.check_date(d) then bad_input(("%s:%d: date '%s' %s"):format(path, n, d, rules.DATE_HELP)) end
      local x = rules.decimal(v:match("^%s*(.-)%s*$"))
      if not x or x ~= x or x <= 0 then
        bad_input(("%s:%d: %s '%s' is not a positive number"):format(path, n, column, v))
      end
      if x < bounds.min or x > bounds.max then
        bad_input(("%s:%d: %s '%s' is implausible: outside %s..%s"):format(path, n, column, v, bounds.min, bounds.max))
      end
      if out[d] then bad_input(("%s:%d: date %s appears twice"):format(path, n, d)) end
      out[d] = v
      order[#order + 1] = d
    end
  end
  if n == 0 then bad_input(path .. ": empty file (expected a header line)") end
  table.sort(order)
  return out, order
end

-- Replace the prices of the dates given: {date=, gbp=, usd=, rate=}.
local function store_prices(db, cache, points, source)
  local dates, gbp, usd, rate = {}, {}, {}, {}
  for i, p in ipairs(points) do
    dates[i], gbp[i], usd[i], rate[i] = p.date, p.gbp, p.usd or "NULL", p.rate or "NULL"
  end
  local function arr(t) return "{" .. table.concat(t, ",") .. "}" end
  local _, info = write.dated(db, cache, { tables = { "bitcoin_prices" }, bitcoin = false }, function(tx, w)
    w:dates(dates)
    tx:exec([[INSERT INTO bitcoin_prices (price_date, gbp_per_btc, usd_per_btc, gbp_per_usd, source)
      SELECT d, g, u, r, $5 FROM unnest($1::date[], $2::numeric[], $3::numeric[], $4::numeric[]) AS x(d, g, u, r)
      ON CONFLICT (price_date) DO UPDATE SET gbp_per_btc = EXCLUDED.gbp_per_btc, usd_per_btc = EXCLUDED.usd_per_btc,
        gbp_per_usd = EXCLUDED.gbp_per_usd, source = EXCLUDED.source, loaded_at = now()]],
      arr(dates), arr(gbp), arr(usd), arr(rate), source)
  end)
  return { points = #points, dates = info.dates }
end

--- Load daily prices: a CSV of date,gbp_per_btc, or of date,usd_per_btc
-- with usd_gbp_path a CSV of date,gbp_per_usd for every one of its dates
-- (a date with no rate is refused, naming it: never a fixed rate).
function M.ingest_price(db, cache, path, usd_gbp_path)
  local first = read_file(path):match("^\239?\187?\191?([^\r\n]*)") or ""
  local column = first:lower():match("^date,(.*)$")
  local points = {}
  if column == "gbp_per_btc" then
    if usd_gbp_path then bad_input(path .. " is in GBP already: --usd-gbp is for a file of usd_per_btc") end
    local s, order = read_series(path, "gbp_per_btc", defs.bounds.gbp_per_btc)
    for _, d in ipairs(order) do points[#points + 1] = { date = d, gbp = s[d] } end
  elseif column == "usd_per_btc" then
    if not usd_gbp_path then
      bad_input(path .. ": prices in USD need --usd-gbp RATES.csv (date,gbp_per_usd), one rate per date")
    end
    local s, order = read_series(path, "usd_per_btc", defs.bounds.usd_per_btc)
    local rates = read_series(usd_gbp_path, "gbp_per_usd", defs.bounds.gbp_per_usd)
    local missing = {}
    for _, d in ipairs(order) do
      if not rates[d] then missing[#missing + 1] = d end
    end
    if #missing > 0 then
      bad_input(("%s: no USD to GBP rate for %s"):format(usd_gbp_path, some(missing)))
    end
    for _, d in ipairs(order) do
      local g = db:query_one("SELECT round($1::numeric * $2::numeric, 2)::text AS g", s[d], rates[d]).g
      points[#points + 1] = { date = d, gbp = g, usd = s[d], rate = rates[d] }
    end
  else
    bad_input(("%s:1: expected the header date,gbp_per_btc or date,usd_per_btc"):format(path))
  end
  return store_prices(db, cache, points, "file")
end

-- ---- public sources ----

-- The JSON of one GET, or raises (connection error, or bad input naming url).
local function get_json(url, http)
  local body = fetch.get({ url }, http)[1].body
  local ok, doc = pcall(cjson.decode, body)
  if not ok then bad_input(("%s: not JSON (%s)"):format(url, tostring(doc):gsub("^.-: ", ""))) end
  return doc
end

local function utc_date(secs) return os.date("!%Y-%m-%d", math.floor(secs)) end

local epoch = require("quarry.dates").epoch -- a date's UTC midnight, in seconds

--- Daily GBP prices for from..to from the price source (the JSON shape of
-- CoinGecko's market_chart/range: {"prices": [[ms, price], ...]}): the
-- last sample of each UTC day. A day in the range with no sample is
-- refused, naming it.
function M.fetch_price(db, cache, from, to)
  local cfg, http = fetch.settings()
  local url = cfg.price_api_url:gsub("/+$", "") .. defs.price_path:format(epoch(from), epoch(to) + 86400)
  local doc = get_json(url, http)
  if type(doc) ~= "table" or type(doc.prices) ~= "table" then
    bad_input(url .. ': not a price series (expected {"prices": [[ms, price], ...]})')
  end
  local last = {}
  for i, s in ipairs(doc.prices) do
    if type(s) ~= "table" or type(s[1]) ~= "number" or type(s[2]) ~= "number" or s[2] <= 0 or s[2] ~= s[2] then
      bad_input(("%s: sample %d is not [ms, price]"):format(url, i))
    end
    local d = utc_date(s[1] / 1000)
    if d >= from and d <= to and (not last[d] or s[1] >= last[d][1]) then last[d] = s end
  end
  local points, missing = {}, {}
  for _, d in ipairs(require("quarry.fetch").days_between(from, to)) do
    if last[d] then
      local v = ("%.15g"):format(last[d][2])
      local b = defs.bounds.gbp_per_btc
      if last[d][2] < b.min or last[d][2] > b.max then
        bad_input(("%s: the price of %s, %s GBP, is implausible: outside %s..%s"):format(url, d, v, b.min, b.max))
      end
      points[#points + 1] = { date = d, gbp = ("%.2f"):format(last[d][2]) }
    else
      missing[#missing + 1] = d
    end
  end
  if #missing > 0 then
    bad_input(("%s: no price for %s; nothing stored"):format(url, some(missing)))
  end
  return store_prices(db, cache, points, "fetch")
end

--- Difficulty adjustments in from..to from the difficulty source (the JSON
-- shape of mempool.space's /api/v1/mining/difficulty-adjustments: an array
-- of [unix time, block height, difficulty, change]), each in force from
-- its UTC date, loaded as `quarry ingest difficulty` loads points.
function M.fetch_difficulty(db, cache, from, to)
  local cfg, http = fetch.settings()
  local url = cfg.difficulty_api_url:gsub("/+$", "") .. defs.difficulty_path
  local doc = get_json(url, http)
  if type(doc) ~= "table" or (next(doc) ~= nil and #doc == 0) then
    bad_input(url .. ": not a list of difficulty adjustments")
  end
  local by_date = {}
  for i, a in ipairs(doc) do
    if type(a) ~= "table" or type(a[1]) ~= "number" or type(a[3]) ~= "number" or a[3] <= 0 then
      bad_input(("%s: adjustment %d is not [time, height, difficulty, change]"):format(url, i))
    end
    local d = utc_date(a[1])
    -- two adjustments on one date: the later one is in force at its end
    if d >= from and d <= to and (not by_date[d] or a[1] > by_date[d][1]) then by_date[d] = a end
  end
  local lines = { "date,difficulty" }
  local dates = {}
  for d in pairs(by_date) do dates[#dates + 1] = d end
  table.sort(dates)
  for _, d in ipairs(dates) do lines[#lines + 1] = d .. "," .. ("%.0f"):format(by_date[d][3]) end
  if #dates == 0 then return { points = 0, dates = {} } end
  local f = assert(io.tmpfile())
  local files = require "quarry.files"
  files.write(f, "a temporary file", table.concat(lines, "\n"), "\n")
  files.flush(f, "a temporary file") -- a full disk is an error, not fewer difficulty points
  f:seek("set")
  return require("quarry.ingest").difficulty(db, url, cache, f, { source = "fetch" })
end

return M
