#!/usr/bin/env bash
# 41_powercut: power cuts under acknowledged writes (TESTING.md section 5,
# scenarios E3/F2, control N1).  The pool lives on its own small XFS on a loop
# device.  fio writes 4 KiB blocks with sync=1 (each completion acknowledged)
# and crc32c verify; at a random moment the XFS is shut down without flushing
# its log and the daemon is killed: what a power cut leaves.  The remount
# replays the log; then thinctl check must be clean (I4) and fio --verify_only
# must find every acknowledged block (I1).  vm.dirty_writeback_centisecs=0
# stops background writeback, so a missing flush is caught every time.
#
# Negative control (N1): the same with the daemon under eatmydata (every
# fsync a no-op) must FAIL verification, or the test could not fail.
#
# Negative control (N2): a daemon built without the data flush before COMMIT
# must lose acknowledged writes.  Not under fio's trigger: fio closes the
# file before it runs the trigger command, and that close is a FLUSH, an
# fsync that finds no mapping dirty and flushes the data file (the bug build
# too), forcing the XFS log; and each fio write into an already mapped
# block is such a plain data flush as well.  So a random cut under fio lost
# data in 1 of 10 control runs.  Instead (TESTING.md S2, as in
# 46_fresh_block_cut): ackwriter's O_SYNC writes, each into a fresh block,
# with the cut right after the last acknowledgement, between a data write
# and the next commit's (skipped) data flush: that loses writes every time.
. "$(dirname "$0")/lib.sh"
require_root
require_cmd fio xfs_io mkfs.xfs
CUTS=${THINFS_CUTS:-5}
CONTROL_WRITES=${THINFS_CONTROL_WRITES:-200}

pfs_init
pfs_wb_sane

printf '%s\n' '[vol]' 'filename=${VOL}' size=256m bs=4k rw=randwrite ioengine=psync sync=1 \
	verify=crc32c verify_fatal=1 'do_verify=${DOVERIFY}' 'randseed=${SEED}' > "$T/job.fio"

# one_cut SEED [WRAPPER...]: returns 0 when every acknowledged write verified
one_cut() {
	local seed=$1 rc=0
	shift
	pfs_make
	tc format "$P" --data-size 512M > /dev/null && tc create "$P" v1 256M > /dev/null || fail "format"
	pfs_serve "$@"
	sysctl -qw vm.dirty_writeback_centisecs=0
	rm -f "$T/trig"
	(sleep "$(awk -v s="$seed" 'BEGIN { srand(s); printf "%.1f", 0.5 + rand() * 2.5 }')"; touch "$T/trig") &
	(cd "$T" && VOL=$M/v1 DOVERIFY=0 SEED=$seed fio --output="$T/fio-write.log" \
		--trigger-file="$T/trig" \
		--trigger="sh -c 'xfs_io -x -c shutdown $PFS; kill -9 $PID'" "$T/job.fio") > /dev/null 2>&1
	wait
	sysctl -qw vm.dirty_writeback_centisecs="$OLD_WB"
	# the cut: tear down what is left, replay the pool's log on remount
	timeout 10 umount "$M" 2> /dev/null || { fuse_abort_mine; timeout 10 umount -l "$M"; }
	wait "$PID" 2> /dev/null
	PID=""
	pfs_remount
	if ! tc check "$P" > "$T/check.log" 2>&1; then
		echo "   check after the cut: $(head -3 "$T/check.log" | tr '\n' ' ')"
		rc=1
	fi
	# a pool the daemon refuses after the cut (under eatmydata, written back
	# in part by a crash test running beside this one) is a failed cut
	if ! pfs_try_serve; then
		echo "   the pool does not open after the cut: $(tail -1 "$T/daemon.log")"
		rc=1
	elif ! (cd "$T" && VOL=$M/v1 DOVERIFY=1 SEED=$seed fio --verify_only --verify_state_load=1 \
		--output="$T/fio-verify.log" "$T/job.fio") > /dev/null 2>&1; then
		echo "   verify after the cut: $(grep -m1 -iE 'bad|verify|error' "$T/fio-verify.log")"
		rc=1
	fi
	local acked
	acked=$(grep -oE 'issued rwts: total=[0-9]+,[0-9]+' "$T/fio-write.log" | head -1 | sed 's/.*,//')
	echo "   cut $seed: ${acked:-?} acknowledged writes, verify $([ $rc = 0 ] && echo passed || echo FAILED)"
	pfs_teardown
	rm -f "$T"/*.state
	return $rc
}

say "$CUTS power cuts under sync=1 writes"
failed=0
for i in $(seq "$CUTS"); do
	one_cut "$i" || failed=$((failed + 1))
done
[ "$failed" = 0 ] || fail "$failed of $CUTS cuts lost acknowledged data or damaged the pool"

if command -v eatmydata > /dev/null; then
	say "negative control: under eatmydata the same cut must lose acknowledged writes"
	if one_cut 101 eatmydata; then
		fail "control passed: without fsync nothing was lost, so this test cannot fail"
	fi
	echo "   the control failed, as it must"
else
	echo "   (no eatmydata: negative control skipped)"
fi
BUG=$THINFS_BUILD/bug-noflush/thinfs
AW=$THINFS_BUILD/ackwriter
if [ -x "$BUG" ] && [ -x "$AW" ]; then
	say "negative control: a daemon built without the data flush before COMMIT must lose writes"
	pfs_make
	tc format "$P" --data-size 512M > /dev/null && tc create "$P" v1 256M > /dev/null || fail "format"
	THINFS=$BUG pfs_serve
	sysctl -qw vm.dirty_writeback_centisecs=0
	# a few hundred fresh blocks: SQLite has checkpointed and restarted its
	# WAL, so COMMIT's own fdatasync no longer forces the XFS log
	"$AW" write "$M/v1" "$T/ack" --count "$CONTROL_WRITES" --stride 65536 --quiet ||
		fail "ackwriter under the control daemon"
	pfs_cut_now
	sysctl -qw vm.dirty_writeback_centisecs="$OLD_WB"
	pfs_serve
	out=$("$AW" verify "$M/v1" "$T/ack" 2> /dev/null)
	lost=$(echo "$out" | sed -n 's/.* \([0-9]*\) lost, .*/\1/p')
	[ "${lost:-0}" -gt 0 ] || fail "control passed: without the data flush nothing was lost ($out)"
	echo "   $lost of $CONTROL_WRITES acknowledged writes lost, as they must be"
	stop_served
	pfs_teardown
fi
echo "PASS $TEST_NAME"
