#!/usr/bin/env bash
# quarry.parallel: the twelve months of a seeded year aggregated from the
# raw rows, and four independent breakdowns of it, one query after another
# and then all at once, against what the
# server itself needs (EXPLAIN ANALYZE execution times, shared over the
# cores), on a private PostgreSQL/Redis in the build folder.
# Then a cold yearly report, whose plugin fetches its months and its totals
# with ctx.parallel, against the same with one connection (DB_POOL_MAX=1).
#   bench/run_parallel.sh [SCALE] [ROUNDS]      default 3 and 7
set -euo pipefail
. "$(dirname "$0")/common.sh"
scale=${1:-3}
rounds=${2:-7}
bench_setup parallel-home
scratch_db "bench_parallel_$scale"
rows=$(DATABASE_URL=$surl $q --log-level warn db seed --scale "$scale" --from 2024-01-01 --to 2024-12-31 |
    sed -n 's/.*: \([0-9]*\) curtailment row.*/\1/p')
psql "$surl" -qc "VACUUM ANALYZE" >/dev/null
cores=$(nproc)
echo "| curtailment rows | queries | one after another | quarry.parallel | PostgreSQL execution, sum / slowest | limit (max of slowest, sum / $cores cores) | parallel / sequential | parallel / limit |"
echo "|---|---|---|---|---|---|---|---|"
for what in months breakdowns; do
    out=$(DATABASE_URL=$surl $q run bench/bench_parallel.lua 2024 "$cores" "$rounds" "$what")
    v() { echo "$out" | awk -v k="$1" '$1==k{print $2}'; }
    label="12 months of 2024"; [ "$what" = breakdowns ] && label="4 breakdowns of 2024 (farm, day, period, lead party)"
    echo "| $rows | $label | $(v sequential_ms) ms | $(v parallel_ms) ms | $(v pg_sum_ms) / $(v pg_max_ms) ms | $(v limit_ms) ms | $(awk -v a="$(v parallel_ms)" -v b="$(v sequential_ms)" 'BEGIN{printf "%.2fx", a/b}') | $(awk -v a="$(v parallel_ms)" -v b="$(v limit_ms)" 'BEGIN{printf "%.2f", a/b}') |"
done
cold() { DATABASE_URL=$surl DB_POOL_MAX=$1 $q run bench/bench_report_cold.lua yearly year 2024 "$2" ${3:-} | awk '{print $2}'; }
par=$(cold 20 "$rounds"); seq=$(cold 1 "$rounds")
dpar=$(cold 20 3 direct); dseq=$(cold 1 3 direct)
echo
echo "| cold yearly report (months + year totals) | one after another (DB_POOL_MAX=1) | with ctx.parallel | speed-up |"
echo "|---|---|---|---|"
echo "| 2024, scale $scale, from the rollups | $seq ms | $par ms | $(awk -v a="$seq" -v b="$par" 'BEGIN{printf "%.2fx", a/b}') |"
echo "| 2024, scale $scale, from the raw rows (--direct) | $dseq ms | $dpar ms | $(awk -v a="$dseq" -v b="$dpar" 'BEGIN{printf "%.2fx", a/b}') |"
