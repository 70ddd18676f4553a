#!/usr/bin/env bash
# 46_fresh_block_cut (TESTING.md S2): a power cut right after the last of a
# few hundred acknowledged 4 KiB writes, each into a fresh 64 KiB block.
#
# Why this cut and not a random one: a write into a fresh block is a data
# write into a hole of the data file, so the host file system must log an
# extent change (XFS: an unwritten extent converted at I/O completion; ext4
# the same in its journal) before that data is reachable after a cut.  Only a
# log force makes it durable: the daemon's fdatasync of the data file before
# each COMMIT is one.  meta.db's own fsyncs force the log too, but only while
# the WAL grows or meta.db gains pages: about 11 WAL pages per commit here, so
# after ~100 commits SQLite checkpoints and restarts the WAL, and from then
# on each COMMIT's fdatasync overwrites allocated WAL blocks and forces no
# host log at all.  A daemon that skips the data flush (N2) then loses every
# acknowledged fresh-block write since the last log force, and a cut that
# lands right after the last acknowledged write always finds some: the old
# random-time cut of 41 lost data only when it fell into that window late
# enough, and the writes before the first checkpoint never could.
#
# Each round: the pool on its own file system on a loop device (XFS, then
# ext4), vm.dirty_writeback_centisecs=0, tests/tools/ackwriter writes
# THINFS_FRESH_WRITES records (default 300) at stride 64 KiB, O_SYNC buffered
# and O_DIRECT|O_SYNC, logging each acknowledgement to an ack log on /tmp
# (not on the pool's file system); then at once xfs_io -x -c shutdown (no log
# flush) and kill -9 of the daemon; remount (log replay), thinctl check, a
# fresh daemon, and every acknowledged record must read back exactly.
# Negative control: the same with build/bug-noflush/thinfs must lose
# acknowledged records in every round (THINFS_CONTROL_ROUNDS per fs and
# writer, default 1); a control round that loses nothing fails the test.
. "$(dirname "$0")/lib.sh"
require_root
require_cmd xfs_io mkfs.xfs mkfs.ext4
AW=$THINFS_BUILD/ackwriter
[ -x "$AW" ] || skip "build ackwriter first (make)"
BUG=$THINFS_BUILD/bug-noflush/thinfs
GOOD=$THINFS
WRITES=${THINFS_FRESH_WRITES:-300}
CONTROL_ROUNDS=${THINFS_CONTROL_ROUNDS:-1}
BS=65536
pfs_init
pfs_wb_sane

# one_round FS WRITER BINARY [WRITES]: sets LOST and RES ("N of M
# acknowledged writes lost");
# returns 0 when every acknowledged record verified and check was clean.
# (Not run in a subshell: the EXIT trap must see the daemon and loop device.)
one_round() {
	local fs=$1 writer=$2 bin=$3 writes=${4:-$WRITES} rc=0 flags=() out acked
	[ "$writer" = direct ] && flags=(--direct)
	pfs_make_fs "$fs"
	tc format "$P" --data-size 256M --block-size 64K > /dev/null &&
		tc create "$P" v1 $((2 * writes * BS)) > /dev/null || fail "format"
	rm -f "$T/ack"
	THINFS=$bin pfs_serve
	sysctl -qw vm.dirty_writeback_centisecs=0
	"$AW" write "$M/v1" "$T/ack" --count "$writes" --stride $BS --quiet "${flags[@]}" ||
		fail "ackwriter ($fs, $writer, $bin) failed before any cut"
	pfs_cut_now # at once: right after the last acknowledged write
	sysctl -qw vm.dirty_writeback_centisecs="$OLD_WB"
	if ! tc check "$P" > "$T/check.log" 2>&1; then
		echo "   check after the cut: $(head -3 "$T/check.log" | tr '\n' ' ')" >&2
		rc=1
	fi
	THINFS=$GOOD pfs_serve
	out=$("$AW" verify "$M/v1" "$T/ack" 2> "$T/verify.err") || rc=1
	LOST=$(echo "$out" | sed -n 's/.* \([0-9]*\) lost, .*/\1/p')
	acked=$(grep -c '^ack ' "$T/ack")
	RES="${LOST:-?} of $acked acknowledged writes lost"
	LOST=${LOST:-0}
	[ "$bin" = "$GOOD" ] && [ $rc != 0 ] && { echo "$out"; head -5 "$T/verify.err"; } >&2
	stop_served || fail "the daemon did not exit cleanly after verification"
	pfs_teardown
	return $rc
}

say "$WRITES O_SYNC 4 KiB writes into fresh 64 KiB blocks, then a cut at once"
for fs in xfs ext4; do
	for w in osync direct; do
		one_round $fs $w "$GOOD" || fail "$fs/$w: after the cut: $RES"
		echo "   $fs pool, $w: $RES, all verified"
	done
done

if [ -x "$BUG" ]; then
	say "negative control: without the data flush before COMMIT every round must lose writes"
	for fs in xfs ext4; do
		for w in osync direct; do
			for r in $(seq "$CONTROL_ROUNDS"); do
				one_round $fs $w "$BUG"
				if [ "$LOST" = 0 ]; then
					# one count in ~90 ends on a commit whose checkpoint
					# forced the host log (see above): one more write
					# moves the cut off it; a control that loses nothing
					# twice cannot fail
					echo "   control $fs pool, $w, round $r: $RES; again with one more write"
					one_round $fs $w "$BUG" $((WRITES + 1))
				fi
				[ "$LOST" != 0 ] ||
					fail "control passed ($fs/$w round $r, $RES): without the data flush nothing was lost"
				echo "   control $fs pool, $w, round $r: $RES, as it must"
			done
		done
	done
else
	echo "   (no $BUG: negative control skipped)"
fi
echo "PASS $TEST_NAME"
