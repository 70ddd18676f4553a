#!/usr/bin/env bash
# 40_kill9_fsx: the daemon killed with SIGKILL at random moments under
# thinfs-fsx (writes of any size and alignment, punches, zero-ranges, fsyncs,
# O_DSYNC writes, snapshot sets made and removed through mkdir/rmdir), then
# restarted: thinctl check must be clean (I4), and every sector must hold its
# last acknowledged content or a later write of ours, and every surviving
# set exactly what its volume held when it was taken (I1-I3).  Then the same
# under fio (sync=1, crc32c): every acknowledged block verifies.  TESTING F1.
. "$(dirname "$0")/lib.sh"
require_root
FSX=$THINFS_BUILD/thinfs-fsx
[ -x "$FSX" ] || skip "build thinfs-fsx first (make)"
KILLS=${THINFS_KILLS:-10}
setup
format 512M --block-size 16K
create v1 32M
start_daemon
# The verifier itself: a kill inside a truncate (shrink, then grow back, each
# durable on return) may leave the volume shrunk; that, and only that, size
# is accepted, and the op is finished before the sectors are judged.
"$FSX" --seed 99 --ops 200 --size 33554432 --quiet --log "$T/log.t" "$M" v1 > "$T/fsx.t" 2>&1 ||
	{ cat "$T/fsx.t"; fail "thinfs-fsx run before the truncate check"; }
echo "truncate 40000" >> "$T/log.t"
truncate -s $((40000 * 512)) "$M/v1"
"$FSX" --verify-after-crash "$T/log.t" "$M" v1 > "$T/verify.t" 2>&1 ||
	{ cat "$T/verify.t"; fail "a truncate in flight was not accepted"; }
grep -q "grown back" "$T/verify.t" || fail "the verifier did not see the shrunk volume"
[ "$(stat -c %s "$M/v1")" = 33554432 ] || fail "the truncate in flight was not finished"
truncate -s $((30000 * 512)) "$M/v1"
"$FSX" --verify-after-crash "$T/log.t" "$M" v1 > "$T/verify.t" 2>&1 &&
	fail "a volume shrunk to another size than the truncate in flight passed verification"
grep -q "after the crash, expected 33554432 or that of the truncate in flight" "$T/verify.t" ||
	{ cat "$T/verify.t"; fail "no clear message for a wrong size"; }
total_ops=0
for i in $(seq "$KILLS"); do
	"$FSX" --seed "$i" --ops 1000000 --size 33554432 --snapshots --quiet --log "$T/log.$i" \
		"$M" v1 > "$T/fsx.$i" 2>&1 &
	FPID=$!
	sleep "$(awk -v s="$i" 'BEGIN { srand(s); printf "%.1f", 0.3 + rand() * 1.7 }')"
	kill -KILL "$PID"
	wait "$FPID" 2> /dev/null # it dies with ENOTCONN: expected
	wait "$PID" 2> /dev/null
	PID=""
	timeout 10 umount "$M" 2> /dev/null || { fuse_abort; timeout 10 umount -l "$M"; }
	tc check "$P" > "$T/check.log" 2>&1 || { cat "$T/check.log"; fail "check after kill $i"; }
	start_daemon
	ops=$(grep -cvE '^(#|ack|dsync-ack|set-done)' "$T/log.$i")
	total_ops=$((total_ops + ops))
	"$FSX" --verify-after-crash "$T/log.$i" "$M" v1 > "$T/verify.$i" 2>&1 ||
		{ cat "$T/verify.$i"; fail "verify after kill $i (seed $i, replay with --replay $T/log.$i)"; }
	echo "   kill $i: $ops ops before the kill, $(tail -1 "$T/verify.$i" | sed 's/.*: //')"
	# the sets of this round are gone with the next fsx run's fresh start
	for s in "$M"/.snapshots/*; do [ -d "$s" ] && rmdir "$s"; done
done
say "$KILLS kills, $total_ops operations, every acknowledged write verified"

if command -v fio > /dev/null; then
	truncate -s 64M "$M/v2" || fail "create v2 through the mount"
	printf '%s\n' '[v2]' 'filename=${VOL}' size=64m bs=4k rw=randwrite ioengine=psync sync=1 \
		verify=crc32c verify_fatal=1 'do_verify=${DOVERIFY}' 'randseed=${SEED}' > "$T/job.fio"
	for i in 1 2 3; do
		rm -f "$T/trig" "$T"/*.state
		(sleep "0.$((i * 3))"; touch "$T/trig") &
		(cd "$T" && VOL=$M/v2 DOVERIFY=0 SEED=$i fio --trigger-file="$T/trig" \
			--trigger="kill -9 $PID" --output="$T/fio.$i" "$T/job.fio") > /dev/null 2>&1
		wait
		wait "$PID" 2> /dev/null
		PID=""
		timeout 10 umount "$M" 2> /dev/null || { fuse_abort; timeout 10 umount -l "$M"; }
		tc check "$P" > "$T/check.log" 2>&1 || { cat "$T/check.log"; fail "check after fio kill $i"; }
		start_daemon
		(cd "$T" && VOL=$M/v2 DOVERIFY=1 SEED=$i fio --verify_only --verify_state_load=1 \
			--output="$T/verify.fio.$i" "$T/job.fio") > /dev/null 2>&1 ||
			{ grep -m3 -iE 'bad|verify|err' "$T/verify.fio.$i"; fail "fio verify after kill $i"; }
		acked=$(grep -oE 'issued rwts: total=[0-9]+,[0-9]+' "$T/fio.$i" | head -1 | sed 's/.*,//')
		echo "   fio kill $i: ${acked:-?} acknowledged writes verified"
	done
fi
finish
