#!/bin/bash
# 22_discard: fstrim, blkdiscard and blkdiscard -z through loop devices,
# fallocate punch/zero on the volume file.  Unmapped blocks leave st_blocks,
# thinctl's mapped count and (once committed) the data file; blocks a
# snapshot shares stay in the data file and in the snapshot.
. "$(dirname "$0")/lib.sh"
set -eu
require_root
require_cmd mkfs.ext4 mkfs.xfs xfs_repair fstrim blkdiscard fallocate
setup

format 1G
start_daemon
MB=2048 # 512-byte sectors per MiB

# wait_le CMD LIMIT: the value CMD prints falls to LIMIT or below within 5 s
wait_le() {
	local v
	for _ in $(seq 50); do
		v=$($1)
		[ "$v" -le "$2" ] && return 0
		sleep 0.1
	done
	fail "$1 stays at $v, expected <= $2"
}
data_blocks() { blocks "$P/data"; }

for fst in ext4 xfs; do
	say "fstrim through loop+$fst unmaps what rm freed"
	truncate -s 512M "$M/$fst"
	L=$(loop_attach "$M/$fst")
	if [ "$fst" = ext4 ]; then mkfs.ext4 -q -F -E nodiscard "$L"; else mkfs.xfs -q -f -K "$L"; fi
	fs_mount "$L" "$T/fs"
	sync "$M/$fst"
	base=$(blocks "$M/$fst")
	dd if=/dev/urandom of="$T/fs/big" bs=1M count=64 status=none
	sync -f "$T/fs"
	full=$(blocks "$M/$fst")
	[ "$full" -ge $((base + 64 * MB)) ] || fail "$fst: 64M written, st_blocks $base -> $full"
	rm "$T/fs/big"
	sync -f "$T/fs"
	# xfs skips extents still busy in its log: retry until they are free
	for _ in $(seq 10); do
		fstrim "$T/fs"
		[ "$(blocks "$M/$fst")" -le $((base + 2 * MB)) ] && break
		sleep 0.5
	done
	sync "$M/$fst" # thinctl list shows the last commit
	after=$(blocks "$M/$fst")
	[ "$after" -le $((base + 2 * MB)) ] || fail "$fst: fstrim: st_blocks $full -> $after (base $base)"
	[ $(($(mapped "$fst") * 64 * 1024 / 512)) = "$after" ] ||
		fail "$fst: thinctl mapped $(mapped "$fst") vs st_blocks $after"
	fs_umount "$T/fs"
	if [ "$fst" = ext4 ]; then e2fsck -fn "$L"; else xfs_repair -n "$L"; fi > "$T/fsck.log" 2>&1 ||
		{ cat "$T/fsck.log"; fail "$fst check after fstrim"; }
	loop_detach "$L"
done

say "blkdiscard unmaps; the data file gives the blocks back"
truncate -s 64M "$M/v2"
dd if=/dev/urandom of="$M/v2" bs=1M count=8 conv=notrunc,fsync status=none
[ "$(blocks "$M/v2")" = $((8 * MB)) ] || fail "v2 st_blocks $(blocks "$M/v2")"
d0=$(data_blocks)
L=$(loop_attach "$M/v2")
blkdiscard -o 0 -l 4M "$L"
[ "$(blocks "$M/v2")" = $((4 * MB)) ] || fail "blkdiscard 4M: st_blocks $(blocks "$M/v2")"
sync "$M/v2" # thinctl list shows the last commit
[ "$(mapped v2)" = 64 ] || fail "mapped $(mapped v2), expected 64"
[ "$(head -c 4M "$L" | tr -d '\0' | wc -c)" = 0 ] || fail "discarded range not zeros"
sync "$M/v2"
wait_le data_blocks $((d0 - 4 * MB))

say "a partial discard zeroes, neighbours stay"
dd if="$M/v2" of="$T/before" bs=64K skip=64 count=1 status=none
blkdiscard -o $((4 * 1048576 + 4096)) -l 8192 "$L"
dd if="$M/v2" of="$T/after" bs=64K skip=64 count=1 status=none
cmp -n 4096 "$T/before" "$T/after" || fail "bytes before the partial discard changed"
cmp -i 12288 "$T/before" "$T/after" || fail "bytes after the partial discard changed"
[ "$(dd if="$T/after" bs=4096 skip=1 count=2 status=none | tr -d '\0' | wc -c)" = 0 ] ||
	fail "partial discard not zeros"
[ "$(blocks "$M/v2")" = $((4 * MB)) ] || fail "a partial discard unmapped a block"

say "blkdiscard -z and fallocate -z read zeros"
blkdiscard -z -o $((5 * 1048576)) -l 1M "$L"
[ "$(dd if="$M/v2" bs=1M skip=5 count=1 status=none | tr -d '\0' | wc -c)" = 0 ] || fail "zero-out"
loop_detach "$L"
fallocate -z -o $((6 * 1048576)) -l 1M "$M/v2"
[ "$(dd if="$M/v2" bs=1M skip=6 count=1 status=none | tr -d '\0' | wc -c)" = 0 ] || fail "zero-range"
[ "$(stat -c %s "$M/v2")" = 67108864 ] || fail "zero-range changed the size"

say "punch past the end changes nothing"
fallocate -p -o 60M -l 100M "$M/v2"
[ "$(stat -c %s "$M/v2")" = 67108864 ] || fail "punch past the end changed the size"

say "blocks a snapshot shares stay in the data file and in the snapshot"
dd if=/dev/urandom of="$M/v2" bs=1M count=8 conv=notrunc,fsync status=none
mkdir "$M/.snapshots/keep"
sha=$(sha256sum < "$M/.snapshots/keep/v2")
u0=$(used)
d0=$(data_blocks)
L=$(loop_attach "$M/v2")
blkdiscard "$L"
loop_detach "$L"
sync "$M/v2"
[ "$(blocks "$M/v2")" = 0 ] || fail "v2 still has $(blocks "$M/v2") blocks"
[ "$(head -c 8M "$M/v2" | tr -d '\0' | wc -c)" = 0 ] || fail "v2 not zeros after discard"
[ "$(used)" = "$u0" ] || fail "used $u0 -> $(used) though the snapshot shares every block"
[ "$(data_blocks)" = "$d0" ] || fail "data file st_blocks $d0 -> $(data_blocks): shared blocks punched"
[ "$(sha256sum < "$M/.snapshots/keep/v2")" = "$sha" ] || fail "snapshot changed"

say "rmdir of the set frees them"
rmdir "$M/.snapshots/keep"
sync "$M/v2"
wait_le used $((u0 - 128))
wait_le data_blocks $((d0 - 8 * MB))

finish
