-- lua/quarry/serve.lua and routes.lua: a real `quarry serve` on a loopback
-- port, asked by curl. Concurrency is proven by the server's own clock and
-- backend pids, not by timing the test.
local h = require "spec.helper"
local cjson = require "cjson"
local core = require "quarry.core"

local ENV = { QUARRY_CACHE_PREFIX = "serve-spec:" }

local PLUGINS = {
  slow = [[return { name = "slow", description = "Sleeps on the server",
    params = { secs = { type = "integer", default = 1, min = 0, max = 30 }, tag = { type = "integer", default = 0 } },
    run = function(ctx, p)
      return ctx.query("SELECT pg_backend_pid() AS pid, clock_timestamp()::text AS s, pg_sleep($1), "
        .. "clock_timestamp()::text AS e, $2::int AS tag", p.secs, p.tag)
    end }]],
  once = [[return { name = "once", description = "Slow, cached",
    params = { tag = { type = "integer", default = 0 } },
    cache = { key = "once:{tag}", ttl = "SHORT" },
    run = function(ctx, p)
      return ctx.query("SELECT pg_backend_pid() AS pid, clock_timestamp()::text AS at, pg_sleep(1), $1::int AS tag", p.tag)
    end }]],
  pair = [[return { name = "pair", description = "Two statements at once", params = {},
    run = function(ctx)
      local SQL = "SELECT pg_backend_pid() AS pid, clock_timestamp()::text AS s, pg_sleep(0.5), "
        .. "clock_timestamp()::text AS e"
      local a, b = ctx.parallel(function(c) return c.query_one(SQL) end, function(c) return c.query_one(SQL) end)
      return { fields = { { name = "pid", type = "int4" }, { name = "s", type = "text" }, { name = "e", type = "text" } },
               rows = { a, b } }
    end }]],
  bomb = [[return { name = "bomb", description = "Eats memory in ctx.parallel", params = {},
    run = function(ctx) ctx.parallel(function() local t = {} for i = 1, 1e9 do t[i] = { i } end end) end }]],
  boom = [[return { name = "boom", description = "Fails", params = {},
    run = function() error("boom went the plugin") end }]],
  halfdone = "return { name = 'halfdone', run = function( end", -- does not load: hides no other report
}

local function start(extra, env_extra)
  local dir = h.tmpname(".serve")
  os.execute("mkdir -p " .. dir .. "/plugins")
  for name, src in pairs(PLUGINS) do h.write(dir .. "/plugins/" .. name .. ".lua", src) end
  -- the test services named outright: an embedded default would restart a stopped PostgreSQL itself
  local env = ("QUARRY_PLUGIN_PATH=%s/plugins QUARRY_CACHE_PREFIX=serve-spec: DATABASE_URL=%s REDIS_URL=%s"):format(dir,
    h.shell_quote(h.database_url()), h.shell_quote(h.urls().REDIS_URL)) .. " " .. (env_extra or "")
  -- the server's exit code lands in its log: a leak under the sanitizers is exit 1
  os.execute(("sh -c '%s %s serve --listen 127.0.0.1:0 %s >%s/log 2>&1 & echo $! >%s/pid; wait $!; "
    .. "echo \"exit $?\" >>%s/log' &"):format(env, h.shell_quote(h.bin), extra or "", dir, dir, dir))
  for _ = 1, 100 do
    if h.read(dir .. "/pid") then break end
    core.sleep(0.02)
  end
  local pid = tonumber(h.read(dir .. "/pid"))
  for _ = 1, 200 do
    local port = (h.read(dir .. "/log") or ""):match("serving http://127%.0%.0%.1:(%d+)/")
    if port then return { dir = dir, pid = pid, url = "http://127.0.0.1:" .. port } end
    core.sleep(0.05)
  end
  error("quarry serve did not start:\n" .. (h.read(dir .. "/log") or ""))
end

-- SIGTERM, then the exit code it logged: 0, after a clean drain.
local function stop(s)
  os.execute("kill -TERM " .. s.pid .. " 2>/dev/null")
  local log
  for _ = 1, 200 do
    log = h.read(s.dir .. "/log") or ""
    if log:find("\nexit %d+") then break end
    core.sleep(0.05)
  end
  os.execute("rm -rf " .. s.dir)
  assert.matches("\nexit 0\n", log)
end

