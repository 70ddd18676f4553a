#!/usr/bin/env bash
# 45_powercut_campaign: power cuts and kill -9s of the daemon at random
# moments, judged by an acknowledgement log kept on another file system
# (TESTING.md F2/F3/I1-I4/I9, S2's oracle caveat: not fio's state file).
#
# Record rounds, one pool per configuration: {XFS, ext4} under the pool x
# {buffered O_SYNC, O_DIRECT|O_SYNC} writers x {4 KiB, 64 KiB} blocks.
# ackwriter writes 4 KiB self-describing records at random offsets of a
# 64 MiB volume, one at a time, and appends "ack SEQ OFFSET CRC" with
# write + fdatasync to a log on /tmp before its next write; in half the
# configurations it also takes a snapshot set (mkdir MNT/.snapshots/S) every
# few dozen acks.  After 0.2-1.2 s the pool's file system is shut down
# without a log flush and the daemon killed (a cut), or only the daemon is
# killed (a kill); then the log replays on a remount, thinctl check must be
# clean, and after a restart every 4 KiB of the volume must hold its last
# acknowledged record, or the record in flight at the cut, or zeros if
# never acknowledged: never garbage (I1, I2).  Every set whose mkdir
# returned must exist, and every set that exists must hold exactly what was
# acknowledged before it (I3, I7).  The pool lives on across its rounds, so
# each recovery is also cut again.
#
# Files rounds (F3/I9): ext4 on a volume through loop; files written, each
# fsynced with its directory, their sha256 appended (and synced) to a log on
# /tmp; cut; tear down in the order fs, loop, FUSE; replay the ext4 journal
# by mounting; e2fsck -fn must exit 0 and every logged file must match.
#
# Negative controls, every run: build/bug-noflush/thinfs under 300 fresh-
# block records cut right after the last ack must lose acknowledged records
# (see 46_fresh_block_cut for why that cut and not a random one), and the
# files round under eatmydata must fail e2fsck or lose a file.  A control
# that loses nothing fails the test.
#
# Knobs: THINFS_CUTS (record cuts, default 60), THINFS_KILLS (record kills,
# default 12), THINFS_FILE_CUTS (default 6), THINFS_SEED (default 1).  The
# last line before PASS is "counts: cuts=N kills=M" (make soak sums it).
. "$(dirname "$0")/lib.sh"
require_root
require_cmd xfs_io mkfs.xfs mkfs.ext4 e2fsck sha256sum
AW=$THINFS_BUILD/ackwriter
[ -x "$AW" ] || skip "build ackwriter first (make)"
GOOD=$THINFS
BUG=$THINFS_BUILD/bug-noflush/thinfs
CUTS=${THINFS_CUTS:-60}
KILLS=${THINFS_KILLS:-12}
FILE_CUTS=${THINFS_FILE_CUTS:-6}
SEED=${THINFS_SEED:-1}
RANDOM=$SEED
VOLSZ=$((64 << 20))
AWPID="" FWPID="" L=""
pfs_init
pfs_wb_sane
trap 'rc=$?; stop_writers; files_down; [ $rc = 0 ] || diagnose; (exit $rc); pfs_cleanup' EXIT

# on a failure: what the daemons said, and the kernel
diagnose() {
	[ -s "$T/daemon.log" ] && { echo "--- daemon log (tail)"; tail -n 15 "$T/daemon.log"; } >&2
	{ echo "--- dmesg (tail)"; dmesg | tail -n 8; } >&2
}

files_down() {
	[ -n "$T" ] || return 0
	if grep -q " $T/fs " /proc/self/mounts; then
		timeout 30 umount "$T/fs" 2> /dev/null || timeout 10 umount -l "$T/fs"
	fi
	if [ -n "$L" ]; then
		timeout 10 losetup -d "$L"
		# detaching is asynchronous: wait until the device lets go of its file
		for _ in $(seq 50); do
			losetup "$L" > /dev/null 2>&1 || break
			sleep 0.1
		done
		L=""
	fi
	return 0
}

stop_writers() {
	local p
	for p in $AWPID $FWPID; do
		kill "$p" 2> /dev/null
		wait "$p" 2> /dev/null
	done
	AWPID="" FWPID=""
}

