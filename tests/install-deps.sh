#!/bin/sh
# Installs the build and test dependencies through apt when something is
# missing and we are root on Debian; otherwise says what is missing.
need=""
pkg-config --exists fuse3 2>/dev/null || need="$need libfuse3-dev"
command -v fusermount3 >/dev/null 2>&1 || need="$need fuse3"
pkg-config --exists liburing 2>/dev/null || need="$need liburing-dev"
pkg-config --exists sqlite3 2>/dev/null || need="$need libsqlite3-dev"
pkg-config --exists expat 2>/dev/null || need="$need libexpat1-dev"
command -v sqlite3 >/dev/null 2>&1 || need="$need sqlite3"
pkg-config --exists cmocka 2>/dev/null || need="$need libcmocka-dev"
command -v pkg-config >/dev/null 2>&1 || need="$need pkg-config"
command -v gcc >/dev/null 2>&1 || need="$need gcc make"
command -v fio >/dev/null 2>&1 || need="$need fio"
command -v mkfs.xfs >/dev/null 2>&1 || need="$need xfsprogs"
command -v mkfs.ext4 >/dev/null 2>&1 || need="$need e2fsprogs"
command -v losetup >/dev/null 2>&1 || need="$need util-linux"
command -v xxd >/dev/null 2>&1 || need="$need xxd"
command -v eatmydata >/dev/null 2>&1 || need="$need eatmydata"
command -v rsync >/dev/null 2>&1 || need="$need rsync"
command -v qemu-img >/dev/null 2>&1 || need="$need qemu-utils"
[ -z "$need" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "installing:$need"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends $need >/dev/null || { echo "apt-get install failed" >&2; exit 1; }
else
	echo "missing packages:$need (run as root on Debian to install them)" >&2
	exit 1
fi
