# shellcheck shell=bash
# tests/integration/lib.sh - shared setup and teardown for the integration
# scripts (TESTING.md section 4).  Source it first thing:
#
#	. "$(dirname "$0")/lib.sh"
#	require_root
#	setup                      # T, P=$T/pool, M=$T/mnt; teardown on EXIT
#	format 1G && create v1 256M
#	start_daemon               # thinfs $P $M -f & PID=$!; waits for the mount
#	L=$(loop_attach $M/v1)     # remembered, detached by teardown
#	fs_mount $L $T/fs          # remembered, unmounted by teardown
#	...
#	finish                     # unmount all, daemon exits 0, thinctl check = 0
#
# Teardown runs on every exit, in the order filesystems -> loop devices ->
# FUSE mount -> daemon, each step under `timeout`, and signals only the PID
# this script started.  A script exits 0 pass, 77 skip, anything else fail.

THINFS_BUILD=${THINFS_BUILD:-$(cd "$(dirname "$0")/../../build" 2>/dev/null && pwd)}
THINFS=$THINFS_BUILD/thinfs
THINCTL=$THINFS_BUILD/thinctl
TOP=$(cd "$(dirname "$0")/../.." && pwd)
TEST_NAME=$(basename "$0" .sh)
T=""
PID=""
FUSE_DEV=""

say() { echo "== $TEST_NAME: $*"; }
skip() { echo "SKIP $TEST_NAME: $*"; exit 77; }
fail() { echo "FAIL $TEST_NAME: $*" >&2; exit 1; }

require_root() {
	[ "$(id -u)" = 0 ] || skip "needs root"
	[ -c /dev/fuse ] || skip "no /dev/fuse"
	[ -c /dev/loop-control ] || skip "no /dev/loop-control"
	[ -x "$THINFS" ] && [ -x "$THINCTL" ] || skip "build thinfs and thinctl first (make)"
}

# require_cmd CMD... : skip unless every command exists
require_cmd() {
	for c in "$@"; do
		command -v "$c" > /dev/null 2>&1 || skip "needs $c"
	done
}

