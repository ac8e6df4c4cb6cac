#!/usr/bin/env bash
# A real PgBouncer (Debian's, 1.18) in transaction pooling mode in front of
# the test PostgreSQL, for the specs that run again through it (see
# tests/CMakeLists.txt). Unix socket only, in $QUARRY_HOME/pgbouncer.
#   QUARRY_HOME=DIR tests/pgbouncer.sh up|down
# `up` writes DIR/pgbouncer.url, the DATABASE_URL through it.
set -euo pipefail
home=${QUARRY_HOME:?}
# its own folder in /tmp: the service user must reach it, wherever the checkout is
dir="/tmp/quarry-pgbouncer-$(printf '%s' "$home" | md5sum | cut -c1-12)"
pgrun=$(sed -n 's/^DATABASE_URL=.*host=\([^&]*\).*/\1/p' "$home/urls")
user=""
[ "$(id -u)" = 0 ] && user=postgres # pgbouncer will not run as root
as_user() { if [ -n "$user" ]; then runuser -u "$user" -- "$@"; else "$@"; fi; }
case "${1:-}" in
up)
    command -v pgbouncer >/dev/null || { echo "pgbouncer is not installed (scripts/install-deps.sh)" >&2; exit 3; }
    mkdir -p "$dir"
    cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=$pgrun port=5432
[pgbouncer]
listen_addr =
unix_socket_dir = $dir
listen_port = 6432
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 8
server_reset_query =
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
    printf '"quarry" ""\n"postgres" ""\n' >"$dir/users.txt"
    [ -z "$user" ] || chown -R "$user" "$dir"
    if [ -f "$dir/pgbouncer.pid" ] && kill -0 "$(cat "$dir/pgbouncer.pid")" 2>/dev/null; then exit 0; fi
    as_user pgbouncer -d "$dir/pgbouncer.ini"
    echo "postgresql://quarry@/quarry?host=$dir&port=6432" >"$home/pgbouncer.url"
    for _ in $(seq 1 100); do [ -S "$dir/.s.PGSQL.6432" ] && exit 0; sleep 0.05; done
    echo "pgbouncer did not start, see $dir/pgbouncer.log" >&2
    exit 3
    ;;
down)
    if [ -f "$dir/pgbouncer.pid" ]; then kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true; fi
    ;;
*) echo "usage: tests/pgbouncer.sh up|down" >&2; exit 2 ;;
esac
