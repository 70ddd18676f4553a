/* SPDX-License-Identifier: MIT */
/*
 * pool_format.c - making a pool: the checks on the directory and on a given
 * data path (never the database itself, never inside a thinfs mount, never a
 * file holding data without --force), then the data file, meta.db and a
 * synced directory.  A refused or failed format leaves the parent directory
 * as it was: a pool directory it made is removed again, and so are a lock
 * file, a data file and a database it made (an existing pool is only touched
 * once every check passed).  No locks: the pool does not exist yet (the lock
 * file keeps a pool in use from being formatted).
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
void pool_mount_fstype(const char *path, char *fstype, size_t len)
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
	unsigned char head[16] = {0};
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
			       "data path %s is an SQLite database (a pool's metadata?); refusing",
			       path);
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

/* One format, as its steps see it. */
struct format_job {
	const char *dir;
	const struct pool_format_opts *opts;
	char *msg;
	size_t msglen;
	char *meta_path, *data_path, *lock_path;
	char data_real[PATH_MAX], meta_real[PATH_MAX];
	uint64_t block_size, data_size;
	bool default_data, data_exists, data_created;
	bool dir_created, lock_created; /* undone on failure */
	bool past_checks;		/* from here on, whatever is at meta_path is ours */
	int lock_fd;
};

/* The pool's three paths, resolved as far as they exist. */
static int format_paths(struct format_job *j)
{
	int rc;

	j->meta_path = util_path_join(j->dir, "meta.db");
	j->lock_path = util_path_join(j->dir, "lock");
	j->data_path =
	    j->default_data ? util_path_join(j->dir, "data") : strdup(j->opts->data_path);
	if (!j->meta_path || !j->lock_path || !j->data_path)
		return -ENOMEM;
	rc = canonical(j->meta_path, j->meta_real);
	if (!rc)
		rc = canonical(j->data_path, j->data_real);
	if (rc)
		return set_msg(j->msg, j->msglen, rc, "cannot resolve %s: %s", j->data_path,
			       strerror(-rc));
	return 0;
}

/* The data may never be the database (or its journal), part of the pool, or
 * inside a thinfs mount (a pool over itself). */
static int format_check_data_path(struct format_job *j)
{
	char fstype[256];

	if (!strcmp(j->data_real, j->meta_real) || same_file(j->data_path, j->meta_path) ||
	    !strncmp(j->data_real, j->meta_real, strlen(j->meta_real)))
		return set_msg(j->msg, j->msglen, -EINVAL, "data path %s is the metadata database",
			       j->data_path);
	if (same_file(j->data_path, j->lock_path) || same_file(j->data_path, j->dir))
		return set_msg(j->msg, j->msglen, -EINVAL,
			       "data path %s is part of the pool itself", j->data_path);
	pool_mount_fstype(j->data_real, fstype, sizeof(fstype));
	if (!strcmp(fstype, "fuse.thinfs"))
		return set_msg(j->msg, j->msglen, -ELOOP,
			       "data path %s is inside a thinfs mount (a pool over itself)",
			       j->data_path);
	return 0;
}

