#!/bin/bash
# 48_online_admin: every changing thinctl command on a mounted pool (issue
# 13), through the daemon, while fio writes and verifies (crc32c) another
# volume: the change is in the mount when thinctl returns and fio sees no
# error.  Then rollback (refused while open, with a later snapshot that stays
# intact), a stopped daemon (SIGSTOP: a clear timeout, never a hang),
# umount followed at once by a changing command, 50 times, and a kill -9 in
# the middle of a background delete (space all back, check clean).
. "$(dirname "$0")/lib.sh"
set -eu
require_root
require_cmd fio
setup

format 1G --block-size 64K
create busy 256M
create v 64M
start_daemon

say "fio verifies 'busy' while every command runs"
fio --name=busy --filename="$M/busy" --rw=randwrite --bs=4k --size=64M --ioengine=psync \
	--fsync=16 --verify=crc32c --verify_backlog=256 --verify_fatal=1 --time_based \
	--runtime=600 --output="$T/fio.out" > /dev/null 2>&1 &
FIO=$!
sleep 1
kill -0 $FIO 2> /dev/null || fail "fio did not start: $(cat "$T/fio.out")"
dd if=/dev/urandom of="$T/pattern" bs=1M count=8 status=none
dd if="$T/pattern" of="$M/v" bs=1M conv=fsync,notrunc status=none

tc create "$P" new 16M && [ "$(stat -c %s "$M/new")" = 16777216 ] || fail "create: not in the mount"
tc snapshot "$P" v clone && cmp -n 8M "$M/clone" "$T/pattern" || fail "snapshot: not in the mount, or not v"
dd if=/dev/zero of="$M/v" bs=1M count=1 conv=fsync,notrunc status=none
cmp -n 8M "$M/clone" "$T/pattern" || fail "the writable snapshot changed with its origin"
tc resize "$P" new 32M && [ "$(stat -c %s "$M/new")" = 33554432 ] || fail "resize: size not in the mount"
tc rename "$P" new renamed && [ -f "$M/renamed" ] && [ ! -e "$M/new" ] || fail "rename: not in the mount"
tc snapshot "$P" --set s1 && [ -f "$M/.snapshots/s1/v" ] || fail "snapshot --set: not in the mount"
tc rename "$P" s1 s2 && [ -d "$M/.snapshots/s2" ] && [ ! -e "$M/.snapshots/s1" ] || fail "set rename"
tc delete "$P" renamed && [ ! -e "$M/renamed" ] || fail "delete: still in the mount"
size0=$(df -B1 --output=size "$M" | tail -1)
tc grow "$P" --data-size 2G || fail "grow"
[ "$(df -B1 --output=size "$M" | tail -1)" -gt "$size0" ] || fail "grow: df does not show it"
tc check --repair "$P" > "$T/repair.out" || fail "check --repair while mounted: $(cat "$T/repair.out")"
tc delete "$P" --set s2 && [ ! -e "$M/.snapshots/s2" ] || fail "delete --set"
tid=$(tc status --json "$P" | sed -n 's/.*"transaction_id":\([0-9]*\).*/\1/p')
tc set-transaction-id "$P" "$tid" 42 || fail "set-transaction-id $tid 42 on a mounted pool"
expect_fail "is 42, not 41" tc set-transaction-id "$P" 41 43
tc status --json "$P" | grep -q '"transaction_id":42' || fail "set-transaction-id: the status does not show 42"
kill -0 $FIO 2> /dev/null || fail "fio stopped during the commands: $(tail -5 "$T/fio.out")"
kill -INT $FIO
wait $FIO || true
grep -q "err= 0" "$T/fio.out" || fail "fio saw an error: $(grep -i 'err\|verify' "$T/fio.out" | head -5)"
! grep -qi "verify: bad\|crc32c: verify failed" "$T/fio.out" || fail "fio verify failed"

say "rollback: refused while open; a later snapshot stays intact"
dd if="$T/pattern" of="$M/v" bs=1M conv=fsync,notrunc status=none
tc snapshot "$P" --set before
dd if=/dev/urandom of="$M/v" bs=1M count=2 conv=fsync,notrunc status=none
sha_later=$(sha256sum < "$M/v")
tc snapshot "$P" v later
exec 7< "$M/v"
expect_fail "is open" tc rollback "$P" v before/v
exec 7<&-
sleep 0.2
tc rollback "$P" v before/v || fail "rollback"
cmp -n 8M "$M/v" "$T/pattern" || fail "v does not read as the snapshot after the rollback"
[ "$(sha256sum < "$M/later")" = "$sha_later" ] || fail "the later snapshot changed"

