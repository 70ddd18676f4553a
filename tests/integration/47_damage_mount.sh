#!/bin/bash
# 47_damage_mount: damage that check finds is served read-only until it is
# repaired (issue 12).  A data block mapped twice (a case of the corruption
# matrix of test_check.c, made behind the pool's back): check says so (exit
# 1); the daemon then serves the pool read-only (writes EROFS, reads go on);
# check --repair fixes it and says so; the next mount is read-write and both
# devices read what they read before.  And an immutable meta.db: the failure
# is remembered across a remount until a repair.
. "$(dirname "$0")/lib.sh"
set -eu
require_root
require_cmd sqlite3
require_cmd chattr
setup

format 64M --block-size 64K
create a 4M
start_daemon
dd if=/dev/urandom of="$M/a" bs=64K count=8 conv=fsync status=none
mkdir "$M/.snapshots/s1"
sha_a=$(sha256sum < "$M/a")
truncate -s 4M "$M/b"
stop_daemon

say "a block mapped twice: found, the mount is read-only"
sqlite3 "$P/meta.db" "INSERT INTO map(layer, vblock, dblock, time) SELECT (SELECT layer FROM devices WHERE name = 'b'), 3, (SELECT dblock FROM map WHERE dblock IS NOT NULL LIMIT 1), 0"
rc=0; tc check "$P" > "$T/check.out" 2> "$T/check.err" || rc=$?
[ "$rc" = 1 ] && grep -q "mapped twice" "$T/check.out" || fail "check: exit $rc: $(cat "$T/check.out" "$T/check.err")"
grep -q "read-only until" "$T/check.err" || fail "check names no way out: $(cat "$T/check.err")"
start_daemon
[ "$(sha256sum < "$M/a")" = "$sha_a" ] || fail "reads of a changed"
if dd if=/dev/zero of="$M/a" bs=4K count=1 conv=notrunc,fsync status=none 2> "$T/dd.err"; then
	fail "a damaged pool took a write"
fi
grep -q "Read-only file system" "$T/dd.err" || fail "write error: $(cat "$T/dd.err")"
stop_daemon

say "check --repair fixes it and says so; the next mount is read-write"
sha_b=$(tc send "$P" b | sha256sum) # what b reads (through the stream: no mount)
tc check --repair "$P" > "$T/repair.out" || fail "repair: $(cat "$T/repair.out")"
grep -q "mapped twice.*: repaired" "$T/repair.out" || fail "repair said: $(cat "$T/repair.out")"
tc check "$P" > "$T/check.out" || fail "check after repair: $(cat "$T/check.out")"
[ "$(tc send "$P" b | sha256sum)" = "$sha_b" ] || fail "b reads differently after the repair"
start_daemon
[ "$(sha256sum < "$M/a")" = "$sha_a" ] || fail "a changed by the repair"
dd if=/dev/zero of="$M/a" bs=64K count=1 conv=notrunc,fsync status=none || fail "no write after the repair"
stop_daemon

say "an immutable meta.db: the failure survives a remount"
start_daemon
chattr +i "$P/meta.db" "$P/meta.db-wal"
rc=0; dd if=/dev/urandom of="$M/a" bs=64K count=1 seek=20 conv=notrunc,fsync status=none 2> /dev/null || rc=$?
chattr -i "$P/meta.db" "$P/meta.db-wal"
[ "$rc" != 0 ] || fail "fsync succeeded on an immutable meta.db"
stop_daemon || true
start_daemon
if dd if=/dev/zero of="$M/a" bs=4K count=1 conv=notrunc,fsync status=none 2> /dev/null; then
	fail "remounted read-write after a failure that was never repaired"
fi
stop_daemon
tc check --repair "$P" > "$T/repair.out" || fail "repair: $(cat "$T/repair.out")"
start_daemon
dd if=/dev/zero of="$M/a" bs=64K count=1 conv=notrunc,fsync status=none || fail "no write after the repair"
finish
