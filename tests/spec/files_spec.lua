-- lua/quarry/files.lua: files written whole or not at all, and on the disk
-- before quarry says they were written. A pure module: no service.
local h = require "spec.helper"
local core = require "quarry.core"
local files = require "quarry.files"

describe("files", function()
  it("replaces a file whole, leaving nothing beside it", function()
    local dir = h.tmpname(".files")
    os.execute("mkdir -p " .. dir)
    files.replace(dir .. "/out.csv", "a,b\n1,2\n")
    files.replace(dir .. "/out.csv", "a,b\n3,4\n")
    assert.are.equal("a,b\n3,4\n", h.read(dir .. "/out.csv"))
    local p = io.popen("ls -A " .. dir)
    assert.are.equal("out.csv\n", p:read("a"))
    p:close()
    os.execute("rm -rf " .. dir)
  end)

  it("syncs a file and a directory, and says why it cannot", function()
    local path = h.tmpname(".sync")
    local f = assert(io.open(path, "wb"))
    f:write("x")
    assert.is_true(core.fsync(f))
    f:close()
    assert.has_error(function() core.fsync(f) end, "attempt to use a closed file")
    assert.is_true(core.fsync_dir("/tmp"))
    local ok, err = core.fsync_dir("/no/such/dir")
    assert.is_nil(ok)
    assert.are.equal("No such file or directory", err)
    os.remove(path)
  end)
end)
