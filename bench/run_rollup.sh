#!/usr/bin/env bash
# Rollup benchmark at scale 1 and scale 3 in one run, on a private
# PostgreSQL/Redis in the build folder: cold monthly and yearly through the
# Lua API against the direct CTE's own execution time, and the share of an
# ingest spent keeping the rollups exact. Each scale has a database of its
# own, and the reports are measured on them in turn.
#   bench/run_rollup.sh [SCALES]      default "1 3"
set -euo pipefail
. "$(dirname "$0")/common.sh"
scales=${1:-1 3}
bench_setup rollup-home
targets=()
declare -A rows
for scale in $scales; do
    db="bench_scale_$scale"
    psql "$url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    surl=${url/\/quarry\?//$db?}
    rows[$scale]=$(DATABASE_URL=$surl $q --log-level warn db seed --scale "$scale" |
        sed -n 's/.*: \([0-9]*\) curtailment row.*/\1/p')
    psql "$surl" -qc "VACUUM ANALYZE" >/dev/null
    targets+=("$scale=$surl")
done
out=$($q run bench/bench_rollup.lua reports "${targets[@]}")
v() { echo "$out" | awk -v s="$1" -v k="$2" '$1==s && $2==k{print $3}'; }
echo "| scale | curtailment rows | summary | cold report (Lua API, 4 queries) | cold summary (Lua API) | direct CTE, PostgreSQL execution | direct/rollup |"
echo "|---|---|---|---|---|---|---|"
for scale in $scales; do
    for s in monthly yearly; do
        echo "| $scale | ${rows[$scale]} | $s | $(v "$scale" ${s}_report_ms) ms | $(v "$scale" ${s}_summary_ms) ms | $(v "$scale" ${s}_direct_pg_ms) ms | $(awk -v a="$(v "$scale" ${s}_direct_pg_ms)" -v b="$(v "$scale" ${s}_summary_ms)" 'BEGIN{printf "%.0fx", a/b}') |"
    done
done
set -- $scales
if [ $# -ge 2 ]; then
    for s in monthly yearly; do
        echo "scale $2 / scale $1, $s: cold report $(awk -v a="$(v "$2" ${s}_report_ms)" -v b="$(v "$1" ${s}_report_ms)" 'BEGIN{printf "%.2f", a/b}'), cold summary $(awk -v a="$(v "$2" ${s}_summary_ms)" -v b="$(v "$1" ${s}_summary_ms)" 'BEGIN{printf "%.2f", a/b}')"
    done
fi
echo
echo "| scale | re-ingest of March 2024 (rows) | whole ingest | of which rollup refresh | rollup share |"
echo "|---|---|---|---|---|"
for scale in $scales; do
    surl=${url/\/quarry\?//bench_scale_$scale?}
    ing=$(DATABASE_URL=$surl $q --log-level warn run bench/bench_rollup.lua ingest "$scale")
    w() { echo "$ing" | awk -v k="$1" '$1==k{print $2}'; }
    echo "| $scale | $(w ingest_rows) | $(w ingest_ms) ms | $(w rollup_ms) ms | $(w rollup_share) |"
done
