-- `luarocks --lua-version=5.4 make` builds quarry with CMake and installs the
-- Lua modules and the C module quarry.core into the rocks tree, so that
-- lua5.4 -e 'require "quarry"' works there; the quarry binary, the plugins
-- and the man page go to the rock's own folder. Run from a checkout (there
-- is no published source archive yet).
rockspec_format = "3.0"
package = "quarry"
version = "dev-1"
source = { url = "git+file://." }
description = {
  summary = "Scriptable analytics for UK wind curtailment and the bitcoin it could have mined",
  detailed = "A C core (libpq connection pool, transactions, Redis cache) with Lua 5.4 on top: "
    .. "summary queries, partition plans, cache invalidation rules and report plugins.",
}
dependencies = { "lua >= 5.4, < 5.5", "lua-cjson", "argparse" }
external_dependencies = {
  PQ = { header = "postgresql/libpq-fe.h" }, -- found by pkg-config at build time; checked here
  HIREDIS = { header = "hiredis/hiredis.h" },
}
build = {
  type = "cmake",
  variables = {
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    CMAKE_BUILD_TYPE = "Release",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
    BUILD_TESTING = "OFF",
    QUARRY_BENCH = "OFF",
  },
}
