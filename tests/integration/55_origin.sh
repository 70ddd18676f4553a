#!/bin/bash
# 55_origin: thin volumes over an external origin (issue 14), through a real
# mount.  An image made with qemu-img and qemu-io (qcow2, converted to raw,
# with a partial last block) is the origin of a volume made offline: the
# mount reads the image's bytes (cmp, qemu-img compare, qemu-io read -P),
# zeros past its end; qemu-io writes into it, and the image never changes.
# An ext4 image on a read-only loop device is the origin of a volume made
# while mounted (through the daemon): its files read back through a loop
# device on the thin volume, a new file goes into the pool only.  A
# snapshot set keeps the origin, and send/receive makes a self-contained
# copy.  Then the origin changes behind the pool's back (its mtime, then it
# vanishes): the volume is refused with a clear error in the daemon's log
# and a warning from thinctl check, and is served again once the origin is
# back as it was.
. "$(dirname "$0")/lib.sh"
set -eu
require_root
require_cmd qemu-img qemu-io mkfs.ext4 e2fsck
setup

# qemu-io's exit status is 0 even when a read -P finds other bytes
qio_verified() {
	! grep -q "Pattern verification failed" "$T/qio.log" || fail "qemu-io: $(cat "$T/qio.log")"
}

# ---- the origins ----
say "an image made with qemu-img/qemu-io, converted to raw"
qemu-img create -q -f qcow2 "$T/base.qcow2" 40M
qemu-io -f qcow2 -c "write -q -P 0xab 0 1M" -c "write -q -P 0x5c 17M 300k" \
	-c "write -q -P 0x3d 39M 1M" "$T/base.qcow2" > /dev/null
qemu-img convert -f qcow2 -O raw "$T/base.qcow2" "$T/base.raw"
head -c 1000 /dev/urandom >> "$T/base.raw" # a partial last block
chmod 0444 "$T/base.raw"
S=$(stat -c %s "$T/base.raw")
SUM=$(sha256sum < "$T/base.raw")

say "an ext4 image with files, on a read-only loop device"
truncate -s 64M "$T/ext4.img"
mkfs.ext4 -q -F "$T/ext4.img"
fs_mount "$T/ext4.img" "$T/src" -o loop
write_tree "$T/src/tree" 40
(cd "$T/src" && find tree -type f -print0 | sort -z | xargs -0 sha256sum) > "$T/tree.sums"
fs_umount "$T/src"
EXT_SUM=$(sha256sum < "$T/ext4.img")
LO=$(loop_attach "$T/ext4.img" -r)

# ---- offline create, read through the mount ----
format 256M
tc create "$P" img - --origin "$T/base.raw"
tc create "$P" big 64M --origin "$T/base.raw"
expect_fail "No such file" tc create "$P" nope 1M --origin "$T/missing"
expect_fail "not a regular file or block device" tc create "$P" nope 1M --origin "$T"
tc list "$P" | grep -q "^img .*\[$T/base.raw\]" || fail "list does not show the origin"
tc list --json "$P" | grep -q "\"external_origin\":\"$T/base.raw\"" || fail "list --json"
tc info "$P" img | grep -q "^external origin: $T/base.raw" || fail "info"
tc info "$P" img | grep -q "^origin state:    as recorded" || fail "info: origin state"
start_daemon

say "the volume reads the image's bytes"
[ "$(stat -c %s "$M/img")" = "$S" ] || fail "size $(stat -c %s "$M/img"), the image's $S"
cmp "$M/img" "$T/base.raw" || fail "the volume does not read as its origin"
qemu-img compare -q -f raw -F raw "$M/img" "$T/base.raw" || fail "qemu-img compare"
qemu-io -f raw -r -c "read -q -P 0xab 0 1M" -c "read -q -P 0x5c 17M 300k" \
	-c "read -q -P 0 1M 16M" -c "read -q -P 0x3d 39M 1M" "$M/img" > "$T/qio.log" 2>&1 ||
	fail "qemu-io read: $(cat "$T/qio.log")"
qio_verified
say "past the origin's end: zeros"
cmp -n "$S" "$M/big" "$T/base.raw" || fail "big: the origin's part"
cmp -n $((64 * 1048576 - S)) <(tail -c +$((S + 1)) "$M/big") /dev/zero || fail "big: past the end"
say "cp --sparse does not skip the origin's data (no holes before its end)"
cp --sparse=always "$M/img" "$T/copy.raw"
cmp "$T/copy.raw" "$T/base.raw" || fail "cp --sparse skipped origin data"
rm -f "$T/copy.raw"

