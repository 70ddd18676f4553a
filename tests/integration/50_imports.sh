#!/bin/bash
# 50_imports: a write past the end grows a volume as it grows a regular file
# (issue 17: cp, dd and cat left a 0-byte volume with "File too large"), so
# cp, dd, cat >, tar and rsync --inplace import a disk image, each checked
# by sha256 and by the size, also after a remount; fallocate and write
# agree; only the largest device size is EFBIG.
. "$(dirname "$0")/lib.sh"
set -eu
require_root
require_cmd xfs_io sha256sum tar
setup

format 1G
start_daemon

# an image of data and holes, ending in a hole (cp and dd must ftruncate it
# to its size) and one ending in data
truncate -s 24M "$T/img"
dd if=/dev/urandom of="$T/img" bs=64K seek=3 count=5 conv=notrunc status=none
dd if=/dev/urandom of="$T/img" bs=1K seek=9000 count=7 conv=notrunc status=none
dd if=/dev/urandom of="$T/img" bs=1 seek=$((20 * 1048576 + 3)) count=4097 conv=notrunc status=none
head -c $((5 * 1048576 + 12345)) /dev/urandom > "$T/tail.img"
want=$(sha256sum < "$T/img")
want_tail=$(sha256sum < "$T/tail.img")

# same NAME SOURCE_SUM SOURCE: content and size of MNT/NAME
same() {
	[ "$(stat -c %s "$M/$1")" = "$(stat -c %s "$3")" ] ||
		fail "$1: size $(stat -c %s "$M/$1"), expected $(stat -c %s "$3")"
	[ "$(sha256sum < "$M/$1")" = "$2" ] || fail "$1: content differs"
}

say "cp, also sparse, and cp of an image ending in data"
cp "$T/img" "$M/cp1"
same cp1 "$want" "$T/img"
cp --sparse=always "$T/img" "$M/cp2"
same cp2 "$want" "$T/img"
[ "$(blocks "$M/cp2")" -le $((8 * 128)) ] || fail "cp --sparse=always: $(blocks "$M/cp2") sectors"
cp "$T/tail.img" "$M/cp3"
same cp3 "$want_tail" "$T/tail.img"

say "dd, buffered and O_DIRECT, with and without conv=sparse"
dd if="$T/img" of="$M/dd1" bs=1M status=none
same dd1 "$want" "$T/img"
dd if="$T/img" of="$M/dd2" bs=64K conv=sparse status=none
same dd2 "$want" "$T/img"
dd if="$T/tail.img" of="$M/dd3" bs=1M oflag=direct status=none 2> /dev/null ||
	dd if="$T/tail.img" of="$M/dd3" bs=1M status=none
same dd3 "$want_tail" "$T/tail.img"
dd if="$T/tail.img" of="$M/dd4" bs=512 status=none
same dd4 "$want_tail" "$T/tail.img"

say "cat >, tar -x and rsync --sparse --inplace"
cat "$T/img" > "$M/cat1"
same cat1 "$want" "$T/img"
mkdir "$T/src" && cp --sparse=always "$T/img" "$T/src/tar1"
tar -C "$T/src" -cSf "$T/a.tar" tar1
tar -C "$M" -xSf "$T/a.tar"
same tar1 "$want" "$T/img"
if command -v rsync > /dev/null; then
	rsync --sparse --inplace "$T/img" "$M/rs1"
	same rs1 "$want" "$T/img"
	[ "$(blocks "$M/rs1")" -le $((8 * 128)) ] || fail "rsync --sparse: $(blocks "$M/rs1") sectors"
else
	say "(rsync not installed: skipped)"
fi

say "a write far past the end: the gap reads zeros, st_blocks counts the one block"
xfs_io -f -c "pwrite -S 0x61 $((1 << 40)) 100" "$M/far" > /dev/null
[ "$(stat -c %s "$M/far")" = $(((1 << 40) + 100)) ] || fail "far: size $(stat -c %s "$M/far")"
[ "$(blocks "$M/far")" = 128 ] || fail "far: $(blocks "$M/far") sectors"
cmp -n 65536 /dev/zero <(dd if="$M/far" bs=64K skip=$(((1 << 24) - 1)) count=1 status=none) ||
	fail "far: gap not zeros"
[ "$(tail -c 100 "$M/far" | tr -d a | wc -c)" = 0 ] || fail "far: data not read back"

say "fallocate grows as a write does; --keep-size does not"
truncate -s 1M "$M/fa"
fallocate -l 3M "$M/fa"
[ "$(stat -c %s "$M/fa")" = 3145728 ] || fail "fallocate: size $(stat -c %s "$M/fa")"
fallocate -n -l 8M "$M/fa"
[ "$(stat -c %s "$M/fa")" = 3145728 ] || fail "fallocate -n grew the size"
fallocate -z -o 2M -l 3M "$M/fa"
[ "$(stat -c %s "$M/fa")" = 5242880 ] || fail "zero-range past the end: $(stat -c %s "$M/fa")"

say "only the largest device size is EFBIG"
big=$(status_field max_device_size) # the pool's limit (status shows it)
[ "$big" -gt $((1 << 50)) ] || fail "max_device_size $big"
xfs_io -f -c "pwrite $((big - 4096)) 4096" "$M/huge" > /dev/null || fail "write below the limit"
[ "$(stat -c %s "$M/huge")" = $big ] || fail "huge: size $(stat -c %s "$M/huge")"
out=$(xfs_io -c "pwrite $big 4096" "$M/huge" 2>&1) || true
echo "$out" | grep -q "File too large" || fail "a write at the limit: $out"
rss=$(ps -o rss= -p "$PID")
[ "$rss" -lt 200000 ] || fail "daemon RSS $rss KiB after a write at the limit"
rm "$M/huge"

say "sizes and contents survive a remount"
stop_daemon || fail "thinfs exited non-zero"
start_daemon
same cp1 "$want" "$T/img"
same dd4 "$want_tail" "$T/tail.img"
same tar1 "$want" "$T/img"
[ "$(stat -c %s "$M/far")" = $(((1 << 40) + 100)) ] || fail "far: size lost in the remount"

finish
