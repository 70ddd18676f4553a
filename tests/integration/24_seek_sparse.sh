#!/bin/bash
# 24_seek_sparse: SEEK_DATA/SEEK_HOLE report exactly the mapped blocks
# (whole blocks, also after partial writes and punches), so cp --sparse,
# dd conv=sparse and backup tools copy only data.
. "$(dirname "$0")/lib.sh"
set -eu
require_root
require_cmd xfs_io
setup

format 256M
start_daemon
K64=65536

seekmap() { xfs_io -r -c "seek -a -r 0" "$1" | tail -n +2 | tr '\t\n' ' '; }

say "data and holes follow the mapped blocks"
truncate -s 1M "$M/v"
for b in 0 2 3 7; do
	dd if=/dev/urandom of="$M/v" bs=64K seek=$b count=1 conv=notrunc status=none
done
got=$(seekmap "$M/v")
want="DATA 0 HOLE $((1 * K64)) DATA $((2 * K64)) HOLE $((4 * K64)) DATA $((7 * K64)) HOLE $((8 * K64)) "
[ "$got" = "$want" ] || fail "seek map '$got', expected '$want'"

say "a partial write maps its whole block"
dd if=/dev/urandom of="$M/v" bs=512 seek=$((10 * 128 + 3)) count=1 conv=notrunc status=none
xfs_io -r -c "seek -d $((9 * K64))" "$M/v" | grep -q "DATA	$((10 * K64))" || fail "SEEK_DATA into block 10"
xfs_io -r -c "seek -h $((10 * K64))" "$M/v" | grep -q "HOLE	$((11 * K64))" || fail "SEEK_HOLE after block 10"

say "past the last data: ENXIO; SEEK_HOLE in the tail hole: the offset itself"
xfs_io -r -c "seek -d $((11 * K64))" "$M/v" | grep -q "DATA	EOF" || fail "SEEK_DATA after the last block"
xfs_io -r -c "seek -h $((12 * K64 + 5))" "$M/v" | grep -q "HOLE	$((12 * K64 + 5))" || fail "SEEK_HOLE in a hole"

say "a punched block becomes a hole"
fallocate -p -o $((2 * K64)) -l $K64 "$M/v"
got=$(seekmap "$M/v")
want="DATA 0 HOLE $((1 * K64)) DATA $((3 * K64)) HOLE $((4 * K64)) DATA $((7 * K64)) HOLE $((8 * K64)) DATA $((10 * K64)) HOLE $((11 * K64)) "
[ "$got" = "$want" ] || fail "after punch '$got', expected '$want'"

say "cp --sparse=always out of the mount stays sparse and equal"
truncate -s 256M "$M/big"
dd if=/dev/urandom of="$M/big" bs=1M seek=100 count=2 conv=notrunc status=none
dd if=/dev/urandom of="$M/big" bs=1M seek=250 count=1 conv=notrunc status=none
cp --sparse=always "$M/big" "$T/copy"
cmp "$M/big" "$T/copy" || fail "copy differs"
[ "$(blocks "$T/copy")" -le $((3 * 2048 + 256)) ] || fail "copy not sparse: $(blocks "$T/copy") sectors"
rm "$T/copy"

say "copying an image in with dd conv=sparse keeps it thin"
truncate -s 64M "$T/img"
dd if=/dev/urandom of="$T/img" bs=64K seek=5 count=3 conv=notrunc status=none
truncate -s 64M "$M/img"
dd if="$T/img" of="$M/img" bs=64K conv=notrunc,sparse status=none
cmp "$T/img" "$M/img" || fail "image differs"
[ "$(blocks "$M/img")" = $((3 * 128)) ] || fail "image not thin: $(blocks "$M/img") sectors"

say "a snapshot has the same map"
mkdir "$M/.snapshots/s"
[ "$(seekmap "$M/.snapshots/s/v")" = "$(seekmap "$M/v")" ] || fail "snapshot map differs"

finish
