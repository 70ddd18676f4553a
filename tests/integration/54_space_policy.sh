#!/bin/bash
# 54_space_policy: the pool properties that decide what happens near full,
# through a real mount (issue #14): thinctl set/get online and offline,
# low_water running event_command once per crossing, when_full=queue
# holding a dd until an online grow lets it finish with every byte intact,
# when_full=error failing at once, queue_timeout, autoextend under fio, ext4
# over a loop device over a queueing pool staying clean through a
# full-and-grow cycle, and the discard policies.
. "$(dirname "$0")/lib.sh"
set -eu
require_root
require_cmd fio mkfs.ext4 e2fsck
setup
# a failure with writes queued: let them fail now, so the teardown's umounts
# do not wait out queue_timeout
trap 'rc=$?; "$THINCTL" set "$P" when_full=error > /dev/null 2>&1; teardown $rc' EXIT

format 32M # 512 blocks of 64K
create v 64M
cat > "$T/ev.sh" << EOF
#!/bin/sh
echo "\$1 \$THINFS_USED_PERCENT \$THINFS_USED_BLOCKS/\$THINFS_DATA_BLOCKS" >> "$T/events.log"
EOF
chmod +x "$T/ev.sh"
: > "$T/events.log"

say "set and get offline: all or none, bad input refused"
tc set "$P" low_water=50 event_command="$T/ev.sh" queue_timeout=30
tc get "$P" low_water | grep -q "^low_water *50 *local" || fail "low_water not set: $(tc get "$P")"
tc get "$P" when_full | grep -q "^when_full *queue *default" || fail "when_full default is not queue"
expect_fail "not a percentage" tc set "$P" when_full=error low_water=170
expect_fail "not one of" tc set "$P" when_full=sometimes low_water=70
tc get "$P" low_water when_full | grep -q "queue" || fail "a refused set changed when_full"
expect_fail "unknown property" tc set "$P" no_such=1
expect_fail "not an executable" tc set "$P" event_command=/nonexistent/cmd

start_daemon
ev_count() { grep -c "^$1 " "$T/events.log" || true; }
wait_event() { # wait_event NAME COUNT
	for _ in $(seq 100); do
		[ "$(ev_count "$1")" -ge "$2" ] && return 0
		sleep 0.1
	done
	fail "event $1 did not run $2 time(s): $(cat "$T/events.log")"
}
jfield() { tc status --json "$P" | sed -n "s/.*\"$1\":\([0-9a-z\"_]*\).*/\1/p"; }

say "low water: crossing it runs the event command once"
dd if=/dev/urandom of="$T/A" bs=1M count=20 status=none
dd if="$T/A" of="$M/v" bs=1M oflag=direct conv=notrunc,fsync status=none
wait_event low_water 1
dd if="$T/A" of="$M/v" bs=1M count=2 seek=20 oflag=direct conv=notrunc,fsync status=none
sleep 1
[ "$(ev_count low_water)" = 1 ] || fail "low_water ran again without dropping under it"
grep -q "^low_water 5[0-9] " "$T/events.log" || fail "the event's figures: $(cat "$T/events.log")"
tc status "$P" | grep -q "event: *low_water x1" || fail "status does not show the event: $(tc status "$P")"

say "dropping under it and crossing again runs it again"
fallocate -p -o 0 -l 12M "$M/v"
sync "$M/v"
for _ in $(seq 50); do [ "$(used)" -lt 256 ] && break; sleep 0.1; done
[ "$(used)" -lt 256 ] || fail "the discard did not drop under low water: used $(used)"
dd if="$T/A" of="$M/v" bs=1M count=12 oflag=direct conv=notrunc,fsync status=none
wait_event low_water 2

say "online set: changes at once, and stays"
tc set "$P" queue_timeout=45
tc get "$P" queue_timeout | grep -q " 45 " || fail "online set not visible"

say "when_full=queue: a dd waits for space; an online grow lets it finish"
dd if=/dev/urandom of="$T/B" bs=1M count=40 status=none
dd if="$T/B" of="$M/v" bs=1M seek=22 oflag=direct conv=notrunc,fsync > "$T/dd.log" 2>&1 &
DD=$!
for _ in $(seq 100); do [ "$(jfield queued_writes)" -ge 1 ] 2> /dev/null && break; sleep 0.1; done
[ "$(jfield queued_writes)" -ge 1 ] || fail "no write queued: $(tc status --json "$P")"
kill -0 $DD 2> /dev/null || fail "dd ended on a full pool: $(cat "$T/dd.log")"
[ "$(jfield mode)" = '"out_of_data_space"' ] || fail "mode is $(jfield mode)"
wait_event full 1
sleep 1
kill -0 $DD 2> /dev/null || fail "dd did not wait"
# more writers wait than the daemon has workers (16; one write at a time per
# file, so a file each): reads and the status are still answered
QS=""
for i in $(seq 24); do
	create "q$i" 1M
	dd if="$T/A" of="$M/q$i" bs=64K count=1 skip="$i" oflag=direct conv=notrunc 2> /dev/null &
	QS="$QS $!"
