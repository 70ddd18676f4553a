#!/bin/sh
# make bench: engine micro-benchmarks, then (as root, with a mount) the fio
# job set of ../shared/bench/peers.sh on a thinfs volume beside a raw file.
# Results are printed, never committed; README keeps a short dated table.
BUILD=${1:-build}
WORK=${BENCH_DIR:-/var/tmp}
echo "== engine micro-benchmarks (medians of 5; $(date -u +%F), $(nproc) cpus, commit $(git rev-parse --short HEAD 2>/dev/null))"
"$BUILD/bench_engine" "$WORK" ${BENCH_SIZES:-10000 100000 1000000} || exit 1
PEERS=$(dirname "$0")/../../../shared/bench/peers.sh
if [ "$(id -u)" != 0 ] || [ ! -x "$BUILD/thinfs" ] || [ ! -f "$PEERS" ]; then
	echo "== fio comparison skipped (needs root, build/thinfs and shared/bench/peers.sh)"
	exit 0
fi
T=$(mktemp -d "$WORK/thinfs-bench.XXXXXX")
P=$T/pool
mkdir -p "$T/mnt"
"$BUILD/thinctl" format "$P" --data-size 8G >/dev/null || exit 1
"$BUILD/thinctl" create "$P" vol0 2G >/dev/null || exit 1
"$BUILD/thinfs" "$P" "$T/mnt" -f & PID=$!
i=0; while ! mountpoint -q "$T/mnt" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
trap 'umount "$T/mnt" 2>/dev/null; kill $PID 2>/dev/null; wait $PID; rm -rf "$T"' EXIT
FRESH=1 SNAP_CMD="mkdir $T/mnt/.snapshots/bench" WORK=$WORK/peers-work \
	bash "$PEERS" raw "file:$T/mnt/vol0:thinfs"
