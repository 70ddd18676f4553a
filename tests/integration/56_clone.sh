#!/bin/bash
# 56_clone: copy_file_range shares blocks (issue 14).  `cp MNT/a MNT/b`
# (coreutils uses copy_file_range) takes no new data block and is byte
# identical; thinctl list counts the blocks as shared and thin_dump shows
# one data block mapped by both devices; a write to either side copies on
# write and leaves the other as it was; deleting one side frees only what
# it alone mapped; thinctl check is clean throughout.  FICLONE is not
# forwarded by FUSE: `cp --reflink=always` fails, plain cp clones.
. "$(dirname "$0")/lib.sh"
set -eu
require_root
require_cmd cp cmp dd
setup

SIZE_MB=${CLONE_TEST_MB:-1024}
BLOCKS=$((SIZE_MB * 16)) # 64 KiB blocks

format 2G
create a "${SIZE_MB}M"
start_daemon

say "a fully mapped ${SIZE_MB} MiB volume"
dd if=/dev/urandom of="$M/a" bs=1M count="$SIZE_MB" conv=notrunc status=none
sync "$M/a"
[ "$(mapped a)" = "$BLOCKS" ] || fail "a maps $(mapped a) blocks, expected $BLOCKS"
u0=$(used)
suma=$(sha256sum < "$M/a")

say "cp shares every block"
exec 3< "$M/a" # a stays open: its view (and any stale in-place right) stays loaded
t0=$(date +%s%N)
cp "$M/a" "$M/b"
t1=$(date +%s%N)
sync "$M/b"
say "cp of ${SIZE_MB} MiB took $(((t1 - t0) / 1000000)) ms"
[ "$(used)" = "$u0" ] || fail "used $u0 -> $(used): cp took new blocks"
cmp "$M/a" "$M/b" || fail "b differs from a"
[ "$(stat -c %s "$M/b")" = "$((SIZE_MB * 1048576))" ] || fail "b has size $(stat -c %s "$M/b")"
[ "$(mapped b)" = "$BLOCKS" ] || fail "b maps $(mapped b)"
shared=$(tc list --json "$P" | sed 's/},{/}\n{/g' | grep '"name":"b"' |
	sed -n 's/.*"shared_blocks":\([0-9]*\).*/\1/p')
[ "$shared" = "$BLOCKS" ] || fail "thinctl list: b shares $shared blocks, expected $BLOCKS"
tc check "$P" > "$T/check.log" 2>&1 || { cat "$T/check.log"; fail "check after cp"; }

say "thin_dump names the shared data blocks under both devices"
tc dump "$P" -o "$T/dump.xml"
n=$(grep -o 'data_b[a-z]*="[0-9]*"' "$T/dump.xml" | sort | uniq -d | wc -l)
[ "$n" -ge 1 ] || fail "no data block is mapped by two devices in the dump"

say "a write to either side copies on write"
dd if=/dev/zero of="$M/b" bs=64K count=16 conv=notrunc status=none
dd if=/dev/zero of="$M/a" bs=4K count=1 seek=25600 conv=notrunc status=none
sync "$M/a" "$M/b"
[ "$(used)" = "$((u0 + 17))" ] || fail "used $u0 -> $(used), expected +17 (copies on write)"
head -c 1048576 "$M/a" | cmp - <(head -c 1048576 "$M/b") > /dev/null &&
	fail "b's write shows in a"
dd if="$M/b" bs=4K skip=25600 count=1 status=none | tr -d '\0' | wc -c | grep -qv '^0$' ||
	fail "a's write shows in b"
tc check "$P" > "$T/check.log" 2>&1 || { cat "$T/check.log"; fail "check after writes"; }
exec 3<&-

say "cp --reflink=always is refused (FUSE does not forward FICLONE)"
if cp --reflink=always "$M/a" "$M/c" 2> /dev/null; then
	say "note: this kernel forwards FICLONE"
fi
rm -f "$M/c"

say "one copy_file_range of 6 GiB (past the reply's 32-bit count) over a sparse volume"
if command -v python3 > /dev/null; then
	truncate -s 6G "$M/big"
	dd if=/dev/urandom of="$M/big" bs=64K count=2 seek=$((5 * 16384)) conv=notrunc status=none
	sync "$M/big"
	ub=$(used)
	python3 -c '
import os, sys
src, dst = os.open(sys.argv[1], os.O_RDONLY), os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT)
left = 6 << 30
while left:
    n = os.copy_file_range(src, dst, left)
    if n <= 0:
        sys.exit("copy_file_range returned %d with %d left" % (n, left))
    left -= n
' "$M/big" "$M/big2" || fail "copy_file_range of 6 GiB"
	sync "$M/big2"
	[ "$(stat -c %s "$M/big2")" = $((6 << 30)) ] || fail "big2 has size $(stat -c %s "$M/big2")"
	[ "$(mapped big2)" = 2 ] || fail "big2 maps $(mapped big2) blocks, expected 2"
	[ "$(used)" = "$ub" ] || fail "used $ub -> $(used) for a clone of big"
	cmp <(dd if="$M/big" bs=64K skip=$((5 * 16384)) count=2 status=none) \
		<(dd if="$M/big2" bs=64K skip=$((5 * 16384)) count=2 status=none) ||
		fail "big2 differs from big"
	rm "$M/big" "$M/big2"
fi

say "deleting b frees what it alone mapped: its 16 copies and a's old block"
rm "$M/b"
sync "$M/a"
for _ in $(seq 50); do
	[ "$(used)" = "$u0" ] && break
	sleep 0.1
done
[ "$(used)" = "$u0" ] || fail "used $(used) after rm b, expected $u0"
dd if=/dev/urandom of="$T/x" bs=4K count=1 status=none
dd if="$T/x" of="$M/a" bs=4K seek=1 conv=notrunc status=none
sync "$M/a"
[ "$(used)" = "$u0" ] || fail "a's write after rm b: used $(used), expected $u0"
[ "$suma" != "$(sha256sum < "$M/a")" ] || fail "a unchanged after writes"

finish
