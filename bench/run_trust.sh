#!/usr/bin/env bash
# What the trust guarantees cost, before and after, in one run: builds the
# current tree and an earlier revision side by side (a temporary git
# worktree), runs both against the same private PostgreSQL and Redis, and
# prints a markdown table.
#
#   bench/run_trust.sh [REV] [ROUNDS]   REV: the revision to compare with (default f0e2360,
#                                       the main before the invalidation log and the sandbox)
set -euo pipefail
. "$(dirname "$0")/common.sh"
rev=${1:-f0e2360}
rounds=${2:-5000}

bench_setup trust-home
old=$(mktemp -d)
trap 'git worktree remove --force "$old" >/dev/null 2>&1 || rm -rf "$old"' EXIT
git worktree add --detach "$old" "$rev" >/dev/null 2>&1
cmake -S "$old" -B "$old/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$old/build" -j"$(nproc)" >/dev/null
"$q" db migrate >/dev/null

# A month of seeded curtailment as a CSV both versions load.
csv=$(mktemp --suffix=.csv)
"$q" db seed --from 2024-01-01 --to 2024-01-31 >/dev/null
"$q" run <(printf 'require("quarry.seed").write_curtailment(arg[1], "2024-01-01", "2024-01-31", 1)') "$csv"
rows=$(($(wc -l <"$csv") - 1))

results=$(mktemp)
ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N); echo $(((t1 - t0) / 1000000)); }
for round in 1 2 3; do
    echo "bench: round $round of 3" >&2
    "$old/build/quarry" run "$old/bench/bench_cache.lua" hit "$rounds" | sed 's/^/old_/' >>"$results"
    "$q" run bench/bench_cache.lua hit "$rounds" | sed 's/^/new_/' >>"$results"
    echo "old_ingest_ms $(ms "$old/build/quarry" ingest curtailment "$csv")" >>"$results"
    echo "new_ingest_ms $(ms "$q" ingest curtailment "$csv")" >>"$results"
    echo "new_report_ms $(ms "$q" report monthly --month 2024-01)" >>"$results"
    echo "old_report_ms $(ms "$old/build/quarry" report monthly --month 2024-01)" >>"$results"
done
rm -f "$csv"

median() { grep "^$1 " "$results" | awk '{print $2}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
old_redis=$(median old_lua_hit_table_us); old_l1=$(median old_lua_l1_hit_us)
new_redis=$(median new_lua_hit_table_us); new_logged=$(median new_lua_hit_logged_us)
old_ing=$(median old_ingest_ms); new_ing=$(median new_ingest_ms)
old_rep=$(median old_report_ms); new_rep=$(median new_report_ms)
cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
cat <<MD
Run $(date -u +%Y-%m-%dT%H:%MZ) on ${cpu:-unknown CPU}, $(nproc) cores, $(uname -sr); before = $rev, after = $(git rev-parse --short HEAD); $rounds hits per measurement, median of 3 runs.

| measure | before | after | after / before |
|---|---|---|---|
| \`get_or_compute\` hit of a 31-row table through Redis (no first level, no log) | $old_redis µs | $new_redis µs | $(ratio "$new_redis" "$old_redis")x |
| the hit as \`quarry.cache\` serves it by default (before: the first level in the process; after: the Redis script plus the invalidation log check in PostgreSQL) | $old_l1 µs | $new_logged µs | $(ratio "$new_logged" "$old_l1")x |
| \`quarry ingest curtailment\`, $rows rows (a month), whole command | $old_ing ms | $new_ing ms | $(ratio "$new_ing" "$old_ing")x |
| \`quarry report monthly\` served from the cache, whole command | $old_rep ms | $new_rep ms | $(ratio "$new_rep" "$old_rep")x |
MD
rm -f "$results"
