#!/usr/bin/env bash
# Partitioning benchmark at scale 1 and scale 3 on a private PostgreSQL/Redis
# in the build folder: `quarry partition apply` rows/s and the longest lock
# on a parent, and the monthly/yearly summaries before and after.
#   bench/run_partition.sh [SCALES]      default "1 3"
set -euo pipefail
. "$(dirname "$0")/common.sh"
scales=${1:-1 3}
bench_setup partition-home

apply_table="| scale | table | rows | copy rows/s | whole apply (copy, indexes, verify, swap) rows/s | parent locked |"
apply_rows=""
sum_rows=""
for scale in $scales; do
    psql "$url" -qc "DROP SCHEMA public CASCADE; CREATE SCHEMA public" 2>/dev/null
    $q --log-level warn db seed --scale "$scale" >/dev/null
    psql "$url" -qc "VACUUM ANALYZE" >/dev/null
    before=$($q run bench/bench_partition.lua)
    out=$($q --log-level warn partition apply)
    while read -r line; do
        t=${line%%:*}
        n=$(echo "$line" | sed -n 's/.*; \([0-9]*\) row(s) copied in \([0-9.]*\) s (\([0-9]*\) rows\/s).*locked \([0-9.]*\) ms, \([0-9.]*\) s in all/\1 \3 \4 \5/p')
        set -- $n
        apply_rows+="| $scale | $t | $1 | $2 | $(awk -v r="$1" -v s="$4" 'BEGIN{printf "%.0f", r/s}') | $3 ms |"$'\n'
    done <<< "$out"
    psql "$url" -qc "VACUUM ANALYZE" >/dev/null
    after=$($q run bench/bench_partition.lua)
    v() { echo "$1" | awk -v k="$2" '$1==k{print $2}'; }
    for s in monthly yearly; do
        sum_rows+="| $scale | $s | $(v "$before" ${s}_ms) ms | $(v "$before" ${s}_pg_ms) ms | $(v "$after" ${s}_ms) ms | $(v "$after" ${s}_pg_ms) ms | $(awk -v a="$(v "$after" ${s}_ms)" -v b="$(v "$before" ${s}_ms)" 'BEGIN{printf "%.2fx", a/b}') |"$'\n'
    done
done
echo "$apply_table"
echo "|---|---|---|---|---|---|"
printf '%s' "$apply_rows"
echo
echo "| scale | summary | plain: Lua API | plain: PostgreSQL execution | partitioned: Lua API | partitioned: PostgreSQL execution | partitioned/plain |"
echo "|---|---|---|---|---|---|---|"
printf '%s' "$sum_rows"
