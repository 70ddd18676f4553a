#!/usr/bin/env bash
# 44_stop_continue_storm (TESTING.md S1): the daemon stopped and continued
# (SIGSTOP/SIGCONT by PID) THINFS_STOPS times per mode (default 1500) while
# fio writes and verifies through the mount, once with direct=1 (libaio,
# qd 8) and once buffered with sync=1 (O_SYNC, two jobs).  Every stop lands
# on some worker thread waiting in io_uring_enter or in a request: the wait
# returns EINTR while the I/O is still in flight, and nothing of that may
# reach the application.  fio runs crc32c verify with verify_backlog (blocks
# read back while the storm goes on) and verify_fatal, in rounds until the
# storm is over; each round must exit 0 with no error (an EINTR or EFAULT
# from a write, a read or an fsync fails it) and its verify phase must pass.
# Then the daemon is restarted and the last round's whole region verifies
# from the pool, and thinctl check is clean after the unmount.
#
# Each stop is held until the daemon shows state T, so it really stops (a
# SIGCONT sent while the SIGSTOP is still pending would discard it), then
# continued at once, then left to run 1-3 ms.  The EXIT trap continues the
# daemon before any teardown, and the storm continues it when stopped.
. "$(dirname "$0")/lib.sh"
require_root
require_cmd fio
STOPS=${THINFS_STOPS:-1500}
SIZE=64 # MiB per mode
STORM=""
setup
# whatever happens, the daemon runs again before the teardown unmounts it
trap 'rc=$?; [ -n "$STORM" ] && kill "$STORM" 2> /dev/null; [ -n "$PID" ] && kill -CONT "$PID" 2> /dev/null; teardown $rc' EXIT
format 512M
create v1 $((2 * SIZE))M
start_daemon

# storm N: N SIGSTOP/SIGCONT pairs; "PAIRS STOPPED" into $T/storm.count
storm() {
	local n=$1 i=0 seen=0 st fd
	exec {fd}<> <(:) # a pipe nobody writes: `read -t` on it sleeps without a fork
	trap 'kill -CONT $PID 2> /dev/null; echo "$i $seen" > "$T/storm.count"; exit 0' TERM
	for ((i = 0; i < n; i++)); do
		kill -STOP "$PID" 2> /dev/null || break
		for _ in {1..2000}; do
			read -r _ _ st _ < "/proc/$PID/stat" || break
			[ "$st" = T ] && { seen=$((seen + 1)); break; }
		done
		kill -CONT "$PID"
		read -r -t "0.00$((RANDOM % 3 + 1))" -u "$fd"
	done
	echo "$i $seen" > "$T/storm.count"
}

# job MODE OFFSET: the fio job file of one mode, on its own half of v1
job() {
	local common="filename=$M/v1 bs=4k rw=randwrite verify=crc32c verify_backlog=64 verify_fatal=1
		do_verify=1 randseed=\${SEED} offset=$2m"
	case $1 in
	direct) printf '%s\n' '[direct]' $common ioengine=libaio iodepth=8 direct=1 size=${SIZE}m ;;
	buffered) printf '%s\n' '[buffered]' $common ioengine=psync sync=1 numjobs=2 \
		size=$((SIZE / 2))m offset_increment=$((SIZE / 2))m ;;
	esac > "$T/$1.fio"
}

# fio_round MODE SEED [fio options]: 0 when fio exited 0 and reported no error
fio_round() {
	local mode=$1 seed=$2 log=$T/$1.$2.log
	shift 2
	if ! (cd "$T" && SEED=$seed timeout 300 fio --output="$log" "$@" "$T/$mode.fio") > "$log.err" 2>&1 ||
		grep -qE 'err= *[1-9]|verify: bad|fio: pid=.*error' "$log"; then
		echo "   fio ($mode, seed $seed) failed:" >&2
		cat "$log.err" "$log" | grep -m6 -E "err=|error|bad|verify|expected|received" | sed 's/^/     /' >&2
		return 1
	fi
}

off=0
for mode in ${THINFS_STORM_MODES:-direct buffered}; do
	job $mode $off
	say "$mode: fio with crc32c verify_backlog while the daemon gets $STOPS SIGSTOP/SIGCONT pairs"
	rm -f "$T/storm.count"
	start=$SECONDS
	storm "$STOPS" &
	STORM=$!
	rounds=0 seed=0
	while [ ! -s "$T/storm.count" ] || [ $rounds = 0 ]; do
		seed=$((seed + 1))
		fio_round $mode $seed || fail "$mode: an error reached fio under the storm (round $seed)"
		rounds=$((rounds + 1))
	done
	wait "$STORM"
	STORM=""
	read -r pairs stopped < "$T/storm.count"
	[ "$pairs" = "$STOPS" ] || fail "$mode: the storm ended after $pairs pairs"
	[ "$stopped" -ge $((STOPS * 9 / 10)) ] || fail "$mode: only $stopped of $pairs stops were seen (state T)"
	writes=0
	for f in "$T"/$mode.*.log; do
		w=$(grep -oE 'issued rwts: total=[0-9]+,[0-9]+' "$f" | awk -F, "{ s += \$2 } END { print s + 0 }")
		writes=$((writes + ${w:-0}))
	done
	echo "   $pairs pairs ($stopped seen stopped) in $((SECONDS - start)) s: $rounds fio rounds," \
		"$writes writes, every one verified, no error returned"
	# the last round's region, from the pool after a restart: fio's
	# verify_only rebuilds the round's writes from its seed
	stop_daemon || fail "thinfs exited non-zero after the $mode storm"
	start_daemon
	fio_round $mode $seed --verify_only || fail "$mode: the verify after a restart failed"
	echo "   after a restart, round $seed's writes verify"
	off=$((off + SIZE))
done
finish