setup() {
	T=$(mktemp -d /tmp/thinfs-test.XXXXXX)
	P=$T/pool
	M=$T/mnt
	mkdir -p "$M"
	: > "$T/loops"
	: > "$T/fsmnts"
	trap teardown EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

tc() { "$THINCTL" "$@"; }
format() { tc format "$P" --data-size "$1" "${@:2}" > /dev/null; }
create() { tc create "$P" "$1" "$2" > /dev/null; }

# wait_mounted DIR: poll for up to 5 s while our daemon lives
wait_mounted() {
	for _ in $(seq 50); do
		mountpoint -q "$1" && return 0
		[ -n "$PID" ] && ! kill -0 "$PID" 2> /dev/null && return 1
		sleep 0.1
	done
	return 1
}

# start_daemon [thinfs options...]: serve $P on $M in the foreground
start_daemon() {
	"$THINFS" "$P" "$M" -f "$@" >> "$T/daemon.log" 2>&1 &
	PID=$!
	if ! wait_mounted "$M"; then
		cat "$T/daemon.log" >&2
		fail "thinfs did not mount $M"
	fi
	FUSE_DEV=$(mountpoint -d "$M")
}

# loop_attach FILE [losetup options...]: prints the device
loop_attach() {
	local l
	l=$(losetup -f --show "${@:2}" "$1")
	[ -n "$l" ] || fail "losetup $*"
	echo "$l" >> "$T/loops"
	echo "$l"
}

# loop_detach DEV: detach now (teardown would otherwise)
loop_detach() {
	timeout 10 losetup -d "$1" || true
	sed -i "\|^$1\$|d" "$T/loops"
	# detaching is asynchronous: wait until the device lets go of its file
	for _ in $(seq 50); do
		losetup "$1" > /dev/null 2>&1 || return 0
		sleep 0.1
	done
}

# fs_mount DEV DIR [mount options...]
fs_mount() {
	mkdir -p "$2"
	mount "${@:3}" "$1" "$2" || fail "mount $1 $2"
	echo "$2" >> "$T/fsmnts"
}

fs_umount() {
	timeout 30 umount "$1" || fail "umount $1"
	sed -i "\|^$1\$|d" "$T/fsmnts"
}

# abort a hung FUSE connection of ours (recorded at mount as 0:NN)
fuse_abort() {
	local c=/sys/fs/fuse/connections
	[ -n "$FUSE_DEV" ] || return 0
	mountpoint -q "$c" || mount -t fusectl none "$c" 2> /dev/null
	[ -w "$c/${FUSE_DEV#*:}/abort" ] && echo 1 > "$c/${FUSE_DEV#*:}/abort"
}

# unmount $M and wait for our daemon; returns the daemon's exit status
stop_daemon() {
	local rc=0
	[ -n "$PID" ] || return 0
	for _ in $(seq 50); do
		grep -q " $M " /proc/self/mounts || break
		timeout 10 umount "$M" 2> /dev/null && break
		sleep 0.1
	done
	if grep -q " $M " /proc/self/mounts; then
		echo "teardown: $M busy or hung; aborting the connection" >&2
		fuse_abort
		timeout 10 umount "$M" 2> /dev/null || timeout 10 umount -l "$M"
	fi
	for _ in $(seq 100); do
		kill -0 "$PID" 2> /dev/null || break
		sleep 0.1
	done
	if kill -0 "$PID" 2> /dev/null; then
		echo "teardown: daemon $PID still running; SIGTERM" >&2
		kill -TERM "$PID"
		sleep 2
		kill -0 "$PID" 2> /dev/null && kill -KILL "$PID"
	fi
	wait "$PID" || rc=$?
	PID=""
	return $rc
}

teardown() {
	local rc=${1:-$?} d l # teardown [STATUS]: the status to exit with
	set +e
	trap - EXIT INT TERM
	if [ -n "$T" ] && [ -d "$T" ]; then
		for d in $(tac "$T/fsmnts" 2> /dev/null); do
			grep -q " $d " /proc/self/mounts || continue
			timeout 30 umount "$d" 2> /dev/null || timeout 10 umount -l "$d"
		done
		for l in $(tac "$T/loops" 2> /dev/null); do
			timeout 10 losetup -d "$l" 2> /dev/null
		done
		sleep 0.2
		stop_daemon || true
		if [ "$rc" != 0 ] && [ "$rc" != 77 ] && [ -s "$T/daemon.log" ]; then
			echo "--- daemon log" >&2
			tail -n 30 "$T/daemon.log" >&2
		fi
		cd / && rm -rf "$T"
	fi
	exit "$rc"
}

# finish: tear down in order, the daemon must exit 0 and the pool check clean
finish() {
	local d l rc=0
	for d in $(tac "$T/fsmnts"); do
		grep -q " $d " /proc/self/mounts && fs_umount "$d"
	done
	for l in $(tac "$T/loops"); do
		loop_detach "$l"
	done
	stop_daemon || rc=$?
	[ "$rc" = 0 ] || fail "thinfs exited $rc"
	tc check "$P" > "$T/check.log" 2>&1 || { cat "$T/check.log"; fail "thinctl check"; }
	echo "PASS $TEST_NAME"
}

# ---- facts about devices ----

# st_blocks of a file, in 512-byte units
blocks() { stat -c %b "$1"; }

# mapped_blocks of device NAME or SET/NAME, from `thinctl list --json`
mapped() {
	local set="" name=$1
	case $1 in */*) set=${1%%/*} name=${1#*/} ;; esac
	tc list --json "$P" | sed 's/},{/}\n{/g' |
		grep "\"name\":\"$name\"" | grep "\"set\":\"$set\"" |
		sed -n 's/.*"mapped_blocks":\([0-9]*\).*/\1/p'
}

# a numeric field of the live status (through the mount while mounted)
status_field() {
	tc status --json "$P" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"
}

