#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds Ring and runs every test: the normal build's `make check`, `make distcheck`, and
# `make check` again under AddressSanitizer + UBSan, then ring-bench --quick as one smoke-test
# check. Ends with one line "N passed, N failed" summed over all of them (the automake .trs files
# plus the smoke test).
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD
jobs=$(nproc 2>/dev/null || echo 2)
status=0

step() { printf '\n=== %s\n' "$*"; }
sum_results() {
        # Every .trs file records one ":test-result:" line per TAP test point.
        find "$@" -name '*.trs' -print0 2>/dev/null | xargs -0 -r cat |
                awk '/^:test-result: (PASS|XFAIL)/ { p++ } /^:test-result: (FAIL|XPASS|ERROR)/ { f++ }
                     /^:test-result: SKIP/ { s++ } END { printf "%d %d %d\n", p, f, s }'
}
show_failures() {
        find "$1" -name '*.log' -path '*tests*' -print0 | xargs -0 -r grep -l -E '^(not ok|Bail out)' |
                while read -r log; do echo "--- $log"; tail -n 60 "$log"; done
}

step "bootstrap"
./autogen.sh >/dev/null 2>&1 || { echo "autogen.sh failed"; ./autogen.sh; exit 1; }

step "build and make check"
rm -rf build-ci build-ci-asan
mkdir -p build-ci && cd build-ci
"$top"/configure -q && make -j"$jobs" >/dev/null && make -j"$jobs" check >/dev/null || status=1
[ $status -eq 0 ] || show_failures "$top/build-ci"
cd "$top"

step "make distcheck"
(cd build-ci && make -j"$jobs" distcheck >distcheck.log 2>&1) || { status=1; tail -n 80 build-ci/distcheck.log; }

step "AddressSanitizer + UBSan build and make check"
mkdir -p build-ci-asan && cd build-ci-asan
"$top"/configure -q --enable-sanitizers && make -j"$jobs" >/dev/null && make -j"$jobs" check >/dev/null || status=1
[ $status -eq 0 ] || show_failures "$top/build-ci-asan"
cd "$top"

step "ring-bench --quick (a smoke test: it must run everything and exit 0; no figure is judged)"
bench_p=0 bench_f=0
if (cd build-ci && make -j"$jobs" bench BENCH_ARGS="--quick --out bench-quick" >bench-quick.log 2>&1); then
        bench_p=1
        grep -E '^ring-bench: [0-9]+ measurements' build-ci/bench-quick.log || true
else
        bench_f=1 status=1
        tail -n 60 build-ci/bench-quick.log
fi

step "Debian packages under a real systemd (tests/system/nspawn/run.sh: dpkg-buildpackage, lintian, nspawn)"
# It prints TAP: each "ok"/"not ok" line counts as one test point. make check ran twice above,
# so dpkg-buildpackage skips it here (nocheck).
RING_NSPAWN_NOCHECK=1 tests/system/nspawn/run.sh | tee build-ci/nspawn.tap || status=1
nspawn_p=$(grep -c '^ok ' build-ci/nspawn.tap) nspawn_f=$(grep -c '^not ok ' build-ci/nspawn.tap)

read -r p1 f1 s1 < <(sum_results build-ci/tests build-ci-asan/tests)
p1=$((p1 + bench_p)) f1=$((f1 + bench_f))
p1=$((p1 + nspawn_p)) f1=$((f1 + nspawn_f))
step "results"
echo "plain + sanitizer builds and the bench smoke test: $p1 passed, $f1 failed, $s1 skipped (distcheck re-runs the plain suite)"
if [ $status -ne 0 ] && [ "$f1" -eq 0 ]; then
        # A build or distcheck failure is a failure even when no test point failed.
        f1=1
fi
echo "$p1 passed, $f1 failed"
exit $status
