#!/usr/bin/env bash
# 43_host_fs_full: the file system under the pool fills before the pool does
# (TESTING D7, D6).
#  1. --data on a 48 MiB file system, meta.db elsewhere: the writer gets "No
#     space left on device", never EIO; the failed write maps nothing; fsync
#     still succeeds and every byte dd reported written reads back, also after
#     a restart; the pool checks clean.
#  2. data and meta.db on the same full file system: the commit cannot be
#     written, so fsync fails (never a false success) and the pool turns
#     read-only, while what was written still reads back until the daemon
#     stops; after that the pool stays read-only until check --repair.
. "$(dirname "$0")/lib.sh"
require_root
require_cmd mkfs.ext4
setup
dd if=/dev/urandom of="$T/pattern" bs=1M count=64 status=none
small_fs() { # small_fs NAME: a 48 MiB ext4 mounted on $T/NAME
	truncate -s 48M "$T/$1.img"
	local l
	l=$(loop_attach "$T/$1.img")
	mkfs.ext4 -q -F "$l" || fail "mkfs"
	fs_mount "$l" "$T/$1"
}
mode() { tc status --json "$P" | python3 -c 'import json, sys; print(json.load(sys.stdin)["mode"])'; }
fill() { # dd until ENOSPC; prints the bytes dd reported
	dd if="$T/pattern" of="$M/v1" bs=1M oflag=direct 2> "$T/dd.err"
	grep -q "No space left on device" "$T/dd.err" || fail "no ENOSPC: $(cat "$T/dd.err")"
	grep -qi "input/output" "$T/dd.err" && fail "EIO: $(cat "$T/dd.err")"
	grep -oE '^[0-9]+ bytes' "$T/dd.err" | head -1 | cut -d' ' -f1
}

say "1. the data's file system fills, the metadata's does not"
small_fs datafs
tc format "$P" --data-size 1G --data "$T/datafs/data" > /dev/null || fail "format"
create v1 512M
start_daemon
written=$(fill)
echo "   dd wrote $written bytes before ENOSPC"
[ "$written" -gt 0 ] || fail "nothing written"
sync "$M/v1" || fail "fsync failed although the metadata has room"
cmp -n "$written" "$T/pattern" "$M/v1" || fail "acknowledged bytes differ"
[ "$(mode)" != ro ] || fail "the pool went read-only"
stop_daemon || fail "daemon exit"
tc check "$P" > "$T/check.log" 2>&1 || { cat "$T/check.log"; fail "check"; }
start_daemon
cmp -n "$written" "$T/pattern" "$M/v1" || fail "data changed across a restart"
stop_daemon || fail "daemon exit"

say "2. data and metadata on the same full file system"
small_fs both
P=$T/both/pool
format 1G
create v1 512M
start_daemon
written=$(fill)
echo "   dd wrote $written bytes before ENOSPC"
if sync "$M/v1" 2> "$T/sync.err"; then
	# the commit may still fit; then nothing more to prove here
	echo "   the commit fitted: fsync succeeded"
else
	grep -q "No space left on device" "$T/sync.err" || fail "fsync failed with $(cat "$T/sync.err")"
	[ "$(mode)" = ro ] || fail "the pool is not read-only after a failed commit ($(mode))"
	echo "   fsync failed with ENOSPC and the pool went read-only"
fi
cmp -n "$written" "$T/pattern" "$M/v1" || fail "written bytes do not read back while the daemon runs"
echo "   every byte written reads back while the daemon runs"
stop_daemon || true
echo "PASS $TEST_NAME"
