#!/usr/bin/env bash
# Report and ingest benchmarks at scale 1 and scale 3, on a private
# PostgreSQL/Redis in the build folder. Prints a markdown table.
#   bench/run_reports.sh [SCALES]      default "1 3"
set -euo pipefail
. "$(dirname "$0")/common.sh"
scales=${1:-1 3}
bench_setup reports-home

echo "| scale | curtailment rows | bitcoin rows | seed (generate + ingest) | ingest rows/s (whole pipeline) |"
echo "|---|---|---|---|---|"
declare -A res
for scale in $scales; do
    psql "$(sed -n 's/^DATABASE_URL=//p' "$QUARRY_HOME/urls")" -qc \
        "DROP SCHEMA public CASCADE; CREATE SCHEMA public" 2>/dev/null
    $q cache clear >/dev/null
    line=$($q --log-level warn db seed --scale "$scale")
    rows=$(echo "$line" | sed -n 's/.*: \([0-9]*\) curtailment row.*/\1/p')
    btc=$(echo "$line" | sed -n 's/.*, \([0-9]*\) bitcoin row.*/\1/p')
    secs=$(echo "$line" | sed -n 's/.* in \([0-9.]*\) s$/\1/p')
    echo "| $scale | $rows | $btc | ${secs} s | $(awk -v r="$rows" -v s="$secs" 'BEGIN{printf "%.0f", r/s}') |"
    $q run bench/bench_reports.lua reports > "build-bench/reports-$scale.txt"
    for r in daily monthly yearly; do
        cli=()
        for i in 1 2 3 4 5; do
            t0=$(date +%s%N); $q report $r $( [ $r = daily ] && echo --date 2024-03-12; [ $r = monthly ] && echo --month 2024-03; [ $r = yearly ] && echo --year 2024) --no-cache >/dev/null; t1=$(date +%s%N)
            cli+=($(( (t1 - t0) / 1000000 )))
        done
        echo "${r}_cli_ms $(printf '%s\n' "${cli[@]}" | sort -n | sed -n 3p) ms" >> "build-bench/reports-$scale.txt"
    done
done
echo
echo "| scale | report | cold, in-process | PostgreSQL execution (EXPLAIN ANALYZE) | cold/PG | cold, \`quarry report\` process | cached (Redis hit) | same breakdowns over the raw rows, PostgreSQL execution |"
echo "|---|---|---|---|---|---|---|---|"
for scale in $scales; do
    f="build-bench/reports-$scale.txt"
    for r in daily monthly yearly; do
        v() { grep "^${r}_$1 " "$f" | awk '{print $2}'; }
        echo "| $scale | $r | $(v cold_ms) ms | $(v pg_ms) ms | $(awk -v a="$(v cold_ms)" -v b="$(v pg_ms)" 'BEGIN{printf "%.2fx", a/b}') | $(v cli_ms) ms | $(v cached_ms) ms | $(v direct_pg_ms) ms |"
    done
done
echo
$q run bench/bench_reports.lua ingest 20000 > build-bench/ingest.txt
ins=$(awk '/insert_rows_per_s/{print $2}' build-bench/ingest.txt); cp=$(awk '/copy_rows_per_s/{print $2}' build-bench/ingest.txt)
echo "| load of 20,000 curtailment rows | rows/s |"
echo "|---|---|"
echo "| row-by-row INSERT (prepared, one transaction) | $ins |"
echo "| COPY FROM STDIN | $cp |"
echo "| COPY / INSERT | $(awk -v a="$cp" -v b="$ins" 'BEGIN{printf "%.1fx", a/b}') |"
