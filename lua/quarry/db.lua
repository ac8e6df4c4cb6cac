--- quarry.db: the database handle scripts use (quarry.db).
-- Queries, the pool and transactions are done in C (src/pool.c, src/tx.c);
-- this file adds what is best said in Lua: transaction(fn) with its
-- true/false contract, explain, and naming the script line that took a
-- connection.
local core = require "quarry.core"

local M = {}
local Db = {}
Db.__index = Db

local quarry_lua = debug.getinfo(1, "S").source:match("^@(.*/lua/quarry/)") or "\0"

--- "file:line" of the first caller outside quarry's own Lua files, or of
-- quarry's own first line when quarry itself is the caller (ingest, seed).
function M.caller()
  local own
  for level = 3, 30 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if info.currentline > 0 and info.source:sub(1, 1) == "@" then
      if info.source:find(quarry_lua, 2, true) ~= 2 then
        return info.short_src .. ":" .. info.currentline
      end
      own = own or (info.source:match("(lua/quarry/.*)$") or info.short_src) .. ":" .. info.currentline
    end
  end
  return own
end

--- An SQL identifier, quoted: table, column and partition names never reach
-- SQL text any other way.
function M.ident(name)
  return '"' .. tostring(name):gsub('"', '""') .. '"'
end

--- Identifiers, quoted and joined by ", ".
function M.idents(names)
  local q = {}
  for i, n in ipairs(names) do q[i] = M.ident(n) end
  return table.concat(q, ", ")
end

-- Transactions whose function is running: an os.exit inside one ends the
-- process before its COMMIT (cli.lua says so instead of exiting 0). Counted
-- down by a to-be-closed guard, so a task cancelled mid-transaction
-- (coroutine.close: quarry.parallel, a timed-out request) is counted out too.
M.open = 0
local OPEN = setmetatable({}, { __close = function() M.open = M.open - 1 end })

local function keep(err)
  return err
end

--- Run fn(conn) inside a transaction (or a savepoint when one is open).
-- Returns true, fn's results after COMMIT; false, err after ROLLBACK.
-- opts.setup (statements of the host's, run in BEGIN's round trip): fn
-- gets the rows of its last statement too, fn(conn, rows).
local function transaction(conn, fn, opts)
  if type(fn) ~= "function" then error("transaction needs a function", 2) end
  local depth = conn:depth()
  local ok, err = pcall(conn.begin, conn, opts)
  if not ok then
    if type(err) == "string" then error(err, 2) end -- misuse (a bad option), not a failure
    return false, err
  end
  M.open = M.open + 1
  local r
  do
    local _ <close> = OPEN -- counted out when fn is over, or by coroutine.close if it never returns
    r = table.pack(xpcall(fn, keep, conn, err))
  end
  if r[1] then
    local cok, cerr = pcall(conn.commit, conn)
    if cok then return true, table.unpack(r, 2, r.n) end
    if conn:depth() > depth then pcall(conn.rollback, conn) end
    return false, cerr
  end
  if conn:depth() > depth then pcall(conn.rollback, conn) end
  return false, r[2]
end

local function explain(conn, sql, ...)
  local text = type(sql) == "table" and sql.sql or sql
  if type(text) ~= "string" then error("explain needs SQL text", 2) end
  -- ANALYZE runs the statement: inside a transaction that is always rolled
  -- back, a statement that writes changes nothing.
  conn:begin()
  local ok, row = pcall(conn.query_one, conn,
    { sql = "EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) " .. text, name = "explain" }, ...)
  pcall(conn.rollback, conn)
  if not ok then error(row, 0) end
  return row["QUERY PLAN"][1]
end

-- Connections (C userdata) gain the same two methods, so a transaction's
-- handle nests: tx:transaction(fn) is a savepoint.
core.conn_methods.transaction = transaction
core.conn_methods.explain = explain

--- A Db over a core pool.
function M.new(pool)
  return setmetatable({ pool = pool }, Db)
end

function Db:query(sql, ...) return self.pool:query(sql, ...) end
function Db:query_one(sql, ...) return self.pool:query_one(sql, ...) end
function Db:exec(sql, ...) return self.pool:exec(sql, ...) end
function Db:stats() return self.pool:stats() end

--- A connection of your own until conn:release() or the end of its
-- `local c <close>` scope.
function Db:acquire()
  return self.pool:acquire(M.caller())
end

function Db:transaction(fn, opts)
  local conn <close> = self.pool:acquire(M.caller())
  return transaction(conn, fn, opts)
end

function Db:explain(sql, ...)
  local conn <close> = self.pool:acquire(M.caller())
  return explain(conn, sql, ...)
end

function Db:close() self.pool:close() end

return M
