#!/bin/bash
# 21_loop_ext4_xfs: ext4 and xfs on volumes through loop devices, buffered
# and --direct-io=on.  A set taken under fsfreeze mounts read-only
# (ro,noload / ro,norecovery) through its own loop device, matches the tree
# as it was, and checks clean while the origin moves on.  A set taken
# without freezing (after sync) replays its log on a writable snapshot and
# matches too.  Both origins check clean at the end.
. "$(dirname "$0")/lib.sh"
set -eu
require_root
require_cmd mkfs.ext4 mkfs.xfs e2fsck xfs_repair fsfreeze
setup

format 2G
start_daemon

snap_opts() { [ "$1" = ext4 ] && echo ro,noload || echo ro,norecovery,nouuid; }
fsck_ro() { # fsck_ro TYPE DEV: a read-only check, exit 0 = clean
	if [ "$1" = ext4 ]; then
		e2fsck -fn "$2" > "$T/fsck.log" 2>&1
	else
		xfs_repair -n "$2" > "$T/fsck.log" 2>&1
	fi || { cat "$T/fsck.log"; fail "$1 check of $2"; }
}
mkfs_q() {
	if [ "$1" = ext4 ]; then mkfs.ext4 -q -F "$2"; else mkfs.xfs -q -f "$2"; fi
}

# one volume per (fs, dio) pair, each with its own filesystem
run() { # run FSTYPE DIO
	local fst=$1 dio=$2 v=$1-dio$2 L S d=$T/fs-$1-$2 s=$T/snap-$1-$2
	say "$fst, loop --direct-io=$dio"
	truncate -s 320M "$M/$v"
	L=$(loop_attach "$M/$v" --direct-io="$dio")
	mkfs_q "$fst" "$L"
	fs_mount "$L" "$d"
	write_tree "$d" 40
	sync -f "$d"
	tree_sums "$d" > "$T/$v.frozen"

	say "$fst/$dio: set under fsfreeze, then the origin changes"
	fsfreeze -f "$d"
	mkdir "$M/.snapshots/frozen-$v" || { fsfreeze -u "$d"; fail "mkdir set"; }
	fsfreeze -u "$d"
	rm "$d/f1" "$d/f2"
	head -c 200000 /dev/urandom > "$d/f3"
	write_tree "$d/new" 10
	sync -f "$d"
	tree_sums "$d" > "$T/$v.synced"
	mkdir "$M/.snapshots/synced-$v"    # no freeze: needs its log replayed
	head -c 100000 /dev/urandom > "$d/after"
	sync -f "$d"

	say "$fst/$dio: the frozen set reads as it was and checks clean"
	S=$(loop_attach "$M/.snapshots/frozen-$v/$v" -r)
	# a frozen xfs keeps a dirty (covered) log: xfs_repair -n needs it
	# replayed, which the writable snapshot below does
	[ "$fst" = ext4 ] && fsck_ro "$fst" "$S"
	fs_mount "$S" "$s" -o "$(snap_opts "$fst")"
	tree_sums "$s" | diff -u "$T/$v.frozen" - || fail "$v: snapshot tree differs"
	fs_umount "$s"
	loop_detach "$S"
	[ "$(blocks "$M/.snapshots/frozen-$v/$v")" -gt 0 ] || fail "empty snapshot"
}

run ext4 off
run ext4 on
run xfs off
run xfs on

say "origins check clean"
for f in "$T"/fs-*; do
	fs_umount "$f"
done
for l in $(tac "$T/loops"); do
	loop_detach "$l"
done
for fst in ext4 xfs; do
	for dio in off on; do
		L=$(loop_attach "$M/$fst-dio$dio" -r)
		fsck_ro "$fst" "$L"
		loop_detach "$L"
	done
done

say "writable snapshots of both sets replay their logs, match and check clean"
stop_daemon || fail "thinfs exited non-zero"
for v in ext4-diooff ext4-dioon xfs-diooff xfs-dioon; do
	for s in frozen synced; do
		tc snapshot "$P" "$s-$v/$v" "w-$s-$v" > /dev/null
	done
done
start_daemon
for v in ext4-diooff ext4-dioon xfs-diooff xfs-dioon; do
	for s in frozen synced; do
		L=$(loop_attach "$M/w-$s-$v")
		fs_mount "$L" "$T/w"	# replays the journal/log
		tree_sums "$T/w" | diff -u "$T/$v.$s" - || fail "w-$s-$v differs"
		fs_umount "$T/w"
		fsck_ro "${v%%-*}" "$L"
		loop_detach "$L"
	done
done

finish
