#!/usr/bin/env bash
# Fuzz the cache value decoder with libFuzzer (clang), ASan and UBSan, then
# merge what it found into tests/fuzz/corpus (kept minimal).
#   tests/fuzz/run.sh [SECONDS]     default 600
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-600}
command -v clang >/dev/null || { apt-get install -y -qq clang libclang-rt-14-dev >/dev/null; }
out=build-fuzz
mkdir -p "$out/new"
# shellcheck disable=SC2046
clang -g -O1 -fsanitize=fuzzer,address,undefined -D_POSIX_C_SOURCE=200809L -Isrc \
    $(pkg-config --cflags lua5.4 libpq hiredis libevent) \
    tests/fuzz/fuzz_codec.c $(ls src/*.c | grep -v "/main.c$") \
    $(pkg-config --libs lua5.4 libpq hiredis libevent) -lpthread -lm -o "$out/fuzz_codec"
"$out/fuzz_codec" -max_total_time="$secs" -max_len=4096 -print_final_stats=1 "$out/new" tests/fuzz/corpus
"$out/fuzz_codec" -merge=1 tests/fuzz/corpus "$out/new"