# delay [EXTRA]: a random delay of 0.2-1.2 s (plus EXTRA tenths)
delay() { local d=$((RANDOM % 11 + 2 + ${1:-0})); printf '%d.%d' $((d / 10)) $((d % 10)); }

# reap PID WHAT: wait for a writer of ours, at most 30 s; its exit status
reap() {
	local i
	for i in $(seq 300); do
		kill -0 "$1" 2> /dev/null || break
		sleep 0.1
	done
	if kill -0 "$1" 2> /dev/null; then
		echo "   $2: the writer hangs after the crash; killed" >&2
		kill -KILL "$1"
	fi
	wait "$1"
}

n_cuts=0 n_kills=0 n_acked=0 n_sets=0 n_inflight=0 n_files=0 n_late=0 late_seen=0

# ---- record rounds ----

# check_pool WHAT: thinctl check after a crash, offline
check_pool() {
	tc check "$P" > "$T/check.log" 2>&1 || { cat "$T/check.log"; fail "$1: thinctl check after the crash"; }
}

# verify_all WHAT: the volume and every set against the ack log
verify_all() {
	local out name seq s last
	out=$("$AW" verify "$M/v1" "$T/ack" 2> "$T/verify.err") ||
		{ echo "$out"; head -10 "$T/verify.err"; fail "$1: acknowledged writes lost or garbage"; }
	n_inflight=$((n_inflight + $(echo "$out" | sed -n 's/.* \([0-9]*\) in-flight records.*/\1/p')))
	LATE=$(echo "$out" | sed -n 's/.*; \([0-9]*\) taken after a cut began.*/\1/p')
	# sets whose mkdir returned must exist; a set in flight may
	while read -r name seq; do
		grep -qx "$name" "$T/removed" && continue
		[ -d "$M/.snapshots/$name" ] || fail "$1: set $name (after ack $seq) is gone"
	done < <(sed -n 's/^set \([^ ]*\) \([0-9]*\)$/\1 \2/p' "$T/ack")
	last=""
	for s in "$M"/.snapshots/*/; do
		[ -d "$s" ] || continue
		name=$(basename "$s")
		seq=$(sed -n "s/^setbegin $name \([0-9]*\)$/\1/p" "$T/ack")
		[ -n "$seq" ] || fail "$1: a set $name nobody made"
		"$AW" verify "$s/v1" "$T/ack" --upto "$seq" --quiet 2> "$T/verify.err" ||
			{ head -10 "$T/verify.err"; fail "$1: set $name differs from what was acked before it"; }
		n_sets=$((n_sets + 1))
		# keep the newest set (its blocks stay shared under the next
		# round's writes); the rest go, or each round would reread them
		[ -n "$last" ] && { rmdir "$M/.snapshots/$last" || fail "rmdir set $last"; echo "$last" >> "$T/removed"; }
		last=$name
	done
}

# crash KIND WHAT: a cut (shutdown without log flush + kill -9) or a kill
# (kill -9 only) while ackwriter writes; then check, restart, verify
crash() {
	local kind=$1 what=$2 before after rc=0 t0=$SECONDS
	before=$(grep -c '^ack ' "$T/ack" 2> /dev/null)
	kill -0 "$PID" 2> /dev/null || { wait "$PID"; fail "$what: the daemon had exited ($?) before the round"; }
	sysctl -qw vm.dirty_writeback_centisecs=0
	"$AW" write "$M/v1" "$T/ack" --seed $RANDOM "${AWOPTS[@]}" --quiet 2> "$T/aw.err" &
	AWPID=$!
	sleep "$(delay)"
	if [ $kind = cut ]; then
		pfs_cut_now "$AW" cut "$PFS" "$T/ack"
	else
		kill -0 "$PID" 2> /dev/null || { wait "$PID"; fail "$what: the daemon exited ($?) before the kill"; }
		{
			kill -KILL "$PID"
			timeout 10 umount "$M" || { fuse_abort_mine; timeout 10 umount -l "$M"; }
			wait "$PID"
		} 2> /dev/null
		PID=""
	fi
	reap "$AWPID" "$what" || rc=$?
	AWPID=""
	sysctl -qw vm.dirty_writeback_centisecs="$OLD_WB"
	[ $rc = 3 ] || { cat "$T/aw.err"; fail "$what: ackwriter exited $rc, not at a failed write"; }
	check_pool "$what"
	pfs_try_serve || fail "$what: the pool does not open after the $kind: $(tail -1 "$T/daemon.log")"
	verify_all "$what"
	after=$(grep -c '^ack ' "$T/ack")
	n_acked=$((n_acked + after - before))
	# (the acks of this run taken once its cut had begun: the whole log's
	# count less the count before)
	n_late=$((n_late + ${LATE:-0} - late_seen)) late_seen=${LATE:-0}
	echo "   $what: $((after - before)) acked, all $after acked so far verify ($((SECONDS - t0)) s)"
}

# record_config FS WRITER BS NCUTS NKILLS SNAPS
record_config() {
	local fs=$1 writer=$2 bs=$3 nc=$4 nk=$5 snaps=$6 i=0 kind
	AWOPTS=()
	[ "$writer" = direct ] && AWOPTS+=(--direct)
	[ "$snaps" = 1 ] && AWOPTS+=(--snap-dir "$M/.snapshots" --snap-every $((RANDOM % 40 + 20)))
	pfs_make_fs "$fs"
	tc format "$P" --data-size 256M --block-size "$bs" > /dev/null && tc create "$P" v1 $VOLSZ > /dev/null ||
		fail "format"
	: > "$T/ack"
	: > "$T/removed"
	late_seen=0
	pfs_serve
	while [ $nc -gt 0 ] || [ $nk -gt 0 ]; do
		i=$((i + 1))
		# interleave: a kill after every few cuts
		if [ $nk -gt 0 ] && { [ $nc = 0 ] || [ $((i % 4)) = 0 ]; }; then
			kind=kill nk=$((nk - 1)) n_kills=$((n_kills + 1))
		else
			kind=cut nc=$((nc - 1)) n_cuts=$((n_cuts + 1))
		fi
		crash $kind "$kind $i ($fs pool, $writer, $bs blocks$([ "$snaps" = 1 ] && echo ", sets"))"
	done
	stop_served || fail "$fs/$writer/$bs: thinfs did not exit cleanly"
	check_pool "$fs/$writer/$bs at the end"
	pfs_teardown
}

# the oracle itself, on a plain file: it must catch each kind of damage
oracle_selftest() {
	local f=$T/oracle.img log=$T/oracle.ack
	truncate -s 4M "$f"
	"$AW" write "$f" "$log" --count 64 --stride 65536 --quiet && cp "$f" "$f.old" &&
		"$AW" write "$f" "$log" --count 64 --stride 65536 --quiet &&
		"$AW" write "$f" "$log" --count 200 --seed 5 --quiet || fail "ackwriter on a plain file"
	set_seq=$(sed -n 's/^end \([0-9]*\)$/\1/p' "$log" | sed -n 2p) # after the 2nd run
	"$AW" verify "$f" "$log" --quiet || fail "oracle: an intact file does not verify"
	# a cut that began after every ack leaves every ack to be checked...
	echo "cut $(date +%s%N)" >> "$log"
	expect_caught() { # WHAT DD-ARGS...: damage a copy, verify must fail
		cp "$f" "$f.bad"
		dd of="$f.bad" conv=notrunc status=none "${@:2}" || fail "dd"
		"$AW" verify "$f.bad" "$log" --quiet > /dev/null 2>&1 && fail "oracle: $1 not caught"
	}
	expect_caught "an acked record zeroed" if=/dev/zero bs=4096 count=1 seek=16
	expect_caught "an older record in place of the acked one" if="$f.old" bs=4096 count=1 skip=0 seek=0
	expect_caught "garbage" if=/dev/urandom bs=512 count=1 seek=$((3 * 128 + 5))
	expect_caught "a record moved to another offset" if="$f" bs=4096 count=1 skip=0 seek=$((1024 - 1))
	# a set taken after the 2nd run, read now: the 3rd run's records are in it
	"$AW" verify "$f" "$log" --upto "$set_seq" --quiet > /dev/null 2>&1 &&
		fail "oracle: a set holding writes acked after it was not caught"
	# ...while an ack taken once the cut had begun may be lost: the last
	# record zeroed, with the cut at its ack's time, verifies
	read -r _ seq off _ t < <(grep '^ack ' "$log" | tail -1)
	head -n -1 "$log" > "$log.cut" && echo "cut $t" >> "$log.cut"
	cp "$f" "$f.bad" && dd if=/dev/zero of="$f.bad" bs=4096 count=1 seek=$((off / 4096)) conv=notrunc status=none
	"$AW" verify "$f.bad" "$log" --quiet > /dev/null 2>&1 && fail "oracle: the last ack zeroed not caught"
	"$AW" verify "$f.bad" "$log.cut" --quiet > /dev/null 2>&1 ||
		fail "oracle: an ack taken after the cut began was held against the pool"
	rm -f "$log.cut"
	rm -f "$f" "$f.old" "$f.bad" "$log"
	echo "   the oracle catches zeros, older records, garbage, misplaced records and sets that moved on;" \
		"an ack taken after its cut began is in flight"
}
say "the oracle on a plain file"
oracle_selftest

configs=(xfs:osync:64K xfs:direct:4K ext4:osync:4K ext4:direct:64K
	xfs:osync:4K xfs:direct:64K ext4:osync:64K ext4:direct:4K)
nconf=${#configs[@]}
say "seed $SEED: $CUTS cuts and $KILLS kills under ackwriter over $nconf pool configurations"
for c in $(seq 0 $((nconf - 1))); do
	IFS=: read -r fs w bs <<< "${configs[$c]}"
	nc=$((CUTS / nconf + (c < CUTS % nconf ? 1 : 0)))
	nk=$((KILLS / nconf + (c < KILLS % nconf ? 1 : 0)))
	[ $((nc + nk)) -gt 0 ] || continue
	record_config "$fs" "$w" "$bs" $nc $nk $((c % 2))
done

# ---- files rounds: ext4 on a volume ----

# file_writer N0: files f.N0, f.N0+1, ... each fsynced with its directory,
# then "TIME SHA256  NAME" appended to $T/files.log and synced, TIME (ns)
# taken when the syncs had returned; until an error
file_writer() {
	local i=$1 t sum
	while :; do
		head -c $(((RANDOM * 32 + RANDOM) % 400000 + 1)) /dev/urandom > "$T/fs/d/f.$i" || exit 3
		sync "$T/fs/d/f.$i" "$T/fs/d" || exit 3
		t=${EPOCHREALTIME/./}000
		sum=$(cd "$T/fs" && sha256sum "d/f.$i") || exit 3
		echo "$t $sum" >> "$T/files.log" && sync "$T/files.log"
		i=$((i + 1))
	done
}

files_attach() {
	L=$(losetup -f --show "$M/v1") || fail "losetup $M/v1"
}

# files_cut WHAT: write files until the cut; then the F3 recovery
# returns 0 if e2fsck was clean and every acknowledged file matched
files_cut() {
	local what=$1 before after rc=0 fsck_rc t0 late
	before=$(wc -l < "$T/files.ack")
	sysctl -qw vm.dirty_writeback_centisecs=0
	file_writer $((before + 1000 * ${2:-0})) > /dev/null 2>&1 &
	FWPID=$!
	sleep "$(delay 5)"
	t0=$("$AW" cut "$PFS") || fail "shutdown"
	{ kill -KILL "$PID"; wait "$PID"; } 2> /dev/null
	PID=""
	reap "$FWPID" "$what"
	FWPID=""
	# files whose syncs returned once the cut had begun are not
	# acknowledged (a real power cut would not have returned them)
	late=$(awk -v t0="$t0" '$1 >= t0' "$T/files.log" | wc -l)
	awk -v t0="$t0" '$1 < t0 { sub(/^[0-9]+ /, ""); print }' "$T/files.log" >> "$T/files.ack"
	: > "$T/files.log"
	sysctl -qw vm.dirty_writeback_centisecs="$OLD_WB"
	files_down
	timeout 10 umount "$M" 2> /dev/null || { fuse_abort_mine; timeout 10 umount -l "$M"; }
	pfs_remount_wait
	tc check "$P" > "$T/check.log" 2>&1 || { echo "   $what: check: $(head -2 "$T/check.log" | tr '\n' ' ')"; rc=1; }
	if ! pfs_try_serve; then
		echo "   $what: the pool does not open after the cut"
		return 1
	fi
	files_attach
	if ! mount "$L" "$T/fs" 2> /dev/null; then # replays the journal
		echo "   $what: ext4 does not mount after the cut"
		return 1
	fi
	umount "$T/fs"
	e2fsck -fn "$L" > "$T/fsck.log" 2>&1
	fsck_rc=$?
	if [ $fsck_rc != 0 ]; then
		echo "   $what: e2fsck -fn exit $fsck_rc: $(grep -m2 -vE '^(e2fsck|Pass|/dev)' "$T/fsck.log" | tr '\n' ' ')"
		rc=1
	fi
	mount "$L" "$T/fs" || fail "$what: ext4 mounts once, not twice"
	if ! (cd "$T/fs" && sha256sum -c --quiet "$T/files.ack") > "$T/sha.log" 2>&1; then
		echo "   $what: $(grep -c FAILED "$T/sha.log") of $(wc -l < "$T/files.ack") fsynced files differ or are gone"
		rc=1
	fi
	after=$(wc -l < "$T/files.ack")
	[ $rc = 0 ] && echo "   $what: $((after - before)) files fsynced (and $late after the cut began)," \
		"all $after verify, e2fsck -fn clean"
	n_files=$((n_files + after - before))
	return $rc
}

# files_pool FS NCUTS [WRAPPER]: a pool on FS, ext4 on v1, NCUTS file cuts;
# returns 1 at the first cut that lost or damaged something
files_pool() {
	local fs=$1 n=$2 i
	shift 2
	pfs_make_fs "$fs"
	tc format "$P" --data-size 512M > /dev/null && tc create "$P" v1 256M > /dev/null || fail "format"
	: > "$T/files.ack"
	: > "$T/files.log"
	pfs_serve "$@"
	files_attach
	mkfs.ext4 -q -F "$L" && mkdir -p "$T/fs" && mount "$L" "$T/fs" && mkdir "$T/fs/d" && sync -f "$T/fs/d" ||
		fail "ext4 on v1"
	for i in $(seq "$n"); do
		[ $# = 0 ] && n_cuts=$((n_cuts + 1))
		files_cut "files cut $i ($fs pool${1:+, under $1})" "$i" || { files_down; pfs_teardown; return 1; }
	done
	files_down
	stop_served || fail "files: thinfs did not exit cleanly"
	pfs_teardown
}

say "$FILE_CUTS cuts under ext4 on a volume, fsynced files"
h=$((FILE_CUTS / 2))
[ $h -gt 0 ] && { files_pool xfs $h || fail "F3 on an XFS pool"; }
[ $((FILE_CUTS - h)) -gt 0 ] && { files_pool ext4 $((FILE_CUTS - h)) || fail "F3 on an ext4 pool"; }

# ---- negative controls ----
if [ -x "$BUG" ]; then
	say "negative control: without the data flush before COMMIT a cut right after an ack must lose writes"
	pfs_make_fs xfs
	tc format "$P" --data-size 256M > /dev/null && tc create "$P" v1 $VOLSZ > /dev/null || fail "format"
	rm -f "$T/ack"
	THINFS=$BUG pfs_serve
	sysctl -qw vm.dirty_writeback_centisecs=0
	"$AW" write "$M/v1" "$T/ack" --count 300 --stride 65536 --quiet || fail "ackwriter under the control"
	pfs_cut_now
	sysctl -qw vm.dirty_writeback_centisecs="$OLD_WB"
	pfs_try_serve || fail "control: the pool does not open"
	out=$("$AW" verify "$M/v1" "$T/ack" 2> /dev/null)
	lost=$(echo "$out" | sed -n 's/.* \([0-9]*\) lost, .*/\1/p')
	[ "${lost:-0}" -gt 0 ] || fail "control passed: nothing lost without the data flush ($out)"
	echo "   $lost of 300 acknowledged writes lost, as they must be"
	stop_served
	pfs_teardown
fi
if command -v eatmydata > /dev/null; then
	say "negative control: the files round under eatmydata must fail"
	files_pool xfs 1 eatmydata && fail "control passed: under eatmydata e2fsck was clean and every file intact"
	echo "   failed, as it must"
fi
say "$n_cuts cuts and $n_kills kills: $n_acked acknowledged records ($n_late of them returned once" \
	"their cut had begun: in flight; $n_inflight in-flight records found after the crashes)," \
	"$n_sets set verifications, $n_files fsynced files, all verified"
echo "counts: cuts=$n_cuts kills=$n_kills"
echo "PASS $TEST_NAME"
