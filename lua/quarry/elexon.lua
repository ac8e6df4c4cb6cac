--- quarry.elexon: Elexon's settlement stacks and BM unit reference into
-- curtailment rows -- the shape checks, the wind-curtailment rule of
-- lua/quarry/defs/elexon.lua, and storing a day whole.
--
--   local day = elexon.day(date, answers, units)  -- answers: {side=, period=, url=, status=, body= [, doc=]}
--   elexon.store_day(db, cache, day, source)      -- replaces the date in one dated write
--   elexon.parse_bmus(text, name) / elexon.store_bmus(db, units, source)
--
-- A day is all or nothing: an answer that is not the settlement-stack
-- shape, or an item that breaks a rule no real item breaks (another date
-- or period than asked, a volume beyond the unit's capacity), refuses the
-- whole day with the URL and the reason, and nothing of it changes. A
-- period answered 404 or with an empty list is missing (recorded, shown by
-- the integrity report, filled by a later fetch), never silently zero.
local cjson = require "cjson"
local core = require "quarry.core"
local defs = require "quarry.defs.elexon"
local ingest = require "quarry.ingest"
local write = require "quarry.write"

local M = { defs = defs }

local bad_input = core.usage
local null = cjson.null
local has_control = require("quarry.formats").has_control

--- Settlement periods of a day in Europe/London: 46, 48 or 50.
M.periods_in_day = require("quarry.dates").periods_in_day

--- The GETs of one day: {url=, side=, period=} for every period and side.
function M.stack_requests(base, date)
  local out = {}
  for period = 1, M.periods_in_day(date) do
    for _, side in ipairs(defs.sides) do
      out[#out + 1] = { url = base .. defs.stack_path:format(side, date, period), side = side, period = period }
    end
  end
  return out
end

local function num(v) return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end
local function opt(v) return v == nil or v == null end

-- The checks of one item, in field order: nil, or what is wrong.
local function item_problem(it, date, period)
  if type(it) ~= "table" then return "is not an object" end
  if it.settlementDate ~= date then return ("settlementDate %s is not the date asked (%s)"):format(
    tostring(it.settlementDate), date) end
  if it.settlementPeriod ~= period then return ("settlementPeriod %s is not the period asked (%d)"):format(
    tostring(it.settlementPeriod), period) end
  if type(it.id) ~= "string" or not it.id:match("^[A-Za-z0-9_.-]+$") or #it.id > 40 then
    return ("id %s is not a BM unit id"):format(tostring(it.id)) end
  if not num(it.volume) then return "volume is not a number" end
  for _, k in ipairs({ "originalPrice", "finalPrice" }) do
    if not opt(it[k]) and not num(it[k]) then return k .. " is not a number" end
  end
  for _, k in ipairs({ "acceptanceId", "bidOfferPairId" }) do
    if not opt(it[k]) and not math.tointeger(it[k]) then return k .. " is not an integer" end
  end
  for _, k in ipairs({ "soFlag", "cadlFlag" }) do
    if not opt(it[k]) and type(it[k]) ~= "boolean" then return k .. " is not a boolean" end
  end
  return nil
end

--- The items of one answer (its body, or the body decoded already: doc),
-- or raises bad input naming url.
function M.parse_stack(body, url, date, period, doc)
  local ok = doc ~= nil
  if not ok then ok, doc = pcall(cjson.decode, body) end
  if not ok then bad_input(("%s: not JSON (%s)"):format(url, tostring(doc):gsub("^.-: ", ""))) end
  if type(doc) ~= "table" or type(doc.data) ~= "table" then
    bad_input(url .. ': not a settlement stack (expected {"data": [...]})')
  end
  for i, it in ipairs(doc.data) do
    local why = item_problem(it, date, period)
    if why then bad_input(("%s: item %d: %s"):format(url, i, why)) end
  end
  return doc.data
end

local function decimal(v) return ("%.15g"):format(v) end

-- Whether an item is wind curtailment by the rule.
local function counts(it, unit)
  local r = defs.rule
  if not unit or unit.fuel_type ~= r.fuel_type then return false end
  local flagged = it.soFlag == true or (r.cadl_counts and it.cadlFlag == true)
  return flagged and it.volume < 0 and num(it[r.price])
end

--- One day from its answers: {date=, periods=, rows={...}, missing={period...},
-- published=bool, requests=n}. units: farm_id -> {fuel_type, capacity_mw,
-- lead_party_name}. Items seen twice (same unit, side, acceptance, pair)
-- count once.
function M.day(date, answers, units)
  local periods = M.periods_in_day(date)
  local missing_set, rows, seen, have = {}, {}, {}, false
  for _, a in ipairs(answers) do
    local items = a.status == 200 and M.parse_stack(a.body, a.url, date, a.period, a.doc) or nil
    if not items or #items == 0 then
      missing_set[a.period] = true
    else
      have = true
      for _, it in ipairs(items) do
        local unit = units[it.id]
        if counts(it, unit) then
          local key = table.concat({ it.id, a.side, tostring(it.acceptanceId), tostring(it.bidOfferPairId) }, "|")
          if not seen[key] then
            seen[key] = true
            local cap = unit.capacity_mw and tonumber(unit.capacity_mw)
            if cap and -it.volume > cap * defs.period_hours + 1e-9 then
              bad_input(("%s: %s gave up %s MWh in one period, more than its %s MW can make in %s h"):format(
                a.url, it.id, decimal(-it.volume), unit.capacity_mw, decimal(defs.period_hours)))
            end
            rows[#rows + 1] = { period = a.period, farm_id = it.id, lead_party = unit.lead_party_name,
              volume = decimal(it.volume), original_price = decimal(it[defs.rule.price]),
              final_price = num(it.finalPrice) and decimal(it.finalPrice) or decimal(it[defs.rule.price]),
              so_flag = it.soFlag == true, cadl_flag = it.cadlFlag, side = a.side,
              acceptance_id = math.tointeger(it.acceptanceId), pair = math.tointeger(it.bidOfferPairId) }
          end
        end
      end
    end
  end
  local missing = {}
  for p = 1, periods do if missing_set[p] then missing[#missing + 1] = p end end
  return { date = date, periods = periods, rows = rows, missing = missing, published = have,
           requests = #answers }
end

local function csv_field(v)
  if v == nil or v == null then return "" end
  v = tostring(v)
  if v:find('[,"\r\n]') then return '"' .. v:gsub('"', '""') .. '"' end
  return v
end

local COLUMNS = { "settlement_date", "settlement_period", "farm_id", "lead_party_name", "volume", "payment",
  "original_price", "final_price", "so_flag", "cadl_flag", "acceptance_id", "bid_offer", "bid_offer_pair_id" }

-- The day's rows as CSV in COLUMNS' order, read like a file by ingest.
-- payment is left empty: it is |volume| x price, computed in numeric by
-- PostgreSQL (no binary floating point in a figure analysts sum).
local function rows_file(day)
  local lines = {}
  for _, r in ipairs(day.rows) do
    lines[#lines + 1] = table.concat({ day.date, r.period, csv_field(r.farm_id), csv_field(r.lead_party), r.volume,
      "", r.original_price, r.final_price, tostring(r.so_flag), r.cadl_flag == nil and "" or tostring(r.cadl_flag),
      r.acceptance_id or "", r.side, r.pair or "" }, ",")
  end
  local text, pos = table.concat(lines, "\n") .. (#lines > 0 and "\n" or ""), 1
  return { read = function(_, n)
    if pos > #text then return nil end
    local chunk = text:sub(pos, pos + n - 1)
    pos = pos + n
    return chunk
  end, close = function() end }, #text
end

local DERIVE_PAYMENT = [[UPDATE quarry_stage SET payment = (abs(volume::numeric) * original_price::numeric)::text
  WHERE payment = '' OR payment IS NULL]]

--- Replace the day's rows (all or nothing, through the dated-write path)
-- and record it in elexon_fetch_days. Returns {rows=, mwh=, gbp=, bitcoin_rows=}.
function M.store_day(db, cache, day, source)
  local f, size = rows_file(day)
  local out = {}
  local _, info = write.dated(db, cache, { tables = { "curtailment_records" } }, function(tx, w)
    out.rows = ingest.replace_curtailment(tx, w, source .. " " .. day.date, f, COLUMNS, size,
      { dates = { day.date }, prepare = DERIVE_PAYMENT, source = "elexon" })
    local t = tx:query_one([[SELECT count(*)::int AS n, coalesce(sum(-volume), 0) AS mwh,
      coalesce(sum(payment), 0) AS gbp FROM curtailment_records WHERE settlement_date = $1]], day.date)
    out.mwh, out.gbp = t.mwh, t.gbp
    tx:exec([[INSERT INTO elexon_fetch_days (settlement_date, periods, missing, rows, mwh, gbp, source)
      VALUES ($1, $2, $3::int[], $4, $5, $6, $7)
      ON CONFLICT (settlement_date) DO UPDATE SET fetched_at = now(), periods = EXCLUDED.periods,
        missing = EXCLUDED.missing, rows = EXCLUDED.rows, mwh = EXCLUDED.mwh, gbp = EXCLUDED.gbp,
        source = EXCLUDED.source]], day.date, day.periods, "{" .. table.concat(day.missing, ",") .. "}",
      t.n, t.mwh, t.gbp, source)
  end)
  out.bitcoin_rows = info.bitcoin_rows
  return out
end

--- The day's fetched rows per settlement period, as SQL over three bound
-- arrays (M.period_args): period, mwh given up, gbp (|volume| x price), in
-- PostgreSQL's exact decimal arithmetic, like the stored payment.
M.PERIODS_SQL = [[SELECT p AS period, sum(-v) AS mwh, sum(abs(v) * pr) AS gbp
  FROM unnest($1::int[], $2::numeric[], $3::numeric[]) AS x(p, v, pr) GROUP BY p]]

function M.period_args(day)
  local periods, volumes, prices = {}, {}, {}
  for i, r in ipairs(day.rows) do periods[i], volumes[i], prices[i] = r.period, r.volume, r.original_price end
  return "{" .. table.concat(periods, ",") .. "}", "{" .. table.concat(volumes, ",") .. "}",
    "{" .. table.concat(prices, ",") .. "}"
end

-- ---- the BM unit reference ----

--- Units from the reference-list shape (Elexon's /reference/bmunits/all, or
-- a saved copy such as bmu_mapping.json): an array, or {"data": [...]}.
-- Keeps the units of the rule's fuel type. Raises bad input naming `name`.
function M.parse_bmus(text, name)
  local ok, doc = pcall(cjson.decode, text)
  if not ok then bad_input(("%s: not JSON (%s)"):format(name, tostring(doc):gsub("^.-: ", ""))) end
  if type(doc) == "table" and type(doc.data) == "table" then doc = doc.data end
  if type(doc) ~= "table" or (next(doc) ~= nil and #doc == 0) then
    bad_input(name .. ": expected a list of BM units")
  end
  local units, seen = {}, {}
  for i, u in ipairs(doc) do
    if type(u) ~= "table" then bad_input(("%s: unit %d is not an object"):format(name, i)) end
    local id = u.elexonBmUnit
    if type(id) ~= "string" or not id:match("^[A-Za-z0-9_.-]+$") or #id > 40 then
      bad_input(("%s: unit %d: elexonBmUnit %s is not a BM unit id"):format(name, i, tostring(id)))
    end
    local cap = u.generationCapacity
    if cap == null or cap == "" then cap = nil end
    if cap ~= nil and not tonumber(cap) then
      bad_input(("%s: unit %d (%s): generationCapacity '%s' is not a number"):format(name, i, id, tostring(cap)))
    end
    if cap ~= nil and tonumber(cap) <= 0 then cap = nil end -- 0 MW: not known
    if u.fuelType == defs.rule.fuel_type and not seen[id] then
      seen[id] = true
      local function str(v) return type(v) == "string" and v ~= "" and v or nil end
      for _, field in ipairs({ "leadPartyName", "bmUnitName", "nationalGridBmUnit" }) do
        -- a name is one line of text: reports, CSV and terminals show it
        if str(u[field]) and has_control(u[field]) then
          bad_input(("%s: unit %d (%s): %s has a control character (a line break, tab or escape)")
            :format(name, i, id, field))
        end
      end
      units[#units + 1] = { farm_id = id, national_grid_bmu = str(u.nationalGridBmUnit), name = str(u.bmUnitName),
        capacity_mw = cap and tostring(cap), lead_party_name = str(u.leadPartyName), fuel_type = u.fuelType }
    end
  end
  return units
end

--- Upsert units into bmus in one transaction; a lead party that changed
-- closes the unit's history row and opens another. Returns {units=, new=,
-- changed=}.
function M.store_bmus(db, units)
  local ok, r = db:transaction(function(tx)
    local out = { units = #units, new = 0, changed = 0 }
    for _, u in ipairs(units) do
      local old = tx:query_one("SELECT lead_party_name FROM bmus WHERE farm_id = $1 FOR UPDATE", u.farm_id)
      tx:exec([[INSERT INTO bmus (farm_id, national_grid_bmu, name, capacity_mw, lead_party_name, fuel_type)
        VALUES ($1, $2, $3, $4::numeric, $5, $6)
        ON CONFLICT (farm_id) DO UPDATE SET national_grid_bmu = EXCLUDED.national_grid_bmu, name = EXCLUDED.name,
          capacity_mw = EXCLUDED.capacity_mw, lead_party_name = EXCLUDED.lead_party_name,
          fuel_type = EXCLUDED.fuel_type, updated_at = now()]],
        u.farm_id, u.national_grid_bmu, u.name, u.capacity_mw, u.lead_party_name, u.fuel_type)
      if not old then
        out.new = out.new + 1
        tx:exec("INSERT INTO bmu_lead_parties (farm_id, lead_party_name) VALUES ($1, $2)", u.farm_id,
          u.lead_party_name)
      elseif old.lead_party_name ~= u.lead_party_name then
        out.changed = out.changed + 1
        tx:exec("UPDATE bmu_lead_parties SET seen_to = now() WHERE farm_id = $1 AND seen_to IS NULL", u.farm_id)
        tx:exec([[INSERT INTO bmu_lead_parties (farm_id, lead_party_name, seen_from)
          VALUES ($1, $2, clock_timestamp())]], u.farm_id, u.lead_party_name)
      end
    end
    return out
  end)
  if not ok then error(r, 0) end
  return r
end

--- The wind units quarry knows: farm_id -> {fuel_type, capacity_mw, lead_party_name}.
function M.units(db)
  local out = {}
  for _, r in ipairs(db:query([[SELECT farm_id, fuel_type, capacity_mw::text AS capacity_mw, lead_party_name
      FROM bmus WHERE fuel_type = $1]], defs.rule.fuel_type)) do
    out[r.farm_id] = r
  end
  return out
end

return M
