--- quarry.cli.serve: `quarry serve`, the HTTP server (lua/quarry/serve.lua).
-- A command group: define(p, info, plugin) adds its commands to the parser,
-- commands[name](args, info, extra) runs one (lua/quarry/cli.lua dispatches).
local cli = require "quarry.cli.common"
local quarry = require "quarry"

local M = { commands = {} }
local commands = M.commands

function M.define(p)
  local s = p:command("serve", "Answer HTTP requests: the reports (GET /reports, /reports/NAME?param=...), "
    .. "the old platform's /api routes, /healthz and /metrics. SIGTERM drains and exits 0.")
  s:option("--listen", "Address and port (loopback unless you say otherwise).", "127.0.0.1:8080")
  s:option("--workers", "Processes sharing the port (SO_REUSEPORT), each with its own pool; "
    .. "one that crashes is replaced.", "1")
  s:option("--max-inflight", "Requests one worker answers at once (503 beyond).", "64")
  s:option("--request-timeout", "Longest a request may take, s (504 beyond).", "60")
  s:flag("--access-log", "Log every request answered: method, URL, status, time (as JSON with --log-format json).")
end

function commands.serve(args)
  local listen = tostring(args.listen):gsub("^localhost:", "127.0.0.1:") -- what people type for loopback
  local host, port = listen:match("^(%d+%.%d+%.%d+%.%d+):(%d+)$")
  if not host then cli.usage_error("--listen takes IPV4:PORT (or localhost:PORT), e.g. 127.0.0.1:8080") end
  port = tonumber(port)
  if port > 65535 then cli.usage_error("--listen: the port must be at most 65535") end
  local workers = cli.int_flag(args.workers, "--workers", "an integer from 1 to 256", 256)
  local inflight = cli.int_flag(args.max_inflight, "--max-inflight", "an integer from 1 to 100000", 100000)
  local timeout = cli.int_flag(args.request_timeout, "--request-timeout", "a number of seconds from 1 to 86400", 86400)
  require("quarry.migrate").require_current(quarry.db) -- the schema is checked once, before listening
  local serve = require "quarry.serve"
  local core = require "quarry.core"
  local children = {}
  -- made before the fork, so every worker shares it: /metrics of any answers for all
  local slots = workers > 1 and core.shared_slots(workers, 4 * 1024 * 1024) or nil
  local function run_worker(i)
    return serve.worker(host, port, { max_inflight = inflight, request_timeout_s = timeout,
      access_log = args.access_log,
      worker = i, workers = workers, slots = slots,
      on_listen = function(p)
        cli.note(("serving http://%s:%d/ (pid %d)"):format(host, p, core.getpid()))
        io.stderr:flush()
      end })
  end
  -- The port held here first: one that another program (or another quarry
  -- serve) holds is said once, before any worker starts; port 0 becomes the
  -- one the system chose, on which every worker (a replaced one too) listens.
  port = core.http_reserve_port(host, port)
  if workers == 1 then return run_worker(1) end
  quarry.close() -- each worker opens its own pool and cache connection after the fork
  local born = {}
  local function start_worker(i)
    local pid = core.fork()
    if pid == 0 then os.exit(run_worker(i)) end
    children[i], born[i] = pid, core.now_ns()
    return pid
  end
  for i = 1, workers do start_worker(i) end
  -- A worker that crashed (killed, out of memory) is replaced, so the
  -- server keeps its size; one that failed on its own within seconds of
  -- starting (it could not listen) is not: it would only fail again.
  return core.wait_children(children, function(i, code, signalled)
    local lived_s = (core.now_ns() - born[i]) / 1e9
    if not signalled and lived_s < 5 then return nil end
    quarry.log.warn(("worker pid %d ended (%s) after %.0f s; starting another"):format(children[i],
      signalled and ("signal " .. (code - 128)) or ("exit " .. code), lived_s), { module = "serve" })
    if lived_s < 1 then core.sleep(1) end -- crashing at once: not in a tight loop
    return start_worker(i)
  end)
end

return M
