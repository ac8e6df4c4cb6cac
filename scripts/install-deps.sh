#!/usr/bin/env bash
# Install the Debian packages quarry builds, runs and tests with -- only the
# ones missing, so it is cheap to run every time.
set -euo pipefail

packages=(
    build-essential cmake pkg-config         # the build
    libpq-dev liblua5.4-dev lua5.4 libhiredis-dev libevent-dev libcurl4-openssl-dev   # the engine's libraries
    libedit-dev                              # line editing in quarry shell
    lua-cjson lua-argparse                   # Lua modules quarry uses
    postgresql redis-server                  # the embedded default services
    libcmocka-dev lua-busted lua-check       # the tests
    pgbouncer                                # the specs again through a transaction pooler
    chromium fonts-liberation                # the html report opened in a real browser
    bsdutils                                 # script(1): progress output and the shell on a terminal
    luarocks groff-base                      # the install: the rockspec and the man page checked
    python3                                  # the README's first analysis opens its JSON in Python
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
echo "install-deps: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
