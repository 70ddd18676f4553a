#!/bin/bash
# 27_mount_helper: `mount -t thinfs POOL MNT -o OPTS`, an fstab line through
# `mount -T FSTAB MNT`, and `mount -t fuse.thinfs` (mount.fuse3) all mount;
# mount(8)-only options are dropped, the others reach the kernel; umount
# leaves no daemon, loop device or mount behind.  mount(8) finds helpers
# only in /sbin, so the test links /sbin/mount.thinfs for its duration
# (and skips if another one is installed there).
. "$(dirname "$0")/lib.sh"
set -eu
require_root
setup

HELPER=/sbin/mount.thinfs
remove_helper() { # only the link this run made
	[ -f "$T/helper" ] && rm -f "$(cat "$T/helper")" && rm -f "$T/helper"
	return 0
}
trap 'st=$?; remove_helper; teardown $st' EXIT
if [ -e "$HELPER" ] || [ -L "$HELPER" ]; then
	[ "$(readlink -f "$HELPER")" = "$TOP/tools/mount.thinfs" ] ||
		skip "$HELPER is installed already; not replacing it"
else
	echo "$HELPER" > "$T/helper"
	ln -s "$TOP/tools/mount.thinfs" "$HELPER"
fi
export THINFS_BIN=$THINFS

format 64M
create v1 16M

# the daemon mount(8) started, from the pool's lock
daemon_pid() { sed -n 's/^thinfs pid \([0-9]*\) on .*/\1/p' "$P/lock"; }

# check_mounted OPTS...: mounted as fuse.thinfs with those options
check_mounted() {
	local line
	wait_mounted "$M" || fail "not mounted"
	line=$(grep " $M " /proc/self/mounts)
	case $line in "$P $M fuse.thinfs "*) ;; *) fail "mount line: $line" ;; esac
	for o in "$@"; do
		case ,$(echo "$line" | cut -d' ' -f4), in *,$o,*) ;; *) fail "option $o missing: $line" ;; esac
	done
}

# a process that runs (a zombie waiting for init to reap it has exited)
alive() { local s; s=$(awk '{print $3}' "/proc/$1/stat" 2> /dev/null); [ -n "$s" ] && [ "$s" != Z ]; }

# unmount: the daemon exits and leaves nothing
unmount_all() {
	local pid
	pid=$(daemon_pid)
	[ -n "$pid" ] || fail "no holder in the pool's lock"
	alive "$pid" || fail "daemon $pid is not running"
	timeout 10 umount "$M" || fail "umount"
	for _ in $(seq 100); do
		alive "$pid" || break
		sleep 0.1
	done
	alive "$pid" && fail "daemon $pid still runs after umount"
	grep -q " $M " /proc/self/mounts && fail "still mounted"
	tc check "$P" > /dev/null || fail "check after umount"
}

echo "$M" >> "$T/fsmnts" # teardown unmounts it if a step fails

say "mount -t thinfs with mount(8)-only and kernel options"
mount -t thinfs "$P" "$M" -o defaults,noauto,nofail,_netdev,noexec,x-systemd.device-timeout=5
check_mounted nosuid nodev noexec
[ -f "$M/v1" ] || fail "v1 missing"
L=$(loop_attach "$M/v1")
dd if=/dev/urandom of="$L" bs=64K count=4 oflag=direct status=none
loop_detach "$L"
unmount_all

say "an fstab line: POOL MNT thinfs defaults 0 0"
echo "$P $M thinfs defaults 0 0" > "$T/fstab"
mount -T "$T/fstab" "$M"
check_mounted nosuid nodev
unmount_all

say "mount -t fuse 'THINFS#POOL' goes through mount.fuse3"
if [ -x /sbin/mount.fuse3 ]; then
	mount -t fuse "$THINFS#$P" "$M" -o ro # mount.fuse3 adds dev,suid itself
	check_mounted ro
	expect_fail "Read-only file system" truncate -s 1M "$M/new"
	unmount_all
else
	say "(no mount.fuse3: skipped)"
fi

say "a failing mount says why and leaves nothing"
mkdir -p "$T/empty"
expect_fail "not a thinfs pool" mount -t thinfs "$T/empty" "$M"
grep -q " $M " /proc/self/mounts && fail "a failed mount left a mount"

say "the helper's fake mode mounts nothing"
"$TOP/tools/mount.thinfs" "$P" "$M" -f -o rw
grep -q " $M " /proc/self/mounts && fail "-f mounted"

say "make install puts its PREFIX in the unit and the helper (issue 17)"
if command -v make > /dev/null && [ -f "$TOP/Makefile" ]; then
	make -s -C "$TOP" install BUILD="$THINFS_BUILD" DESTDIR="$T/inst" PREFIX=/opt/thinfs-t \
		SBINDIR=/opt/thinfs-t/sbin > "$T/install.log" 2>&1 || { cat "$T/install.log"; fail "make install"; }
	unit=$T/inst/opt/thinfs-t/lib/systemd/system/thinfs@.service
	grep -q '^ExecStart=/opt/thinfs-t/sbin/thinfs ' "$unit" || fail "unit: $(grep ExecStart "$unit")"
	grep -q 'sbin="/opt/thinfs-t/sbin"' "$T/inst/opt/thinfs-t/sbin/mount.thinfs" ||
		fail "the installed mount.thinfs does not look in /opt/thinfs-t/sbin"
	[ -x "$T/inst/opt/thinfs-t/sbin/mount.thinfs" ] || fail "mount.thinfs not executable"
fi

remove_helper
tc check "$P" > /dev/null || fail "thinctl check"
echo "PASS $TEST_NAME"
