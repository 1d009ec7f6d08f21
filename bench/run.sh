#!/bin/sh
# bench/run.sh BUILD_DIR [--quick]: builds the benchmark helpers into
# BUILD_DIR/bench, then runs bench/bench.py, which measures the daemon
# beside this machine's ceilings and prints one table (also written to
# BUILD_DIR/bench/results.md). `make bench` calls this after building the
# daemon. See bench/README.md.
set -eu

BUILD=${1:-build}
shift || true
cd "$(dirname "$0")/.."

for f in "$BUILD/crush-supervisor" "$BUILD/crush-worker" "$BUILD/libcrush.a"; do
	[ -e "$f" ] || { echo "bench: $f missing; run make first" >&2; exit 1; }
done
for t in wrk h2load h2o taskset; do
	command -v "$t" >/dev/null 2>&1 || { echo "bench: $t not found (WITH_BENCH=1 sh scripts/deps.sh)" >&2; exit 1; }
done

CC=${CC:-cc}
B="$BUILD/bench"
mkdir -p "$B"
W="-O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE"
$CC $W -o "$B/spawn_child" bench/spawn_child.c
$CC $W -o "$B/spawn_floor" bench/spawn_floor.c
$CC $W -o "$B/sse_fanout" bench/sse_fanout.c
$CC $W -DH2O_USE_LIBUV=0 -o "$B/h2_floor" bench/h2_floor.c -lh2o-evloop
$CC $W -DH2O_USE_LIBUV=0 -o "$B/relay_floor" bench/relay_floor.c -lh2o-evloop
$CC $W -I. -o "$B/bench_worker" bench/bench_worker.c "$BUILD/libcrush.a" -ljansson -luuid

# The whole run is bounded: bench.py bounds each wait; this bounds the sum.
exec timeout -k 10 900 /usr/bin/python3 bench/bench.py "$BUILD" "$@"
