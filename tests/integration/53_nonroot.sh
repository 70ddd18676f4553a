#!/bin/bash
# 53_nonroot: an unprivileged user formats a pool, creates a volume with
# thinctl (it is the user's, not root's: issue 17 recorded uid 0), mounts it
# with thinfs through fusermount3 (the daemon failed on "failed to open
# /dev/fuse" instead), sees every volume as their own, imports an image with
# cp, and unmounts with fusermount3 -u; the pool checks clean.  It runs as a
# temporary system user made and removed here.  fusermount3 (libfuse 3.14)
# opens /dev/fuse as the user, so where /dev/fuse is 0600 the test makes it
# 0666 (udev's default) for its run and puts the mode back at the end;
# THINFS_NO_DEVFUSE_CHMOD=1 skips instead.
. "$(dirname "$0")/lib.sh"
set -eu
require_root
require_cmd fusermount3 useradd userdel runuser
setup

U=thinfs-t$$
DEVMODE=$(stat -c %a /dev/fuse)
UPID=""
cleanup_user() {
	local pid
	if grep -q " $T/umnt " /proc/self/mounts; then
		timeout 10 umount "$T/umnt" 2> /dev/null || timeout 10 umount -l "$T/umnt"
	fi
	# the daemon this test started (it daemonized: its pid is in the pool's lock)
	pid=$(sed -n 's/^thinfs pid \([0-9]*\) .*/\1/p' "$T/upool/lock" 2> /dev/null || true)
	if [ -n "$pid" ] && [ -n "$UPID" ] && [ "$pid" = "$UPID" ] && kill -0 "$pid" 2> /dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
	fi
	[ "$(stat -c %a /dev/fuse)" = "$DEVMODE" ] || chmod "$DEVMODE" /dev/fuse
	if id "$U" > /dev/null 2>&1; then
		userdel "$U" || echo "53_nonroot: could not remove user $U" >&2
	fi
	return 0
}
trap 'rc=$?; cleanup_user; teardown $rc' EXIT

useradd --system --no-create-home --shell /usr/sbin/nologin "$U" || fail "useradd $U"
uid=$(id -u "$U")
gid=$(id -g "$U")
chown "$U:" "$T"
chmod 755 "$T"
if ! runuser -u "$U" -- test -r /dev/fuse -a -w /dev/fuse; then
	[ -z "${THINFS_NO_DEVFUSE_CHMOD:-}" ] || skip "/dev/fuse is $DEVMODE: unprivileged FUSE is off here"
	chmod 0666 /dev/fuse
fi
as_user() { runuser -u "$U" -- "$@"; }

say "thinctl as the user: the pool and the volume are the user's"
as_user "$THINCTL" format "$T/upool" --data-size 256M > /dev/null
as_user "$THINCTL" create "$T/upool" v1 16M
# (the owner shows in the mount below: thinctl has no field for it)

say "thinfs as the user mounts through fusermount3"
as_user mkdir "$T/umnt"
as_user "$THINFS" "$T/upool" "$T/umnt" 2> "$T/umount.err" || { cat "$T/umount.err"; fail "user mount"; }
UPID=$(sed -n 's/^thinfs pid \([0-9]*\) .*/\1/p' "$T/upool/lock")
# (root may not even stat a user's private mount: read the mount table)
grep " $T/umnt fuse.thinfs " /proc/self/mounts | grep -q "user_id=$uid" ||
	fail "no mount of the user's at $T/umnt: $(grep " $T/umnt " /proc/self/mounts)"
[ "$(as_user stat -c '%u %g %a' "$T/umnt/v1")" = "$uid $gid 600" ] ||
	fail "thinctl create's v1 shows as $(as_user stat -c '%u %g %a' "$T/umnt/v1"), not $uid $gid 600"

say "volumes the user makes through the mount are the user's; cp imports"
head -c $((3 * 1048576 + 777)) /dev/urandom > "$T/img"
chmod 644 "$T/img"
as_user cp "$T/img" "$T/umnt/v2"
as_user cmp "$T/img" "$T/umnt/v2" || fail "v2 differs"
as_user truncate -s 1M "$T/umnt/v3"
[ "$(as_user stat -c '%u %g' "$T/umnt/v2")" = "$uid $gid" ] || fail "v2 not the user's"
[ "$(as_user stat -c '%u %g' "$T/umnt/v3")" = "$uid $gid" ] || fail "v3 not the user's"
# private: root is not let in without allow_other
stat "$T/umnt/v1" > /dev/null 2>&1 && fail "root could stat a private user mount"

say "fusermount3 -u unmounts; the daemon closes the pool cleanly"
as_user fusermount3 -u "$T/umnt" || fail "fusermount3 -u"
for _ in $(seq 50); do kill -0 "$UPID" 2> /dev/null || break; sleep 0.1; done
kill -0 "$UPID" 2> /dev/null && fail "the user's daemon did not exit"
UPID=""
as_user "$THINCTL" check "$T/upool" > "$T/ucheck" 2>&1 || { cat "$T/ucheck"; fail "check"; }
as_user "$THINCTL" list "$T/upool" | grep -q "^v2 " || fail "v2 not in the pool"
echo "PASS $TEST_NAME"
