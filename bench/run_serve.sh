#!/usr/bin/env bash
# quarry serve under load from wrk on loopback: a cached monthly report (the
# shared cache, checked against the invalidation log, as every hit is) and
# /healthz (one query), with 1 and 2 workers; beside it, the same cached
# report through the Lua API in one process, one request at a time.
#   bench/run_serve.sh [SECONDS] [CONNECTIONS]     default 10 and 32
set -euo pipefail
. "$(dirname "$0")/common.sh"
secs=${1:-10}
conns=${2:-32}
command -v wrk >/dev/null || { sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo; $sudo apt-get install -y -qq wrk >/dev/null; }
bench_setup serve-home
$q --log-level warn db seed --from 2024-03-01 --to 2024-03-31 >/dev/null
port=18480
row() { # workers path
    $q --log-level warn serve --listen 127.0.0.1:$port --workers "$1" --max-inflight 1024 & local pid=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$port$2" >/dev/null # fills the cache
    local out; out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$port$2")
    kill -TERM "$pid"; wait "$pid" || true
    local rps p50 p99
    rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
    p50=$(echo "$out" | awk '$1=="50%"{print $2}')
    p99=$(echo "$out" | awk '$1=="99%"{print $2}')
    echo "| \`$2\` | $1 | $conns | $rps | $p50 | $p99 |"
}
echo "| route | workers | connections | requests/s | p50 | p99 |"
echo "|---|---|---|---|---|---|"
for w in 1 2; do
    row "$w" "/reports/monthly?month=2024-03"
    row "$w" "/healthz"
done
inproc=$($q run bench/bench_report_cold.lua monthly month 2024-03 2000 cached | awk '{print $2}')
echo
echo "The same cached report through the Lua API, one process, one at a time: $inproc ms a request."
