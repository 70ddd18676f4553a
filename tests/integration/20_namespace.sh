#!/bin/bash
# 20_namespace: the mounted pool's names (DESIGN.md 1.3): create by truncate
# and open(O_CREAT), resize, rename, delete (also while open), snapshot sets
# by mkdir/rmdir/mv, read-only members, ownership, inode numbers, statfs.
. "$(dirname "$0")/lib.sh"
set -eu
require_root
setup

format 256M
create pre 8M
start_daemon

say "the root lists devices and .snapshots"
[ "$(ls -A "$M")" = ".snapshots
pre" ] || fail "root lists: $(ls -A "$M" | tr '\n' ' ')"
[ -d "$M/.snapshots" ] || fail ".snapshots is not a directory"
[ "$(stat -c %s "$M/pre")" = 8388608 ] || fail "size of pre"
[ "$(stat -c '%a %u %g' "$M/pre")" = "600 0 0" ] || fail "pre is not 0600 root: $(stat -c '%a %u %g' "$M/pre")"
[ "$(blocks "$M/pre")" = 0 ] || fail "a new volume has blocks"

say "truncate -s on a new name creates, on an existing one resizes"
truncate -s 64M "$M/v1"
[ "$(stat -c %s "$M/v1")" = 67108864 ] || fail "v1 size"
tc list "$P" | grep -q '^v1 ' || fail "thinctl list does not show v1"
truncate -s 32M "$M/v1"
[ "$(stat -c %s "$M/v1")" = 33554432 ] || fail "v1 shrink"
touch "$M/empty"
[ "$(stat -c %s "$M/empty")" = 0 ] || fail "open(O_CREAT) makes a 0-byte volume"
umask 077 && touch "$M/private" && umask 022
[ "$(stat -c %a "$M/private")" = 600 ] || fail "create ignores the mode"

say "writes land, st_blocks counts mapped blocks"
dd if=/dev/urandom of="$T/pattern" bs=64K count=16 status=none
dd if="$T/pattern" of="$M/v1" bs=64K seek=1 conv=notrunc,fsync status=none
[ "$(blocks "$M/v1")" = $((16 * 128)) ] || fail "st_blocks $(blocks "$M/v1") after 16 blocks"
cmp -n 1048576 "$T/pattern" <(dd if="$M/v1" bs=64K skip=1 count=16 status=none) ||
	fail "read back differs"
[ "$(head -c 65536 "$M/v1" | tr -d '\0' | wc -c)" = 0 ] || fail "unwritten block not zeros"
[ "$(mapped v1)" = 16 ] || fail "thinctl list mapped $(mapped v1)"

say "a write past the end grows the volume (issue 17: it was EFBIG)"
dd if=/dev/urandom of="$M/v1" bs=4K count=1 seek=8193 conv=notrunc status=none
[ "$(stat -c %s "$M/v1")" = $((33554432 + 8192)) ] || fail "size after a write past the end"
cmp -n 4096 /dev/zero <(dd if="$M/v1" bs=4K skip=8192 count=1 status=none) || fail "gap not zeros"
truncate -s 32M "$M/v1"

say "chmod and chown persist; inode numbers are stable"
chmod 640 "$M/v1"
chown 12:34 "$M/v1"
[ "$(stat -c '%a %u %g' "$M/v1")" = "640 12 34" ] || fail "chmod/chown"
ino=$(stat -c %i "$M/v1")

say "names: valid, invalid, too long, taken"
truncate -s 1M "$M/a b"
[ -f "$M/a b" ] || fail "'a b' is a valid name"
expect_fail "Invalid argument" truncate -s 1M "$M/.x"
expect_fail "File name too long" truncate -s 1M "$M/$(printf 'n%.0s' $(seq 256))"
n255=$(printf 'n%.0s' $(seq 255))
truncate -s 1M "$M/$n255" || fail "a 255-byte name is valid"
rm "$M/$n255"
expect_fail "Operation not permitted" mkdir "$M/dir"
expect_fail "Operation not permitted" ln -s pre "$M/link"
expect_fail "Operation not permitted" ln "$M/pre" "$M/hard"

say "mv renames; onto an existing volume it replaces it, as rename(2) does"
mv "$M/a b" "$M/ab"
[ -f "$M/ab" ] && [ ! -e "$M/a b" ] || fail "rename"
truncate -s 1M "$M/x1" "$M/x2"
printf 'from-x1' | dd of="$M/x1" conv=notrunc status=none
printf 'from-x2' | dd of="$M/x2" conv=notrunc status=none
mv -n "$M/x1" "$M/x2"   # RENAME_NOREPLACE: nothing happens
[ -f "$M/x1" ] && [ "$(head -c 7 "$M/x2")" = from-x2 ] || fail "mv -n replaced"
mv -T "$M/x1" "$M/x2"
[ ! -e "$M/x1" ] && [ "$(head -c 7 "$M/x2")" = from-x1 ] || fail "mv did not replace"
rm "$M/x2"
expect_fail "" mv "$M/ab" "$M/.hidden"  # EINVAL; mv words it oddly
[ -f "$M/ab" ] || fail "a refused rename lost ab"

say "mkdir .snapshots/S takes a set of every volume"
mkdir "$M/.snapshots/s1"
[ "$(ls "$M/.snapshots/s1" | tr '\n' ' ')" = "ab empty pre private v1 " ] ||
	fail "set lists: $(ls "$M/.snapshots/s1" | tr '\n' ' ')"
cmp "$M/v1" "$M/.snapshots/s1/v1" || fail "snapshot differs from its origin"
[ "$(stat -c %a "$M/.snapshots/s1/v1")" = 440 ] || fail "member mode $(stat -c %a "$M/.snapshots/s1/v1")"
expect_fail "Invalid argument" mkdir "$M/.snapshots/.s"
expect_fail "File exists" mkdir "$M/.snapshots/s1"
expect_fail "Operation not permitted" truncate -s 1M "$M/.snapshots/x"

say "set members are read-only"
expect_fail "Read-only file system" dd if=/dev/zero of="$M/.snapshots/s1/v1" bs=4K count=1 conv=notrunc status=none
expect_fail "Read-only file system" truncate -s 1M "$M/.snapshots/s1/v1"
expect_fail "Read-only file system" rm "$M/.snapshots/s1/v1"
expect_fail "Read-only file system" mv "$M/.snapshots/s1/v1" "$M/.snapshots/s1/w"
expect_fail "Read-only file system" chmod 600 "$M/.snapshots/s1/v1"
expect_fail "Read-only file system" truncate -s 1M "$M/.snapshots/s1/new"
expect_fail "Read-only file system" fallocate -p -o 0 -l 64K "$M/.snapshots/s1/v1"
cmp "$M/v1" "$M/.snapshots/s1/v1" || fail "a refused write changed the snapshot"

say "the origin changes, the snapshot does not"
dd if=/dev/zero of="$M/v1" bs=64K seek=1 count=1 conv=notrunc status=none
cmp -s "$M/v1" "$M/.snapshots/s1/v1" && fail "origin did not change"
cmp -n 1048576 "$T/pattern" <(dd if="$M/.snapshots/s1/v1" bs=64K skip=1 count=16 status=none) ||
	fail "snapshot changed with its origin"

say "mv and rmdir of sets"
mv "$M/.snapshots/s1" "$M/.snapshots/monday"
[ -f "$M/.snapshots/monday/v1" ] && [ ! -e "$M/.snapshots/s1" ] || fail "set rename"
tc list "$P" | grep -q '^monday/v1 ' || fail "thinctl list misses monday/v1"
mkdir "$M/.snapshots/s2"
expect_fail "Operation not permitted" mv "$M/.snapshots/s2" "$M/s2"
expect_fail "Read-only file system" mv "$M/pre" "$M/.snapshots/s2/pre"
rmdir "$M/.snapshots/s2"
[ "$(ls "$M/.snapshots")" = monday ] || fail "rmdir of a non-empty set"

say "rm of an open volume: gone from the namespace, readable until closed"
exec 7< "$M/ab"
rm "$M/ab"
[ ! -e "$M/ab" ] || fail "rm left the name"
tc list "$P" | grep -q '^ab ' && fail "thinctl list still shows ab"
head -c 4096 <&7 > /dev/null || fail "read from the unlinked open volume"
exec 7<&-
truncate -s 1M "$M/ab"
[ "$(blocks "$M/ab")" = 0 ] || fail "a new volume with an old name has blocks"

say "rm of a volume frees its blocks"
used0=$(used)
truncate -s 8M "$M/tmp"
dd if=/dev/urandom of="$M/tmp" bs=64K count=8 conv=notrunc,fsync status=none
[ "$(used)" = $((used0 + 8)) ] || fail "used $(used), expected $((used0 + 8))"
rm "$M/tmp"
# the space comes back in the background (issue 13): a moment later
for _ in $(seq 50); do [ "$(used)" = "$used0" ] && break; sleep 0.1; done
[ "$(used)" = "$used0" ] || fail "rm did not free: used $(used), expected $used0"

say "statfs: capacity and free blocks of the pool"
read -r bsize blocks_total bfree <<< "$(stat -f -c '%S %b %f' "$M")"
[ "$bsize" = 65536 ] || fail "f_frsize $bsize"
[ "$blocks_total" = 4096 ] || fail "f_blocks $blocks_total"
[ "$bfree" = $((4096 - $(used))) ] || fail "f_bfree $bfree, used $(used)"

say "ftruncate works on a volume unlinked while open"
python3 - "$M" <<'PYEOF' || fail "ftruncate after unlink"
import os, sys
p = os.path.join(sys.argv[1], "ft")
fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)
os.ftruncate(fd, 1 << 20)
os.pwrite(fd, b"x" * 4096, 0)
os.unlink(p)
os.ftruncate(fd, 8192)
assert os.fstat(fd).st_size == 8192
os.ftruncate(fd, 100)
assert os.pread(fd, 200, 0) == b"x" * 100
os.close(fd)
PYEOF

say "a remount keeps names, owners and inode numbers"
stop_daemon || fail "thinfs exited non-zero"
start_daemon
[ "$(stat -c '%a %u %g %i' "$M/v1")" = "640 12 34 $ino" ] || fail "after remount: $(stat -c '%a %u %g %i' "$M/v1")"
[ -f "$M/.snapshots/monday/v1" ] || fail "set lost"

finish
