#!/bin/bash
# 26_refusals: what thinfs refuses, with a one-line reason and a non-zero
# exit, leaving no mount or process: a second daemon on a pool in use (the
# message names the holder), another user's thinctl change through the
# daemon, bad mountpoints, unknown options.  And permissions: private by default,
# allow_other only with default_permissions.
. "$(dirname "$0")/lib.sh"
set -eu
require_root
require_cmd setpriv
setup

format 64M
create v 8M
M2=$T/mnt2
mkdir -p "$M2"
echo "$M2" >> "$T/fsmnts" # unmounted by teardown should a refusal fail to refuse

say "--help and --version"
"$THINFS" --help | grep -q "usage: thinfs POOL MOUNTPOINT" || fail "--help"
"$THINFS" --version | grep -q "^thinfs " || fail "--version"

say "bad mountpoints are refused before anything happens"
expect_fail "No such file or directory" "$THINFS" "$P" "$T/missing"
touch "$T/file"
expect_fail "is not a directory" "$THINFS" "$P" "$T/file"
mkdir -p "$T/full" && touch "$T/full/x"
expect_fail "is not empty" "$THINFS" "$P" "$T/full"
expect_fail "No such file or directory" "$THINFS" "$T/nopool" "$M2"
expect_fail "not a thinfs pool" "$THINFS" "$T/full" "$M2"
expect_fail "unknown option" "$THINFS" "$P" "$M2" -o no_such_option
expect_fail "max_threads" "$THINFS" "$P" "$M2" -o max_threads=0
expect_fail "max_threads" "$THINFS" "$P" "$M2" -o max_threads=1025
expect_fail "invalid parameter" "$THINFS" "$P" "$M2" -o max_threads=lots
mountpoint -q "$M2" && fail "a refused daemon mounted"

start_daemon

say "a second daemon on the pool is refused and names the holder"
for mode in -f ""; do
	# shellcheck disable=SC2086
	out=$("$THINFS" "$P" "$M2" $mode 2>&1) && fail "second daemon ($mode) started"
	case $out in *"thinfs pid $PID on $M"*) ;; *) fail "refusal does not name the holder: $out" ;; esac
	[ "$(echo "$out" | wc -l)" = 1 ] || fail "refusal is not one line: $out"
done
ln -s "$P" "$T/alias"
expect_fail "thinfs pid $PID on $M" "$THINFS" "$T/alias" "$M2" -f
mountpoint -q "$M2" && fail "a refused daemon mounted"

su_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
say "changing thinctl commands go through the daemon (issue 13); reading ones work"
tc create "$P" w 1M || fail "thinctl create on a mounted pool"
[ -f "$M/w" ] || fail "a volume created through the daemon is not in the mount"
tc delete "$P" w || fail "thinctl delete on a mounted pool"
[ ! -e "$M/w" ] || fail "a volume deleted through the daemon is still in the mount"
expect_fail "permission denied" su_nobody "$THINCTL" create "$P" x 1M
[ ! -e "$M/x" ] || fail "another user's create went through"
tc list "$P" | grep -q '^v ' || fail "thinctl list on a mounted pool"
tc status "$P" > /dev/null || fail "thinctl status on a mounted pool"

say "private by default: other users get nothing"
expect_fail "Permission denied" su_nobody ls "$M"
stop_daemon || fail "thinfs exited non-zero"

say "allow_other brings default_permissions"
chmod 755 "$T" # let nobody reach the mountpoint
start_daemon -o allow_other
opts=$(grep " $M " /proc/self/mounts | cut -d' ' -f4)
case ,$opts, in *,default_permissions,*allow_other,* | *,allow_other,*default_permissions,*) ;;
*) fail "allow_other without default_permissions: $opts" ;; esac
case ,$opts, in *,nosuid,*nodev,*) ;; *) fail "nosuid,nodev missing: $opts" ;; esac
grep " $M " /proc/self/mounts | grep -q "^$P $M fuse.thinfs " || fail "fsname/subtype: $(grep " $M " /proc/self/mounts)"
su_nobody ls "$M" | grep -qx v || fail "allow_other: nobody cannot list"
# the socket reachable: the daemon itself refuses by the caller's uid
chmod 755 "$P"
expect_fail "only root or the pool's owner" su_nobody "$THINCTL" create "$P" x 1M
[ ! -e "$M/x" ] || fail "another user's create went through the daemon"
chmod 700 "$P"
expect_fail "Permission denied" su_nobody head -c 1 "$M/v"
chmod 644 "$M/v"
su_nobody head -c 1 "$M/v" > /dev/null || fail "0644 volume not readable by others"
expect_fail "Permission denied" su_nobody dd if=/dev/zero of="$M/v" bs=1 count=1 conv=notrunc status=none
expect_fail "Permission denied" su_nobody mkdir "$M/.snapshots/x"
stop_daemon || fail "thinfs exited non-zero"

say "max_threads=2: six parallel writers through two workers"
start_daemon -o max_threads=2
head -c 1M /dev/urandom > "$T/rand"
dds=
for i in 1 2 3 4 5 6; do
	dd if="$T/rand" of="$M/v" bs=64k count=1 skip="$i" seek="$i" oflag=direct conv=notrunc status=none &
	dds="$dds $!"
done
for d in $dds; do wait "$d" || fail "dd $d"; done
cmp -i 65536 -n 393216 "$T/rand" "$M/v" || fail "parallel writes do not read back"

finish
