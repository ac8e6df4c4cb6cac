-- lua/quarry/fetch.lua, elexon.lua and src/fetch.c: `quarry fetch` against
-- a local HTTP server (tests/tools/api_server.py) serving settlement
-- stacks in Elexon's shape, with faults injected; the database is checked
-- row by row against what was served.
local h = require "spec.helper"
local cjson = require "cjson"
local core = require "quarry.core"

local db = require("quarry").db
local ENV = { QUARRY_CACHE_PREFIX = "fetch-spec:", QUARRY_FETCH_BACKOFF = "20", QUARRY_FETCH_TIMEOUT = "2" }

-- Units of the reference list: four wind (one of unknown capacity), one not.
local UNITS = {
  { elexonBmUnit = "T_SGRWO-1", nationalGridBmUnit = "SGRWO-1", bmUnitName = "Seagreen 1",
    generationCapacity = "179.000", fuelType = "WIND", leadPartyName = "Seagreen Wind Energy Limited" },
  { elexonBmUnit = "T_DOREW-1", nationalGridBmUnit = "DOREW-1", bmUnitName = "Dorenell 1",
    generationCapacity = "88.500", fuelType = "WIND", leadPartyName = "Dorenell Windfarm Limited" },
  { elexonBmUnit = "T_HALSW-1", nationalGridBmUnit = "HALSW-1", bmUnitName = "Halsary",
    generationCapacity = "30.000", fuelType = "WIND", leadPartyName = "SSE Generation Ltd" },
  { elexonBmUnit = "T_CREAW-1", nationalGridBmUnit = "CREAW-1", bmUnitName = "Creag Riabhach",
    generationCapacity = "", fuelType = "WIND", leadPartyName = "Creag Riabhach Wind Farm Ltd" },
  { elexonBmUnit = "T_PEHE-1", nationalGridBmUnit = "PEHE-1", bmUnitName = "Peterhead",
    generationCapacity = "1180.000", fuelType = "CCGT", leadPartyName = "SSE Generation Ltd" },
}
local WIND = { "T_SGRWO-1", "T_DOREW-1", "T_HALSW-1", "T_CREAW-1" }
local PARTY = {}
for _, u in ipairs(UNITS) do PARTY[u.elexonBmUnit] = u.leadPartyName end

local BASE = "/bmrs/api/v1"
local function stack_path(side, date, period)
  return ("%s/balancing/settlement/stack/all/%s/%s/%d"):format(BASE, side, date, period)
end

