-- lua/quarry/shell.lua: the interactive prompt, driven through a pipe.
local h = require "spec.helper"

describe("quarry shell", function()
  it("prints query results as tables, values as values, and errors without dying", function()
    local input = h.write(h.tmpname(".txt"), table.concat({
      "db:query('SELECT 1 AS a, $1::text AS b', 'x')",
      "1 + 2",
      "local t = {",
      "  n = 3 }",
      "error('oops')",
      "db:query_one('SELECT 42 AS answer').answer",
    }, "\n") .. "\n")
    local out, err, code = h.quarry("shell < " .. input)
    os.remove(input)
    assert.are.equal(0, code, err)
    assert.matches("a  b\n%-  %-\n1  x\n%(1 row%)\n", out)
    assert.matches("\n3\n", out)
    assert.matches("oops", out)
    assert.matches("\n42\n$", out)
  end)
end)
