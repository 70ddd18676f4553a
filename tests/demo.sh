#!/bin/sh
# tests/demo.sh BUILD - what `make demo` runs: a tour of thinfs on a pool in a
# temporary directory.  Formats a pool, mounts it, makes a volume, puts ext4
# on it through a loop device, snapshots it, and mounts the snapshot
# read-only next to the changed original.  Cleans up everything after.
# Needs root (mounts and loop devices).
set -eu

BUILD=${1:-build}
BUILD=$(cd "$BUILD" && pwd)
THINFS=$BUILD/thinfs
THINCTL=$BUILD/thinctl

if [ "$(id -u)" != 0 ]; then
	echo "demo: needs root (it mounts a FUSE filesystem and uses loop devices); try: sudo make demo" >&2
	exit 1
fi
for f in "$THINFS" "$THINCTL"; do
	[ -x "$f" ] || { echo "demo: $f is missing; run make first" >&2; exit 1; }
done
[ -c /dev/fuse ] || { echo "demo: no /dev/fuse (modprobe fuse?)" >&2; exit 1; }

T=$(mktemp -d /tmp/thinfs-demo.XXXXXX)
P=$T/pool
MNT=$T/mnt
FS=$T/fs
SNAP=$T/snap
L=""
LS=""
DAEMON=""

cleanup() {
	set +e
	echo
	echo "== cleaning up"
	for d in "$SNAP" "$FS"; do
		grep -q " $d " /proc/self/mounts && timeout 30 umount "$d"
	done
	[ -n "$LS" ] && timeout 10 losetup -d "$LS"
	[ -n "$L" ] && timeout 10 losetup -d "$L"
	sleep 0.2
	if grep -q " $MNT " /proc/self/mounts; then
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			timeout 10 umount "$MNT" 2> /dev/null && break
			sleep 0.2
		done
		grep -q " $MNT " /proc/self/mounts && timeout 10 umount -l "$MNT"
	fi
	# the daemon exits by itself once unmounted
	if [ -n "$DAEMON" ]; then
		for _ in $(seq 50); do
			[ "$(awk '{print $3}' "/proc/$DAEMON/stat" 2> /dev/null || echo Z)" = Z ] && break
			sleep 0.1
		done
	fi
	rm -rf "$T"
	echo "   removed $T; no mount, loop device or daemon left"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }
run() {
	printf '$ %s\n' "$*"
	"$@"
}

step "1. A pool: one sparse data file and a SQLite metadata database"
run "$THINCTL" format "$P" --data-size 2G
run ls -l "$P"

step "2. Mount it. The daemon forks into the background once the mount is up"
mkdir -p "$MNT" "$FS" "$SNAP"
run "$THINFS" "$P" "$MNT"
DAEMON=$(sed -n 's/^thinfs pid \([0-9]*\) on .*/\1/p' "$P/lock")
echo "   (daemon pid $DAEMON holds the pool)"

step "3. A 1 GiB thin volume is just a file in the mount: nothing is allocated yet"
run truncate -s 1G "$MNT/vol1"
run ls -ls "$MNT"

step "4. ext4 on the volume through a loop device, and some files"
L=$(losetup -f --show "$MNT/vol1")
echo "\$ losetup -f --show $MNT/vol1"
echo "$L"
run mkfs.ext4 -q "$L"
run mount "$L" "$FS"
echo "thinfs demo: written before the snapshot" > "$FS/hello.txt"
seq 1 200000 > "$FS/numbers.txt"
head -c 50M /dev/urandom > "$FS/random.bin"
run sync -f "$FS"
run ls -l "$FS"
echo "   st_blocks of the volume = what is really mapped:"
run du -h --apparent-size "$MNT/vol1"
run du -h "$MNT/vol1"

step "5. A snapshot of every volume: mkdir in .snapshots (fsfreeze makes it clean)"
run fsfreeze -f "$FS"
run mkdir "$MNT/.snapshots/first"
run fsfreeze -u "$FS"
run ls -l "$MNT/.snapshots/first"

step "6. Change the original after the snapshot"
echo "thinfs demo: changed after the snapshot" > "$FS/hello.txt"
rm "$FS/numbers.txt"
run sync -f "$FS"

step "7. The pool: the snapshot shares the blocks nobody changed"
run "$THINCTL" list "$P"
run df -h "$MNT"

step "8. Mount the snapshot's ext4 read-only through its own loop device"
LS=$(losetup -f --show -r "$MNT/.snapshots/first/vol1")
echo "\$ losetup -f --show -r $MNT/.snapshots/first/vol1"
echo "$LS"
run mount -o ro,noload "$LS" "$SNAP"
echo "   the snapshot:"
run cat "$SNAP/hello.txt"
run ls -l "$SNAP"
echo "   the original:"
run cat "$FS/hello.txt"
run ls -l "$FS"

step "9. Done: unmount everything (in order: filesystems, loop devices, the pool)"
run umount "$SNAP"
run losetup -d "$LS"
LS=""
run umount "$FS"
run losetup -d "$L"
L=""
sleep 0.2
run umount "$MNT"
for _ in $(seq 50); do
	[ "$(awk '{print $3}' "/proc/$DAEMON/stat" 2> /dev/null || echo Z)" = Z ] && break
	sleep 0.1
done
run "$THINCTL" check "$P"
echo "   the daemon committed and closed the pool cleanly on unmount"