done
for _ in $(seq 100); do [ "$(timeout 10 "$THINCTL" status --json "$P" | sed -n 's/.*"queued_writes":\([0-9]*\).*/\1/p')" -ge 25 ] 2> /dev/null && break; sleep 0.1; done
[ "$(jfield queued_writes)" -ge 25 ] || fail "the writers are not all queued: $(jfield queued_writes)"
timeout 10 cmp -n 1048576 "$T/A" "$M/v" || fail "a read waited behind the queued writes"
timeout 10 "$THINCTL" status --json "$P" > /dev/null || fail "the status waited behind the queued writes"
tc grow "$P" --data-size 96M > /dev/null
wait $DD || fail "the queued dd failed: $(cat "$T/dd.log")"
for q in $QS; do wait "$q" || fail "a queued writer failed"; done
for i in 1 12 24; do
	cmp <(dd if="$T/A" bs=64K skip="$i" count=1 status=none) "$M/q$i" -n 65536 || fail "q$i differs"
done
for i in $(seq 24); do tc delete "$P" "q$i"; done
cmp -n 41943040 "$T/B" <(dd if="$M/v" bs=1M skip=22 count=40 status=none) || fail "queued bytes differ"
cmp -n 23068672 <(cat "$T/A" <(head -c 2097152 "$T/A")) "$M/v" || fail "earlier bytes differ"
wait_event space_back 1
[ "$(jfield queued_writes)" = 0 ] || fail "writes still counted as queued"

say "when_full=error: a write that needs a block fails at once"
tc set "$P" when_full=error low_water=0
create w 128M
start=$(date +%s)
if dd if=/dev/zero of="$M/w" bs=1M count=128 oflag=direct conv=notrunc > "$T/dd2.log" 2>&1; then
	fail "filling the pool did not fail"
fi
grep -q "No space left on device" "$T/dd2.log" || fail "not ENOSPC: $(cat "$T/dd2.log")"
[ $(($(date +%s) - start)) -lt 10 ] || fail "when_full=error waited"

say "queue_timeout: a queued write gives up with ENOSPC"
tc set "$P" when_full=queue queue_timeout=2
start=$(date +%s)
if dd if=/dev/zero of="$M/w" bs=64K count=1 seek=2000 oflag=direct conv=notrunc > "$T/dd3.log" 2>&1; then
	fail "a write past queue_timeout did not fail"
fi
el=$(($(date +%s) - start))
grep -q "No space left on device" "$T/dd3.log" || fail "not ENOSPC after the timeout"
[ "$el" -ge 2 ] && [ "$el" -lt 15 ] || fail "gave up after $el s, queue_timeout is 2"
grep -q "waited 2 s (queue_timeout)" "$T/daemon.log" || fail "the timeout is not logged"
tc delete "$P" w
for _ in $(seq 100); do [ "$(jfield reclaim_devices)" = 0 ] && break; sleep 0.1; done

say "autoextend under fio: the data file grows as the pool fills"
tc set "$P" low_water=70 autoextend_percent=50 autoextend_max=512M queue_timeout=60
create f 256M
fio --name=fill --filename="$M/f" --rw=write --bs=256k --size=256M --direct=1 \
	--verify=crc32c --do_verify=1 --output="$T/fio.log" > /dev/null 2>&1 ||
	{ cat "$T/fio.log"; fail "fio failed under autoextend"; }
grep -q "err= 0" "$T/fio.log" || fail "fio reported errors"
data=$(jfield data_bytes)
[ "$data" -gt $((256 * 1048576)) ] || fail "the data did not grow: $data bytes"
[ "$data" -le $((512 * 1048576)) ] || fail "grew past autoextend_max: $data"
wait_event autoextend 1
grep -q "autoextend: grew the data" "$T/daemon.log" || fail "autoextend not logged"

