#!/bin/sh
# make bench: engine micro-benchmarks, then (as root, with a mount) the fio
# job set of ../shared/bench/peers.sh on a thinfs volume beside a raw file,
# libfuse's passthrough and QEMU's export, repeated BENCH_RUNS times (default
# 2) for medians, then the daemon's memory and two-volume scaling, replication,
# online administration and first writes over an external origin.
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
RUNS=${BENCH_RUNS:-2}
. "$(dirname "$0")/bench-lib.sh"
bench_tmpdir "$WORK" thinfs-bench
P=$T/pool
# Each run measures every target again (raw file, libfuse's passthrough,
# QEMU's qcow2 export, a fresh thinfs volume, loop+ext4 over the raw file and
# over a thinfs volume); peers.sh's report gives the medians over the runs.
for r in $(seq "$RUNS"); do
	echo "== fio run $r of $RUNS (../shared/bench/peers.sh)"
	rm -rf "$P"
	"$BUILD/thinctl" format "$P" --data-size 8G >/dev/null || exit 1
	"$BUILD/thinctl" create "$P" vol0 2G >/dev/null || exit 1
	"$BUILD/thinctl" create "$P" loopvol 2G >/dev/null || exit 1
	"$BUILD/thinfs" "$P" "$T/mnt" -f 2>>"$T/daemon.log" &
	PID=$!
	i=0; while ! mountpoint -q "$T/mnt" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	OUT=$T/results RUN=run$r FRESH=1 SNAP_CMD="mkdir $T/mnt/.snapshots/bench" \
		WORK=$WORK/peers-work bash "$PEERS" raw fuse-ll qsd "file:$T/mnt/vol0:thinfs" \
		loop-raw "loop-file:$T/mnt/loopvol:loop-thinfs" >"$T/peers-$r.log" 2>&1 ||
		{ tail -20 "$T/peers-$r.log"; exit 1; }
	stop_daemon
done
OUT=$T/results bash "$PEERS" report >"$T/report.md" 2>&1 || { cat "$T/report.md"; exit 1; }
cat "$T/report.md"
echo
echo "== ratios of the medians (issue 5's goals in brackets)"
awk -F'|' '
function v(t, j) { return (t SUBSEP j) in m ? m[t, j] : 0 }
function r(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "-" }
/^\| [a-z-]+ \| [a-z-]+ \| [0-9.]+ \| [0-9]+ \|/ {
	t = $2; j = $3; gsub(/ /, "", t); gsub(/ /, "", j)
	m[t, j] = (j ~ /^seq/) ? $4 + 0 : $5 + 0
}
END {
	printf "| job | thinfs | / raw | / passthrough | / QEMU export |\n|---|---:|---:|---:|---:|\n"
	n = split("seqwrite seqread randwrite randread fsyncwrite alloc", J, " ")
	split("[>= 0.8 x raw];[>= 0.8 x raw];[>= 0.6 x raw, >= 1.5 x QEMU];[>= 0.6 x raw, >= 1.5 x QEMU];[>= 0.5 x raw];[>= 0.5 x raw]", G, ";")
	for (k = 1; k <= n; k++) {
		j = J[k]; t = v("thinfs", j)
		printf "| %s %s | %s | %s | %s | %s |\n", j, G[k], t, r(t, v("raw", j)), r(t, v("fuse-ll", j)), r(t, v("qsd", j))
	}
	printf "| cow [>= 5 x QEMU internal snapshot] | %s | | | %s |\n", v("thinfs", "cow"), r(v("thinfs", "cow"), v("qsd", "cow-intsnap"))
	for (k = 3; k <= 4; k++)
		printf "| loop+ext4 %s [>= 0.8 x loop over raw] | %s | %s | | |\n", J[k], v("loop-thinfs", J[k]), r(v("loop-thinfs", J[k]), v("loop-raw", J[k]))
	print "(MiB/s for seq jobs, IOPS otherwise)"
}' "$T/report.md"
bash "$(dirname "$0")/daemon-bench.sh" "$BUILD" "$WORK"
sh "$(dirname "$0")/send-bench.sh" "$BUILD" "$WORK"
bash "$(dirname "$0")/admin-bench.sh" "$BUILD" "$WORK"
sh "$(dirname "$0")/clone-bench.sh" "$BUILD" "$WORK"
sh "$(dirname "$0")/origin-bench.sh" "$BUILD" "$WORK"
