#!/usr/bin/env bash
# Rollup benchmark at scale 1 and scale 3 in one run, on a private
# PostgreSQL/Redis in the build folder: cold monthly and yearly through the
# Lua API against the direct CTE's own execution time, and the share of an
# ingest spent keeping the rollups exact.
#   bench/run_rollup.sh [SCALES]      default "1 3"
set -euo pipefail
. "$(dirname "$0")/common.sh"
scales=${1:-1 3}
bench_setup rollup-home
rep_rows=""
ing_rows=""
declare -A cold
for scale in $scales; do
    psql "$url" -qc "DROP SCHEMA public CASCADE; CREATE SCHEMA public" 2>/dev/null
    rows=$($q --log-level warn db seed --scale "$scale" | sed -n 's/.*: \([0-9]*\) curtailment row.*/\1/p')
    psql "$url" -qc "VACUUM ANALYZE" >/dev/null
    out=$($q run bench/bench_rollup.lua reports)
    v() { echo "$out" | awk -v k="$1" '$1==k{print $2}'; }
    for s in monthly yearly; do
        cold[$scale,$s]=$(v ${s}_report_ms)
        rep_rows+="| $scale | $rows | $s | $(v ${s}_report_ms) ms | $(v ${s}_summary_ms) ms | $(v ${s}_direct_pg_ms) ms | $(awk -v a="$(v ${s}_direct_pg_ms)" -v b="$(v ${s}_summary_ms)" 'BEGIN{printf "%.0fx", a/b}') |"$'\n'
    done
    ing=$($q --log-level warn run bench/bench_rollup.lua ingest "$scale")
    w() { echo "$ing" | awk -v k="$1" '$1==k{print $2}'; }
    ing_rows+="| $scale | $(w ingest_rows) | $(w ingest_ms) ms | $(w rollup_ms) ms | $(w rollup_share) |"$'\n'
done
echo "| scale | curtailment rows | summary | cold report (Lua API, 4 queries) | cold summary (Lua API) | direct CTE, PostgreSQL execution | direct/rollup |"
echo "|---|---|---|---|---|---|---|"
printf '%s' "$rep_rows"
set -- $scales
if [ $# -ge 2 ]; then
    for s in monthly yearly; do
        echo "scale $2 / scale $1, $s cold report: $(awk -v a="${cold[$2,$s]}" -v b="${cold[$1,$s]}" 'BEGIN{printf "%.2f", a/b}')"
    done
fi
echo
echo "| scale | re-ingest of March 2024 (rows) | whole ingest | of which rollup refresh | rollup share |"
echo "|---|---|---|---|---|"
printf '%s' "$ing_rows"
