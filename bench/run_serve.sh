#!/usr/bin/env bash
# quarry serve under load from wrk on loopback, at 1, 8 and 32 connections:
# the daily report of a seeded March 2024 day from the shared cache (every
# hit checked against the invalidation log, as always) and uncached
# (cache=off: computed per request), and /healthz (one query and a Redis
# PING: the HTTP floor). The limits, in the same run: pgbench running the
# daily report's own SQL (bench/pgbench_daily.lua) at the same concurrency,
# and /healthz's rate; and pgbench sending exactly what a request sends
# (bench/pgbench_daily.lua tx: BEGIN with the sandbox's settings and the
# miner list in one pipeline, the statements, COMMIT): what PostgreSQL
# itself allows for these round trips, from a client that costs nothing.
# Then the same cached report through the Lua API in one process, one
# request at a time.
# POOL is DB_POOL_MAX for each worker: the connections PostgreSQL runs at
# once are WORKERS x POOL, and past a few per core its backends only take
# turns (docs/SERVING.md, Sizing).
#   bench/run_serve.sh [SECONDS] [WORKERS] [POOL]   default 10, the cores, 32
set -euo pipefail
. "$(dirname "$0")/common.sh"
secs=${1:-10}
command -v wrk >/dev/null || { sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo; $sudo apt-get install -y -qq wrk >/dev/null; }
bench_setup serve-home
workers=${2:-$(nproc)}
pool=${3:-32}
$q --log-level warn db seed --from 2024-03-01 --to 2024-03-31 >/dev/null
# The day of median curtailment (by rows) among the seeded ones: a typical
# report with a few dozen farms. (A fixed date once fell on a calm day the
# seed leaves empty, and every figure measured an empty report.)
day=$(psql "$url" -Atc "SELECT d FROM (SELECT settlement_date::text AS d, count(*) AS n FROM curtailment_records
  GROUP BY 1) x ORDER BY n, d OFFSET (SELECT count(DISTINCT settlement_date) / 2 FROM curtailment_records) LIMIT 1")
read -r day_rows day_farms <<<"$(psql "$url" -Atc "SELECT count(*), count(DISTINCT farm_id) FROM curtailment_records
  WHERE settlement_date = '$day'" | tr '|' ' ')"
port=18480
script=$(mktemp --suffix=.sql); txscript=$(mktemp --suffix=.sql)
trap 'rm -f "$script" "$txscript"' EXIT
$q run bench/pgbench_daily.lua "$day" >"$script"
$q run bench/pgbench_daily.lua "$day" tx >"$txscript"
DB_POOL_MAX=$pool $q --log-level warn serve --listen 127.0.0.1:$port --workers "$workers" --max-inflight 1024 & pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; rm -f "$script" "$txscript"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
cached="/reports/daily?date=$day"
uncached="/reports/daily?date=$day&cache=off"
curl -sf "http://127.0.0.1:$port$cached" >/dev/null # fills the cache
# "rps p50 p99" of wrk on a path with c connections
load() {
    local t=$(( $2 < 2 ? 1 : 2 ))
    wrk -t"$t" -c"$2" -d"${secs}s" --latency "http://127.0.0.1:$port$1" |
        awk '/Requests\/sec/{r=$2} $1=="50%"{p50=$2} $1=="99%"{p99=$2} END{print r, p50, p99}'
}
ms() { awk -v x="$1" 'BEGIN{ if (x ~ /us$/) v = x / 1000; else if (x ~ /ms$/) v = x + 0; else v = x * 1000; printf "%.2f", v }'; }
echo "| connections | daily, cached: req/s, p50, p99 | daily, uncached | \`/healthz\` | pgbench, the report's SQL: tps | pgbench, all a request sends: tps | uncached / pgbench (SQL, all) | cached / \`/healthz\` | p99 / p50 (cached, uncached) |"
echo "|---|---|---|---|---|---|---|---|---|"
bench_tps() {
    pgbench -n -M prepared -f "$1" -c "$2" -j $(( $2 < 2 ? 1 : 2 )) -T "$secs" "$url" 2>/dev/null |
        awk '/^tps/{print $3; exit}'
}
for c in 1 8 32; do
    read -r cr c50 c99 <<<"$(load "$cached" "$c")"
    read -r ur u50 u99 <<<"$(load "$uncached" "$c")"
    read -r hr h50 h99 <<<"$(load /healthz "$c")"
    tps=$(bench_tps "$script" "$c")
    txtps=$(bench_tps "$txscript" "$c")
    printf '| %d | %s, %s, %s | %s, %s, %s | %s, %s, %s | %s | %s | %.2f, %.2f | %.2f | %.1f, %.1f |\n' "$c" \
        "$cr" "$c50" "$c99" "$ur" "$u50" "$u99" "$hr" "$h50" "$h99" "$tps" "$txtps" \
        "$(awk -v a="$ur" -v b="$tps" 'BEGIN{print a/b}')" "$(awk -v a="$ur" -v b="$txtps" 'BEGIN{print a/b}')" \
        "$(awk -v a="$cr" -v b="$hr" 'BEGIN{print a/b}')" \
        "$(awk -v a="$(ms "$c99")" -v b="$(ms "$c50")" 'BEGIN{print a/b}')" \
        "$(awk -v a="$(ms "$u99")" -v b="$(ms "$u50")" 'BEGIN{print a/b}')"
done
kill -TERM "$pid"; wait "$pid" || true
inproc=$($q run bench/bench_report_cold.lua daily date "$day" 2000 cached | awk '{print $2}')
echo
echo "$workers workers, DB_POOL_MAX=$pool; the daily report of $day ($day_rows curtailment rows, $day_farms farms). The same cached report through the Lua API, one process, one at a time: $inproc ms a request."
