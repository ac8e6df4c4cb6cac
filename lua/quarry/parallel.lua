--- quarry.parallel: run functions at the same time, each query on its own
-- pooled connection, on one event loop (libevent, src/lua_loop.c).
--
--   local daily, farms = quarry.parallel(
--     function() return db:query(DAILY_SQL, "2024-03-01") end,
--     function() return db:query(FARMS_SQL, "2024-03") end)
--
-- Each function runs in a coroutine of its own (lua/quarry/tasks.lua). A
-- query there sends its statement and yields the socket it waits on
-- (src/lua_pool.c); the scheduler resumes whichever coroutine's socket is ready, so while one
-- query runs on the server the others are sent and run too. A transaction
-- (db:transaction) stays on its one connection, its statements one after
-- another. The first error raised in any function is raised here, once the
-- others have been stopped: their running statements cancelled, their
-- connections given back, their transactions rolled back.
--
-- Redis calls (the cache) yield the same way, on the process's one
-- non-blocking Redis connection (src/cache.c), replies handed back in the
-- order sent. Outside parallel, queries and Redis calls block as before.
local core = require "quarry.core"

local M = {}

--- Run the functions concurrently; their first results, in order.
function M.run(...)
  local fns = table.pack(...)
  for i = 1, fns.n do
    if type(fns[i]) ~= "function" then error(("parallel: argument %d is not a function"):format(i), 2) end
  end
  -- Code under limits (a report plugin) keeps them in its functions: the
  -- same instruction hook, one memory budget for all of them.
  local hook, mask, count = debug.gethook()
  if hook then
    for i = 1, fns.n do
      local f = fns[i]
      fns[i] = function() debug.sethook(hook, mask, count) return f() end
    end
  end
  local tasks_mod = require "quarry.tasks"
  local sched, me = tasks_mod.current()
  if sched then return M.nested(sched, me, fns) end
  local budget = M.budget()
  local loop <close> = core.loop_new()
  local tasks = tasks_mod.new(loop)
  local results, failure = {}, nil
  for i = 1, fns.n do
    if failure then break end
    tasks:spawn(fns[i], function(ok, v)
      if ok then results[i] = v else failure = failure or { err = v } end
    end, budget)
  end
  while tasks.live > 0 and not failure do
    if not tasks:turn() then
      failure = { err = core.error({ code = "timeout", message = "parallel: every function waits for a "
        .. "database connection and none will come back (the pool's connections are held outside "
        .. "parallel; raise DB_POOL_MAX or release them)" }) }
    end
  end
  if failure then for _, id in ipairs(tasks:ids()) do tasks:cancel(id) end end
  if budget then core.memory_restore(budget[1], budget[2]) end -- what the functions spent is spent here
  if failure then error(failure.err, 0) end
  return table.unpack(results, 1, fns.n)
end

--- The memory budget of the running code, as one table its functions share
-- (a report plugin's limit holds in them all), or nil when it has none.
function M.budget()
  local left, tripped = core.memory_budget()
  return left and { left, tripped } or nil
end

--- parallel inside a task (a request of quarry serve, a function of an
-- outer parallel): the functions become tasks of the same scheduler, and
-- this one waits ("join") until they are done, so their queries overlap
-- everything else the loop runs. They share this task's memory budget.
function M.nested(sched, me, fns)
  local budget = M.budget()
  local results, failure, pending, ids = {}, nil, fns.n, {}
  for i = 1, fns.n do
    if failure then break end
    ids[i] = sched:spawn(fns[i], function(ok, v)
      pending = pending - 1
      if ok then results[i] = v else failure = failure or { err = v } end
      if pending == 0 or failure then sched:wake(me) end
    end, budget)
  end
  while pending > 0 and not failure do coroutine.yield("join") end
  if failure then for _, id in ipairs(ids) do sched:cancel(id) end end
  if budget then core.memory_restore(budget[1], budget[2]) end -- what the functions spent is spent here
  if failure then error(failure.err, 0) end
  return table.unpack(results, 1, fns.n)
end

return M
