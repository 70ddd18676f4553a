#!/bin/bash
# 23_fsync_commit: fsync, fdatasync, O_SYNC, O_DIRECT+O_SYNC and an ext4
# journal flush through loop all reach the daemon (the fsyncs counter) and
# commit (the transaction id rises before they return); an idle pool does
# not commit; data fsynced just before a kill -9 is there after a restart.
. "$(dirname "$0")/lib.sh"
set -eu
require_root
require_cmd mkfs.ext4
setup

format 512M
create v1 64M
start_daemon

tid() { status_field commit_id; }
fsyncs() { status_field fsyncs; }

# check_sync WHAT CMD...: CMD writes a new block and syncs; it must commit
check_sync() {
	local what=$1 t0 f0
	shift
	t0=$(tid)
	f0=$(fsyncs)
	"$@"
	[ "$(tid)" -gt "$t0" ] || fail "$what: transaction id stayed at $t0"
	[ "$(fsyncs)" -gt "$f0" ] || fail "$what: no fsync reached the daemon"
}

say "fsync and fdatasync of a new block commit before they return"
check_sync fsync dd if=/dev/urandom of="$M/v1" bs=64K seek=1 count=1 conv=notrunc,fsync status=none
check_sync fdatasync dd if=/dev/urandom of="$M/v1" bs=64K seek=2 count=1 conv=notrunc,fdatasync status=none
check_sync O_SYNC dd if=/dev/urandom of="$M/v1" bs=64K seek=3 count=2 oflag=sync conv=notrunc status=none
check_sync O_DIRECT+O_SYNC dd if=/dev/urandom of="$M/v1" bs=64K seek=5 count=2 oflag=direct,sync conv=notrunc status=none
check_sync O_DSYNC dd if=/dev/urandom of="$M/v1" bs=64K seek=7 count=1 oflag=dsync conv=notrunc status=none

say "O_DIRECT reads and writes work and match buffered I/O"
dd if=/dev/urandom of="$T/pat" bs=64K count=4 status=none
dd if="$T/pat" of="$M/v1" bs=64K seek=16 oflag=direct conv=notrunc status=none
cmp "$T/pat" <(dd if="$M/v1" bs=64K skip=16 count=4 iflag=direct status=none) || fail "O_DIRECT read"
cmp "$T/pat" <(dd if="$M/v1" bs=64K skip=16 count=4 status=none) || fail "buffered read after O_DIRECT"

say "an idle pool does not commit"
sync "$M/v1"
t0=$(tid)
sleep 2.5
[ "$(tid)" = "$t0" ] || fail "idle: transaction id $t0 -> $(tid)"

say "the timer commits unsynced writes within about a second"
dd if=/dev/urandom of="$M/v1" bs=64K seek=30 count=1 conv=notrunc status=none
for _ in $(seq 30); do
	[ "$(tid)" -gt "$t0" ] && break
	sleep 0.1
done
[ "$(tid)" -gt "$t0" ] || fail "no timer commit in 3 s"

say "ext4's journal flush through loop arrives as FSYNC and commits"
truncate -s 256M "$M/fs1"
L=$(loop_attach "$M/fs1")
mkfs.ext4 -q -F "$L"
fs_mount "$L" "$T/fs"
head -c 1M /dev/urandom > "$T/fs/file"
check_sync "ext4 fsync through loop" sync -f "$T/fs"
fs_umount "$T/fs"
loop_detach "$L"

say "data fsynced right before kill -9 survives"
dd if=/dev/urandom of="$T/last" bs=64K count=2 status=none
dd if="$T/last" of="$M/v1" bs=64K seek=40 conv=notrunc,fsync status=none
{ kill -KILL "$PID" && wait "$PID"; } 2> /dev/null || true
PID=""
timeout 10 umount "$M" || timeout 10 umount -l "$M"
start_daemon
cmp "$T/last" <(dd if="$M/v1" bs=64K skip=40 count=2 status=none) || fail "fsynced data lost to kill -9"

finish
