-- What `cmake --install` and `luarocks make` give a user: the Lua modules
-- where plain lua5.4 looks by default, the binary finding its plugins from
-- wherever the install landed, a man page and completions, nothing of the
-- tests, and an installed quarry keeping its state in the XDG state folder.
local h = require "spec.helper"

local build = os.getenv("QUARRY_BUILD") or error("QUARRY_BUILD is not set: run the specs through ctest")
-- lua5.4 is not instrumented, so it cannot load the sanitizer build's module
local sanitized = os.getenv("QUARRY_SANITIZED") == "1"

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"__rc=$?\"")
  local out = p:read("a")
  p:close()
  local code = tonumber(out:match("__rc=(%d+)%s*$"))
  return out:gsub("__rc=%d+%s*$", ""), code
end

-- Lua 5.4's own default search path, with /usr/local/ moved under `stage`.
local function default_paths(stage)
  local out = sh("env -u LUA_PATH -u LUA_PATH_5_4 -u LUA_CPATH -u LUA_CPATH_5_4 lua5.4 -e "
    .. "'print(package.path) print(package.cpath)'")
  local path, cpath = out:match("^(.-)\n(.-)\n")
  local function move(p) return (p:gsub("/usr/local/", stage .. "/usr/local/")) end
  return move(path), move(cpath)
end

describe("an installed quarry", function()
  local stage = h.tmpname(".stage")
  local prefix = stage .. "/usr/local"

  setup(function()
    local out, code = sh(("DESTDIR=%s cmake --install %s --prefix /usr/local"):format(h.shell_quote(stage),
      h.shell_quote(build)))
    assert(code == 0, out)
  end)

  teardown(function() os.execute("rm -rf " .. h.shell_quote(stage)) end)

  it("puts the modules where lua5.4 looks by default: require 'quarry' just works", function()
    assert.truthy(h.read(prefix .. "/share/lua/5.4/quarry/init.lua"))
    assert.truthy(io.open(prefix .. "/lib/lua/5.4/quarry/core.so"))
    if sanitized then return end
    local path, cpath = default_paths(stage)
    local out, code = sh(("cd / && LUA_PATH=%s LUA_CPATH=%s lua5.4 -e %s"):format(h.shell_quote(path),
      h.shell_quote(cpath), h.shell_quote([[
        local quarry = require "quarry"
        local paths = require "quarry.paths"
        print(type(quarry.configure), paths.checkout, paths.root)]])))
    assert.are.equal(0, code, out)
    assert.are.equal(("function\tfalse\t%s/share/quarry\n"):format(prefix), out)
  end)

  it("installs what a user runs and nothing of the tests or the developers' scripts", function()
    local files = sh("cd " .. h.shell_quote(stage) .. " && find . -type f | sort")
    for _, want in ipairs({ "/usr/local/bin/quarry", "/usr/local/share/quarry/plugins/monthly.lua",
      "/usr/local/share/quarry/scripts/services.sh", "/usr/local/share/man/man1/quarry.1",
      "/usr/local/share/bash-completion/completions/quarry", "/usr/local/share/zsh/vendor-completions/_quarry" }) do
      assert.truthy(files:find("." .. want .. "\n", 1, true), want .. " is not installed")
    end
    assert.is_nil(files:find("_spec", 1, true))
    assert.is_nil(files:find("/tests/", 1, true))
    assert.is_nil(files:find("test.sh", 1, true))
    assert.is_nil(files:find("install-deps", 1, true))
  end)

  it("has a man page and completions made from the parser", function()
    local man = h.read(prefix .. "/share/man/man1/quarry.1")
    assert.matches("^%.TH QUARRY 1", man)
    local help = h.quarry("--help")
    local n = 0
    for line in help:match("Commands:\n(.-)\n\n"):gmatch("[^\n]+") do
      local cmd = line:match("^   (%S+)")
      if cmd and cmd ~= "completion" then
        n = n + 1
        assert.truthy(man:find(".SS quarry " .. cmd .. "\n", 1, true), "the man page lacks " .. cmd)
      end
    end
    assert.is_true(n > 10, n .. " commands in --help")
    local warnings = sh("groff -man -Tutf8 -z -ww " .. h.shell_quote(prefix .. "/share/man/man1/quarry.1"))
    assert.are.equal("", warnings)
    local bash = prefix .. "/share/bash-completion/completions/quarry"
    local out, code = sh("bash -n " .. h.shell_quote(bash))
    assert.are.equal(0, code, out)
    -- the completion offers the commands after `quarry `
    out = sh(("bash -c %s"):format(h.shell_quote(("source %s; COMP_WORDS=(quarry r); COMP_CWORD=1; _quarry; "
      .. "printf '%%s\\n' \"${COMPREPLY[@]}\""):format(h.shell_quote(bash)))))
    assert.are.same({ "report", "rollup", "run" }, (function()
      local words = {}
      for w in out:gmatch("%S+") do words[#words + 1] = w end
      table.sort(words)
      return words
    end)())
  end)

  it("runs from where it was installed, and keeps its state in the XDG state folder, saying so once", function()
    local bin = prefix .. "/bin/quarry"
    local out, code = sh(h.shell_quote(bin) .. " plugins")
    assert.are.equal(0, code, out)
    assert.matches("monthly", out)
    local home = h.tmpname(".home")
    os.execute("mkdir -p " .. h.shell_quote(home))
    local run = ("cd %s && env -u QUARRY_HOME -u XDG_STATE_HOME HOME=%s %s "):format(h.shell_quote(home),
      h.shell_quote(home), h.shell_quote(bin))
    out, code = sh(run .. "services up")
    local state = home .. "/.local/state/quarry"
    assert.are.equal(0, code, out)
    assert.matches("keep their data in " .. state:gsub("%p", "%%%0"), out)
    assert.truthy(h.read(state .. "/urls"))
    out = sh(run .. "shell -c 'db:query_one([[SELECT 6 * 7 AS x]]).x'")
    assert.are.equal("42\n", out) -- second use: the answer and nothing else
    sh(run .. "services down")
    os.execute("rm -rf " .. h.shell_quote(home))
  end)
end)

describe("luarocks make", function()
  it("builds and installs the module into a rocks tree", function()
    if sanitized then return end -- the plain build covers it; once is enough
    if not io.open("/usr/bin/luarocks") then error("luarocks is not installed (scripts/install-deps.sh installs it)") end
    local copy, tree = h.tmpname(".src"), h.tmpname(".rocks")
    -- a copy of the sources, so the build leaves nothing in the checkout
    local out, code = sh(("mkdir -p %s && cp -r CMakeLists.txt cmake lua plugins scripts src quarry-dev-1.rockspec %s")
      :format(copy, copy))
    assert.are.equal(0, code, out)
    out, code = sh(("cd %s && luarocks --lua-version=5.4 --tree=%s make --deps-mode=none quarry-dev-1.rockspec")
      :format(copy, tree))
    assert.are.equal(0, code, out)
    out, code = sh(("cd / && eval \"$(luarocks --lua-version=5.4 --tree=%s path)\" && DATABASE_URL=%s REDIS_URL=%s "
      .. "lua5.4 -e %s"):format(tree, h.shell_quote(h.database_url()), h.shell_quote(h.urls().REDIS_URL),
      h.shell_quote('print(require("quarry").db:query_one("SELECT 6 * 7 AS x").x)')))
    assert.are.equal(0, code, out)
    assert.are.equal("42\n", out)
    os.execute(("rm -rf %s %s"):format(copy, tree))
  end)
end)