-- The items of one stack answer, and the rows quarry must keep of them.
-- Volumes and prices are exact binary fractions so the expected payment is
-- exact here too.
local function stack(date, period, side)
  local day = tonumber(date:sub(-2))
  local items, keep = {}, {}
  local function item(t)
    local it = { settlementDate = date, settlementPeriod = period, startTime = date .. "T00:00:00Z",
      createdDateTime = date .. "T01:00:00Z", sequenceNumber = #items + 1, storProviderFlag = false,
      repricedIndicator = false, reserveScarcityPrice = cjson.null, dmatAdjustedVolume = t.volume,
      arbitrageAdjustedVolume = t.volume, nivAdjustedVolume = t.volume, parAdjustedVolume = t.volume,
      transmissionLossMultiplier = 0.98, tlmAdjustedVolume = t.volume, tlmAdjustedCost = 0 }
    for k, v in pairs(t) do it[k] = v end
    items[#items + 1] = it
    return it
  end
  if side == "bid" then
    for k, id in ipairs(WIND) do
      if (period + k + day) % 3 ~= 0 then
        local v = -(k * 1.5 + period * 0.125)
        local price = -(40 + k + period / 4)
        local it = item({ id = id, volume = v, originalPrice = price, finalPrice = price - 1, soFlag = true,
          cadlFlag = false, acceptanceId = day * 100000 + period * 10 + k, bidOfferPairId = -1 })
        keep[#keep + 1] = { period = period, farm_id = id, volume = v, price = price, final = price - 1,
          acceptance = it.acceptanceId, pair = -1, side = "bid" }
      end
    end
    -- not wind curtailment, each for one reason
    item({ id = "T_SGRWO-1", volume = 5, originalPrice = -20, finalPrice = -20, soFlag = true,
      acceptanceId = 1, bidOfferPairId = 1 })                                        -- positive volume
    item({ id = "T_DOREW-1", volume = -2, originalPrice = -20, finalPrice = -20, soFlag = false,
      cadlFlag = false, acceptanceId = 2, bidOfferPairId = 1 })                      -- not the SO's
    item({ id = "T_HALSW-1", volume = -2, originalPrice = -20, finalPrice = -20, soFlag = false,
      cadlFlag = true, acceptanceId = 3, bidOfferPairId = 1 })                       -- CADL only
    item({ id = "T_PEHE-1", volume = -50, originalPrice = 60, finalPrice = 60, soFlag = true,
      acceptanceId = 4, bidOfferPairId = 1 })                                        -- not wind
    item({ id = "T_NOSUCH-1", volume = -3, originalPrice = -10, finalPrice = -10, soFlag = true,
      acceptanceId = 5, bidOfferPairId = 1 })                                        -- not in the list
    item({ id = "T_CREAW-1", volume = -4, originalPrice = cjson.null, finalPrice = cjson.null, soFlag = true,
      acceptanceId = 6, bidOfferPairId = 1 })                                        -- no price
  else
    item({ id = "T_SGRWO-1", volume = 12, originalPrice = 95, finalPrice = 95, soFlag = true,
      acceptanceId = 7, bidOfferPairId = 2 })
    if period == 1 then -- a curtailment on the offer side counts too
      item({ id = "T_CREAW-1", volume = -0.5, originalPrice = -12.5, finalPrice = -12.5, soFlag = true,
        acceptanceId = 8, bidOfferPairId = -2 })
      keep[#keep + 1] = { period = 1, farm_id = "T_CREAW-1", volume = -0.5, price = -12.5, final = -12.5,
        acceptance = 8, pair = -2, side = "offer" }
    end
  end
  return items, keep
end

local function periods_in(date) return require("quarry.elexon").periods_in_day(date) end

-- Write the day's answers under root; the rows quarry must store.
local function publish(root, date, opts)
  opts = opts or {}
  local expected = {}
  for period = 1, periods_in(date) do
    for _, side in ipairs({ "bid", "offer" }) do
      if not (opts.skip and opts.skip[period]) then
        local items, keep = stack(date, period, side)
        if opts.duplicate and period == 2 and side == "bid" then items[#items + 1] = items[1] end
        local file = root .. stack_path(side, date, period) .. ".json"
        os.execute("mkdir -p " .. h.shell_quote(file:match("^(.*)/")))
        h.write(file, cjson.encode({ data = items }))
        for _, k in ipairs(keep) do k.date = date expected[#expected + 1] = k end
      end
    end
  end
  return expected
end

local function start_server(root, faults) return h.api_server(root, faults, BASE) end

local function env_for(server, extra)
  local e = { ELEXON_API_URL = server.url }
  for k, v in pairs(ENV) do e[k] = v end
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

-- The stored rows of dates, in a stable order, as comparable strings.
local function stored_rows(dates)
  local out = {}
  for _, r in ipairs(db:query([[SELECT settlement_date::text AS d, settlement_period AS p, farm_id, lead_party_name,
      volume::text AS v, payment::text AS pay, original_price::text AS op, final_price::text AS fp, so_flag,
      acceptance_id, bid_offer, bid_offer_pair_id FROM curtailment_records WHERE settlement_date = ANY($1::date[])
      ORDER BY 1, 2, 3, bid_offer, acceptance_id]], "{" .. table.concat(dates, ",") .. "}")) do
    out[#out + 1] = r
  end
  return out
end

local function same_number(a, b) return db:query_one("SELECT $1::numeric = $2::numeric AS s", a, b).s end

-- Every expected row stored once with its figures, and nothing else.
local function assert_stored(expected, dates)
  local rows = stored_rows(dates)
  table.sort(expected, function(a, b)
    if a.date ~= b.date then return a.date < b.date end
    if a.period ~= b.period then return a.period < b.period end
    if a.farm_id ~= b.farm_id then return a.farm_id < b.farm_id end
    if a.side ~= b.side then return a.side < b.side end
    return a.acceptance < b.acceptance
  end)
  assert.are.equal(#expected, #rows)
  for i, e in ipairs(expected) do
    local r = rows[i]
    assert.are.same({ e.date, e.period, e.farm_id, PARTY[e.farm_id], e.acceptance, e.side, e.pair, true },
      { r.d, r.p, r.farm_id, r.lead_party_name, r.acceptance_id, r.bid_offer, r.bid_offer_pair_id, r.so_flag })
    assert.is_true(same_number(r.v, ("%.15g"):format(e.volume)), r.v)
    assert.is_true(same_number(r.pay, ("%.15g"):format(-e.volume * e.price)), r.pay) -- |volume| x price
    assert.is_true(same_number(r.op, ("%.15g"):format(e.price)))
    assert.is_true(same_number(r.fp, ("%.15g"):format(e.final)))
  end
end

local root
setup(function()
  require("quarry.migrate").up(db)
  db:exec("INSERT INTO bitcoin_difficulty VALUES ('2033-03-01', 150e12) ON CONFLICT (effective_date) "
    .. "DO UPDATE SET difficulty = 150e12")
  db:exec("DELETE FROM curtailment_records WHERE settlement_date BETWEEN '2033-03-01' AND '2033-03-31'")
  db:exec("DELETE FROM elexon_fetch_days WHERE settlement_date BETWEEN '2033-03-01' AND '2033-03-31'")
  db:exec("DELETE FROM curtailment_loaded_days WHERE settlement_date BETWEEN '2033-03-01' AND '2033-03-31'")
  root = h.tmpname(".stacks")
  os.execute("mkdir -p " .. root)
end)

teardown(function()
  os.execute("rm -rf " .. h.shell_quote(root))
  -- the reference list is the database's, not this spec's: leave it as found
  db:exec("DELETE FROM bmus WHERE farm_id = ANY($1::text[])", "{" .. table.concat(WIND, ",") .. "}")
end)

describe("quarry ingest bmus and fetch bmus", function()
  it("keeps the wind units, capacity unknown when empty, and the history of lead parties", function()
    local file = h.write(h.tmpname(".json"), cjson.encode(UNITS))
    local out, err, code = h.quarry("ingest bmus " .. file, ENV)
    assert.are.equal(0, code, err)
    assert.matches("stored 4 wind BM units", out)
    local r = db:query_one("SELECT capacity_mw, lead_party_name FROM bmus WHERE farm_id = 'T_CREAW-1'")
    assert.is_nil(r.capacity_mw)
    assert.is_nil(db:query_one("SELECT 1 AS x FROM bmus WHERE farm_id = 'T_PEHE-1'"))
    -- Elexon's list moves a unit to another lead party: the old one is kept as history
    local moved = cjson.decode(cjson.encode(UNITS))
    moved[3].leadPartyName = "Halsary Wind Farm Ltd"
    local root_bmus = root .. BASE .. "/reference/bmunits/all.json"
    os.execute("mkdir -p " .. h.shell_quote(root_bmus:match("^(.*)/")))
    h.write(root_bmus, cjson.encode(moved))
    local server = start_server(root)
    finally(server.stop)
    out, err, code = h.quarry("fetch bmus", env_for(server))
    assert.are.equal(0, code, err)
    assert.matches("1 with a new lead party", out)
    local hist = db:query([[SELECT lead_party_name, seen_to IS NULL AS current FROM bmu_lead_parties
      WHERE farm_id = 'T_HALSW-1' ORDER BY seen_from DESC LIMIT 2]])
    hist = { hist[2], hist[1] }
    assert.are.same({ { lead_party_name = "SSE Generation Ltd", current = false },
                      { lead_party_name = "Halsary Wind Farm Ltd", current = true } }, { hist[1], hist[2] })
    os.remove(file)
  end)

  it("refuses a list that is not one, naming the file", function()
    local file = h.write(h.tmpname(".json"), '{"units": 3}')
    local _, err, code = h.quarry("ingest bmus " .. file, ENV)
    assert.are.equal(2, code)
    assert.matches(file:gsub("%p", "%%%0") .. ": expected a list of BM units", err)
    os.remove(file)
  end)
end)

describe("quarry ingest bmus, a name of more than one line", function()
  it("is refused with the unit named, and nothing of the list is stored", function()
    for _, bad in ipairs({ "Seagreen Wind\nquarry: loaded", "Evil\27[2J", "C1\194\155K" }) do
      local units = cjson.decode(cjson.encode(UNITS))
      units[2].leadPartyName = bad
      units[1].elexonBmUnit = "T_CTRLSPEC-1"
      local file = h.write(h.tmpname(".json"), cjson.encode(units))
      local _, err, code = h.quarry("ingest bmus " .. file, ENV)
      os.remove(file)
      assert.are.equal(2, code, err)
      assert.matches("unit 2 (T_DOREW-1): leadPartyName has a control character", err, 1, true)
      assert.is_nil(err:find("[\27\n].", 1))
      assert.is_nil(db:query_one("SELECT 1 AS x FROM bmus WHERE farm_id = 'T_CTRLSPEC-1'"))
    end
  end)
end)

-- The reference list as UNITS has it, for the specs below.
local function reference_units()
  local file = h.write(h.tmpname(".json"), cjson.encode(UNITS))
  local _, err, code = h.quarry("ingest bmus " .. file, ENV)
  os.remove(file)
  assert(code == 0, err)
end

describe("quarry fetch curtailment", function()
  setup(reference_units)
  it("stores every period of both stacks through 429s, 5xx, resets, short bodies and slow answers", function()
    local e1 = publish(root, "2033-03-26", { duplicate = true })
    local e2 = publish(root, "2033-03-27") -- the spring clock change: 46 periods
    local server = start_server(root, {
      [stack_path("bid", "2033-03-26", 3)] = { "429:1" },
      [stack_path("bid", "2033-03-26", 4)] = { "500", "503" },
      [stack_path("offer", "2033-03-26", 5)] = { "reset" },
      [stack_path("bid", "2033-03-26", 6)] = { "truncate" },
      [stack_path("bid", "2033-03-27", 7)] = { "slow:0.5" },
    })
    finally(server.stop)
    local out, err, code = h.quarry("fetch curtailment --from 2033-03-26 --to 2033-03-27", env_for(server))
    assert.are.equal(0, code, err)
    assert.matches("fetched 2 days: 2 days stored", out)
    assert.matches("0 missing periods, 0 refused; 188 requests", out) -- 2 x (48 + 46)
    local all = {}
    for _, x in ipairs(e1) do all[#all + 1] = x end
    for _, x in ipairs(e2) do all[#all + 1] = x end
    assert_stored(all, { "2033-03-26", "2033-03-27" })
    -- the 429's Retry-After was waited out before that URL was asked again
    local times = {}
    for _, l in ipairs(server.log()) do
      if l.path == stack_path("bid", "2033-03-26", 3) then times[#times + 1] = l.t end
    end
    assert.are.equal(2, #times)
    assert.is_true(times[2] - times[1] >= 0.95, "asked again after " .. (times[2] - times[1]) .. " s")
    -- bitcoin for every row and miner, as for any write
    local b = db:query_one([[SELECT count(*)::int AS n FROM historical_bitcoin_calculations
      WHERE settlement_date BETWEEN '2033-03-26' AND '2033-03-27']]).n
    local models = db:query_one("SELECT count(*)::int AS n FROM miner_models").n
    local cells = db:query_one([[SELECT count(*)::int AS n FROM (SELECT DISTINCT settlement_date, settlement_period,
      farm_id FROM curtailment_records WHERE settlement_date BETWEEN '2033-03-26' AND '2033-03-27') x]]).n
    assert.are.equal(cells * models, b)
    -- a second run skips the days stored; --refresh asks again and ends the same
    local before = #server.log()
    out = h.quarry("fetch curtailment --from 2033-03-26 --to 2033-03-27", env_for(server))
    assert.matches("0 days stored %(0 rows%), 2 already stored", out)
    assert.are.equal(before, #server.log())
    out, err, code = h.quarry("fetch curtailment --from 2033-03-26 --to 2033-03-27 --refresh", env_for(server))
    assert.are.equal(0, code, err)
    assert.matches("2 days stored", out)
    assert_stored(all, { "2033-03-26", "2033-03-27" })
  end)

  it("records periods Elexon has nothing for as missing, shows them, and a later fetch fills them", function()
    local skip = { [20] = false }
    for p = 35, 48 do skip[p] = true end
    local expected = publish(root, "2033-03-22", { skip = skip })
    local server = start_server(root, { [stack_path("bid", "2033-03-22", 20)] = { "empty!" },
                                        [stack_path("offer", "2033-03-22", 20)] = { "empty!" } })
    local out, err, code = h.quarry("fetch curtailment --from 2033-03-22", env_for(server))
    server.stop()
    assert.are.equal(0, code, err)
    assert.matches("2033%-03%-22: Elexon has nothing yet for SP20,SP35%-48", err)
    assert.matches("15 missing periods", out)
    local kept = {}
    for _, e in ipairs(expected) do if e.period ~= 20 then kept[#kept + 1] = e end end
    assert_stored(kept, { "2033-03-22" })
    local integrity = h.quarry("report integrity --format csv --no-cache", ENV)
    assert.matches("2033%-03%-22[^\n]*SP20,SP35%-48", integrity)
    -- the day's own reports say their figures are partial, not just smaller
    local daily = cjson.decode((h.quarry("report daily --date 2033-03-22 --format json --no-cache", ENV)))
    local lacking = { 20 }
    for p = 35, 48 do lacking[#lacking + 1] = p end
    assert.are.same({ { date = "2033-03-22", missing_periods = lacking } }, daily.coverage.partial)
    assert.matches("2033-03-22 lacks SP20,SP35-48 (Elexon had nothing yet for those settlement periods): those days' "
      .. "figures are partial", daily.footer, 1, true)
    -- published since: the next fetch (no --refresh) takes the day again and fills it
    expected = publish(root, "2033-03-22")
    server = start_server(root)
    finally(server.stop)
    out, err, code = h.quarry("fetch curtailment --from 2033-03-22", env_for(server))
    assert.are.equal(0, code, err)
    assert.matches("1 day stored", out)
    assert_stored(expected, { "2033-03-22" })
    assert.are.equal("{}", db:query_one("SELECT missing::text AS m FROM elexon_fetch_days "
      .. "WHERE settlement_date = '2033-03-22'").m)
    daily = cjson.decode((h.quarry("report daily --date 2033-03-22 --format json --no-cache", ENV)))
    assert.are.same({}, daily.coverage.partial)
    assert.not_matches("partial", daily.footer)
  end)

  it("refuses a day with a malformed answer (URL and reason) and changes nothing of it", function()
    local expected = publish(root, "2033-03-10")
    publish(root, "2033-03-11")
    local server = start_server(root)
    assert.are.equal(0, select(3, h.quarry("fetch curtailment --from 2033-03-11", env_for(server))))
    server.stop()
    local before = stored_rows({ "2033-03-11" })
    server = start_server(root, { [stack_path("bid", "2033-03-11", 9)] = { "malformed!" } })
    finally(server.stop)
    local out, err, code = h.quarry("fetch curtailment --from 2033-03-10 --to 2033-03-11 --refresh", env_for(server))
    assert.are.equal(1, code, out)
    assert.matches("2033%-03%-11 refused, nothing of it changed: http://127%.0%.0%.1:%d+/bmrs/api/v1/balancing/"
      .. "settlement/stack/all/bid/2033%-03%-11/9: not JSON", err)
    assert_stored(expected, { "2033-03-10" })
    assert.are.same(before, stored_rows({ "2033-03-11" }))
  end)

  it("refuses a day whose item gives up more than the unit's capacity can make", function()
    publish(root, "2033-03-12")
    local path = root .. stack_path("bid", "2033-03-12", 5) .. ".json"
    local doc = cjson.decode(h.read(path))
    doc.data[1].id, doc.data[1].volume = "T_HALSW-1", -15.5 -- 30 MW x 0.5 h = 15 MWh at most
    h.write(path, cjson.encode(doc))
    local server = start_server(root)
    finally(server.stop)
    local out, err, code = h.quarry("fetch curtailment --from 2033-03-12", env_for(server))
    assert.are.equal(1, code, out)
    assert.matches("bid/2033%-03%-12/5: T_HALSW%-1 gave up 15%.5 MWh in one period, more than its 30%.000 MW", err)
    assert.are.same({}, stored_rows({ "2033-03-12" }))
  end)

  it("names the URL and exits 3 when a request fails after its retries; --dry-run changes nothing", function()
    publish(root, "2033-03-13")
    local server = start_server(root, { [stack_path("offer", "2033-03-13", 30)] = { "503!" } })
    local out, err, code = h.quarry("fetch curtailment --from 2033-03-13", env_for(server))
    server.stop()
    assert.are.equal(3, code, out)
    assert.matches("GET http://127%.0%.0%.1:%d+/bmrs/api/v1/balancing/settlement/stack/all/offer/2033%-03%-13/30: "
      .. "HTTP 503 after 5 attempts", err)
    assert.are.same({}, stored_rows({ "2033-03-13" }))
    server = start_server(root)
    finally(server.stop)
    out, err, code = h.quarry("fetch curtailment --from 2033-03-13 --dry-run", env_for(server))
    assert.are.equal(0, code, err)
    assert.matches("2033%-03%-13: would store %d+ row%(s%), [%d.]+ MWh, GBP %-?[%d.]+ %(now 0 row%(s%)", out)
    assert.are.same({}, stored_rows({ "2033-03-13" }))
    assert.is_nil(db:query_one("SELECT 1 AS x FROM elexon_fetch_days WHERE settlement_date = '2033-03-13'"))
  end)

  it("--verify lists a planted difference with both figures, exits 1; --repair fixes it", function()
    publish(root, "2033-03-14")
    local server = start_server(root)
    finally(server.stop)
    local env = env_for(server)
    assert.are.equal(0, select(3, h.quarry("fetch curtailment --from 2033-03-14", env)))
    local good = stored_rows({ "2033-03-14" })
    db:exec([[UPDATE curtailment_records SET volume = volume - 1 WHERE id = (SELECT min(id) FROM curtailment_records
      WHERE settlement_date = '2033-03-14' AND settlement_period = 7)]])
    local out, _, code = h.quarry("fetch curtailment --from 2033-03-14 --verify", env)
    assert.are.equal(1, code, out)
    assert.matches("2033%-03%-14 SP7: stored [%d.]+ MWh, GBP %-?[%d.]+; Elexon [%d.]+ MWh", out)
    assert.matches("verified 1 day: 1 differ", out)
    out, _, code = h.quarry("fetch curtailment --from 2033-03-14 --verify --repair", env)
    assert.are.equal(0, code, out)
    assert.matches("1 repaired", out)
    out, _, code = h.quarry("fetch curtailment --from 2033-03-14 --verify", env)
    assert.are.equal(0, code, out)
    assert.matches("0 differ", out)
    assert.are.same(good, stored_rows({ "2033-03-14" }))
  end)

  it("killed mid-fetch (kill -9), then run again, ends as an uninterrupted fetch", function()
    local dates, expected = {}, {}
    for d = 15, 18 do
      local date = ("2033-03-%02d"):format(d)
      dates[#dates + 1] = date
      for _, e in ipairs(publish(root, date)) do expected[#expected + 1] = e end
    end
    local faults = {}
    for d = 15, 18 do faults[stack_path("bid", ("2033-03-%02d"):format(d), 1)] = { "slow:0.6" } end
    local server = start_server(root, faults)
    finally(server.stop)
    local env = env_for(server)
    local prefix = ""
    for k, v in pairs(env) do prefix = prefix .. k .. "=" .. h.shell_quote(v) .. " " end
    local pidfile = h.tmpname(".pid")
    os.execute(("sh -c '%s exec %s fetch curtailment --from 2033-03-15 --to 2033-03-18' >/dev/null 2>&1 & echo $! > %s")
      :format(prefix, h.shell_quote(h.bin), pidfile))
    local pid = h.read(pidfile):match("%d+")
    h.eventually(function()
      return db:query_one([[SELECT count(*)::int AS n FROM elexon_fetch_days
        WHERE settlement_date BETWEEN '2033-03-15' AND '2033-03-18']]).n >= 1
    end, true, 20)
    os.execute("kill -9 " .. pid)
    core.sleep(0.2)
    local n = db:query_one([[SELECT count(*)::int AS n FROM elexon_fetch_days
      WHERE settlement_date BETWEEN '2033-03-15' AND '2033-03-18']]).n
    assert.is_true(n >= 1 and n < 4, "killed after " .. n .. " day(s)")
    -- a day counts as loaded with its rows or not at all: the same days, committed together
    assert.are.equal(n, db:query_one([[SELECT count(*)::int AS n FROM curtailment_loaded_days
      WHERE settlement_date BETWEEN '2033-03-15' AND '2033-03-18']]).n)
    local out, err, code = h.quarry("fetch curtailment --from 2033-03-15 --to 2033-03-18", env)
    assert.are.equal(0, code, err)
    assert.matches(("%d already stored"):format(n), out)
    assert_stored(expected, dates)
    os.remove(pidfile)
  end)

  it("needs the BM unit reference first, and a real date range", function()
    local _, err, code = h.quarry("fetch curtailment --from 2033-02-30", ENV)
    assert.are.equal(2, code)
    assert.matches("%-%-from '2033%-02%-30'", err)
    _, err, code = h.quarry("fetch curtailment --from 2033-03-02 --to 2033-03-01", ENV)
    assert.are.equal(2, code)
    assert.matches("after", err)
    local url, sdb = h.seeded_database("fetch_spec_empty", "2024-03-01", "2024-03-01")
    _, err, code = h.quarry("fetch curtailment --from 2024-03-01", { DATABASE_URL = url })
    sdb:close()
    h.drop_database("fetch_spec_empty")
    assert.are.equal(2, code)
    assert.matches("no wind BM units known: run 'quarry fetch bmus'", err)
  end)
end)

describe("quarry ingest elexon", function()
  setup(reference_units)
  it("loads saved answers as a fetch does: same rows, missing periods recorded", function()
    local dir = h.tmpname(".saved")
    local expected = publish(dir, "2033-03-20", { skip = { [48] = true } })
    local out, err, code = h.quarry("ingest elexon " .. h.shell_quote(dir), ENV)
    os.execute("rm -rf " .. dir)
    assert.are.equal(0, code, err)
    assert.matches("loaded 94 files for 1 date", out)
    assert.matches("2033%-03%-20: no answer for SP48", err)
    assert_stored(expected, { "2033-03-20" })
  end)
end)
