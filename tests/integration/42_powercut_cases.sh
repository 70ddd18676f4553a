#!/usr/bin/env bash
# 42_powercut_cases: the bugs of dm-thin's history, each under a power cut
# (pool on its own XFS, shutdown without log flush, daemon killed):
#  B9/694cfe7f31db  a 512-byte O_DSYNC write at 4096 into a 64 KiB block a
#                   snapshot shares: after the cut the rest of the block keeps
#                   the old data and the snapshot is untouched;
#  E4/4ae280b4ee34  whole-block RWF_DSYNC overwrites of an unprovisioned and of
#                   a shared block: the new data survives, the snapshot keeps
#                   the old;
#  C4 under a cut   discarding every block of a volume a snapshot shares, then
#                   a cut: the snapshot still reads its data, never a hole;
#  F3 files         ext4 on a volume, files fsynced with their directory and
#                   their sha256 noted, then a cut: e2fsck -fn clean after the
#                   journal replays, every noted file intact.
. "$(dirname "$0")/lib.sh"
require_root
require_cmd xfs_io mkfs.xfs mkfs.ext4 e2fsck sha256sum
pfs_init
BS=65536

# pattern FILE OFFSET LENGTH BYTE: do these bytes hold BYTE?
pattern() {
	local want
	want=$(head -c "$3" /dev/zero | tr '\0' "\\$(printf '%03o' "$4")" | sha256sum)
	[ "$(dd if="$1" bs=1 skip="$2" count="$3" status=none | sha256sum)" = "$want" ]
}
# the same, faster, for whole blocks
blockpat() { cmp -s <(dd if="$1" bs=$BS skip="$2" count=1 status=none) <(head -c $BS /dev/zero | tr '\0' "\\$(printf '%03o' "$3")"); }

# dm_cases [WRAPPER...]: B9, E4 and C4 under one cut; returns 1 on a violation
dm_cases() {
	local bad=0
	pfs_make
	tc format "$P" --data-size 256M > /dev/null && tc create "$P" v1 16M > /dev/null || fail "format"
	pfs_serve "$@"
	sysctl -qw vm.dirty_writeback_centisecs=0
	xfs_io -c "pwrite -q -S 0x11 0 $((4 * BS))" -c fsync "$M/v1" || fail "fill"
	mkdir "$M/.snapshots/s"
	# B9: a partial O_DSYNC write into shared block 0
	xfs_io -d -c "pwrite -q -S 0x22 4096 512" -c fsync "$M/v1" || fail "partial write"
	# E4: whole-block RWF_DSYNC overwrites of unprovisioned block 8 and shared block 1
	xfs_io -c "pwrite -q -V 1 -D -S 0x33 -b $BS $((8 * BS)) $BS" "$M/v1" || fail "dsync unprovisioned"
	xfs_io -c "pwrite -q -V 1 -D -S 0x44 -b $BS $((1 * BS)) $BS" "$M/v1" || fail "dsync shared"
	# C4: punch shared blocks 2-3 of v1 (not synced: it may or may not stick)
	fallocate -p -o $((2 * BS)) -l $((2 * BS)) "$M/v1" || fail "punch"
	pfs_cut
	sysctl -qw vm.dirty_writeback_centisecs="$OLD_WB"
	if ! tc check "$P" > "$T/check.log" 2>&1; then
		echo "   check after the cut: $(head -2 "$T/check.log" | tr '\n' ' ')"
		bad=1
	fi
	pfs_serve
	{ pattern "$M/v1" 0 4096 0x11 && pattern "$M/v1" 4096 512 0x22 &&
		pattern "$M/v1" 4608 $((BS - 4608)) 0x11; } ||
		{ echo "   B9: v1 block 0 lost the partial write or its old data around it"; bad=1; }
	blockpat "$M/.snapshots/s/v1" 0 0x11 || { echo "   B9: the snapshot's block 0 changed"; bad=1; }
	blockpat "$M/v1" 8 0x33 || { echo "   E4: the RWF_DSYNC write to a new block was lost"; bad=1; }
	blockpat "$M/v1" 1 0x44 || { echo "   E4: the RWF_DSYNC overwrite of a shared block was lost"; bad=1; }
	blockpat "$M/.snapshots/s/v1" 1 0x11 || { echo "   E4: the snapshot's block 1 changed"; bad=1; }
	for b in 2 3; do
		blockpat "$M/.snapshots/s/v1" $b 0x11 || { echo "   C4: the snapshot's block $b lost its data"; bad=1; }
		blockpat "$M/v1" $b 0x11 || blockpat "$M/v1" $b 0x00 ||
			{ echo "   C4: v1 block $b is neither old data nor zeros"; bad=1; }
	done
	pfs_teardown
	return $bad
}

say "B9, E4, C4: blocks 0-3 of v1 hold 0x11, a set shares them, then writes and a cut"
dm_cases || fail "a dm-thin case failed after the cut"
echo "   B9, E4 and C4 hold after the cut"
if command -v eatmydata > /dev/null; then
	say "negative control: the same under eatmydata must fail"
	dm_cases eatmydata && fail "control passed: the cases cannot fail"
	echo "   the control failed, as it must"
fi

say "F3: ext4 on a volume, fsynced files, a cut"
pfs_make
tc format "$P" --data-size 512M > /dev/null && tc create "$P" v1 256M > /dev/null || fail "format"
pfs_serve
L=$(losetup -f --show "$M/v1") || fail "losetup"
mkfs.ext4 -q -F "$L" && mkdir -p "$T/fs" && mount "$L" "$T/fs" || fail "ext4"
: > "$T/acked"
for i in $(seq 40); do
	head -c $((RANDOM * 8 + 1)) /dev/urandom > "$T/fs/f$i"
	# fsync the file and its directory: then it is acknowledged
	python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); d=os.open(os.path.dirname(sys.argv[1]), os.O_RDONLY); os.fsync(d)' "$T/fs/f$i"
	(cd "$T/fs" && sha256sum "f$i") >> "$T/acked"
done
head -c 3000000 /dev/urandom > "$T/fs/unsynced" # may be lost
xfs_io -x -c shutdown "$PFS"
kill -KILL "$PID"
wait "$PID" 2> /dev/null
PID=""
umount "$T/fs" 2> /dev/null || umount -l "$T/fs"
losetup -d "$L"
timeout 10 umount "$M" 2> /dev/null || { fuse_abort; timeout 10 umount -l "$M"; }
pfs_remount
tc check "$P" > "$T/check.log" 2>&1 || { cat "$T/check.log"; fail "F3: check after the cut"; }
pfs_serve
L=$(losetup -f --show "$M/v1") || fail "losetup"
mount "$L" "$T/fs" || fail "F3: ext4 does not mount after the cut"  # replays the journal
umount "$T/fs"
e2fsck -fn "$L" > "$T/fsck.log" 2>&1 || { tail -5 "$T/fsck.log"; fail "F3: e2fsck -fn after the cut"; }
mount -o ro "$L" "$T/fs" || fail "remount ro"
(cd "$T/fs" && sha256sum -c --quiet "$T/acked") || fail "F3: an fsynced file changed"
umount "$T/fs"
losetup -d "$L"
echo "   40 fsynced files intact, e2fsck clean"
sysctl -qw vm.dirty_writeback_centisecs="$OLD_WB"
echo "PASS $TEST_NAME"
