#!/bin/sh
# make bench, replication: send and receive of a SEND_SIZE (default 1G)
# volume of random data (64 KiB blocks), each against a plain `cp` of the
# same bytes in the same run, SEND_RUNS times (default 3) in turn, medians.
# A second baseline copies the bytes from disk (the source dropped from the
# page cache first, as send's data file, read with O_DIRECT, always is).
# The received volume is compared with cmp.  Needs root (a mount fills the
# volume); prints, never fails on a ratio (issue 12's goal: >= 0.5 x cp).
# Usage: send-bench.sh BUILD [WORKDIR]
BUILD=${1:-build}
WORK=${2:-/var/tmp}
SIZE=${SEND_SIZE:-1G}
RUNS=${SEND_RUNS:-3}
C=$BUILD/thinctl
if [ "$(id -u)" != 0 ] || [ ! -c /dev/fuse ]; then
	echo "== send/receive bench skipped (needs root and /dev/fuse)"
	exit 0
fi
T=$(mktemp -d "$WORK/thinfs-send-bench.XXXXXX") || exit 1
trap 'mountpoint -q "$T/mnt" && umount "$T/mnt"; rm -rf "$T"' EXIT
mkdir "$T/mnt"
now() { date +%s.%N; }
"$C" format "$T/a" --data-size 4G > /dev/null || exit 1
"$C" create "$T/a" vol "$SIZE" > /dev/null || exit 1
head -c "$SIZE" /dev/urandom > "$T/img" || exit 1
"$BUILD/thinfs" "$T/a" "$T/mnt" || exit 1
dd if="$T/img" of="$T/mnt/vol" bs=1M conv=notrunc status=none || exit 1
umount "$T/mnt"
echo "== send/receive of a $SIZE volume vs cp, $RUNS runs ($(date -u +%F), commit $(git rev-parse --short HEAD 2>/dev/null))"
for r in $(seq "$RUNS"); do
	rm -rf "$T/b" "$T/copy" "$T/stream"
	"$C" format "$T/b" --data-size 4G > /dev/null || exit 1
	sync
	t0=$(now)
	cp "$T/img" "$T/copy"
	t1=$(now)
	sync
	t2=$(now)
	"$C" send "$T/a" vol > "$T/stream" || exit 1
	t3=$(now)
	sync
	t4=$(now)
	"$C" receive "$T/b" vol < "$T/stream" || exit 1
	t5=$(now)
	rm -f "$T/copy"
	sync
	dd if="$T/img" iflag=nocache count=0 status=none
	t6=$(now)
	cp "$T/img" "$T/copy"
	t7=$(now)
	echo "$t0 $t1 $t2 $t3 $t4 $t5 $t6 $t7" >> "$T/times"
done
"$BUILD/thinfs" "$T/b" "$T/mnt" || exit 1
if cmp "$T/mnt/vol" "$T/img"; then echo "received volume: identical (cmp)"; else echo "received volume DIFFERS"; fi
umount "$T/mnt"
bytes=$(stat -c %s "$T/img")
awk -v bytes="$bytes" '
function med(a, n,   i, j, t) {
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return a[int((n + 1) / 2)]
}
{ n++; cp[n] = $2 - $1; sd[n] = $4 - $3; rc[n] = $6 - $5; cc[n] = $8 - $7
  printf "run %d: cp %.2fs (from disk %.2fs), send %.2fs (%.2f x cp), receive %.2fs (%.2f x cp)\n", n, cp[n], cc[n], sd[n], cp[n] / sd[n], rc[n], cp[n] / rc[n] }
END {
	c = med(cp, n); s = med(sd, n); r = med(rc, n); d = med(cc, n); m = bytes / 1048576
	printf "| | cp | cp from disk | send | receive |\n|---|---:|---:|---:|---:|\n"
	printf "| median | %.0f MiB/s | %.0f MiB/s | %.0f MiB/s | %.0f MiB/s |\n", m / c, m / d, m / s, m / r
	printf "| send, receive / cp (goal >= 0.5) | | | %.2f | %.2f |\n", c / s, c / r
	printf "| send, receive / cp from disk | | | %.2f | %.2f |\n", d / s, d / r
}' "$T/times"
