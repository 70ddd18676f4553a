/* SPDX-License-Identifier: MIT */
/*
 * pool_format.c - making a pool: the checks on the directory and on a given
 * data path (never the database itself, never inside a thinfs mount, never a
 * file holding data without --force), then the data file, meta.db and a
 * synced directory.  A refused format changes nothing.  No locks: the pool
 * does not exist yet (the lock file keeps a pool in use from being formatted).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "pool_internal.h"
#include "thinfs/pool_test.h"
#include "util.h"

int pool_check_dir_private(const char *dir, char *msg, size_t msglen)
{
	struct stat sb;

	if (stat(dir, &sb) < 0)
		return set_msg(msg, msglen, -errno, "%s: %s", dir, strerror(errno));
	if (!S_ISDIR(sb.st_mode))
		return set_msg(msg, msglen, -ENOTDIR, "%s is not a directory", dir);
	if (sb.st_mode & (S_IWGRP | S_IWOTH))
		return set_msg(msg, msglen, -EPERM,
			       "%s is writable by group or others; refusing (chmod go-w)", dir);
	return 0;
}

/* The file system type of the mount holding path, from mountinfo. */
static void mount_fstype(const char *path, char *fstype, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096], best[256] = "", mnt[4096], type[256];
	size_t bestlen = 0;

	snprintf(fstype, len, "%s", "");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		/* id parent maj:min root mountpoint opts ... - fstype source super */
		char *dash = strstr(line, " - ");
		if (!dash || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
		    sscanf(dash + 3, "%255s", type) != 1)
			continue;
		size_t ml = strlen(mnt);
		if (strncmp(path, mnt, ml) || (path[ml] != '/' && path[ml] && ml > 1))
			continue;
		if (ml >= bestlen) {
			bestlen = ml;
			snprintf(best, sizeof(best), "%s", type);
		}
	}
	fclose(f);
	snprintf(fstype, len, "%s", best);
}

/* Resolve path as far as it exists: realpath of the file, or of its directory
 * plus the last name when the file does not exist yet. */
static int canonical(const char *path, char *out)
{
	char dir[PATH_MAX], *slash;
	const char *base;

	if (realpath(path, out))
		return 0;
	if (errno != ENOENT)
		return -errno;
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash) {
		*slash = 0;
		base = slash + 1;
		if (!*dir)
			snprintf(dir, sizeof(dir), "/");
	} else {
		snprintf(dir, sizeof(dir), ".");
		base = path;
	}
	char rdir[PATH_MAX];
	if (!realpath(dir, rdir))
		return -errno;
	if (snprintf(out, PATH_MAX, "%s/%s", strcmp(rdir, "/") ? rdir : "", base) >= PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;

	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

/* ---- format ---- */

/*
 * An existing file or device given as --data.  Never a database (any pool's
 * meta.db, or its WAL); and what holds data - a block device, a file with any
 * data extent, another pool's data file - is taken over only with --force,
 * because formatting empties it.
 */
static int check_reused_data(const char *path, bool force, char *msg, size_t msglen)
{
	static const char sqlite_magic[16] = "SQLite format 3";
	unsigned char head[16] = { 0 };
	char uuid[64];
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool has_data = false;

	if (fd < 0)
		return set_msg(msg, msglen, -errno, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &sb) < 0 || pread(fd, head, sizeof(head), 0) < 0) {
		int err = errno;
		close(fd);
		return set_msg(msg, msglen, -err, "cannot read %s: %s", path, strerror(err));
	}
	uint32_t wal = (uint32_t)head[0] << 24 | head[1] << 16 | head[2] << 8 | head[3];
	if (!memcmp(head, sqlite_magic, sizeof(sqlite_magic)) || wal == 0x377f0682 ||
	    wal == 0x377f0683) {
		close(fd);
		return set_msg(msg, msglen, -EINVAL,
			       "data path %s is an SQLite database (a pool's metadata?); refusing", path);
	}
	/* a block device, or a file with any data extent */
	has_data = S_ISBLK(sb.st_mode) || lseek(fd, 0, SEEK_DATA) >= 0;
	bool foreign = fgetxattr(fd, META_UUID_XATTR, uuid, sizeof(uuid)) > 0;
	close(fd);
	if ((has_data || foreign) && !force)
		return set_msg(msg, msglen, -EEXIST,
			       "data path %s already holds %s; formatting empties it (use --force)",
			       path, foreign ? "another pool's data" : "data");
	return 0;
}

