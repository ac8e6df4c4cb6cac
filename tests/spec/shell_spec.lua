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
