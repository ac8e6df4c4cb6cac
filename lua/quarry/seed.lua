--- quarry.seed: deterministic, realistic synthetic curtailment data, loaded
-- through the same ingest path as real files.
--
-- Real BMU ids and lead parties; Scottish farms (nearly all of these) are
-- curtailed far more than English ones; curtailment peaks in the evening and
-- night (periods 39-48) and in winter, and grows from 2022 to 2025;
-- subsidised onshore farms bid about -80 GBP/MWh, merchant and CfD offshore
-- farms near zero; busy days have several acceptances per farm-period. One
-- BMU never gives up more than capacity x 0.5 MWh in a period.
-- Scale 1 is about 500k rows for 2022-2025, like the real platform.
local core = require "quarry.core"
local dates = require "quarry.dates"
local files = require "quarry.files"

local M = {}

-- id, lead party, capacity MW, price kind. From shared/data/domain-facts.md.
local FARMS = {}
local function farm(ids, party, mw, kind)
  for _, id in ipairs(ids) do FARMS[#FARMS + 1] = { id = id, party = party, mw = mw, kind = kind } end
end
farm({ "T_SGRWO-1", "T_SGRWO-2", "T_SGRWO-3", "T_SGRWO-4", "T_SGRWO-5", "T_SGRWO-6" },
  "Seagreen Wind Energy Limited", 179, "seagreen")
farm({ "T_MOWEO-1", "T_MOWEO-2", "T_MOWEO-3" }, "Moray Offshore Wind East Ltd", 316, "cfd")
farm({ "T_VKNGW-1", "T_VKNGW-2", "T_VKNGW-3", "T_VKNGW-4" }, "Viking Energy Wind Farm LLP", 110, "viking")
farm({ "T_BEATO-1", "T_BEATO-2", "T_BEATO-3", "T_BEATO-4" }, "Beatrice Offshore Windfarm Ltd", 147, "cfd")
farm({ "T_DOREW-1", "T_DOREW-2" }, "Dorenell Windfarm Limited", 88.5, "onshore")
farm({ "T_GORDW-1", "T_GORDW-2" }, "Vattenfall Wind Power Ltd", 35, "onshore")
farm({ "T_HALSW-1" }, "SSE Generation Ltd", 30, "onshore")
farm({ "T_CREAW-1" }, "Creag Riabhach Wind Farm Ltd", 92.4, "onshore")
farm({ "T_SOKYW-1" }, "South Kyle Wind Farm Limited", 240, "onshore")
farm({ "T_WHILW-1" }, "SP Renewables (UK) Limited", 309, "onshore")
farm({ "T_WHILW-2" }, "SP Renewables (UK) Limited", 206, "onshore")
farm({ "T_KLGLW-1" }, "SP Renewables (UK) Limited", 228, "onshore")
farm({ "T_NNGAO-1", "T_NNGAO-2" }, "Neart Na Gaoithe Offshore Wind", 224, "nng")
farm({ "T_CLDCW-1" }, "Clyde Windfarm (Scotland) Ltd", 200, "onshore")
farm({ "T_CRYRW-2" }, "Eneco Energy Trade", 149.4, "onshore")
farm({ "T_FALGW-1" }, "Fallago Rig Wind Farm Limited", 144, "onshore")
farm({ "T_HRSTW-1" }, "SP Renewables (UK) Limited", 142.3, "onshore")
farm({ "T_ARCHW-1" }, "SP Renewables (UK) Limited", 114, "onshore")
farm({ "T_STLGW-1", "T_STLGW-2", "T_STLGW-3" }, "Stronelairg Windfarm Limited", 76, "onshore")
farm({ "T_BHLAW-1" }, "SSE Generation Ltd", 108, "onshore")
farm({ "T_GRIFW-1", "T_GRIFW-2" }, "Griffin Wind Farm Ltd", 102, "onshore")
farm({ "T_DUNGW-1" }, "Dunmaglass Wind Farm Limited", 100, "onshore")
farm({ "T_FARR-1", "T_FARR-2" }, "Smartestenergy Limited", 92, "onshore")
farm({ "T_STRNW-1" }, "Strathy Wind Farm Limited", 70, "onshore")
farm({ "T_LCLTW-1" }, "Eneco Energy Trade", 69, "onshore")
farm({ "E_BABAW-1" }, "Statkraft Markets Gmbh", 52.5, "onshore")
farm({ "E_BTUIW-3" }, "SP Renewables (UK) Limited", 52, "onshore")
M.FARMS = FARMS

-- Public difficulty points (T = 1e12); the seed adds a point every 14 days
-- between them, log-linearly, as the real adjustments come fortnightly,
-- and holds the last one after it.
M.DIFFICULTY_POINTS = {
  { "2022-01-01", 24.27 }, { "2022-05-11", 31.25 }, { "2022-09-14", 32.05 }, { "2023-01-01", 35.36 },
  { "2023-12-23", 72.01 }, { "2024-01-06", 73.20 }, { "2024-02-15", 81.73 }, { "2024-04-11", 86.39 },
  { "2024-10-23", 95.67 }, { "2024-11-05", 101.65 }, { "2024-12-30", 109.78 }, { "2025-01-12", 110.45 },
  { "2025-03-10", 112.15 }, { "2025-03-23", 113.76 }, { "2025-06-01", 126.98 }, { "2025-12-31", 148.2 },
}

-- xorshift64*: the same numbers on every machine, unlike math.random.
local function rng(seed)
  local x = seed ~ 0x5DEECE66D
  if x == 0 then x = 1 end
  return function()
    x = x ~ (x >> 12)
    x = x ~ (x << 25)
    x = x ~ (x >> 27)
    return ((x * 0x2545F4914F6CDD1D) >> 11) / 9007199254740992.0 -- [0, 1)
  end
end

local day_number, date_of = dates.day_number, dates.date_of

--- Every date from..to (inclusive), as strings.
M.dates = dates.days

local PRICE = {
  onshore = function(r) return -70 - 20 * r() end,       -- subsidised: about -80
  seagreen = function(r) return -2 - 17 * r() end,       -- -2 to -19
  viking = function(r) return -5 - 2 * r() end,          -- about -6
  nng = function() return -13.87 end,
  cfd = function(r) return -1 - 9 * r() end,             -- near zero
}

--- Write the curtailment CSV for from..to to path; returns rows written.
function M.write_curtailment(path, from, to, scale)
  local f = type(path) == "string" and assert(io.open(path, "wb")) or path -- a path or an open file
  local name = type(path) == "string" and path or "the generated curtailment rows"
  files.write(f, name, "settlement_date,settlement_period,farm_id,lead_party_name,volume,payment,original_price,",
    "final_price,so_flag,cadl_flag\n")
  local rows, buf = 0, {}
  for _, date in ipairs(M.dates(from, to)) do
    local r = rng(day_number(date) * 7919 + 17) -- each day its own stream: any range gives the same days
    local y, mo = tonumber(date:sub(1, 4)), tonumber(date:sub(6, 7))
    local winter = (mo <= 3 or mo >= 10) and 1.5 or 0.7
    local growth = ({ [2022] = 0.5, [2023] = 0.8, [2024] = 1.3, [2025] = 1.5 })[y] or 1.5
    local wind = r() ^ 2.2 * winter * growth     -- most days calm, a few very windy
    if wind > 0.08 then
      for _, fm in ipairs(FARMS) do
        local viking_live = (fm.kind ~= "viking" or date >= "2024-08-01")
          and (fm.kind ~= "seagreen" or date >= "2022-10-01")
        local nng_live = fm.kind ~= "nng" or date >= "2023-06-01"
        if viking_live and nng_live and r() < math.min(0.95, wind * 0.9) then
          for period = 1, M.periods_in_day(date) do
            local evening = period >= 39 and 1.0 or (period <= 8 and 0.6 or 0.15)
            if r() < math.min(0.98, wind * evening) then
              local fraction = 0.15 + 0.8 * r() * math.min(1, wind)
              local energy = fm.mw * 0.5 * fraction      -- MWh given up in the period
              local acceptances = (1 + math.floor(r() * math.min(4, 1 + wind * 2))) * scale
              local price = PRICE[fm.kind](r)
              local weights, total = {}, 0
              for i = 1, acceptances do
                weights[i] = 0.5 + r()
                total = total + weights[i]
              end
              for i = 1, acceptances do
                local v = energy * weights[i] / total
                local mwh = ("%.3f"):format(v)
                local p = ("%.2f"):format(price)
                -- payment = |volume| x price: negative, as wind bids are
                local pay = ("%.2f"):format(tonumber(mwh) * tonumber(p))
                buf[#buf + 1] = ("%s,%d,%s,%s,-%s,%s,%s,%s,true,%s\n"):format(date, period, fm.id, fm.party, mwh,
                  pay, p, p, r() < 0.02 and "true" or "false")
                rows = rows + 1
                if #buf >= 4096 then
                  files.write(f, name, table.concat(buf))
                  buf = {}
                end
              end
            end
          end
        end
      end
    end
  end
  files.write(f, name, table.concat(buf))
  files.flush(f, name) -- a full disk shows here, not as a smaller seed
  if f ~= path then f:close() end
  return rows
end

--- Write the difficulty CSV (date,difficulty) covering from..to.
function M.write_difficulty(path, from, to)
  local pts = M.DIFFICULTY_POINTS
  local f = type(path) == "string" and assert(io.open(path, "wb")) or path -- a path or an open file
  local name = type(path) == "string" and path or "the generated difficulty points"
  files.write(f, name, "date,difficulty\n")
  local first, last = day_number(from) - 31, day_number(to)
  for i = 1, #pts - 1 do
    local a, b = day_number(pts[i][1]), day_number(pts[i + 1][1])
    local da, db = pts[i][2], pts[i + 1][2]
    local n = a
    while n < b do
      if n >= first and n <= last then
        local t = (n - a) / (b - a)
        local d = da * (db / da) ^ t * 1e12
        files.write(f, name, ("%s,%.0f\n"):format(date_of(n), d))
      end
      n = n + 14
    end
  end
  -- past the last public point, its value held, a point every 14 days: a
  -- seed of this year is as synthetic as one of 2024, and must load too
  local lastp = pts[#pts]
  local n = day_number(lastp[1])
  while n <= last do
    if n >= first then files.write(f, name, ("%s,%.0f\n"):format(date_of(n), lastp[2] * 1e12)) end
    n = n + 14
  end
  files.flush(f, name)
  if f ~= path then f:close() end
end

--- Settlement periods of a day in Europe/London: 46, 48 or 50.
M.periods_in_day = dates.periods_in_day

--- Seed the database: difficulty, then curtailment, through ingest, in one
-- transaction: a seed stopped at any point (Ctrl-C, kill -9) leaves nothing
-- of itself. The CSVs go through anonymous temporary files, which vanish
-- with the process however it ends.
-- opts: from, to (dates), scale (integer >= 1), cache, advice (what a
-- refusal over real data suggests instead). Returns a summary.
function M.run(db, opts)
  local ingest = require "quarry.ingest"
  local from, to, scale = opts.from or "2022-01-01", opts.to or "2025-12-31", opts.scale or 1
  local diff, curt = assert(io.tmpfile()), assert(io.tmpfile())
  local t0 = core.now_ns()
  M.write_difficulty(diff, from, to)
  local rows = M.write_curtailment(curt, from, to, scale)
  local gen = (core.now_ns() - t0) / 1e9
  diff:seek("set")
  curt:seek("set")
  local res
  local ok, err = db:transaction(function(tx)
    tx:expect_long_hold()
    -- what another source loaded is never replaced: said before any work
    -- (ingest checks again with the dates locked)
    local days = M.dates(from, to)
    ingest.refuse_over_real(tx, days, "replace", opts.advice)
    ingest.difficulty(tx, "seed difficulty", nil, diff, { source = "seed", quiet = true }) -- said once committed
    -- every day of the range: the calm ones are loaded too, as days without curtailment
    res = ingest.curtailment(tx, "seed curtailment", nil, curt, { dates = days, source = "seed", quiet = true })
  end)
  for _, f in ipairs({ diff, curt }) do
    if io.type(f) == "file" then f:close() end -- ingest closes what it read
  end
  if not ok then error(err, 0) end
  require("quarry.write").after(opts.cache, { "curtailment_records", "historical_bitcoin_calculations" }, res.changed)
  require("quarry.rollup").analyze(db) -- a bulk load: the planner learns the new sizes now
  return { rows = rows, dates = #res.dates, changed = #res.changed, bitcoin_rows = res.bitcoin_rows, generate_s = gen,
           total_s = (core.now_ns() - t0) / 1e9 }
end

return M
