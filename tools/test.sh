#!/bin/sh
# tools/test.sh - install everything the tests need, then build twice and run the suite:
#   build/release  gcc, hardening flags, -Werror: must compile cleanly
#   build/tsan     clang with ThreadSanitizer: the rate limiter's (and its store's), DNS cache's and submit queue's tests
#   build/asan     gcc with ASan+UBSan (-fno-sanitize-recover): runs the whole ctest suite
# Run as root on Debian 12 (the integration tests start a private Postfix and drop privileges).
set -eu
cd "$(dirname "$0")/.."
tools/deps.sh test
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUM_WERROR=ON
cmake --build build/release -j"$(nproc)"
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DUM_SANITIZE=ON -DUM_WERROR=ON
cmake --build build/asan -j"$(nproc)"
# ThreadSanitizer (clang) on the tests that hammer shared state from many threads.
CC=clang cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=Debug -DUM_TSAN=ON -DUM_WERROR=ON
cmake --build build/tsan -j"$(nproc)" --target test_ratelimit test_dns test_submit test_rlstore
(cd build/tsan && ctest --output-on-failure -R 'unit/test_(ratelimit|dns|submit|rlstore)$')
cd build/asan
ctest --output-on-failure -j2
