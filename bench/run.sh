#!/usr/bin/env bash
# Benchmarks anyone can repeat: builds an optimised quarry, starts a private
# PostgreSQL/Redis for the run (bench home in the build folder), measures the
# engine against the physical limits in the same run, and prints a markdown
# table with the machine it ran on.
#
#   bench/run.sh [ROUNDS]          (default 20000 queries per measurement)
set -euo pipefail
. "$(dirname "$0")/common.sh"
rounds=${1:-20000}

bench_setup bench-home

redis_url=$(sed -n 's/^REDIS_URL=//p' "$QUARRY_HOME/urls")
results=$(mktemp)
# Alternate the runs so a drift of the machine hits both sides alike.
for round in 1 2 3; do
    echo "bench: round $round of 3" >&2
    build-bench/bench/bench_core "$url" "$rounds" >>"$results"
    build-bench/quarry run bench/bench_lua.lua "$rounds" >>"$results"
    build-bench/quarry run bench/bench_cache.lua hit "$((rounds / 4))" | tee -a "$results" >"$results.keys"
    for kind in table string; do
        key=$(sed -n "s/^${kind}_key //p" "$results.keys" | awk '{print $1}')
        build-bench/bench/bench_core --redis "$redis_url" "$key" "$((rounds / 4))" |
            sed "s/^raw_get_us/raw_get_${kind}_us/; s/^value_bytes/value_bytes_${kind}/" >>"$results"
    done
    build-bench/quarry run bench/bench_cache.lua invalidate 100000 >>"$results"
done
rm -f "$results.keys"

median() { grep "^$1 " "$results" | awk '{print $2}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
raw=$(median raw_rtt_us); pool=$(median pool_rtt_us); lua=$(median lua_rtt_us)
acq=$(median acquire_ns); fresh=$(median fresh_conn_us); hist=$(median hist_record_ns)
hit_table=$(median lua_hit_table_us); hit_string=$(median lua_hit_string_us)
get_table=$(median raw_get_table_us); get_string=$(median raw_get_string_us)
bytes_table=$(median value_bytes_table); bytes_string=$(median value_bytes_string)
decode=$(median decode_table_us); logged=$(median lua_hit_logged_us); total_keys=$(median keys_total); month_keys=$(median month_keys)
inv_group=$(median invalidate_group_us); inv_scan=$(median invalidate_scan_us)
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
| raw hiredis GET of a $bytes_string-byte string (physical limit) | $get_string µs | | | |
| \`get_or_compute\` hit of that string through Lua | $hit_string µs | raw GET | $(ratio "$hit_string" "$get_string")x | ≤ 1.3x |
| raw hiredis GET of a 31-row summary table, $bytes_table bytes encoded | $get_table µs | | | |
| \`get_or_compute\` hit of that table through Lua | $hit_table µs | raw GET | $(ratio "$hit_table" "$get_table")x | ≤ 1.3x |
| of which: decoding the table into Lua values | $decode µs | | | |
| the same hit with the invalidation log checked (\`quarry.cache\`) | $logged µs | raw GET + raw libpq | $(ratio "$logged" "$(awk -v a="$get_table" -v b="$raw" 'BEGIN{print a+b}')")x | report |
| invalidate a month ($month_keys keys among $total_keys) by group generation | $inv_group µs | | | |
| the same month by SCAN + UNLINK | $inv_scan µs | group | $(ratio "$inv_scan" "$inv_group")x | report both |
MD
rm -f "$results"
