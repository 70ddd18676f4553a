#!/bin/bash
# 29_signals: SIGTERM and SIGHUP stop the daemon cleanly (unmounted, exit 0,
# pool closed clean), also with a volume busy under loop+ext4; kill -9 under
# loop+ext4 leaves a mount that tears down in order (filesystem, loop
# device, FUSE mount) and a pool that reopens with what was fsynced.
. "$(dirname "$0")/lib.sh"
set -eu
require_root
require_cmd mkfs.ext4
setup

format 512M
create v1 256M
start_daemon

say "SIGTERM on an idle mount: unmounted, exit 0"
kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=""
[ "$rc" = 0 ] || fail "thinfs exited $rc on SIGTERM"
grep -q " $M " /proc/self/mounts && fail "still mounted after SIGTERM"
tc check "$P" > /dev/null || fail "check after SIGTERM"

# (SIGINT works the same from a terminal; a script's background job
# ignores it, and libfuse leaves ignored signals ignored)
say "SIGHUP with ext4 busy on a loop device: exit 0, fsynced data kept"
start_daemon
L=$(loop_attach "$M/v1")
mkfs.ext4 -q -F "$L"
fs_mount "$L" "$T/fs"
head -c 4M /dev/urandom > "$T/fs/kept"
sync -f "$T/fs"
sha=$(sha256sum < "$T/fs/kept")
kill -HUP "$PID"
rc=0
wait "$PID" || rc=$?
PID=""
[ "$rc" = 0 ] || fail "thinfs exited $rc on SIGHUP"
# the FUSE mount was detached lazily; the stack above it now fails
fs_umount "$T/fs"
loop_detach "$L"
grep -q " $M " /proc/self/mounts && timeout 10 umount -l "$M"
tc check "$P" > /dev/null || fail "check after SIGHUP"
start_daemon
L=$(loop_attach "$M/v1" -r)
fs_mount "$L" "$T/fs" -o ro,noload
[ "$(sha256sum < "$T/fs/kept")" = "$sha" ] || fail "fsynced file changed"
fs_umount "$T/fs"
loop_detach "$L"

say "kill -9 under loop+ext4: teardown in order still works"
L=$(loop_attach "$M/v1")
fs_mount "$L" "$T/fs"
head -c 1M /dev/urandom > "$T/fs/more"
sync -f "$T/fs"
{ kill -KILL "$PID" && wait "$PID"; } 2> /dev/null || true
PID=""
head -c 1M /dev/urandom > "$T/fs/lost" 2> /dev/null || true
sync -f "$T/fs" 2> /dev/null || true
timeout 30 umount "$T/fs" || timeout 10 umount -l "$T/fs"
sed -i "\|^$T/fs\$|d" "$T/fsmnts"
loop_detach "$L"
timeout 10 umount "$M" || timeout 10 umount -l "$M"
tc check "$P" > "$T/check.log" 2>&1 || { cat "$T/check.log"; fail "check after kill -9"; }
start_daemon
L=$(loop_attach "$M/v1")
fs_mount "$L" "$T/fs" # replays the journal
[ "$(sha256sum < "$T/fs/kept")" = "$sha" ] || fail "file fsynced before kill -9 changed"
[ -f "$T/fs/more" ] || fail "file synced before kill -9 lost"
fs_umount "$T/fs"
e2fsck -fn "$L" > "$T/fsck.log" 2>&1 || { cat "$T/fsck.log"; fail "e2fsck after kill -9"; }

finish
