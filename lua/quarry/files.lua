--- quarry.files: writing files that say when a write failed. Lua's
-- f:write only fills stdio's buffer; a full disk shows at the flush or the
-- close, and ignoring either turns a truncated report, or a truncated
-- temporary file quarry then loads, into a success. Every file quarry
-- writes goes through here.
local M = {}

local function check(name, ok, err)
  if not ok then error(("cannot write %s: %s"):format(name, err), 0) end
end

--- io.open's reason without the path it starts with: "cannot open PATH:
-- REASON" names the file once.
function M.reason(path, err)
  err = tostring(err)
  if err:sub(1, #path + 2) == path .. ": " then return err:sub(#path + 3) end
  return err
end

--- f:write(...), raising "cannot write NAME: reason" on failure.
function M.write(f, name, ...)
  check(name, f:write(...))
end

--- Flush f (before reading back a temporary file, or handing it on).
function M.flush(f, name)
  check(name, f:flush())
end

-- A path that cannot be opened is the caller's bad input (exit 2); a
-- write that fails after it (a full disk) is a failure (exit 1).
local function open(path, shown)
  local f, err = io.open(path, "wb")
  if not f then require("quarry.core").usage(("cannot write %s: %s"):format(shown, M.reason(path, err))) end
  return f
end

-- text written and flushed: true, or nil and the reason
local function write_flushed(f, text)
  local ok, err = f:write(text)
  if ok then ok, err = f:flush() end
  return ok, err
end

--- Write text to path whole or not at all: a file beside it, flushed,
-- synced and closed with every error checked, then renamed over path (and
-- the directory synced). On any failure
-- the file beside it is removed and path is left as it was. Devices
-- (/dev/stdout, /dev/null, a fifo under /proc) are written straight.
function M.replace(path, text)
  if path:match("^/dev/") or path:match("^/proc/") then
    local f = open(path, path)
    local ok, werr = write_flushed(f, text)
    f:close()
    check(path, ok, werr)
    return
  end
  local core = require "quarry.core"
  local tmp = ("%s.tmp.%d"):format(path, core.getpid()) -- two writers never share one
  local f = open(tmp, path)
  local ok, werr = write_flushed(f, text)
  if ok then ok, werr = core.fsync(f) end -- on the disk before its name says "written"
  local closed, cerr = f:close()
  if ok and not closed then ok, werr = false, cerr end
  local errno
  if ok then ok, werr, errno = os.rename(tmp, path) end
  local dir = path:match("^(.*)/[^/]*$") or "."
  if ok then ok, werr = core.fsync_dir(dir == "" and "/" or dir) end -- and the rename too
  if not ok then
    os.remove(tmp)
    -- -o DIR is the caller's bad input, as a path that cannot be opened is
    if errno == 21 then core.usage(("cannot write %s: %s"):format(path, werr)) end -- EISDIR
    check(path, false, werr)
  end
end

return M
