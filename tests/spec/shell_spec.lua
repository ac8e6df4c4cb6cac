-- lua/quarry/shell.lua: the interactive prompt, driven through a pipe.
local h = require "spec.helper"

describe("quarry shell", function()
  it("prints query results as tables, values as values, every digit as sent", function()
    local input = h.write(h.tmpname(".txt"), table.concat({
      "db:query('SELECT 1 AS a, $1::text AS b', 'x')",
      "1 + 2",
      "local t = {",
      "  n = 3 }",
      "db:query_one('SELECT 0.0025 AS btc').btc",
      "db:query('SELECT 1 AS a WHERE false')",
      "db:query_one('SELECT 42 AS answer').answer",
    }, "\n") .. "\n")
    local out, err, code = h.quarry("shell < " .. input)
    os.remove(input)
    assert.are.equal(0, code, err)
    assert.matches("a  b\n%-  %-\n1  x\n%(1 row%)\n", out)
    assert.matches("\n3\n", out)
    assert.matches("\n0%.0025\n", out)
    assert.matches("\na\n%(0 rows%)\n", out) -- the columns, then the count
    assert.matches("\n42\n$", out)
  end)

  it("stops piped input at the first error with exit 1, as a script does", function()
    local input = h.write(h.tmpname(".txt"), "x = 1\nerror('oops')\nprint('after')\n")
    local out, err, code = h.quarry("shell < " .. input)
    os.remove(input)
    assert.are.equal(1, code)
    assert.matches("oops", err)
    assert.not_matches("after", out)
  end)

  it("has help, -c for one-offs, and run - for a script on standard input", function()
    local out, err, code = h.quarry("shell < /dev/null -c help")
    assert.are.equal(0, code, err)
    assert.matches("db:query", out)
    out, err, code = h.quarry("shell -c 'db:query_one([[SELECT 6 * 7 AS x]]).x'")
    assert.are.equal(0, code, err)
    assert.are.equal("42\n", out)
    local _
    _, err, code = h.quarry("shell -c 'error([[no]])'")
    assert.are.equal(1, code)
    assert.matches("no", err)
    local script = h.write(h.tmpname(".lua"), 'print(require("quarry").db:query_one("SELECT 5 AS n").n)\n')
    out, err, code = h.quarry("run - < " .. script)
    os.remove(script)
    assert.are.equal(0, code, err)
    assert.are.equal("5\n", out)
  end)

  it("keeps its history in the state folder, on a terminal", function()
    local core = require "quarry.core"
    if not core.has_readline then return end -- built without libedit: no history to keep
    local home = h.tmpname(".home")
    os.execute("mkdir -p " .. home)
    local env = ("QUARRY_HOME=%s DATABASE_URL=%s REDIS_URL=%s"):format(h.shell_quote(home),
      h.shell_quote(h.database_url()), h.shell_quote(h.urls().REDIS_URL))
    -- script(1) gives the shell a terminal; it reads the lines and leaves at end of input
    os.execute(("printf '1 + 41\\n' | %s script -qec %s /dev/null >/dev/null 2>&1"):format(env,
      h.shell_quote(h.shell_quote(h.bin) .. " shell")))
    local hist = h.read(home .. "/shell_history") or ""
    os.execute("rm -rf " .. h.shell_quote(home))
    assert.matches("1.-%+.-41", hist) -- libedit writes its own escapes (\\040 for a space)
  end)
end)

-- A terminal session: script(1) gives the shell a pseudo-terminal, a fifo
-- carries the keys (Ctrl-C is the byte 3, which the terminal turns into
-- SIGINT for the shell alone), and each step waits for the shell's answer.
describe("quarry shell on a terminal", function()
  local core = require "quarry.core"
  local dir, keys, out

  local function wait_for(pattern, what)
    for _ = 1, 600 do
      local seen = h.read(out) or ""
      if seen:find(pattern) then return seen end
      core.sleep(0.05)
    end
    error(("no %s after 30 s; the terminal shows:\n%s"):format(what, h.read(out) or ""))
  end

  -- Ctrl-C also flushes what the terminal holds unread, as terminals do:
  -- after one, wait for the next prompt before typing on.
  local function prompts()
    local _, n = (h.read(out) or ""):gsub("quarry> ", "")
    return n
  end
  local function interrupt()
    local before = prompts()
    keys:write("\3")
    keys:flush()
    for _ = 1, 600 do
      if prompts() > before then return end
      core.sleep(0.05)
    end
    error("no prompt after Ctrl-C; the terminal shows:\n" .. (h.read(out) or ""))
  end

  local function type_keys(s)
    keys:write(s)
    keys:flush()
  end

  setup(function()
    dir = h.tmpname(".tty")
    os.execute("mkdir -p " .. dir .. " && mkfifo " .. dir .. "/keys")
    out = dir .. "/screen"
    local env = ("DATABASE_URL=%s REDIS_URL=%s"):format(h.shell_quote(h.database_url()),
      h.shell_quote(h.urls().REDIS_URL))
    os.execute(("(%s script -qec %s /dev/null < %s/keys > %s 2>&1; echo \"exit $?\" >> %s) &"):format(env,
      h.shell_quote(h.shell_quote(h.bin) .. " shell"), dir, out, out))
    keys = assert(io.open(dir .. "/keys", "w"))
  end)

  teardown(function()
    if keys then keys:close() end
    os.execute("rm -rf " .. dir)
  end)

  it("drops the line on Ctrl-C, cancels a running query and a Lua loop, and stays", function()
    if not core.has_readline then return end -- without libedit Ctrl-C ends the shell, as before
    wait_for("quarry> ", "first prompt")
    type_keys("x = {\n")
    wait_for(">> ", "continuation prompt")
    interrupt()
    type_keys("print('after ' .. type(x))\n")
    wait_for("after nil", "fresh statement after Ctrl-C") -- the half-typed table was dropped
    type_keys("db:query('SELECT pg_sleep(60)')\n")
    core.sleep(1) -- the query is running
    interrupt()
    wait_for("canceling statement due to user request", "libpq cancel")
    type_keys("print('alive', db:query_one('SELECT 41 + 1 AS x').x)\n")
    wait_for("alive\t42", "the same shell, a usable connection")
    type_keys("while true do end\n")
    core.sleep(0.5)
    interrupt()
    wait_for("interrupted %(Ctrl%-C%)", "Lua loop stopped")
    type_keys("\\timing\n\\decimals 2\n")
    wait_for("rounded to 2 places", "decimals toggle")
    type_keys("db:query('SELECT 0.0025::numeric AS a, 12345.678 AS b, 7 AS c')\n")
    local seen = wait_for("Time: [%d.]+ ms", "timing line")
    assert.matches("0%.00%s+12345%.68%s+7", seen) -- rounded on request; no thousands separators in the shell
    type_keys("\\decimals off\n\\timing off\ndb:query_one('SELECT 12345.678::numeric AS b').b\n")
    wait_for("\n12345%.678\r?\n", "every digit again")
    type_keys("\4")
    seen = wait_for("exit %d+", "the shell to leave")
    assert.matches("exit 0", seen)
  end)
end)
