#!/bin/bash
# 52_fsx_ext: thinfs-fsx --ext, what xfstests' fsx does and plain
# thinfs-fsx did not (issue 17): sizes that move (writes, O_DIRECT writes,
# copies and zero-ranges past the end grow the volume; truncates leave it at
# a new size), mmap reads and writes, O_DIRECT through io_uring and through
# Linux AIO, copy_file_range from a second volume, with snapshot sets.  3
# seeds against the model, the same seed against a plain file on the host
# (the model itself must agree with a regular file), then 3 kill -9s of the
# daemon under it, each followed by --verify-after-crash (the size must lie
# between the least and the most it was since the last acknowledgement).
. "$(dirname "$0")/lib.sh"
set -eu
require_root
FSX=$THINFS_BUILD/thinfs-fsx
[ -x "$FSX" ] || skip "build thinfs-fsx first (make)"
OPS=${THINFS_FSX_OPS:-5000}
setup
format 512M --block-size 16K
start_daemon

rmsets() { for s in "$M"/.snapshots/*; do [ -d "$s" ] && rmdir "$s"; done; return 0; }

say "a plain file on the host: the model agrees with a regular file"
mkdir "$T/plain"
"$FSX" --ext --seed 1 --ops "$OPS" --size 16777216 "$T/plain" v1 > "$T/plain.log" 2>&1 ||
	{ cat "$T/plain.log"; fail "thinfs-fsx --ext on a plain file"; }
tail -n 1 "$T/plain.log"

for seed in 1 2 3; do
	say "seed $seed: $OPS ops on a volume"
	"$FSX" --ext --snapshots --seed "$seed" --ops "$OPS" --size 16777216 "$M" v1 \
		> "$T/fsx.$seed" 2>&1 || { cat "$T/fsx.$seed"; fail "thinfs-fsx --ext seed $seed"; }
	tail -n 2 "$T/fsx.$seed"
	grep -q " 0 ops grew" "$T/fsx.$seed" && fail "seed $seed: nothing grew the volume"
	rmsets
done

for i in 1 2 3; do
	"$FSX" --ext --snapshots --seed $((10 + i)) --ops 1000000 --size 16777216 --quiet \
		--log "$T/klog.$i" "$M" v1 > "$T/kfsx.$i" 2>&1 &
	FPID=$!
	sleep "$(awk -v s="$i" 'BEGIN { srand(s); printf "%.1f", 0.5 + rand() * 1.5 }')"
	kill -KILL "$PID"
	wait "$FPID" 2> /dev/null || true # it dies with ENOTCONN: expected
	wait "$PID" 2> /dev/null || true
	PID=""
	timeout 10 umount "$M" 2> /dev/null || { fuse_abort; timeout 10 umount -l "$M"; }
	tc check "$P" > "$T/check.log" 2>&1 || { cat "$T/check.log"; fail "check after kill $i"; }
	start_daemon
	"$FSX" --verify-after-crash "$T/klog.$i" "$M" v1 > "$T/verify.$i" 2>&1 ||
		{ cat "$T/verify.$i"; fail "verify after kill $i (replay: --replay $T/klog.$i)"; }
	echo "   kill $i: $(grep -cvE '^(#|ack|dsync-ack|set-done)' "$T/klog.$i") ops, $(tail -n 1 "$T/verify.$i" | sed 's/.*: //')"
	rmsets
done

finish
