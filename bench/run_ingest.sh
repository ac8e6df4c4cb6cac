#!/usr/bin/env bash
# The whole ingest against a bare COPY of the same rows, side by side in one
# run, on a private PostgreSQL/Redis in the build folder: a seeded half
# year at SCALE (written to CSV first), ROUNDS rounds.
#   bench/run_ingest.sh [SCALE] [ROUNDS]     default 1 and 5
set -euo pipefail
. "$(dirname "$0")/common.sh"
scale=${1:-1}
rounds=${2:-5}
bench_setup ingest-home
scratch_db "bench_ingest_$scale"
csv=$(mktemp --suffix=.csv); dcsv=$(mktemp --suffix=.csv)
trap 'rm -f "$csv" "$dcsv"' EXIT
DATABASE_URL=$surl $q --log-level warn db migrate >/dev/null
cat > "$csv.lua" <<'LUA'
local seed = require "quarry.seed"
seed.write_curtailment(arg[1], "2024-01-01", "2024-06-30", tonumber(arg[3]))
seed.write_difficulty(arg[2], "2023-12-01", "2024-06-30")
LUA
DATABASE_URL=$surl $q run "$csv.lua" "$csv" "$dcsv" "$scale"; rm -f "$csv.lua"
DATABASE_URL=$surl $q --log-level warn ingest difficulty "$dcsv" >/dev/null
out=$(DATABASE_URL=$surl $q --log-level warn run bench/bench_ingest.lua "$csv" "$rounds")
v() { echo "$out" | awk -v k="$1" '$1==k{print $2}'; }
rows=$(v rows); brows=$(v bitcoin_rows); f=$(v first_ms); w=$(v ingest_ms); c=$(v changed_ms); t=$(v copy_temp_ms)
l=$(v copy_table_ms)
b=$(v copy_both_ms)
rate() { awk -v r="$rows" -v ms="$1" 'BEGIN{printf "%.0f", r / (ms / 1000)}'; }
x() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1fx", a/b}'; }
echo "| rows | load | whole ingest | bare COPY, temporary copy of the table | COPY into a logged copy with its indexes | that and the $brows bitcoin rows the same way | ingest / bare COPY | ingest / indexed COPY | ingest / both tables by COPY |"
echo "|---|---|---|---|---|---|---|---|---|"
for k in first reload changed; do
  case $k in
    first) m=$f; label="first, into empty tables" ;;
    reload) m=$w; label="reload of the same file (nothing to rewrite)" ;;
    changed) m=$c; label="reload with every row's text changed (every date rewritten)" ;;
  esac
  echo "| $rows | $label | $m ms ($(rate "$m") rows/s) | $t ms ($(rate "$t") rows/s) | $l ms ($(rate "$l") rows/s) | $b ms | $(x "$m" "$t") | $(x "$m" "$l") | $(x "$m" "$b") |"
done
