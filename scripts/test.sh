#!/usr/bin/env bash
# The full test suite, as CI runs it: install what is missing, build, and run
# every test twice -- a normal build, then one under AddressSanitizer and
# UndefinedBehaviorSanitizer. Each ctest run starts its own PostgreSQL and
# Redis (unix sockets in the build folder) and stops them at the end.
#
#   scripts/test.sh            both builds
#   scripts/test.sh --fast     the normal build only
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

jobs=$(nproc 2>/dev/null || echo 2)

echo "== build (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
echo "== tests"
(cd build && ctest --output-on-failure)

[ "${1:-}" = "--fast" ] && exit 0

echo "== build (AddressSanitizer + UndefinedBehaviorSanitizer)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DQUARRY_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
echo "== tests under the sanitizers"
# A sanitizer report anywhere -- also in a quarry process a spec starts --
# exits 86, which no test expects, so it fails the run.
export ASAN_OPTIONS="exitcode=86:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=86"
export LSAN_OPTIONS="exitcode=86"
(cd build-asan && ctest --output-on-failure)
