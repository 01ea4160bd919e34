#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The main job of README.md: builds Ring, starts the broker impulsed by hand (no systemd) on a
# private bus, shows it serving, runs the demo clients against it, and stops it again.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build-demo"
bus="demo$$"
workdir=$(mktemp -d)
broker_pid=""

cleanup() {
        if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
                kill -TERM "$broker_pid"
                wait "$broker_pid" || true
        fi
        rm -rf "$workdir"
}
trap cleanup EXIT

echo "== building Ring in $build"
[ -x "$top/configure" ] || (cd "$top" && ./autogen.sh >/dev/null)
mkdir -p "$build"
cd "$build"
[ -f Makefile ] || "$top/configure" -q
make -j"$(nproc)" >/dev/null

echo "== starting impulsed on bus \"$bus\" (RING_BUS=$bus)"
export RING_BUS="$bus"
src/impulsed/impulsed --control-socket "$workdir/control" --key-cost min 2> "$workdir/impulsed.log" &
broker_pid=$!
for _ in $(seq 1 100); do
        [ -S "$workdir/control" ] && break
        kill -0 "$broker_pid" 2>/dev/null || { cat "$workdir/impulsed.log"; exit 1; }
        sleep 0.05
done

echo "== ringctl status"
src/ringctl/ringctl status --socket "$workdir/control"

echo "== schema fingerprints of the examples"
src/ringctl/ringctl fingerprint "$top/examples/schemas/metric.avsc"
src/ringctl/ringctl fingerprint "$top/examples/schemas/add.avsc"

echo "== pub/sub: metric-pub publishes \"metrics\" (Avro records), metric-sub subscribes by name"
examples/metric-pub 5 &
pub_pid=$!
examples/metric-sub 5
wait "$pub_pid"

echo "== RPC: add-service exposes \"add\", add-call calls it"
examples/add-service 2000 &
svc_pid=$!
for _ in $(seq 1 100); do
        src/ringctl/ringctl functions --socket "$workdir/control" | grep -q add && break
        sleep 0.05
done
echo "== ringctl functions, clients"
src/ringctl/ringctl functions --socket "$workdir/control"
src/ringctl/ringctl clients --socket "$workdir/control"
examples/add-call
wait "$svc_pid"

echo "== segments of the bus while it runs"
ls -l /dev/shm | grep "impulse-ring-$bus" || true

echo "== stopping impulsed"
kill -TERM "$broker_pid"
wait "$broker_pid"
broker_pid=""
echo "== broker log"
cat "$workdir/impulsed.log"
left=$(ls /dev/shm | grep -c "impulse-ring-$bus" || true)
echo "== segments left in /dev/shm: $left"
