--- quarry.serve: `quarry serve`, an HTTP/1.1 server on the engine. One
-- process (a worker) runs one event loop: libevent's evhttp reads requests
-- (keep-alive, slow clients timed out, header and body sizes bounded), each
-- request runs as a task (lua/quarry/tasks.lua) whose queries yield, so a
-- worker answers many requests at once on its pool. Workers share the port
-- (SO_REUSEPORT) and the Redis cache. What each URL answers is in
-- lua/quarry/routes.lua.
--
-- Bounds: MAX_URL bytes of URL (414), `max_inflight` requests at once per
-- worker (503 beyond; /metrics and /healthz always answer), `request_timeout_s`
-- per request (504, its statement cancelled). SIGTERM or SIGINT: stop accepting, finish what is in flight,
-- exit 0. SIGHUP: nothing to reload -- plugins are read at each request.
local cjson = require "cjson"
local core = require "quarry.core"
local quarry = require "quarry"
local routes = require "quarry.routes"
local tasks_mod = require "quarry.tasks"
local visible = require("quarry.formats").visible

local M = {}

M.MAX_URL = 4096
M.MAX_HEADER_BYTES = 16384
M.MAX_BODY_BYTES = 4096 -- the routes are GETs: a body is not needed

local STATUS_OF = { usage = 400, not_found = 404, connection = 503, timeout = 503, denied = 403 }

-- ---- metrics (Prometheus text format) ----

local BUCKETS = { 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30 }

local function new_metrics()
  return { requests = {}, seconds = { counts = {}, sum = 0, n = 0 }, inflight = 0, rejected = 0,
           abandoned = 0 }
end

local function observe(m, route, status, secs)
  local key = ("route=%q,status=\"%d\""):format(route, status)
  m.requests[key] = (m.requests[key] or 0) + 1
  local s = m.seconds
  for i, b in ipairs(BUCKETS) do if secs <= b then s.counts[i] = (s.counts[i] or 0) + 1 end end
  s.sum, s.n = s.sum + secs, s.n + 1
end

