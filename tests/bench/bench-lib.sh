# shellcheck shell=sh
# tests/bench/bench-lib.sh - what the mounting benchmarks share: a work
# directory T (with T/mnt) removed on exit, and the daemon started on it
# (PID) unmounted and waited for.  Source it, then: bench_tmpdir WORK NAME.

# stop_daemon: unmount $T/mnt and wait for the daemon this script started
stop_daemon() {
	mountpoint -q "$T/mnt" && umount "$T/mnt"
	[ -n "$PID" ] && wait "$PID"
	PID=
}

# bench_tmpdir WORK NAME: T=WORK/NAME.XXXXXX with T/mnt; teardown on exit
bench_tmpdir() {
	T=$(mktemp -d "$1/$2.XXXXXX") || exit 1
	PID=
	trap 'stop_daemon; rm -rf "$T"' EXIT
	trap 'exit 130' INT TERM
	mkdir -p "$T/mnt"
}
