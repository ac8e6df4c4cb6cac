--- quarry.cli.partition: partition plans and their executor
-- A command group: define(p, info, plugin) adds its commands to the parser,
-- commands[name](args, info, extra) runs one (lua/quarry/cli.lua dispatches).
local cli = require "quarry.cli.common"
local quarry = require "quarry"

local M = { commands = {} }
local commands = M.commands

function M.define(p, info, plugin) -- luacheck: ignore 212
  local part = p:command("partition", "Range-partition the big tables by their plans "
    .. "(lua/quarry/defs/partitions.lua), on a database in use.")
    :command_target("partition_command")
  local function table_arg(c) c:argument("table", "One table (default: every table with a plan)."):args("?") end
  table_arg(part:command("plan", "Print the DDL apply would run and the rows each partition would get; "
    .. "changes nothing."))
  local apply = part:command("apply", "Partition: build, copy in committed batches (resumable: rerun after a "
    .. "crash), catch up rows written meanwhile, verify counts and checksums, swap names. The plain table is "
    .. "kept (and kept in step) for rollback.")
  table_arg(apply)
  apply:option("--batch-size", "Rows per committed batch.", "50000")
  table_arg(part:command("verify", "Compare every partition's rows (count and checksum) with the kept plain "
    .. "table; exit 1 naming the partitions that differ."))
  local rollback = part:command("rollback", "Back to a plain table holding every row (or abandon an unfinished "
    .. "apply).")
  table_arg(rollback)
  local maintain = part:command("maintain", "Create partitions ahead, move rows out of the default partition, "
    .. "detach partitions past retention. Idempotent; safe from cron.")
  table_arg(maintain)
  table_arg(part:command("finish", "Drop the kept plain table: writes stop paying for the mirror, and rollback "
    .. "is no longer possible."))
  for _, c in ipairs({ apply, rollback, maintain }) do
    c:option("--lock-timeout", "Longest wait for a lock, ms; waits retry.", "2000")
  end
end

function commands.partition(args)
  local partition = require "quarry.partition"
  local sub = args.partition_command
  local opts = {}
  if args.batch_size then opts.batch_size = cli.int_flag(args.batch_size, "--batch-size", "a positive integer") end
  if args.lock_timeout then
    opts.lock_timeout_ms = cli.int_flag(args.lock_timeout, "--lock-timeout", "a positive integer (ms)")
  end
  local plans = partition.plans(args.table) -- an unknown table is bad input, before any connection
  local db = quarry.db
  require("quarry.migrate").require_current(db)
  opts.cache = cli.cache_if_on()
  for _, t in ipairs(plans) do
    if sub == "plan" then
      for _, line in ipairs(partition.plan(db, t.name, t.plan)) do print(line) end
    elseif sub == "apply" then
      local r = partition.apply(db, t.name, t.plan, opts)
      print(("%s: partitioned; %d row(s) copied in %.1f s (%.0f rows/s), %d caught up, parent locked %.1f ms, "
        .. "%.1f s in all"):format(t.name, r.copied, r.copy_s, r.copy_s > 0 and r.copied / r.copy_s or 0,
        r.caught_up, r.lock_ms, r.total_s))
    elseif sub == "verify" then
      local r = partition.verify(db, t.name, t.plan)
      local names = {}
      for name in pairs(r.rows) do names[#names + 1] = name end
      table.sort(names)
      for _, name in ipairs(names) do print(("%-50s %10d rows"):format(name, r.rows[name])) end
      print(("%s: %d partition(s)%s%s"):format(t.name, #r.partitions,
        r.against and (", identical to " .. r.against .. " (counts and checksums)") or "",
        (r.default_rows or 0) > 0 and ("; %d row(s) in the default partition: run maintain"):format(r.default_rows)
        or ""))
    elseif sub == "rollback" then
      local r = partition.rollback(db, t.name, t.plan, opts)
      print(r.abandoned and ("%s: unfinished apply abandoned; the table is unchanged"):format(t.name)
        or ("%s: a plain table again, %d row(s); locked %.1f ms"):format(t.name, r.rows, r.lock_ms))
    elseif sub == "maintain" then
      local actions = partition.maintain(db, t.name, t.plan, opts)
      for _, a in ipairs(actions) do print(t.name .. ": " .. a) end
      if #actions == 0 then print(t.name .. ": nothing to do") end
    elseif sub == "finish" then
      partition.finish(db, t.name)
      print(("%s: dropped %s; rollback is no longer possible"):format(t.name, t.name .. partition.OLD))
    end
  end
  return 0
end

return M
