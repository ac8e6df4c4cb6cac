# Sourced by the bench/run*.sh runners: install what is missing, build an
# optimised quarry in build-bench/, and start a private PostgreSQL/Redis in
# build-bench/$1 (unix sockets; the user's own services are never touched).
# Sets q (the quarry binary) and url (the database URL).
bench_setup() {
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    scripts/install-deps.sh
    cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
    cmake --build build-bench -j"$(nproc)" >/dev/null
    export QUARRY_HOME="$PWD/build-bench/$1"
    unset DATABASE_URL PGHOST PGPORT PGDATABASE PGUSER PGSERVICE REDIS_URL
    scripts/services.sh up
    q=build-bench/quarry
    url=$(sed -n 's/^DATABASE_URL=//p' "$QUARRY_HOME/urls")
}

# A fresh database NAME on the private server; sets surl, its URL.
scratch_db() {
    psql "$url" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" 2>/dev/null
    surl=${url/\/quarry\?//$1?}
}