int pool_format(const char *dir, const struct pool_format_opts *opts, char *msg, size_t msglen)
{
	struct meta_pool_row row = { 0 };
	char data_real[PATH_MAX], meta_real[PATH_MAX], fstype[256];
	char *meta_path = NULL, *data_path = NULL, *lock_path = NULL;
	uint64_t bs = opts->block_size ? opts->block_size : POOL_DEFAULT_BLOCK_SIZE;
	uint64_t data_size = opts->data_size;
	bool data_exists = false, data_created = false, meta_created = false;
	bool default_data = !opts->data_path;
	struct stat sb;
	int rc, lock_fd = -1;

	if (!is_pow2(bs) || bs < POOL_MIN_BLOCK_SIZE || bs > POOL_MAX_BLOCK_SIZE)
		return set_msg(msg, msglen, -EINVAL,
			       "block size %llu is not a power of two from 4K to 1G",
			       (unsigned long long)bs);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return set_msg(msg, msglen, -errno, "cannot create %s: %s", dir, strerror(errno));
	rc = pool_check_dir_private(dir, msg, msglen);
	if (rc)
		return rc;
	meta_path = util_path_join(dir, "meta.db");
	lock_path = util_path_join(dir, "lock");
	data_path = default_data ? util_path_join(dir, "data") : strdup(opts->data_path);
	if (!meta_path || !lock_path || !data_path) {
		rc = -ENOMEM;
		goto out;
	}
	rc = canonical(meta_path, meta_real);
	if (!rc)
		rc = canonical(data_path, data_real);
	if (rc) {
		set_msg(msg, msglen, rc, "cannot resolve %s: %s", data_path, strerror(-rc));
		goto out;
	}
	/* the data may never be the database (or its journal), nor inside a thinfs mount */
	if (!strcmp(data_real, meta_real) || same_file(data_path, meta_path) ||
	    !strncmp(data_real, meta_real, strlen(meta_real))) {
		rc = set_msg(msg, msglen, -EINVAL, "data path %s is the metadata database",
			     data_path);
		goto out;
	}
	if (same_file(data_path, lock_path) || same_file(data_path, dir)) {
		rc = set_msg(msg, msglen, -EINVAL, "data path %s is part of the pool itself",
			     data_path);
		goto out;
	}
	mount_fstype(data_real, fstype, sizeof(fstype));
	if (!strcmp(fstype, "fuse.thinfs")) {
		rc = set_msg(msg, msglen, -ELOOP,
			     "data path %s is inside a thinfs mount (a pool over itself)", data_path);
		goto out;
	}
	if (lstat(meta_path, &sb) == 0) {
		if (!opts->force) {
			rc = set_msg(msg, msglen, -EEXIST,
				     "%s already holds a pool (use --force to overwrite it)", dir);
			goto out;
		}
		if (!S_ISREG(sb.st_mode)) {
			rc = set_msg(msg, msglen, -EINVAL, "%s is not a regular file", meta_path);
			goto out;
		}
	}
	/* take the lock, so a pool in use is never formatted over */
	lock_fd = open(lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (lock_fd < 0) {
		rc = set_msg(msg, msglen, -errno, "cannot open %s: %s", lock_path, strerror(errno));
		goto out;
	}
	if (flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
		char holder[256] = "";
		ssize_t n = pread(lock_fd, holder, sizeof(holder) - 1, 0);
		holder[n > 0 ? n : 0] = 0;
		holder[strcspn(holder, "\n")] = 0;
		rc = set_msg(msg, msglen, -EBUSY, "pool %s is in use by %s", dir,
			     *holder ? holder : "another process");
		goto out;
	}
	if (lstat(data_path, &sb) == 0) {
		if (S_ISLNK(sb.st_mode) && stat(data_path, &sb) < 0) {
			rc = set_msg(msg, msglen, -ENOENT, "data path %s is a dangling symlink",
				     data_path);
			goto out;
		}
		if (!S_ISREG(sb.st_mode) && !S_ISBLK(sb.st_mode)) {
			rc = set_msg(msg, msglen, -EINVAL,
				     "data path %s is not a regular file or block device",
				     data_path);
			goto out;
		}
		data_exists = true;
	}
	/* every check before anything is removed: a refused format changes nothing */
	if (opts->keep_data && (!data_exists || default_data)) {
		rc = set_msg(msg, msglen, -ENOENT, "data %s does not exist (nothing to adopt)",
			     data_path);
		goto out;
	}
	if (data_exists && !(opts->force && default_data)) {
		/* an adopted image holds data by definition: only a database is refused */
		rc = check_reused_data(data_path, opts->force || opts->keep_data, msg, msglen);
		if (rc)
			goto out;
	}
	if (opts->force) {
		/* overwrite: the old metadata goes; a default data file is remade */
		unlink(meta_path);
		char *side = NULL;
		if (asprintf(&side, "%s-wal", meta_path) >= 0) {
			unlink(side);
			free(side);
		}
		if (asprintf(&side, "%s-shm", meta_path) >= 0) {
			unlink(side);
			free(side);
		}
		if (default_data && data_exists) {
			unlink(data_path);
			data_exists = false;
		}
	}
	if (data_exists) {
		struct dio *d;
		uint64_t cur;
		rc = dio_open(data_path, false, &d, msg, msglen);
		if (rc)
			goto out;
		rc = dio_size(d, &cur);
		if (!rc && !data_size)
			data_size = cur;
		if (!rc && data_size > cur)
			rc = dio_is_blockdev(d) ? -ENOSPC : dio_grow(d, data_size);
		/* a reused data file starts empty: no old data may show through
		 * (an adopted one keeps it: its first open punches what is free) */
		if (!rc && !opts->keep_data)
			rc = dio_punch(d, 0, data_size);
		if (!rc)
			rc = dio_flush(d);
		dio_close(d);
		if (rc) {
			set_msg(msg, msglen, rc, "cannot prepare data %s: %s", data_path,
				strerror(-rc));
			goto out;
		}
	} else {
		if (!data_size)
			data_size = 1ull << 30;
	}
	if (data_size / bs < 1) {
		rc = set_msg(msg, msglen, -EINVAL, "data size %llu is smaller than one block (%llu)",
			     (unsigned long long)data_size, (unsigned long long)bs);
		goto out;
	}
	if (data_size / bs > VM_DMASK - 1) {
		rc = set_msg(msg, msglen, -EINVAL, "data size too large for block size %llu",
			     (unsigned long long)bs);
		goto out;
	}
	if (!data_exists) {
		rc = dio_create(data_path, data_size / bs * bs, msg, msglen);
		if (rc)
			goto out;
		data_created = true;
	}
	if (opts->uuid && *opts->uuid && strlen(opts->uuid) < sizeof(row.uuid))
		snprintf(row.uuid, sizeof(row.uuid), "%s", opts->uuid);
	else
		util_uuid(row.uuid);
	if (stat(data_path, &sb) == 0 && S_ISREG(sb.st_mode))
		setxattr(data_path, META_UUID_XATTR, row.uuid, strlen(row.uuid), 0);
	row.block_size = bs;
	row.nr_data_blocks = data_size / bs;
	row.created = util_now();
	snprintf(row.data_path, sizeof(row.data_path), "%s", default_data ? "data" : data_real);
	rc = meta_create(meta_path, &row, msg, msglen);
	if (rc)
		goto out;
	meta_created = true;
	rc = util_fsync_dir(dir);
	if (rc)
		set_msg(msg, msglen, rc, "cannot sync %s: %s", dir, strerror(-rc));
out:
	if (rc) {
		if (meta_created)
			unlink(meta_path);
		if (data_created)
			unlink(data_path);
	}
	if (lock_fd >= 0)
		close(lock_fd);
	free(meta_path);
	free(data_path);
	free(lock_path);
	return rc;
}