# used data blocks of the pool
used() { status_field used_blocks; }

# write_tree DIR N: N files of varied sizes with random content
write_tree() {
	local i
	mkdir -p "$1/sub/deeper"
	for i in $(seq "$2"); do
		head -c $((i * 7919 % 300000 + 1)) /dev/urandom > "$1/f$i"
	done
	cp "$1/f1" "$1/sub/deeper/copy"
}

# tree_sums DIR: sha256 of every file, stable order, relative names
tree_sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }

expect_fail() { # expect_fail ERRTEXT CMD...: CMD must fail and say ERRTEXT
	local want=$1 out
	shift
	if out=$("$@" 2>&1); then
		fail "'$*' succeeded, expected '$want'"
	fi
	case $out in *"$want"*) ;; *) fail "'$*' said '$out', expected '$want'" ;; esac
}

# ---- power cuts (TESTING.md section 5): the pool on its own XFS on a loop ----
# pfs_init: call once after require_root; sets PFS, P=$PFS/pool and an EXIT trap
pfs_init() {
	T=$(mktemp -d /tmp/thinfs-test.XXXXXX)
	M=$T/mnt
	PFS=$T/pfs
	P=$PFS/pool
	PL=""
	PID=""
	OLD_WB=$(sysctl -n vm.dirty_writeback_centisecs)
	mkdir -p "$M" "$PFS"
	trap pfs_cleanup EXIT
}

pfs_cleanup() {
	local rc=$?
	set +e
	sysctl -qw vm.dirty_writeback_centisecs="$OLD_WB"
	pfs_teardown
	cd / && rm -rf "$T"
	exit $rc
}

# unmount in order: the FUSE mount, our daemon, the pool's file system, its loop
pfs_teardown() {
	if grep -q " $M " /proc/self/mounts; then
		timeout 10 umount "$M" 2> /dev/null || { fuse_abort; timeout 10 umount -l "$M"; }
	fi
	if [ -n "$PID" ]; then
		for _ in $(seq 50); do kill -0 "$PID" 2> /dev/null || break; sleep 0.1; done
		kill -0 "$PID" 2> /dev/null && kill -KILL "$PID"
		wait "$PID" 2> /dev/null
		PID=""
	fi
	grep -q " $PFS " /proc/self/mounts && { timeout 30 umount "$PFS" || timeout 10 umount -l "$PFS"; }
	[ -n "$PL" ] && { timeout 10 losetup -d "$PL"; PL=""; }
	rm -f "$T/pfs.img"
}

# pfs_make: a fresh 1 GiB XFS for the pool, mounted on $PFS
pfs_make() {
	truncate -s 1G "$T/pfs.img"
	PL=$(losetup -f --show "$T/pfs.img")
	mkfs.xfs -q -f "$PL" && mount "$PL" "$PFS" || fail "xfs for the pool"
}

# pfs_serve [WRAPPER...]: start the daemon on $P (the wrapper, e.g. eatmydata)
pfs_serve() {
	# a preloading wrapper (eatmydata) comes before an ASan runtime: allow it
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
		"$@" "$THINFS" "$P" "$M" -f >> "$T/daemon.log" 2>&1 &
	PID=$!
	wait_mounted "$M" || { cat "$T/daemon.log" >&2; fail "thinfs did not mount"; }
	FUSE_DEV=$(mountpoint -d "$M")
}

# pfs_cut: the power cut (XFS shut down without a log flush, the daemon
# killed), then what a reboot does: tear down and replay the log on remount
pfs_cut() {
	xfs_io -x -c shutdown "$PFS"
	kill -KILL "$PID" 2> /dev/null
	timeout 10 umount "$M" 2> /dev/null || { fuse_abort; timeout 10 umount -l "$M"; }
	wait "$PID" 2> /dev/null
	PID=""
	pfs_remount
}

pfs_remount() {
	timeout 30 umount "$PFS" && mount "$PL" "$PFS" || fail "remount of the pool's xfs"
}

