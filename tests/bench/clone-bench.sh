#!/bin/sh
# make bench, cloning (issue 14): `cp MNT/a MNT/b` of a CLONE_SIZE_MB
# (default 1024) fully mapped volume, which coreutils does with
# copy_file_range and thinfs answers by sharing the blocks, against copying
# the same bytes: dd through the mount into a new volume (read + write, new
# blocks) and `cp` of the volume to a plain file on the host.  Prints time
# (each until its sync returned) and new data blocks of
# each, and the ratios.  Needs root; prints, never fails on a ratio.
# Usage: clone-bench.sh BUILD [WORKDIR]
BUILD=${1:-build}
WORK=${2:-/var/tmp}
MB=${CLONE_SIZE_MB:-1024}
C=$BUILD/thinctl
if [ "$(id -u)" != 0 ] || [ ! -c /dev/fuse ]; then
	echo "== clone bench skipped (needs root and /dev/fuse)"
	exit 0
fi
T=$(mktemp -d "$WORK/thinfs-clone-bench.XXXXXX") || exit 1
PID=
trap 'mountpoint -q "$T/mnt" && umount "$T/mnt"; [ -n "$PID" ] && wait "$PID"; rm -rf "$T"' EXIT
mkdir "$T/mnt"
now() { date +%s%N; }
used() { "$C" status --json "$T/pool" | sed -n 's/.*"used_blocks":\([0-9]*\).*/\1/p'; }
"$C" format "$T/pool" --data-size $((MB * 3 + 64))M > /dev/null || exit 1
"$C" create "$T/pool" a "${MB}M" > /dev/null || exit 1
"$BUILD/thinfs" "$T/pool" "$T/mnt" -f 2> "$T/daemon.log" &
PID=$!
i=0; while ! mountpoint -q "$T/mnt" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
dd if=/dev/urandom of="$T/mnt/a" bs=1M count="$MB" conv=notrunc status=none || exit 1
sync "$T/mnt/a"
echo "== cp of a $MB MiB fully mapped volume: clone vs copy ($(date -u +%F), commit $(git rev-parse --short HEAD 2>/dev/null))"
u0=$(used)
t0=$(now)
cp "$T/mnt/a" "$T/mnt/b" || exit 1
sync "$T/mnt/b"
t1=$(now)
u1=$(used)
cmp "$T/mnt/a" "$T/mnt/b" || echo "   MISMATCH: b differs from a"
# copying through the mount: read + write of every byte, new blocks
t2=$(now)
dd if="$T/mnt/a" of="$T/mnt/c" bs=1M status=none || exit 1
sync "$T/mnt/c"
t3=$(now)
u2=$(used)
# copying to a plain file of the host
t4=$(now)
cp "$T/mnt/a" "$T/host-copy" || exit 1
sync "$T/host-copy"
t5=$(now)
clone_ms=$(((t1 - t0) / 1000000)); dd_ms=$(((t3 - t2) / 1000000)); host_ms=$(((t5 - t4) / 1000000))
printf '   cp (copy_file_range, shares)   %6d ms   %6d new blocks\n' "$clone_ms" $((u1 - u0))
printf '   dd through the mount (copies)  %6d ms   %6d new blocks\n' "$dd_ms" $((u2 - u1))
printf '   cp to a host file (copies)     %6d ms\n' "$host_ms"
awk -v c="$clone_ms" -v d="$dd_ms" -v h="$host_ms" 'BEGIN {
	if (c < 1) c = 1
	printf "   ratios: dd copy / clone = %.1fx, host cp / clone = %.1fx\n", d / c, h / c }'