-- This worker's metrics as families: {name, type, help, samples = {{suffix,
-- labels, value}}}, values already formatted.
local function metric_families(m)
  local fams = {}
  local function family(name, typ, help)
    local f = { name = name, type = typ, help = help, samples = {} }
    fams[#fams + 1] = f
    return f
  end
  local function sample(f, suffix, labels, value) f.samples[#f.samples + 1] = { suffix, labels, tostring(value) } end
  local f = family("quarry_http_requests_total", "counter", "Requests answered, by route and status.")
  local keys = {}
  for k in pairs(m.requests) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do sample(f, "", k, m.requests[k]) end
  f = family("quarry_http_request_seconds", "histogram", "Time to answer a request.")
  for i, b in ipairs(BUCKETS) do sample(f, "_bucket", ('le="%s"'):format(b), m.seconds.counts[i] or 0) end
  sample(f, "_bucket", 'le="+Inf"', m.seconds.n)
  sample(f, "_sum", "", ("%.6f"):format(m.seconds.sum))
  sample(f, "_count", "", m.seconds.n)
  sample(family("quarry_http_requests_in_flight", "gauge"), "", "", m.inflight)
  sample(family("quarry_http_requests_rejected_total", "counter"), "", "", m.rejected)
  sample(family("quarry_http_requests_abandoned_total", "counter", "Requests stopped because their client left."),
    "", "", m.abandoned)
  local st = quarry.db:stats()
  f = family("quarry_pool_connections", "gauge", "Database connections of a worker's pool, by state.")
  for _, k in ipairs({ "max", "total", "idle", "in_use", "waiting" }) do
    sample(f, "", ('state="%s"'):format(k), st[k])
  end
  sample(family("quarry_pool_wait_seconds_total", "counter"), "", "", ("%.6f"):format(st.wait_ms / 1000))
  sample(family("quarry_pool_timeouts_total", "counter"), "", "", st.timeouts)
  f = family("quarry_query_seconds", "summary", "Statement latency by statement (quantiles of a worker).")
  local t = quarry.timings()
  local names = {}
  for n in pairs(t) do names[#names + 1] = n end
  table.sort(names)
  for _, n in ipairs(names) do
    local s, label = t[n], ("statement=%q"):format(n):gsub("\\\n", "\\n")
    for _, q in ipairs({ { "0.5", "p50" }, { "0.95", "p95" }, { "0.99", "p99" } }) do
      sample(f, "", ('%s,quantile="%s"'):format(label, q[1]), ("%.6f"):format(s[q[2]] / 1000))
    end
    sample(f, "_sum", label, ("%.6f"):format(s.total_ms / 1000))
    sample(f, "_count", label, s.count)
  end
  local c = quarry.cache
  if c.enabled then
    local cs = c:process_stats() -- not c:stats(), which scans every key in Redis
    f = family("quarry_cache_events_total", "counter", "Shared cache events of a worker.")
    for _, k in ipairs({ "hits", "misses", "computes", "lock_waits", "errors", "sets" }) do
      sample(f, "", ('event="%s"'):format(k), cs[k] or 0)
    end
  end
  return fams
end

-- The Prometheus text of every worker's families ({worker number = families}):
-- each sample labelled with its worker, each family's lines together (the
-- format asks that), in the order this worker lists them.
local function metrics_text(by_worker)
  local order, merged, workers = {}, {}, {}
  for w in pairs(by_worker) do workers[#workers + 1] = w end
  table.sort(workers)
  for _, w in ipairs(workers) do
    for _, f in ipairs(by_worker[w]) do
      local into = merged[f.name]
      if not into then
        into = { f = f, lines = {} }
        merged[f.name], order[#order + 1] = into, f.name
      end
      for _, x in ipairs(f.samples) do
        local labels = x[2] ~= "" and ("," .. x[2]) or ""
        into.lines[#into.lines + 1] = ('%s%s{worker="%d"%s} %s'):format(f.name, x[1], w, labels, x[3])
      end
    end
  end
  local out = {}
  for _, name in ipairs(order) do
    local f = merged[name].f
    if f.help then out[#out + 1] = ("# HELP %s %s"):format(name, f.help) end
    out[#out + 1] = ("# TYPE %s %s"):format(name, f.type)
    for _, l in ipairs(merged[name].lines) do out[#out + 1] = l end
  end
  return table.concat(out, "\n") .. "\n"
end

-- Every worker's metrics, for whichever one a scrape reaches: each puts its
-- families in its shared slot (opts.slots) each second and when asked; the
-- others' are read from theirs. Without this a scrape of `--workers N`
-- answered one worker's counters at random, which Prometheus reads as resets.
local function all_metrics(mine, slots, me, workers)
  local by_worker = { [me] = mine }
  if slots then
    for w = 1, workers do
      local raw = w ~= me and slots:get(w)
      local ok, fams = false, nil
      if raw then ok, fams = pcall(cjson.decode, raw) end
      if ok and type(fams) == "table" then by_worker[w] = fams end
    end
  end
  return metrics_text(by_worker)
end

-- ---- requests ----

local function decode(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function query_params(qs)
  local out = {}
  for pair in qs:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k, v = decode(k), decode(v)
    if not utf8.len(k) or not utf8.len(v) then core.usage("a query parameter is not valid UTF-8") end
    -- ?date=A&date=B is refused: taking either would answer for a date the caller may not have meant
    if out[k] ~= nil then core.usage(("query parameter '%s' given twice"):format(k)) end
    if k ~= "" then out[k] = v end
  end
  return out
end

local function error_body(code, message)
  return cjson.encode({ error = code, message = message })
end

-- The answer to an error raised by a route.
local function error_answer(err)
  if type(err) == "table" and err.code then
    return STATUS_OF[err.code] or 500, error_body(err.code, tostring(err.message))
  end
  quarry.log.error("request failed: " .. tostring(err), { module = "serve" })
  return 500, error_body("internal", tostring(err))
end

--- Serve on host:port until SIGTERM. opts: max_inflight (64),
-- request_timeout_s (60), on_listen(port) (called once listening),
-- access_log (a log line for every request answered); with
-- several workers, worker (this one's number), workers (how many) and slots
-- (core.shared_slots, one per worker: /metrics answers for all).
function M.worker(host, port, opts)
  opts = opts or {}
  local max_inflight = opts.max_inflight or 64
  local timeout_s = opts.request_timeout_s or 60
  local loop <close> = core.loop_new()
  loop:signals()
  -- a port another program holds, an address not this host's: a usage error (exit 2), in one line
  local srv <close> = core.http_listen(loop, host, port, { max_header_bytes = M.MAX_HEADER_BYTES,
    max_body_bytes = M.MAX_BODY_BYTES, timeout_s = 30 })
  if opts.on_listen then opts.on_listen(srv:port()) end
  local tasks = tasks_mod.new(loop)
  local m = new_metrics()
  local deadlines = {} -- {at = ns, req =, id = task} -> true, for the requests in flight
  local draining = false

  -- this worker's metrics, shared with the others when there are others
  local function publish()
    local fams = metric_families(m)
    if opts.slots then opts.slots:put(opts.worker, cjson.encode(fams)) end
    return fams
  end

  local access_log = opts.access_log
  local function answer(req, route, t0, status, body, ctype, extra)
    local headers = { ["Content-Type"] = ctype or "application/json" }
    for k, v in pairs(extra or {}) do headers[k] = v end -- a route's own (routes.lua: Quarry-Coverage)
    local method, uri = access_log and req:method(), access_log and req:uri() -- the request is gone once answered
    req:reply(status, body, headers)
    local secs = (core.now_ns() - t0) / 1e9
    observe(m, route, status, secs)
    if access_log then
      quarry.log.info(("%s %s %d"):format(method, visible(uri), status),
        { module = "http", context = { ms = math.floor(secs * 1e5 + 0.5) / 100, bytes = #(body or "") } })
    end
  end

  local function handle(req)
    local t0 = core.now_ns()
    local uri = req:uri()
    if #uri > M.MAX_URL then
      return answer(req, "other", t0, 414, error_body("usage", ("the URL is longer than %d bytes"):format(M.MAX_URL)))
    end
    local method = req:method()
    if method ~= "GET" and method ~= "HEAD" then -- every route only reads
      return answer(req, "other", t0, 405, error_body("method", "quarry serve answers GET and HEAD only"), nil,
        { Allow = "GET, HEAD" })
    end
    local path = req:path()
    if #path > 1 then path = path:gsub("/$", "") end -- /reports/ is /reports, for every route
    if path == "/metrics" then -- answered at once, busy or not: it is how operators see "busy"
      local text = all_metrics(publish(), opts.slots, opts.worker or 1, opts.workers)
      return answer(req, path, t0, 200, text, "text/plain; version=0.0.4")
    end
    if m.inflight >= max_inflight and path ~= "/healthz" then
      m.rejected = m.rejected + 1
      return answer(req, "other", t0, 503, error_body("busy", ("this worker answers %d requests at once; "
        .. "try again"):format(max_inflight)))
    end
    local fn, value = routes.find(path)
    if not fn then return answer(req, "other", t0, 404, error_body("not_found", "no route " .. path)) end
    local route = fn == routes.report and "/reports/:name" or (value and path:gsub("/[^/]+$", "/:value") or path)
    local ok, params = pcall(query_params, req:query())
    if not ok then return answer(req, route, t0, error_answer(params)) end
    m.inflight = m.inflight + 1
    local d = { at = t0 + timeout_s * 1e9, req = req, route = route, t0 = t0 }
    deadlines[d] = true
    local accept = req:header("Accept")
    d.id = tasks:spawn(function()
      return table.pack(fn({ path = path, params = params, accept = accept }, value))
    end, function(done_ok, r)
      deadlines[d] = nil
      m.inflight = m.inflight - 1
      if done_ok then answer(req, route, t0, r[1], r[2], r[3], r[4])
      else answer(req, route, t0, error_answer(r)) end
    end)
  end

  loop:timer(1, 0) -- a tick: deadlines are checked at least every second
  local ticked = false
  while true do
    if loop:signal_seen("TERM") or loop:signal_seen("INT") then
      if not draining then
        quarry.log.info(("draining: %d requests in flight"):format(m.inflight), { module = "serve" })
      end
      draining = true
      srv:close()
    end
    if loop:signal_seen("HUP") then
      quarry.log.info("SIGHUP: plugins are read at each request; nothing to reload", { module = "serve" })
    end
    if not draining then
      for _, req in ipairs(srv:take()) do handle(req) end
    end
    local now = core.now_ns()
    for d in pairs(deadlines) do
      if now > d.at or (ticked and d.req:gone()) then -- whether clients left is looked at each second
        deadlines[d] = nil
        tasks:cancel(d.id) -- its statement cancelled, its connection back, its cache lock released
        m.inflight = m.inflight - 1
        if d.req:gone() then m.abandoned = m.abandoned + 1
        else answer(d.req, d.route, d.t0, 504, error_body("timeout", ("no answer within %d s"):format(timeout_s))) end
      end
    end
    if draining and tasks.live == 0 then break end
    ticked = false
    for _, k in ipairs(loop:wait()) do
      if k == 0 then ticked = true elseif tasks.state[k] == "io" then tasks:step(k) end
    end
    if ticked then
      loop:timer(1, 0)
      if opts.slots then publish() end
    end
    tasks:retry_pool()
  end
  -- the last answers are written out before the server goes
  local grace = core.now_ns() + 5e9
  while srv:sending() > 0 and core.now_ns() < grace do
    loop:timer(0.05, 0)
    loop:wait()
  end
  quarry.log.info("stopped", { module = "serve" })
  return 0
end

return M