say "writes go to the pool: a partial block keeps the origin's rest"
qemu-io -f raw -c "write -q -P 0x77 4608 512" -c "write -q -P 0x66 20M 64k" "$M/img" > /dev/null
qemu-io -f raw -r -c "read -q -P 0xab 0 4608" -c "read -q -P 0x77 4608 512" \
	-c "read -q -P 0xab 5120 1043456" -c "read -q -P 0x66 20M 64k" "$M/img" > "$T/qio.log" 2>&1 ||
	fail "qemu-io read after the writes: $(cat "$T/qio.log")"
qio_verified
[ "$(mapped img)" -ge 2 ] || fail "the writes mapped $(mapped img) blocks"
sync
[ "$(sha256sum < "$T/base.raw")" = "$SUM" ] || fail "the origin was written"

# ---- online create over a block device; ext4 through the thin volume ----
say "an origin inside a thinfs mount is refused (its reads would come back here)"
expect_fail "inside a thinfs mount" tc create "$P" loopy - --origin "$M/img"
say "create --origin through the daemon, over a read-only loop device"
tc create "$P" fsv - --origin "$LO"
[ -f "$M/fsv" ] || fail "fsv not in the mount"
[ "$(stat -c %s "$M/fsv")" = $((64 * 1048576)) ] || fail "fsv size"
L=$(loop_attach "$M/fsv")
fs_mount "$L" "$T/fs"
(cd "$T/fs" && sha256sum -c --quiet "$T/tree.sums") || fail "files of the origin"
echo "new data" > "$T/fs/tree/new-file"
sync
fs_umount "$T/fs"
e2fsck -fn "$L" > "$T/fsck.log" 2>&1 || { cat "$T/fsck.log"; fail "e2fsck on the thin volume"; }
fs_mount "$L" "$T/fs" -o ro
grep -q "new data" "$T/fs/tree/new-file" || fail "new file"
fs_umount "$T/fs"
loop_detach "$L"
[ "$(sha256sum < "$T/ext4.img")" = "$EXT_SUM" ] || fail "the ext4 origin was written"

# ---- snapshots and send ----
say "a snapshot set keeps the origin; send makes a self-contained copy"
mkdir "$M/.snapshots/s1"
cmp "$M/.snapshots/s1/img" "$M/img" || fail "the snapshot does not read as the volume"
tc send "$P" s1/img > "$T/img.stream"
stop_daemon || fail "thinfs exited non-zero"
tc receive "$P" copy < "$T/img.stream" # (receive needs the pool unmounted)
start_daemon
cmp "$M/copy" "$M/img" || fail "the received copy differs"
tc list --json "$P" | sed 's/},{/}\n{/g' | grep '"name":"copy"' |
	grep -q '"external_origin":""' || fail "the copy has an origin"

# ---- the origin changes behind the pool's back ----
say "an origin whose mtime changed: the volume is refused, the others served"
OLD_MTIME=$(stat -c %y "$T/base.raw")
touch -d "2001-01-01 00:00:00" "$T/base.raw"
if cat "$M/img" > /dev/null 2> "$T/cat.err"; then fail "a changed origin was served"; fi
grep -q "Stale file handle" "$T/cat.err" || fail "open said: $(cat "$T/cat.err")"
grep -q "origin $T/base.raw of volume 'img' changed since it was recorded (mtime_ns" \
	"$T/daemon.log" || fail "no clear error in the daemon's log"
cmp -n 4096 "$M/copy" "$M/copy" || fail "another volume"
tc check "$P" > "$T/check.out" 2>&1 || fail "check exited non-zero: $(cat "$T/check.out")"
grep -q "^warning: origin $T/base.raw of volume 'img' changed" "$T/check.out" ||
	fail "check: $(cat "$T/check.out")"
tc info "$P" img | grep -q "^origin state: .*changed since it was recorded" || fail "info"
say "back as it was: served again"
touch -d "$OLD_MTIME" "$T/base.raw"
cmp -n 4096 "$M/img" "$T/base.raw" || fail "not served after the origin came back"
say "an origin that vanished: refused"
mv "$T/base.raw" "$T/base.moved"
if head -c 1 "$M/big" > /dev/null 2>&1; then fail "a vanished origin was served"; fi
grep -q "origin $T/base.raw of volume 'big' is gone" "$T/daemon.log" || fail "log: vanished"
mv "$T/base.moved" "$T/base.raw"
cmp -n 4096 "$M/big" "$T/base.raw" || fail "not served after the origin came back"

tc delete "$P" fsv
loop_detach "$LO"
finish
