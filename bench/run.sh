#!/usr/bin/env bash
# Benchmarks anyone can repeat: builds an optimised quarry, starts a private
# PostgreSQL/Redis for the run (bench home in the build folder), measures the
# engine against the physical limits in the same run, and prints a markdown
# table with the machine it ran on.
#
#   bench/run.sh [ROUNDS]          (default 20000 queries per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20000}
scripts/install-deps.sh
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" >/dev/null

export QUARRY_HOME="$PWD/build-bench/bench-home"
unset DATABASE_URL PGHOST PGPORT PGDATABASE PGUSER PGSERVICE REDIS_URL
scripts/services.sh up
url=$(sed -n 's/^DATABASE_URL=//p' "$QUARRY_HOME/urls")

results=$(mktemp)
# Alternate the runs so a drift of the machine hits both sides alike.
for round in 1 2 3; do
    build-bench/bench/bench_core "$url" "$rounds" >>"$results"
    build-bench/quarry run bench/bench_lua.lua "$rounds" >>"$results"
done

median() { grep "^$1 " "$results" | awk '{print $2}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
raw=$(median raw_rtt_us); pool=$(median pool_rtt_us); lua=$(median lua_rtt_us)
acq=$(median acquire_ns); fresh=$(median fresh_conn_us); hist=$(median hist_record_ns)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
pgv=$(psql "$url" -tAc "SHOW server_version" 2>/dev/null || echo "?")
cat <<MD
Run $(date -u +%Y-%m-%dT%H:%MZ) on ${cpu:-unknown CPU}, $(nproc) cores, $(uname -sr), PostgreSQL $pgv over a unix socket, $rounds queries per measurement, median of 3 runs.

| measure | value | against | ratio | goal |
|---|---|---|---|---|
| raw libpq round trip, \`SELECT \$1::int\` (physical limit) | $raw µs | | | |
| same query through the C pool (acquire, exec, release) | $pool µs | raw libpq | $(ratio "$pool" "$raw")x | |
| same query through the Lua API, \`db:query_one\` | $lua µs | raw libpq | $(ratio "$lua" "$raw")x | ≤ 1.15x |
| warm pool acquire + release | $acq ns | | | ≤ 2000 ns |
| fresh connection per query (connect, query, close) | $fresh µs | pooled Lua query | $(ratio "$fresh" "$lua")x | report |
| histogram record | $hist ns | | | ≤ 100 ns |
MD
rm -f "$results"
