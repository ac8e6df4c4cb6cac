--- quarry.tasks: coroutines on one event loop, the scheduler under
-- quarry.parallel and quarry serve.
--
-- A task is a function in a coroutine marked async (core.async_threads):
-- a query in it sends its statement and yields the socket to wait on
-- (src/lua_pool.c), a Redis call yields the cache's socket and how long it
-- may wait (src/lua_cache.c), core.sleep yields its delay, a pool with no free
-- connection yields "pool". turn() waits for whatever is ready and resumes
-- those tasks; a task that waits for the pool is tried again after others
-- made progress.
local core = require "quarry.core"

local M = {}
local Tasks = {}
Tasks.__index = Tasks

local async = core.async_threads

--- A scheduler on `loop` (core.loop_new()).
function M.new(loop)
  return setmetatable({ loop = loop, cos = {}, state = {}, done = {}, next_id = 0, live = 0,
                        id_of = setmetatable({}, { __mode = "k" }), parent = {}, mem = {} }, Tasks)
end

local running_scheduler -- the Tasks whose step is resuming a task now

--- The scheduler and id of the running task, or nil outside one.
function M.current()
  local s = running_scheduler
  local id = s and s.id_of[coroutine.running()]
  if id then return s, id end
  return nil
end

--- Start fn(); done(ok, first result or error) is called when it ends.
-- budget: a {bytes, tripped} table it shares with others (the memory of the
-- task that started them), else its own. A task started from another is
-- its child: cancelling the parent cancels it. Returns the task's id.
function Tasks:spawn(fn, done, budget)
  self.next_id = self.next_id + 1
  local id = self.next_id
  local co = coroutine.create(fn)
  async[co] = true
  self.cos[id], self.done[id], self.live = co, done, self.live + 1
  self.id_of[co] = id
  self.mem[id] = budget
  local _, parent = M.current()
  self.parent[id] = parent
  self:step(id)
  return id
end

local function ended(self, id, ok, v)
  local done = self.done[id]
  self.cos[id], self.state[id], self.done[id], self.mem[id], self.parent[id] = nil, nil, nil, nil, nil
  self.live = self.live - 1
  done(ok, v)
end

--- Resume a task that yields "join" (it waits for its children), once.
function Tasks:wake(id)
  if self.state[id] == "join" then
    self.state[id] = nil
    self:step(id)
  end
end

--- Whether task id waits to be woken (it yielded "join" and was not cancelled).
function Tasks:joining(id) return self.state[id] == "join" end

-- Each task keeps its own memory budget (a report plugin's, set by its
-- limits): swapped in while it runs, out while others do, so one task's
-- allocations never count against another's limit nor escape their own.
function Tasks:step(id)
  local co = self.cos[id]
  if not co then return end
  local outer_left, outer_tripped = core.memory_budget()
  local mem = self.mem[id]
  core.memory_restore(mem and mem[1], mem and mem[2])
  local outer_scheduler = running_scheduler
  running_scheduler = self
  local r = table.pack(coroutine.resume(co))
  running_scheduler = outer_scheduler
  mem = self.mem[id] or {} -- in place: a budget shared with other tasks stays shared
  mem[1], mem[2] = core.memory_budget()
  self.mem[id] = mem
  core.memory_restore(outer_left, outer_tripped)
  if not r[1] then return ended(self, id, false, r[2]) end
  if coroutine.status(co) == "dead" then return ended(self, id, true, r[2]) end
  local what = r[2]
  if what == "join" then
    self.state[id] = "join"
  elseif what == "pool" then
    self.state[id] = "pool"
  elseif what == "sleep" then
    self.state[id] = "io"
    self.loop:timer(r[3], id)
  elseif math.type(what) == "integer" then -- a socket, whether to write, and for Redis a deadline
    self.state[id] = "io"
    self.loop:watch(what, r[3], id, r[4])
  else
    coroutine.close(co)
    ended(self, id, false, "a task yielded outside a query (coroutine.yield needs a coroutine of its own)")
  end
end

--- Stop a task that has not ended: its statement is cancelled, its
-- connection given back, its transaction rolled back. done is not called.
function Tasks:cancel(id)
  local co = self.cos[id]
  if not co then return end
  for child, parent in pairs(self.parent) do
    if parent == id then self:cancel(child) end
  end
  self.loop:unwatch(id)
  self.cos[id], self.state[id], self.done[id], self.mem[id], self.parent[id] = nil, nil, nil, nil, nil
  self.live = self.live - 1
  coroutine.close(co)
end

--- Ids of the tasks that have not ended.
function Tasks:ids()
  local out = {}
  for id in pairs(self.cos) do out[#out + 1] = id end
  table.sort(out)
  return out
end

--- Try again the tasks that wait for a connection; true if some still wait.
function Tasks:retry_pool()
  local starved = false
  for _, id in ipairs(self:ids()) do
    if self.state[id] == "pool" then
      self:step(id)
      if self.state[id] == "pool" then starved = true end
    end
  end
  return starved
end

--- One round: wait until something is ready (a socket, a timer, or with
-- `wake`, what else the loop serves), resume what is. Returns false when
-- tasks wait for a connection and nothing can give one back.
function Tasks:turn(wake)
  local io = false
  for _, s in pairs(self.state) do if s == "io" then io = true break end end
  if io or wake then
    for _, id in ipairs(self.loop:wait()) do
      if self.state[id] == "io" then self:step(id) end
    end
  end
  local starved = self:retry_pool()
  if starved and not wake then
    for _, s in pairs(self.state) do if s == "io" then return true end end
    return false
  end
  return true
end

return M
