#!/bin/bash
# 51_handles: every operation through an open handle (ftruncate, fchmod,
# fchown, posix_fallocate, fsync, a write past the end, copy_file_range out
# of and into it) acts on the device the handle opened, after an unlink, an
# unlink and a new volume of the same name, or a rename onto its name
# (issue 17: fallocate, fchmod and fchown reached the new volume).  Then
# with allow_other as an unprivileged user: the user's old handle changes
# the user's own device, never root's new volume of that name.
. "$(dirname "$0")/lib.sh"
set -eu
require_root
HANDLES=$THINFS_BUILD/thinfs-handles
[ -x "$HANDLES" ] || skip "build thinfs-handles first (make)"
setup

format 256M
start_daemon

say "as root: every operation x every way the name moves on"
"$HANDLES" "$M" > "$T/root.log" 2>&1 || { cat "$T/root.log"; fail "handle cases as root"; }
tail -n 1 "$T/root.log"

say "as a user under allow_other: the old handle never reaches root's new volume"
stop_daemon || fail "thinfs exited non-zero"
start_daemon -o allow_other
chmod 755 "$T"
"$HANDLES" "$M" --user 65534 > "$T/user.log" 2>&1 || { cat "$T/user.log"; fail "handle cases as a user"; }
tail -n 1 "$T/user.log"

finish