say "a stopped daemon: thinctl times out with a clear message"
kill -STOP "$PID"
start=$(date +%s)
rc=0; THINCTL_TIMEOUT=2 tc create "$P" late 1M 2> "$T/stop.err" || rc=$?
kill -CONT "$PID"
[ "$rc" != 0 ] && grep -q "did not answer within 2 s" "$T/stop.err" || fail "stopped daemon: exit $rc: $(cat "$T/stop.err")"
[ $(($(date +%s) - start)) -lt 10 ] || fail "thinctl took too long against a stopped daemon"
finish_daemon_only() { stop_daemon || fail "thinfs exited non-zero"; }
finish_daemon_only

say "umount, then a changing command at once, 50 times"
for i in $(seq 50); do
	start_daemon
	for _ in $(seq 20); do umount "$M" 2> "$T/umount.err" && break; sleep 0.05; done
	mountpoint -q "$M" && fail "round $i: umount: $(cat "$T/umount.err")"
	tc create "$P" "u$i" 1M 2> "$T/race.err" || fail "round $i: create right after umount: $(cat "$T/race.err")"
	wait "$PID" || true
	PID=""
done

say "umount through the umount(8) helper returns once the daemon is gone"
for i in $(seq 5); do
	start_daemon
	"$(dirname "$0")/../../tools/umount.fuse.thinfs" "$M" || fail "umount.fuse.thinfs"
	! kill -0 "$PID" 2> /dev/null || fail "round $i: the daemon still runs after the helper returned"
	THINCTL_NO_WAIT=1 tc create "$P" "h$i" 1M || fail "round $i: create right after the helper"
	wait "$PID" || true
	PID=""
done

say "online grow: df shows it at once, a writer that got ENOSPC goes on"
P=$T/small
format 4M --block-size 64K
tc set "$P" when_full=error # the writer gets ENOSPC, then the grow
create full 64M
start_daemon
if dd if=/dev/urandom of="$M/full" bs=64K count=128 oflag=direct conv=notrunc status=none 2> "$T/enospc.err"; then
	fail "a 4 MiB pool took 8 MiB"
fi
grep -q "No space left" "$T/enospc.err" || fail "not ENOSPC: $(cat "$T/enospc.err")"
tc grow "$P" --data-size 16M || fail "grow"
[ "$(df -B1 --output=size "$M" | tail -1 | tr -d " ")" = 16777216 ] || fail "df after grow: $(df -B1 --output=size "$M" | tail -1)"
dd if=/dev/urandom of="$M/full" bs=64K count=128 oflag=direct conv=notrunc status=none || fail "the writer still gets ENOSPC after the grow"
stop_daemon || fail "thinfs exited non-zero"

say "kill -9 in the middle of a background delete"
P=$T/pool4k # 4K blocks: about 25 reclaim steps
format 1G --block-size 4K
create big 512M
create keep 1M
start_daemon
dd if=/dev/urandom of="$M/keep" bs=1M count=1 conv=fsync status=none
sha_keep=$(sha256sum < "$M/keep")
dd if=/dev/urandom of="$M/big" bs=1M count=400 conv=fsync status=none 2> /dev/null
used_before=$(used)
tc delete "$P" big
[ ! -e "$M/big" ] || fail "deleted volume still in the mount"
sleep 0.05
pending=$(status_field reclaim_devices)
kill -9 "$PID"
wait "$PID" 2> /dev/null || true
PID=""
[ "$pending" = 1 ] || fail "the delete was not in progress at the kill (reclaim_devices=$pending)"
timeout 10 umount "$M" 2> /dev/null || timeout 10 umount -l "$M"
start_daemon
[ "$(used)" -le $((used_before - 102400)) ] || fail "space not back after the crash: $(used) of $used_before"
[ "$(sha256sum < "$M/keep")" = "$sha_keep" ] || fail "another volume changed"
stop_daemon || fail "thinfs exited non-zero"
tc status --json "$P" | grep -q '"reclaim_devices":0' || fail "a delete is still pending"
tc check "$P" > "$T/check.out" || fail "check after the crash: $(cat "$T/check.out")"
echo "PASS $TEST_NAME"