/* An existing pool needs --force; one in use is never formatted over. */
static int format_take_pool(struct format_job *j)
{
	struct stat sb;

	if (lstat(j->meta_path, &sb) == 0) {
		if (!j->opts->force)
			return set_msg(j->msg, j->msglen, -EEXIST,
				       "%s already holds a pool (use --force to overwrite it)",
				       j->dir);
		if (!S_ISREG(sb.st_mode))
			return set_msg(j->msg, j->msglen, -EINVAL, "%s is not a regular file",
				       j->meta_path);
	}
	j->lock_fd = open(j->lock_path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (j->lock_fd < 0 && errno == ENOENT) {
		j->lock_fd =
		    open(j->lock_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		j->lock_created = j->lock_fd >= 0;
	}
	if (j->lock_fd < 0)
		return set_msg(j->msg, j->msglen, -errno, "cannot open %s: %s", j->lock_path,
			       strerror(errno));
	if (flock(j->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		char holder[256] = "";
		ssize_t n = pread(j->lock_fd, holder, sizeof(holder) - 1, 0);
		holder[n > 0 ? n : 0] = 0;
		holder[strcspn(holder, "\n")] = 0;
		return set_msg(j->msg, j->msglen, -EBUSY, "pool %s is in use by %s", j->dir,
			       *holder ? holder : "another process");
	}
	return 0;
}

/* What lies at the data path may be used: a file or block device, never a
 * database, and one holding data only with --force (or to adopt it). */
static int format_check_data(struct format_job *j)
{
	struct stat sb;

	if (lstat(j->data_path, &sb) == 0) {
		if (S_ISLNK(sb.st_mode) && stat(j->data_path, &sb) < 0)
			return set_msg(j->msg, j->msglen, -ENOENT,
				       "data path %s is a dangling symlink", j->data_path);
		if (!S_ISREG(sb.st_mode) && !S_ISBLK(sb.st_mode))
			return set_msg(j->msg, j->msglen, -EINVAL,
				       "data path %s is not a regular file or block device",
				       j->data_path);
		j->data_exists = true;
	}
	if (j->opts->keep_data && (!j->data_exists || j->default_data))
		return set_msg(j->msg, j->msglen, -ENOENT,
			       "data %s does not exist (nothing to adopt)", j->data_path);
	if (j->data_exists && !(j->opts->force && j->default_data))
		/* an adopted image holds data by definition: only a database is refused */
		return check_reused_data(j->data_path, j->opts->force || j->opts->keep_data, j->msg,
					 j->msglen);
	return 0;
}

/* meta.db and SQLite's files beside it. */
static void format_remove_meta(struct format_job *j)
{
	static const char *const sides[] = {"", "-wal", "-shm"};

	for (size_t i = 0; i < sizeof(sides) / sizeof(sides[0]); i++) {
		char *p = NULL;
		if (asprintf(&p, "%s%s", j->meta_path, sides[i]) >= 0) {
			unlink(p);
			free(p);
		}
	}
}

/* --force: the old metadata goes, and a default data file is made anew. */
static void format_clear_old(struct format_job *j)
{
	format_remove_meta(j);
	if (j->default_data && j->data_exists) {
		unlink(j->data_path);
		j->data_exists = false;
	}
}

/* The data file at its size: an existing one grown (and emptied unless
 * adopted), or a new sparse one. */
static int format_prepare_data(struct format_job *j)
{
	uint64_t bs = j->block_size;
	int rc = 0;

	if (j->data_exists) {
		struct dio *d;
		uint64_t cur;
		rc = dio_open(j->data_path, false, &d, j->msg, j->msglen);
		if (rc)
			return rc;
		rc = dio_size(d, &cur);
		if (!rc && !j->data_size)
			j->data_size = cur;
		if (!rc && j->data_size > cur)
			rc = dio_is_blockdev(d) ? -ENOSPC : dio_grow(d, j->data_size);
		/* a reused data file starts empty: no old data may show through
		 * (an adopted one keeps it: its first open punches what is free) */
		if (!rc && !j->opts->keep_data)
			rc = dio_punch(d, 0, j->data_size);
		if (!rc)
			rc = dio_flush(d);
		dio_close(d);
		if (rc)
			return set_msg(j->msg, j->msglen, rc, "cannot prepare data %s: %s",
				       j->data_path, strerror(-rc));
	} else if (!j->data_size) {
		j->data_size = 1ull << 30;
	}
	if (j->data_size / bs < 1)
		return set_msg(j->msg, j->msglen, -EINVAL,
			       "data size %llu is smaller than one block (%llu)",
			       (unsigned long long)j->data_size, (unsigned long long)bs);
	if (j->data_size / bs > POOL_MAX_DATA_BLOCKS)
		return set_msg(j->msg, j->msglen, -EINVAL,
			       "data size %llu is beyond the limit of %llu blocks of %llu bytes",
			       (unsigned long long)j->data_size,
			       (unsigned long long)POOL_MAX_DATA_BLOCKS, (unsigned long long)bs);
	if (!j->data_exists) {
		rc = dio_create(j->data_path, j->data_size / bs * bs, j->msg, j->msglen);
		j->data_created = !rc;
	}
	return rc;
}

/* meta.db with the pool row, the data file labelled, the directory synced. */
static int format_write_meta(struct format_job *j)
{
	struct meta_pool_row row = {0};
	const char *uuid = j->opts->uuid;
	struct stat sb;
	int rc;

	if (uuid && *uuid && strlen(uuid) < sizeof(row.uuid))
		snprintf(row.uuid, sizeof(row.uuid), "%s", uuid);
	else
		util_uuid(row.uuid);
	if (stat(j->data_path, &sb) == 0 && S_ISREG(sb.st_mode))
		setxattr(j->data_path, META_UUID_XATTR, row.uuid, strlen(row.uuid), 0);
	row.block_size = j->block_size;
	row.nr_data_blocks = j->data_size / j->block_size;
	row.created = util_now();
	snprintf(row.data_path, sizeof(row.data_path), "%s",
		 j->default_data ? "data" : j->data_real);
	rc = meta_create(j->meta_path, &row, j->msg, j->msglen);
	if (rc)
		return rc;
	rc = util_fsync_dir(j->dir);
	if (rc)
		set_msg(j->msg, j->msglen, rc, "cannot sync %s: %s", j->dir, strerror(-rc));
	return rc;
}

/* A format that failed: take back what it made, so the parent directory
 * reads as before (a directory it made, and everything in it, goes). */
static void format_undo(struct format_job *j)
{
	if (j->past_checks)
		format_remove_meta(j);
	if (j->data_created)
		unlink(j->data_path);
	if (j->lock_fd >= 0) {
		close(j->lock_fd);
		j->lock_fd = -1;
	}
	if (j->lock_created)
		unlink(j->lock_path);
	if (j->dir_created)
		rmdir(j->dir);
}

int pool_format(const char *dir, const struct pool_format_opts *opts, char *msg, size_t msglen)
{
	struct format_job j = {
	    .dir = dir,
	    .opts = opts,
	    .msg = msg,
	    .msglen = msglen,
	    .lock_fd = -1,
	    .block_size = opts->block_size ? opts->block_size : POOL_DEFAULT_BLOCK_SIZE,
	    .data_size = opts->data_size,
	    .default_data = !opts->data_path,
	};
	int rc;

	if (!is_pow2(j.block_size) || j.block_size < POOL_MIN_BLOCK_SIZE ||
	    j.block_size > POOL_MAX_BLOCK_SIZE)
		return set_msg(msg, msglen, -EINVAL,
			       "block size %llu is not a power of two from 4K to 1G",
			       (unsigned long long)j.block_size);
	if (mkdir(dir, 0700) == 0)
		j.dir_created = true;
	else if (errno != EEXIST)
		return set_msg(msg, msglen, -errno, "cannot create %s: %s", dir, strerror(errno));
	rc = pool_check_dir_private(dir, msg, msglen);
	if (!rc)
		rc = format_paths(&j);
	if (!rc)
		rc = format_check_data_path(&j);
	if (!rc)
		rc = format_take_pool(&j);
	/* every check before anything is removed: a refused format changes nothing */
	if (!rc)
		rc = format_check_data(&j);
	j.past_checks = !rc;
	if (!rc && opts->force)
		format_clear_old(&j);
	if (!rc)
		rc = format_prepare_data(&j);
	if (!rc)
		rc = format_write_meta(&j);
	if (rc)
		format_undo(&j);
	if (j.lock_fd >= 0)
		close(j.lock_fd);
	free(j.meta_path);
	free(j.data_path);
	free(j.lock_path);
	return rc;
}
