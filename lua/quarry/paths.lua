--- quarry.paths: where quarry's data lives (plugins/ and scripts/services.sh)
-- and whether this is a checkout. This file is the checkout's: the data sits
-- beside lua/. `cmake --install` puts cmake/paths.lua.in in its place, naming
-- the installed share/quarry.
local src = debug.getinfo(1, "S").source
return {
  root = src:match("^@(.*)/lua/quarry/paths%.lua$") or ".",
  checkout = true,
}
