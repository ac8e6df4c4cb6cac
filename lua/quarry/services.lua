--- quarry.services: the embedded default PostgreSQL and Redis of a checkout.
-- The work is done by scripts/services.sh; this module finds the state folder,
-- runs the script and reads back the URLs it wrote.
local M = {}

local paths = require "quarry.paths"

--- Where plugins/ and scripts/ are: the checkout, or the install's share/quarry.
function M.root() return paths.root end

local function writable(dir)
  local probe = dir .. "/.quarry-probe"
  local f = io.open(probe, "w")
  if not f then return false end
  f:close()
  os.remove(probe)
  return true
end

--- The state folder: QUARRY_HOME, else .quarry in a writable checkout, else
-- (an installed quarry) the user's XDG state folder.
function M.home(cfg)
  if cfg and cfg.home then return cfg.home end
  if paths.checkout and writable(paths.root) then return paths.root .. "/.quarry" end
  local state = os.getenv("XDG_STATE_HOME") or ((os.getenv("HOME") or "/tmp") .. "/.local/state")
  return state .. "/quarry"
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Whether anything is at path (a socket cannot be opened as a file):
-- renaming it to itself fails with ENOENT (2) only when nothing is there.
local function exists(path)
  local ok, _, code = os.rename(path, path)
  return ok or code ~= 2
end

--- Run scripts/services.sh VERB; returns true or false, exit code. The
-- first `up` in a state folder says where it is.
function M.run(verb, cfg, quiet)
  local home = M.home(cfg)
  if verb == "up" and not exists(home) then
    io.stderr:write(("quarry: the embedded PostgreSQL and Redis keep their data in %s (QUARRY_HOME moves it)\n")
      :format(home))
  end
  local cmd = ("QUARRY_HOME=%s %s %s%s"):format(shell_quote(home),
    shell_quote(M.root() .. "/scripts/services.sh"), verb, quiet and " >/dev/null" or "")
  local ok, _, code = os.execute(cmd)
  return ok == true, code
end

--- The URLs the last `up` wrote, or nil.
function M.urls(cfg)
  local f = io.open(M.home(cfg) .. "/urls", "r")
  if not f then return nil end
  local urls = {}
  for line in f:lines() do
    local k, v = line:match("^([%w_]+)=(.*)$")
    if k then urls[k] = v end
  end
  f:close()
  return urls
end

local function socket_alive(path)
  -- A unix socket file is left behind by a crashed server, so its presence
  -- alone proves little; a server that is up accepts a connection, which the
  -- caller will try anyway. Checking the file keeps the common case at one stat.
  local f = io.open(path, "r")
  if f then f:close() return true end
  return exists(path)
end

--- URLs of running embedded services, starting them when needed.
function M.ensure(cfg)
  local urls = M.urls(cfg)
  if urls and urls.DATABASE_URL then
    local host = urls.DATABASE_URL:match("host=([^&]+)")
    local redis = urls.REDIS_URL and urls.REDIS_URL:match("^unix://(.*)$")
    if host and socket_alive(host .. "/.s.PGSQL.5432") and (not redis or socket_alive(redis)) then
      return urls
    end
  end
  local ok = M.run("up", cfg, true)
  urls = ok and M.urls(cfg)
  if not urls then
    error(require("quarry.core").error({ code = "connection",
      message = "could not start the embedded services (see 'quarry services status')" }), 0)
  end
  return urls
end

return M
