#!/bin/bash
# 31_admin_log: the daemon's log, as a storage admin reads it (issue 17), in
# the foreground (stderr; syslog in the background): every administrative
# change through the mount once, with the device; a pool running full once
# ("out of data space") and its end once, not a line per write; a refused
# request once per device and reason (ENOSPC, EFBIG past the pool's limit,
# EROFS on a pool opened read-only), however often it is repeated.
. "$(dirname "$0")/lib.sh"
set -eu
require_root
setup

format 16M # 256 blocks of 64K
tc set "$P" when_full=error # the refusal at once
create v 64M
start_daemon
LOG=$T/daemon.log

# once PATTERN: exactly one line of the daemon's log matches
once() {
	local n
	n=$(grep -c -- "$1" "$LOG" || true)
	[ "$n" = 1 ] || { cat "$LOG" >&2; fail "log: '$1' $n times, wanted once"; }
}

say "administrative changes through the mount"
truncate -s 1M "$M/new"
mkdir "$M/.snapshots/s1"
mv "$M/new" "$M/renamed"
truncate -s 2M "$M/renamed"
chmod 640 "$M/renamed"
rm "$M/renamed"
rmdir "$M/.snapshots/s1"
once "thinfs: $P: created volume 'new'"
once "took snapshot set 's1' of every volume"
once "renamed 'new' to 'renamed'"
once "resized 'renamed' from 1.0M (1048576 B, 16 blocks) to 2.0M (2097152 B, 32 blocks)"
once "'renamed': owner 0:0, mode 0640"
once "deleted 'renamed'"
once "deleted snapshot set 's1'"

say "an absurd size is refused with the limit, logged once"
for _ in 1 2 3; do
	expect_fail "File too large" truncate -s 100000T "$M/v"
done
once "'v': refused a resize: size .* is beyond the limit of 4.0P"

say "a pool running full: one line, and one refused-write line, however many writes"
for i in 1 2 3; do
	dd if=/dev/urandom of="$M/v" bs=1M count=24 oflag=direct conv=notrunc > "$T/dd$i.log" 2>&1 && fail "filling the pool did not fail"
	grep -q "No space left on device" "$T/dd$i.log" || { cat "$T/dd$i.log"; fail "not ENOSPC"; }
done
once "out of data space (256 of 256 blocks in use).*a write to 'v'"
once "'v': refused a write: No space left on device"
truncate -s 0 "$M/v"
sync "$M/v"
once "data space is back: 256 of 256 blocks free"

say "a pool opened read-only: the mode once, every refused write once"
stop_daemon || fail "thinfs exited non-zero"
sqlite3 "$P/meta.db" "UPDATE pool SET needs_check = 1"
: > "$LOG"
start_daemon
for _ in 1 2 3; do
	expect_fail "Read-only file system" dd if=/dev/zero of="$M/v" bs=4K count=1 conv=notrunc
done
once "opened read-only: needs_check is set"
once "'v': refused a write: Read-only file system"
stop_daemon || fail "thinfs exited non-zero"
tc check --repair "$P" > /dev/null 2>&1 || fail "check --repair"

say "the log's lines are the admin's: nothing per request"
[ "$(wc -l < "$LOG")" -le 6 ] || { cat "$LOG" >&2; fail "too many lines for a read-only pool"; }
finish