say "autoextend_max reached: autoextend_failed, and the data stays"
tc delete "$P" f
for _ in $(seq 100); do [ "$(jfield reclaim_devices)" = 0 ] && break; sleep 0.1; done
data=$(jfield data_bytes)
tc set "$P" autoextend_max="$data"
create g 1G
dd if=/dev/zero of="$M/g" bs=1M count=$((data * 3 / 4 / 1048576)) oflag=direct conv=notrunc,fsync status=none
wait_event autoextend_failed 1
[ "$(jfield data_bytes)" = "$data" ] || fail "grew past autoextend_max"
tc delete "$P" g
for _ in $(seq 100); do [ "$(jfield reclaim_devices)" = 0 ] && break; sleep 0.1; done

say "ext4 over loop over a queueing pool: full, grow, clean"
tc set "$P" autoextend_percent=0 low_water=80
dsize=$(jfield data_bytes)
create e 1G
L=$(loop_attach "$M/e")
mkfs.ext4 -q -E nodiscard "$L"
fs_mount "$L" "$T/fs"
# a filler leaves 48M free, ext4's file needs 64M
free=$(($(jfield free_blocks) * 65536))
create h 2G
dd if=/dev/zero of="$M/h" bs=1M count=$((free / 1048576 - 48)) oflag=direct conv=notrunc,fsync status=none
dd if=/dev/urandom of="$T/C" bs=1M count=64 status=none
# (the fsync pushes ext4's writeback now, not at dirty_expire)
(cp "$T/C" "$T/fs/c" && sync "$T/fs/c") &
CP=$!
for _ in $(seq 900); do [ "$(timeout 10 "$THINCTL" status --json "$P" | sed -n 's/.*"queued_writes":\([0-9]*\).*/\1/p')" -ge 1 ] 2> /dev/null && break; sleep 0.1; done
[ "$(jfield queued_writes)" -ge 1 ] || fail "ext4's writes never queued"
# the writers wait, the mount does not: reads and the status are answered
timeout 10 cmp -n 1048576 "$T/A" "$M/v" || fail "a read waited behind the queued writes"
timeout 10 "$THINCTL" status --json "$P" > /dev/null || fail "the status waited behind the queued writes"
tc grow "$P" --data-size $((dsize + 256 * 1048576)) > /dev/null
wait $CP || fail "cp onto ext4 failed through the full pool"
sync
cmp "$T/C" "$T/fs/c" || fail "the file on ext4 differs"
fs_umount "$T/fs"
e2fsck -fn "$L" > "$T/fsck.log" 2>&1 || { cat "$T/fsck.log"; fail "ext4 not clean after full-and-grow"; }
loop_detach "$L"
tc delete "$P" e
tc delete "$P" h
for _ in $(seq 100); do [ "$(jfield reclaim_devices)" = 0 ] && break; sleep 0.1; done

say "discard=ignore refuses a punch and keeps the data"
tc set "$P" discard=ignore
if fallocate -p -o 0 -l 1M "$M/v" 2> "$T/fa.err"; then fail "punch accepted with discard=ignore"; fi
grep -qE "not supported|unsupported" "$T/fa.err" || fail "punch refusal: $(cat "$T/fa.err")"
cmp -n 1048576 "$T/A" "$M/v" || fail "a refused punch changed data"

say "discard=nopassdown frees blocks but keeps the data file's extents"
tc set "$P" discard=nopassdown
sync "$M/v"
before_used=$(used)
before_du=$(du -k "$P/data" | cut -f1)
fallocate -p -o 0 -l 8M "$M/v"
sync "$M/v"
for _ in $(seq 50); do [ "$(used)" -lt "$before_used" ] && break; sleep 0.1; done
[ "$(used)" -le $((before_used - 128)) ] || fail "nopassdown did not free: $before_used -> $(used)"
after_du=$(du -k "$P/data" | cut -f1)
[ "$after_du" -ge $((before_du - 64)) ] || fail "nopassdown punched the data file: $before_du -> $after_du KiB"
# the freed blocks come back with old bytes on disk: a partial write must read zeros around it
printf 'x' | dd of="$M/v" bs=1 seek=100 conv=notrunc status=none
sync "$M/v"
head -c 65536 "$M/v" | tr -d '\0' | grep -qx x || fail "a reused block shows stale bytes"

say "discard=passdown again: the data file gives the space back"
tc set "$P" discard=passdown
before_du=$(du -k "$P/data" | cut -f1)
fallocate -p -o 8M -l 8M "$M/v"
sync "$M/v"
sleep 1.5
after_du=$(du -k "$P/data" | cut -f1)
[ "$after_du" -le $((before_du - 4096)) ] || fail "passdown did not punch: $before_du -> $after_du KiB"

finish