-- status, body, headers of GET url (curl; method: another one)
local function get(url, headers, method)
  local hdr = method and (" -X " .. method) or ""
  for _, x in ipairs(headers or {}) do hdr = hdr .. " -H " .. h.shell_quote(x) end
  local out = h.tmpname(".body")
  local p = io.popen(("curl -s -o %s -D - -w '\\n%%{http_code}' %s %s"):format(out, hdr, h.shell_quote(url)))
  local head = p:read("a")
  p:close()
  local body = h.read(out) or ""
  os.remove(out)
  return tonumber(head:match("(%d+)%s*$")), body, head
end

-- GETs in the background (fire), their bodies once answered (collect).
local function fire(urls)
  local files = {}
  for i, u in ipairs(urls) do
    files[i] = h.tmpname(".b" .. i)
    os.execute(("curl -s -o %s %s &"):format(files[i], h.shell_quote(u)))
  end
  return files
end

local function collect(files)
  local bodies = {}
  for i, f in ipairs(files) do
    for _ = 1, 400 do
      local b = h.read(f)
      if b and #b > 0 then bodies[i] = b break end
      core.sleep(0.05)
    end
    os.remove(f)
  end
  return bodies
end

local function get_all(urls) return collect(fire(urls)) end

local function epoch(ts)
  local db = require("quarry").db
  return tonumber(db:query_one("SELECT extract(epoch FROM $1::timestamptz) AS x", ts).x)
end

setup(function() h.load_may_2031(require("quarry").db, ENV) end)

