--- quarry.parallel: run functions at the same time, each query on its own
-- pooled connection, on one event loop (libevent, src/lua_loop.c).
--
--   local daily, farms = quarry.parallel(
--     function() return db:query(DAILY_SQL, "2024-03-01") end,
--     function() return db:query(FARMS_SQL, "2024-03") end)
--
-- Each function runs in a coroutine of its own. A query there sends its
-- statement and yields the socket it waits on (src/lua_pool.c); this
-- scheduler resumes whichever coroutine's socket is ready, so while one
-- query runs on the server the others are sent and run too. A transaction
-- (db:transaction) stays on its one connection, its statements one after
-- another. The first error raised in any function is raised here, once the
-- others have been stopped: their running statements cancelled, their
-- connections given back, their transactions rolled back.
--
-- Redis calls and everything else in the functions run as they always do,
-- one at a time; outside parallel, queries block as before.
local core = require "quarry.core"

local M = {}

local async = core.async_threads -- weak set: coroutines whose queries yield

local function in_parallel()
  local co, main = coroutine.running()
  return not main and async[co] == true
end

--- Run the functions concurrently; their first results, in order.
function M.run(...)
  local fns = table.pack(...)
  for i = 1, fns.n do
    if type(fns[i]) ~= "function" then error(("parallel: argument %d is not a function"):format(i), 2) end
  end
  if in_parallel() then -- nested: one after another, their queries still overlap the outer ones'
    local out = {}
    for i = 1, fns.n do out[i] = (fns[i]()) end
    return table.unpack(out, 1, fns.n)
  end

  local loop <close> = core.loop_new()
  local cos, state, results = {}, {}, {}
  local left, failure = fns.n, nil

  local function finish(i)
    state[i] = "done"
    left = left - 1
  end

  local function step(i)
    local r = table.pack(coroutine.resume(cos[i]))
    if not r[1] then
      finish(i)
      failure = failure or { err = r[2] }
    elseif coroutine.status(cos[i]) == "dead" then
      finish(i)
      results[i] = r[2]
    elseif r[2] == "pool" then
      state[i] = "pool"
    elseif math.type(r[2]) == "integer" then
      state[i] = "io"
      loop:watch(r[2], r[3], i)
    else
      finish(i)
      failure = failure or { err = "parallel: a function yielded outside a query "
        .. "(coroutine.yield needs a coroutine of its own)" }
    end
  end

  for i = 1, fns.n do
    cos[i] = coroutine.create(fns[i])
    async[cos[i]] = true
  end
  for i = 1, fns.n do
    if failure then break end
    step(i)
  end
  while left > 0 and not failure do
    local waiting_io = false
    for i = 1, fns.n do if state[i] == "io" then waiting_io = true end end
    if waiting_io then
      for _, i in ipairs(loop:wait()) do
        if state[i] == "io" and not failure then step(i) end
      end
    end
    -- a connection may have come back: those waiting for one try again
    local still_waiting = false
    for i = 1, fns.n do
      if state[i] == "pool" and not failure then
        step(i)
        if state[i] == "pool" then still_waiting = true end
      end
    end
    if still_waiting and not waiting_io then
      local io_now = false
      for i = 1, fns.n do if state[i] == "io" then io_now = true end end
      if not io_now then
        failure = { err = core.error({ code = "timeout", message = "parallel: every function waits for a "
          .. "database connection and none will come back (the pool's connections are held outside "
          .. "parallel; raise DB_POOL_MAX or release them)" }) }
      end
    end
  end
  if failure then
    for i = 1, fns.n do
      if state[i] ~= "done" then
        loop:unwatch(i)
        coroutine.close(cos[i]) -- cancels its statement, releases its connection, rolls back
      end
    end
    error(failure.err, 0)
  end
  return table.unpack(results, 1, fns.n)
end

return M