# ---- additions for the interruption tests (44-46) ----

# pfs_make_fs xfs|ext4 [SIZE]: like pfs_make, on the file system named
pfs_make_fs() {
	truncate -s "${2:-1G}" "$T/pfs.img"
	PL=$(losetup -f --show "$T/pfs.img")
	case $1 in
	xfs) mkfs.xfs -q -f "$PL" ;;
	ext4) mkfs.ext4 -q -F "$PL" ;;
	*) fail "pfs_make_fs: unknown file system $1" ;;
	esac && mount "$PL" "$PFS" || fail "$1 for the pool"
}

# pfs_wb_sane: another crash test running beside this one may have left
# vm.dirty_writeback_centisecs at 0 when pfs_init read it; restoring that
# would leave background writeback off for good, so restore the default
pfs_wb_sane() {
	[ "$OLD_WB" != 0 ] || OLD_WB=500
}

# pfs_cut_now [SHUTDOWN-CMD...]: the power cut at this instant (shutdown
# without log flush, then kill -9), the teardown, and the log replay of a
# remount, as pfs_cut; works for an XFS or an ext4 pool file system.  The
# shutdown is xfs_io -x -c shutdown $PFS unless a command is given (e.g.
# ackwriter cut $PFS LOG, which also notes when the cut began)
pfs_cut_now() {
	if [ $# = 0 ]; then
		set -- xfs_io -x -c shutdown "$PFS"
	fi
	"$@" > /dev/null || fail "shutdown of $PFS"
	{ # (stderr: no "Killed" notice from the shell)
		kill -KILL "$PID"
		timeout 10 umount "$M" || { fuse_abort_mine; timeout 10 umount -l "$M"; }
		wait "$PID"
	} 2> /dev/null
	PID=""
	pfs_remount_wait
}

# pfs_remount_wait: pfs_remount, but wait up to 10 s while the file system is
# busy: a killed daemon's io_uring rings are torn down by a kernel worker
# after the process is gone, and they hold the data file until then
pfs_remount_wait() {
	local i
	for i in $(seq 100); do
		timeout 30 umount "$PFS" 2> /dev/null && break
		grep -q " $PFS " /proc/self/mounts || break
		[ "$i" = 1 ] && echo "   ($PFS busy after the daemon exited: waiting)" >&2
		sleep 0.1
	done
	grep -q " $PFS " /proc/self/mounts && fail "$PFS stays busy after the daemon exited"
	mount "$PL" "$PFS" || fail "remount of the pool's file system"
}

# fuse_abort_mine: fuse_abort, but only while $M is still the mount recorded
# in FUSE_DEV (read from mountinfo: no stat of a hung mount).  Connection
# numbers are reused: once our mount is gone, FUSE_DEV may name another
# test's connection, and aborting it would kill that test's daemon's mount
fuse_abort_mine() {
	local dev
	dev=$(awk -v m="$M" '$5 == m { d = $3 } END { print d }' /proc/self/mountinfo)
	[ -n "$FUSE_DEV" ] && [ "$dev" = "$FUSE_DEV" ] && fuse_abort
	return 0
}

# stop_served: unmount $M and wait for a daemon started by pfs_serve; returns
# its exit status
stop_served() {
	local rc=0
	timeout 30 umount "$M" 2> /dev/null || { fuse_abort_mine; timeout 10 umount -l "$M"; rc=1; }
	wait "$PID" 2> /dev/null || rc=$?
	PID=""
	return $rc
}

# pfs_try_serve [WRAPPER...]: pfs_serve, but a daemon that refuses the pool
# (after a cut under a control it may be damaged) returns 1, not a failure
pfs_try_serve() {
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
		"$@" "$THINFS" "$P" "$M" -f >> "$T/daemon.log" 2>&1 &
	PID=$!
	if ! wait_mounted "$M"; then
		{ wait "$PID"; } 2> /dev/null
		PID=""
		return 1
	fi
	FUSE_DEV=$(mountpoint -d "$M")
}