describe("quarry serve", function()
  local s
  setup(function() s = start() end)
  teardown(function() stop(s) end)

  it("answers a report exactly as `quarry report` prints it, in the format asked", function()
    local cli = h.quarry("report monthly --month 2031-05 --format csv --no-cache", ENV)
    local status, body, head = get(s.url .. "/reports/monthly?month=2031-05&format=csv&cache=off")
    assert.are.equal(200, status)
    assert.are.equal(cli, body)
    assert.matches("Content%-Type: text/csv", head)
    status, body = get(s.url .. "/reports/monthly?month=2031-05", { "Accept: text/html" })
    assert.are.equal(200, status)
    assert.matches("^<!DOCTYPE html>", body)
    status, body = get(s.url .. "/reports/farms?month=2031-05&by=lead_party&limit=1")
    assert.are.equal(200, status)
    local r = cjson.decode(body)
    assert.are.equal("quarry.report/1", r.schema)
    assert.are.equal("Dorenell Windfarm Limited", r.rows[1].lead_party)
  end)

  it("answers a cached report with the new figures once a write changed its day", function()
    local path = s.url .. "/reports/daily?date=2031-05-02&format=csv"
    local before = h.quarry("report daily --date 2031-05-02 --format csv --no-cache", ENV)
    for _ = 1, 3 do assert.are.equal(before, select(2, get(path))) end -- computed once, then from the cache
    local original = h.MAY_2031[4]
    finally(function() h.ingest_rows({ original }, ENV) end)
    h.ingest_rows({ (original:gsub(",%-30,%-2400,", ",-33,-2640,")) }, ENV)
    local after = h.quarry("report daily --date 2031-05-02 --format csv --no-cache", ENV)
    assert.are_not.equal(before, after)
    assert.matches(",33,", after)
    for _ = 1, 3 do assert.are.equal(after, select(2, get(path))) end
  end)

  it("answers a cached report with the new figures after a write made outside quarry (psql)", function()
    local path = s.url .. "/reports/daily?date=2031-05-02&format=json"
    local function mwh() return cjson.decode((select(2, get(path)))).totals.curtailed_mwh end
    local db = h.db()
    finally(function()
      db:exec("UPDATE curtailment_records SET volume = -30 WHERE settlement_date = '2031-05-02'")
      db:close()
      assert.are.equal(30, mwh())
    end)
    assert.are.equal(30, mwh())
    assert.are.equal(30, mwh()) -- from the cache
    db:exec("UPDATE curtailment_records SET volume = -35 WHERE settlement_date = '2031-05-02'")
    assert.are.equal(35, mwh())
    local status, body = get(s.url .. "/api/summary/daily/2031-05-02")
    assert.are.equal(200, status)
    assert.are.equal(35, tonumber(cjson.decode(body).totalCurtailedEnergy))
  end)

  it("says of a day whose only rows were written by hand that they were, on every route", function()
    local db = h.db()
    finally(function()
      db:exec("DELETE FROM curtailment_records WHERE settlement_date = '2031-06-10'")
      db:exec("DELETE FROM bitcoin_difficulty WHERE effective_date = '2031-06-01'")
      db:close()
      assert.are.equal(0, cjson.decode((select(2, get(s.url .. "/api/summary/monthly/2031-06")))).daysLoaded)
    end)
    db:exec("INSERT INTO bitcoin_difficulty (effective_date, difficulty) VALUES ('2031-06-01', 100e12)")
    db:exec([[INSERT INTO curtailment_records (settlement_date, settlement_period, farm_id, lead_party_name, volume,
      payment, original_price, final_price, so_flag, cadl_flag)
      VALUES ('2031-06-10', 5, 'T_DOREW-1', 'Dorenell Windfarm Limited', -10, -800, -80, -80, true, false)]])
    local m = cjson.decode((select(2, get(s.url .. "/api/summary/monthly/2031-06"))))
    assert.are.same({ yearMonth = "2031-06", totalCurtailedEnergy = 10, totalPayment = 800, days = 30,
                      daysLoaded = 1, daysSynthetic = 0, daysWrittenOutside = 1 }, m)
    local status, _, head = get(s.url .. "/reports/monthly?month=2031-06&format=csv")
    assert.are.equal(200, status)
    assert.matches("\r\nQuarry%-Coverage: loaded=1; days=30; synthetic=0; written%-outside=1\r\n", head)
  end)

  it("answers HEAD with GET's headers and length and no body, so the connection stays usable", function()
    local py = h.write(h.tmpname(".py"), [=[
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=20)
for method in ("HEAD", "GET", "HEAD", "GET"):
    c.request(method, "/reports/monthly?month=2031-05&format=csv")
    r = c.getresponse()
    b = r.read()
    print(method, r.status, r.getheader("Content-Length"), len(b))
]=])
    local p = io.popen(("python3 %s 127.0.0.1 %s 2>&1"):format(py, s.url:match(":(%d+)$")))
    local out = p:read("a")
    p:close()
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(4, #lines, out)
    local len = lines[2]:match("^GET 200 (%d+) %1$")
    assert.is_truthy(len, out)
    assert.are.equal("HEAD 200 " .. len .. " 0", lines[1])
    assert.are.equal("HEAD 200 " .. len .. " 0", lines[3])
    assert.are.equal(lines[2], lines[4])
  end)

  it("lists the reports with their params", function()
    local status, body = get(s.url .. "/reports")
    assert.are.equal(200, status)
    local names = {}
    for _, r in ipairs(cjson.decode(body).reports) do names[r.name] = r end
    assert.truthy(names.monthly and names.slow)
    assert.are.equal("month", names.monthly.params.month.type)
    assert.is_true(names.monthly.params.month.required)
    local broken = cjson.decode(body).broken
    assert.are.equal(1, #broken)
    assert.are.equal("halfdone.lua", broken[1].file)
    assert.matches("halfdone%.lua:1:", broken[1].message)
    -- a trailing slash is the same route; the server's root lists the routes
    local again
    status, again = get(s.url .. "/reports/")
    assert.are.same({ 200, cjson.decode(body) }, { status, cjson.decode(again) })
    assert.are.equal((select(2, get(s.url .. "/reports/monthly?month=2031-05&format=csv"))),
      (select(2, get(s.url .. "/reports/monthly/?month=2031-05&format=csv"))))
    status, body = get(s.url .. "/")
    assert.are.equal(200, status)
    local index = cjson.decode(body)
    assert.are.equal("/reports", index.reports)
    assert.truthy(index.api[1]:match("^/api/"), body)
  end)

  it("answers errors as JSON with the CLI's message and the right status", function()
    local status, body = get(s.url .. "/reports/monthly?month=2031-13")
    assert.are.equal(400, status)
    assert.are.same({ error = "usage", message = "--month '2031-13' is not a month (YYYY-MM) of the dates quarry takes" },
      cjson.decode(body))
    status, body = get(s.url .. "/reports/monthly?month=2031-05&farm=x%27%3B%20DROP%20TABLE%20curtailment_records")
    assert.are.equal(400, status)
    assert.matches("is not a BMU id", cjson.decode(body).message)
    -- a param twice, or under both its spellings: neither value is surely the one meant
    status, body = get(s.url .. "/reports/monthly?month=2031-05&month=2031-06")
    assert.are.equal(400, status)
    assert.are.equal("query parameter 'month' given twice", cjson.decode(body).message)
    status, body = get(s.url .. "/reports/daily?date=2031-05-01&lead-party=A&lead_party=B")
    assert.are.equal(400, status)
    assert.matches("both given", cjson.decode(body).message)
    status, body = get(s.url .. "/reports/farms?month=2031-05&date=2031-06-01") -- two periods: which one?
    assert.are.equal(400, status)
    assert.matches("give one period: --date '2031-06-01' and --month '2031-05' are two", cjson.decode(body).message, 1,
      true)
    status, body = get(s.url .. "/reports/nosuch")
    assert.are.equal(404, status)
    assert.matches("unknown report 'nosuch'", cjson.decode(body).message)
    status = get(s.url .. "/no/such/route")
    assert.are.equal(404, status)
    status, body = get(s.url .. "/reports/boom")
    assert.are.equal(500, status)
    assert.matches("boom went the plugin", cjson.decode(body).message)
    status = get(s.url .. "/reports/monthly?month=2031-05&" .. string.rep("x", 5000))
    assert.are.equal(414, status)
    for _, method in ipairs({ "POST", "PUT", "DELETE", "OPTIONS" }) do -- every route only reads
      local head
      status, body, head = get(s.url .. "/reports/monthly?month=2031-05", { "Content-Type: application/json" }, method)
      assert.are.equal(405, status, method)
      assert.are.equal("method", cjson.decode(body).error)
      assert.matches("\r\nAllow: GET, HEAD\r\n", head)
    end
    assert.are.equal(200, (get(s.url .. "/healthz"))) -- and the worker goes on
  end)

  it("runs requests at the same time on one worker, and a slow client blocks no one", function()
    -- a client that sends half a request and waits
    os.execute(("(printf 'GET /reports HTTP/1.1\\r\\nHost: x\\r\\n'; sleep 5) | curl -s telnet://127.0.0.1:%s "
      .. ">/dev/null 2>&1 &"):format(s.url:match(":(%d+)$")))
    local bodies = get_all({ s.url .. "/reports/slow?secs=1&tag=1", s.url .. "/reports/slow?secs=1&tag=2",
                             s.url .. "/reports/slow?secs=1&tag=3" })
    local rows = {}
    for i = 1, 3 do
      local body = assert(bodies[i], "request " .. i .. " unanswered")
      rows[i] = cjson.decode(body).rows[1]
    end
    local latest_start, earliest_end = -math.huge, math.huge
    local pids = {}
    for _, r in ipairs(rows) do
      pids[r.pid] = true
      latest_start = math.max(latest_start, epoch(r.s))
      earliest_end = math.min(earliest_end, epoch(r.e))
    end
    assert.is_true(latest_start < earliest_end, "the three statements ran at one moment")
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.are.equal(3, n)
  end)

  it("runs a plugin's ctx.parallel at the same time inside a request", function()
    local status, body = get(s.url .. "/reports/pair?format=json")
    assert.are.equal(200, status, body)
    local rows = cjson.decode(body).rows
    assert.are_not.equal(rows[1].pid, rows[2].pid)
    assert.is_true(math.max(epoch(rows[1].s), epoch(rows[2].s)) < math.min(epoch(rows[1].e), epoch(rows[2].e)),
      "the two statements ran at one moment")
  end)

  it("speaks the old platform's routes, from the same reports", function()
    local status, body = get(s.url .. "/api/summary/monthly/2031-05")
    assert.are.equal(200, status)
    local m = cjson.decode(body)
    assert.are.same({ yearMonth = "2031-05", totalCurtailedEnergy = 65, totalPayment = 4075, days = 31,
                      daysLoaded = 31, daysSynthetic = 0, daysWrittenOutside = 0 }, m)
    m = cjson.decode((select(2, get(s.url .. "/api/summary/daily/2031-05-01?leadParty=Dorenell%20Windfarm%20Limited"))))
    assert.are.same({ date = "2031-05-01", totalCurtailedEnergy = 20, totalPayment = 1600,
                      leadParty = "Dorenell Windfarm Limited", days = 1, daysLoaded = 1, daysSynthetic = 0,
                      daysWrittenOutside = 0 }, m)
    -- a report in csv, which has no footer, says in a header how many days hold data
    local _, csv, head = get(s.url .. "/reports/monthly?month=2031-05&format=csv")
    assert.matches("^settlement_date,", csv)
    assert.matches("\r\nQuarry%-Coverage: loaded=31; days=31; synthetic=0; written%-outside=0\r\n", head)
    _, _, head = get(s.url .. "/reports/monthly?month=2032-02&format=csv")
    assert.matches("\r\nQuarry%-Coverage: loaded=0; days=29; synthetic=0; written%-outside=0\r\n", head)
    -- a month nobody loaded: its 0 is no data, and says so
    m = cjson.decode((select(2, get(s.url .. "/api/summary/monthly/2032-02"))))
    assert.are.same({ yearMonth = "2032-02", totalCurtailedEnergy = 0, totalPayment = 0, days = 29,
                      daysLoaded = 0, daysSynthetic = 0, daysWrittenOutside = 0 }, m)
    m = cjson.decode((select(2, get(s.url .. "/api/mining-potential/daily?date=2031-05-02&minerModel=S9"))))
    local report = cjson.decode((h.quarry("report daily --date 2031-05-02 --miner S9 --format json --no-cache", ENV)))
    assert.are.equal(tonumber(report.totals.btc_S9), m.bitcoinMined)
    assert.are.equal(30, m.curtailedEnergy)
    assert.are.equal(100e12, m.difficulty)
    m = cjson.decode((select(2, get(s.url .. "/api/mining-potential/monthly/2031-05?minerModel=S9"))))
    assert.are.equal(65, m.curtailedEnergy)
    local parties = cjson.decode((select(2, get(s.url .. "/api/lead-parties"))))
    assert.truthy(table.concat(parties, "|"):find("Dorenell Windfarm Limited", 1, true))
  end)

  it("picks up a changed plugin at the next request, without a restart", function()
    local file = s.dir .. "/plugins/slow.lua"
    h.write(file, (h.read(file):gsub('description = "Sleeps on the server"', 'description = "Sleeps, changed"')))
    local names = {}
    for _, r in ipairs(cjson.decode((select(2, get(s.url .. "/reports")))).reports) do names[r.name] = r end
    assert.are.equal("Sleeps, changed", names.slow.description)
  end)

  it("says how it is: /healthz and Prometheus /metrics", function()
    local status, body = get(s.url .. "/healthz")
    assert.are.equal(200, status)
    local hz = cjson.decode(body)
    assert.are.same({ "up", "up", "ok" }, { hz.database, hz.redis, hz.status })
    local text
    status, text = get(s.url .. "/metrics")
    assert.are.equal(200, status)
    assert.matches('quarry_http_requests_total{worker="1",route="/healthz",status="200"} %d+', text)
    assert.matches('quarry_pool_connections{worker="1",state="max"} %d+', text)
    assert.matches('quarry_http_request_seconds_bucket{worker="1",le="%+Inf"} %d+', text)
    assert.matches('quarry_cache_events_total{worker="1",event="hits"} %d+', text)
    assert.matches('quarry_query_seconds_count{worker="1",statement=', text, 1, true)
    assert.are.equal(200, (get(s.url .. "/metrics/")))
  end)
end)

describe("quarry serve under pressure", function()
  it("answers 503 beyond --max-inflight and 504 past --request-timeout, cancelling the statement", function()
    local s = start("--max-inflight 1 --request-timeout 2")
    finally(function() stop(s) end)
    local first = fire({ s.url .. "/reports/slow?secs=4&tag=41" })
    -- the first holds the only slot (the server says so in /metrics) while the second is asked
    local holding = h.eventually(function()
      return (select(2, get(s.url .. "/metrics"))):match('quarry_http_requests_in_flight{worker="1"} (%d+)')
    end, "1", 3)
    assert.are.equal("1", holding)
    local status, body = get(s.url .. "/reports/slow?secs=0&tag=42")
    local bodies = collect(first)
    assert.are.equal(503, status)
    assert.are.equal("busy", cjson.decode(body).error)
    assert.are.equal("timeout", cjson.decode(bodies[1] or "{}").error)
    local db = require("quarry").db
    assert.are.equal(0, h.eventually(function() -- cancelled: gone within moments, not the 4 s asked
      return db:query_one("SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' "
        .. "AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()").n
    end, 0, 1.5))
  end)

  it("stops the work of a request whose client left: statement cancelled, connection back", function()
    local s = start()
    finally(function() stop(s) end)
    os.execute(("curl -s --max-time 0.5 -o /dev/null %s"):format(h.shell_quote(s.url .. "/reports/slow?secs=20&tag=77")))
    local db = require("quarry").db
    assert.are.equal(0, h.eventually(function()
      return db:query_one("SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' "
        .. "AND state = 'active' AND pid <> pg_backend_pid()").n
    end, 0, 3))
    local _, metrics = get(s.url .. "/metrics")
    assert.matches('quarry_http_requests_abandoned_total{worker="1"} 1\n', metrics)
    assert.matches('quarry_pool_connections{worker="1",state="in_use"} 0\n', metrics, 1, true)
    assert.matches('quarry_http_requests_in_flight{worker="1"} 0\n', metrics)
  end)

  it("answers /metrics for every worker, whichever one a scrape reaches", function()
    local s = start("--workers 2")
    finally(function() stop(s) end)
    for _ = 1, 20 do assert.are.equal(200, (get(s.url .. "/healthz"))) end -- a connection each: both workers
    core.sleep(1.5) -- each worker shares its figures every second
    for _ = 1, 3 do
      local status, text = get(s.url .. "/metrics")
      assert.are.equal(200, status)
      local total, workers = 0, {}
      for w, n in text:gmatch('quarry_http_requests_total{worker="(%d+)",route="/healthz",status="200"} (%d+)') do
        total, workers[w] = total + tonumber(n), true
      end
      assert.are.equal(20, total, text)
      assert.are.same({ ["1"] = true, ["2"] = true }, workers)
      -- one HELP and TYPE a family, its samples together, as the format asks
      local _, types = text:gsub("# TYPE quarry_http_requests_total ", "")
      assert.are.equal(1, types)
    end
  end)

  it("drains on SIGTERM: the request in flight is answered, then it exits 0", function()
    local s = start("--workers 2")
    local f = h.tmpname(".drain")
    os.execute(("(curl -s %s > %s; echo \"curl $?\" >> %s) &"):format(h.shell_quote(s.url .. "/reports/slow?secs=2&tag=7"),
      f, f))
    -- once the request is in flight in one of the workers, SIGTERM the parent
    local log = h.eventually(function()
      local st, body = get(s.url .. "/metrics") -- whichever worker answers; retried until one has it
      return st == 200 and body:match('quarry_http_requests_in_flight{worker="%d"} 1') and "busy" or "idle"
    end, "busy", 3)
    assert.are.equal("busy", log)
    os.execute(("sh -c 'kill -TERM %d; wait %d 2>/dev/null'"):format(s.pid, s.pid))
    local got
    for _ = 1, 100 do
      got = h.read(f)
      if got and got:find("curl %d") then break end
      core.sleep(0.05)
    end
    assert.matches('"tag":7', got)
    assert.matches("curl 0", got)
    for _ = 1, 100 do
      if not os.execute("kill -0 " .. s.pid .. " 2>/dev/null") then break end
      core.sleep(0.05)
    end
    assert.is_falsy(os.execute("kill -0 " .. s.pid .. " 2>/dev/null"), "the server exited")
    assert.matches("draining", h.read(s.dir .. "/log"))
    os.remove(f)
    stop(s)
  end)

  it("answers /healthz 503 while PostgreSQL is down, and serves again once it is back", function()
    local s = start()
    finally(function() h.services("start-pg") stop(s) end)
    h.services("stop-pg")
    local status, body = get(s.url .. "/healthz")
    local report_status = get(s.url .. "/reports/monthly?month=2031-05&cache=off")
    h.services("start-pg")
    assert.are.equal(503, status)
    assert.are.equal("down", cjson.decode(body).database)
    assert.are.equal(503, report_status)
    local back
    for _ = 1, 50 do
      back = get(s.url .. "/healthz")
      if back == 200 then break end
      core.sleep(0.1)
    end
    assert.are.equal(200, back)
    assert.are.equal(200, (get(s.url .. "/reports/monthly?month=2031-05&cache=off")))
  end)

  it("computes a cold report once for many requests across workers (single flight), at the same time", function()
    local s = start("--workers 2")
    finally(function() stop(s) end)
    local tag = core.wall_ms() % 1000000000 -- a key no earlier run cached
    local urls = {}
    for i = 1, 6 do urls[i] = s.url .. "/reports/once?tag=" .. tag end
    local bodies = get_all(urls)
    for i = 1, 6 do assert(bodies[i], "no answer to request " .. i) end
    local first = cjson.decode(bodies[1]).rows[1]
    for i = 2, 6 do
      local r = cjson.decode(bodies[i]).rows[1]
      assert.are.same({ first.pid, first.at }, { r.pid, r.at }) -- the same computation, served six times
    end
  end)

  it("keeps a plugin's memory limit in its ctx.parallel functions, and goes on serving", function()
    local s = start("", "QUARRY_PLUGIN_MEMORY=64")
    finally(function() stop(s) end)
    local status, body = get(s.url .. "/reports/bomb")
    assert.are.equal(500, status)
    assert.matches("stopped: it used more than 64 MiB of memory", cjson.decode(body).message)
    assert.are.equal(200, (get(s.url .. "/reports/pair")))
  end)

  it("answers from PostgreSQL when Redis is unreachable, and says so on /healthz", function()
    local s = start("", "REDIS_URL=redis://127.0.0.1:1") -- nothing listens there
    finally(function() stop(s) end)
    local cli = h.quarry("report monthly --month 2031-05 --format csv --no-cache", ENV)
    local status, body = get(s.url .. "/reports/monthly?month=2031-05&format=csv")
    assert.are.equal(200, status)
    assert.are.equal(cli, body) -- the same figures, computed
    status, body = get(s.url .. "/healthz")
    assert.are.equal(200, status)
    assert.are.equal("down", cjson.decode(body).redis)
  end)

  -- Many clients at once (Python's http.client, keep-alive) through faults.
  local function load(s, path, seconds)
    local out = h.tmpname(".load")
    local port = s.url:match(":(%d+)$")
    os.execute(("python3 %s/tests/tools/http_load.py 127.0.0.1 %s %s %d 8 > %s 2>&1 &"):format(h.shell_quote(h.root),
      port, h.shell_quote(path), seconds, out))
    return function()
      local text
      for _ = 1, (seconds + 40) * 10 do
        text = h.read(out)
        if text and text:find("\n$") then break end
        core.sleep(0.1)
      end
      os.remove(out)
      local ok, r = pcall(cjson.decode, text or "")
      assert(ok, "the load did not finish: " .. tostring(text))
      return r
    end
  end

  local function workers(s)
    local p = io.popen("pgrep -P " .. s.pid .. " | sort")
    local pids = p:read("a")
    p:close()
    return pids
  end

  it("through a PostgreSQL restart under load: 503s, then every worker answers again", function()
    local s = start("--workers 2")
    finally(function() h.services("start-pg") stop(s) end)
    local before = workers(s)
    assert.matches("^%d+\n%d+\n$", before)
    local path = "/reports/monthly?month=2031-05&cache=off&format=csv"
    local expected = h.quarry("report monthly --month 2031-05 --format csv --no-cache", ENV)
    local result = load(s, path, 8)
    core.sleep(1.5)
    h.services("stop-pg")
    core.sleep(1.5)
    h.services("start-pg")
    local r = result()
    assert.are.same({}, r.failures) -- no connection reset: no worker died, none hung up
    for status in pairs(r.statuses) do
      assert.is_truthy(status == "200" or status == "503", cjson.encode(r.statuses) .. cjson.encode(r.odd))
    end
    assert.is_true((r.statuses["503"] or 0) > 0, "the outage was seen")
    assert.are.same({ expected }, r.bodies) -- every 200 the right figures
    assert.is_true(#r.tail > 0)
    for _, st in ipairs(r.tail) do assert.are.equal(200, st) end -- recovered
    assert.are.equal(before, workers(s))
  end)

  it("replaces a worker killed by a signal: the server keeps its size and answers throughout", function()
    local s = start("--workers 2")
    finally(function() stop(s) end)
    local before = workers(s)
    local victim = before:match("^(%d+)\n")
    assert.is_truthy(victim, before)
    local expected = h.quarry("report monthly --month 2031-05 --format csv --no-cache", ENV)
    os.execute("kill -9 " .. victim)
    local after
    for _ = 1, 100 do
      after = workers(s)
      if after:match("^%d+\n%d+\n$") and not after:find(victim .. "\n", 1, true) then break end
      core.sleep(0.05)
    end
    assert.matches("^%d+\n%d+\n$", after)
    assert.is_nil(after:find("^" .. victim .. "\n") or after:find("\n" .. victim .. "\n", 1, true))
    for _ = 1, 6 do -- whichever worker answers, the right figures
      local st, body = get(s.url .. "/reports/monthly?month=2031-05&cache=off&format=csv")
      assert.are.equal(200, st)
      assert.are.equal(expected, body)
    end
    assert.matches("worker pid " .. victim .. " ended %(signal 9%)", h.read(s.dir .. "/log"))
    -- its replacement takes its metrics slot over: any scrape answers for both workers
    core.sleep(1.2)
    for _ = 1, 4 do
      local st, text = get(s.url .. "/metrics")
      assert.are.equal(200, st)
      assert.matches('quarry_http_requests_in_flight{worker="1"} %d+\n', text)
      assert.matches('quarry_http_requests_in_flight{worker="2"} %d+\n', text)
    end
  end)

  it("through Redis stopped under load: every answer 200 with the right figures, cached again after", function()
    local s = start("--workers 2")
    finally(function() h.services("start-redis") stop(s) end)
    local path = "/reports/monthly?month=2031-05&format=csv"
    local expected = h.quarry("report monthly --month 2031-05 --format csv --no-cache", ENV)
    assert.are.equal(expected, (select(2, get(s.url .. path))))
    local result = load(s, path, 6)
    core.sleep(1.5)
    h.services("stop-redis")
    core.sleep(2)
    h.services("start-redis")
    local r = result()
    assert.are.same({}, r.failures)
    assert.are.same({ ["200"] = r.statuses["200"] }, r.statuses)
    assert.are.same({ expected }, r.bodies)
    local _, metrics = get(s.url .. "/metrics")
    assert.matches('quarry_cache_events_total{worker="%d+",event="errors"} [1-9]', metrics)
  end)

  it("takes localhost for the loopback address", function()
    local s = start("--listen localhost:0")
    finally(function() stop(s) end)
    assert.are.equal(200, (get(s.url .. "/healthz")))
  end)

  it("logs every request answered with --access-log", function()
    local s = start("--access-log")
    finally(function() stop(s) end)
    assert.are.equal(200, (get(s.url .. "/healthz")))
    assert.are.equal(404, (get(s.url .. "/no/such?x=1")))
    assert.are.equal(405, (get(s.url .. "/healthz", nil, "DELETE")))
    h.eventually(function() return (h.read(s.dir .. "/log") or ""):find("DELETE", 1, true) ~= nil end, true, 3)
    local log = h.read(s.dir .. "/log")
    assert.matches("%[http%] GET /healthz 200 bytes=%d+ ms=[%d.]+\n", log)
    assert.matches("%[http%] GET /no/such%?x=1 404 bytes=%d+ ms=[%d.]+\n", log)
    assert.matches("%[http%] DELETE /healthz 405 ", log)
  end)

  it("refuses bad flags before listening", function()
    local _, err, code
    for _, bad in ipairs({ "example.org:80", "[::1]:8080", ":8080", "127.0.0.1" }) do
      _, err, code = h.quarry("serve --listen " .. bad)
      assert.are.equal(2, code, bad)
      assert.matches("%-%-listen takes IPV4:PORT %(or localhost:PORT%)", err)
    end
    _, err, code = h.quarry("serve --workers 0")
    assert.are.equal(2, code)
    assert.matches("%-%-workers must be an integer from 1 to 256", err)
  end)

  it("says in one line that a port another program holds cannot be listened on, and is not retried", function()
    -- a listener without SO_REUSEPORT, as most programs are
    local holder = h.write(h.tmpname(".py"), [[
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True); time.sleep(60)]])
    local p = io.popen("python3 " .. holder .. " & echo $!")
    local pid = p:read("l")
    local port = p:read("l")
    finally(function() os.execute("kill " .. pid .. " 2>/dev/null") p:close() os.remove(holder) end)
    for _, n in ipairs({ 1, 2 }) do
      local _, err, code, secs = h.quarry(("serve --listen 127.0.0.1:%s --workers %d"):format(port, n))
      assert.are.equal(2, code, err)
      assert.matches("^quarry: cannot listen on 127%.0%.0%.1:" .. port .. ": Address already in use\n$", err) -- once
      assert.is_nil(err:find("%.lua:%d+"))
      assert.is_true(secs < 10, secs) -- a worker that fails at once is not started again and again
    end
  end)

  it("refuses to share its port with another quarry serve, which SO_REUSEPORT alone would allow", function()
    local s = start("--workers 2")
    local port = s.url:match(":(%d+)$")
    for _, args in ipairs({ "--listen 127.0.0.1:" .. port, "--listen 127.0.0.1:" .. port .. " --workers 2",
                            "--listen 0.0.0.0:" .. port }) do
      local _, err, code = h.quarry("serve " .. args, { DATABASE_URL = h.database_url() })
      assert.are.equal(2, code, err)
      assert.matches(": another quarry serve listens on that port\n$", err)
    end
    assert.are.equal(200, (get(s.url .. "/healthz"))) -- the first one serves on
    stop(s)
  end)
end)
