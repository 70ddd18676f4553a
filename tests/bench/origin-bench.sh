#!/bin/sh
# make bench, external origins (issue 14): first-write IOPS of 4 KiB random
# direct writes (fio) on a volume over an external origin against a fresh
# thin volume, in the same run, ORIGIN_RUNS times (default 3) in turn,
# medians.  Every write lands in a block not written before (offsets
# aligned to the pool's 64 KiB blocks, each taken once): on the fresh volume
# it provisions a block and writes 4 KiB; over the origin it also copies the
# origin's 64 KiB block first (dropped from the page cache before each
# run).  Needs root; prints, never fails on the ratio.
# Usage: origin-bench.sh BUILD [WORKDIR]
BUILD=${1:-build}
WORK=${2:-/var/tmp}
SIZE_MB=${ORIGIN_SIZE_MB:-256}
RUNS=${ORIGIN_RUNS:-3}
C=$BUILD/thinctl
if [ "$(id -u)" != 0 ] || [ ! -c /dev/fuse ] || ! command -v fio > /dev/null; then
	echo "== origin bench skipped (needs root, /dev/fuse and fio)"
	exit 0
fi
. "$(dirname "$0")/bench-lib.sh"
bench_tmpdir "$WORK" thinfs-origin-bench
head -c $((SIZE_MB * 1048576)) /dev/urandom > "$T/origin.img" || exit 1
NR=$((SIZE_MB * 16)) # 64 KiB blocks: one 4 KiB write into each
# first_write FILE: write IOPS of one write into each 64 KiB block
first_write() {
	fio --name=first --filename="$1" --rw=randwrite --bs=4k --blockalign=64k \
		--size="${SIZE_MB}M" --io_size=$((NR * 4))k --direct=1 --ioengine=psync \
		--randrepeat=1 --minimal 2> "$T/fio.err" | awk -F';' '{ print $49 }'
}
echo "== first-write IOPS, origin volume vs fresh volume, $SIZE_MB MiB, $RUNS runs ($(date -u +%F), commit $(git rev-parse --short HEAD 2>/dev/null))"
for r in $(seq "$RUNS"); do
	rm -rf "$T/pool"
	"$C" format "$T/pool" --data-size $((SIZE_MB * 3))M > /dev/null || exit 1
	"$C" create "$T/pool" fresh "${SIZE_MB}M" > /dev/null || exit 1
	"$C" create "$T/pool" over - --origin "$T/origin.img" > /dev/null || exit 1
	"$BUILD/thinfs" "$T/pool" "$T/mnt" -f 2>> "$T/daemon.log" &
	PID=$!
	i=0
	while ! mountpoint -q "$T/mnt" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	sync
	dd if="$T/origin.img" iflag=nocache count=0 status=none
	# (in turn which goes first, so neither always meets a cold daemon)
	if [ $((r % 2)) = 1 ]; then
		fresh=$(first_write "$T/mnt/fresh")
		over=$(first_write "$T/mnt/over")
	else
		over=$(first_write "$T/mnt/over")
		fresh=$(first_write "$T/mnt/fresh")
	fi
	[ -n "$fresh" ] && [ -n "$over" ] || { cat "$T/fio.err"; exit 1; }
	echo "run $r: fresh $fresh IOPS, over the origin $over IOPS"
	echo "$fresh $over" >> "$T/iops"
	stop_daemon
done
awk '
function med(a, n,   i, j, t) {
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return a[int((n + 1) / 2)]
}
{ f[NR] = $1; o[NR] = $2 }
END {
	mf = med(f, NR); mo = med(o, NR)
	printf "| first 4 KiB write into a block | IOPS (median) |\n|---|---:|\n"
	printf "| fresh thin volume | %d |\n| volume over an external origin | %d |\n", mf, mo
	printf "| ratio origin / fresh | %.2f |\n", (mf > 0 ? mo / mf : 0)
}' "$T/iops"
