/* SPDX-License-Identifier: MIT */
/*
 * pool.c - the thin pool: format, open and close, the commit protocol, and
 * administration (create, snapshot, delete, rename, resize, grow).
 *
 * The commit protocol (pool_txn), in this order, with no data I/O in flight:
 *   1. fdatasync the data file: every block a new mapping points at holds its
 *      data before the mapping can be durable;
 *   2. BEGIN; write back the changed mappings of every device; free ancestor
 *      rows that no device sees any more; run the administrative change, if
 *      any; save layers, devices, the space map and the pool row (transaction
 *      id + 1); COMMIT (SQLite, WAL, synchronous=FULL: durable on return);
 *   3. only then punch the blocks freed in that transaction and let the
 *      allocator reuse them.
 * A failure at 1 or 2 makes the pool read-only with needs_check set.
 *
 * A pool that was not closed cleanly may hold data in free blocks (writes of
 * a transaction that never committed, punches that never reached the disk):
 * opening it read-write punches every data extent that lies in a free block,
 * so a newly provisioned block always reads zeros outside what was written.
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


/* ---- paths and checks ---- */

static char *path_join(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

static int check_dir_private(const char *dir, char *msg, size_t msglen)
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

static char *needs_check_marker(const struct pool *pool);
bool needs_check_marked(struct pool *pool);

/* ---- crash points (tests) ---- */

int pool_crash_point(struct pool *pool, const char *point)
{
	if (pool->crash_hook)
		return pool->crash_hook(pool->crash_arg, point);
	return 0;
}

void pool_test_set_crash_hook(struct pool *pool, pool_crash_hook hook, void *arg)
{
	pool->crash_hook = hook;
	pool->crash_arg = arg;
}

void pool_test_fail(struct pool *pool, enum pool_test_failure what, int nth)
{
	if (what == POOL_TEST_FAIL_ALLOC)
		pool->fail_alloc = nth;
	else
		pool->fail_punch = nth;
}

/* nth > 0: the nth call from now fails, once; nth < 0: every call fails. */
static bool countdown_hit(int *nth)
{
	if (*nth < 0)
		return true;
	return *nth > 0 && --*nth == 0;
}

bool pool_test_alloc_fails(struct pool *pool)
{
	return countdown_hit(&pool->fail_alloc);
}

bool pool_test_punch_fails(struct pool *pool)
{
	return countdown_hit(&pool->fail_punch);
}

struct dio *pool_test_dio(struct pool *pool)
{
	return pool->dio;
}

int pool_test_counts(struct pool *pool, uint64_t *nr_layers, uint64_t *nr_rows)
{
	*nr_layers = *nr_rows = 0;
	pthread_mutex_lock(&pool->lock);
	for (struct layer *l = pool->layers; l; l = l->next) {
		(*nr_layers)++;
		*nr_rows += l->nr_rows;
	}
	pthread_mutex_unlock(&pool->lock);
	return 0;
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
	if (S_ISBLK(sb.st_mode))
		has_data = true;
	else if (lseek(fd, 0, SEEK_DATA) >= 0)
		has_data = true;
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
	rc = check_dir_private(dir, msg, msglen);
	if (rc)
		return rc;
	meta_path = path_join(dir, "meta.db");
	lock_path = path_join(dir, "lock");
	data_path = default_data ? path_join(dir, "data") : strdup(opts->data_path);
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
	if (data_exists && !(opts->force && default_data)) {
		rc = check_reused_data(data_path, opts->force, msg, msglen);
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
		/* a reused data file starts empty: no old data may show through */
		if (!rc)
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

/* ---- loading the in-memory state ---- */

struct device *pool_find_device(struct pool *pool, const char *name)
{
	const char *slash = strchr(name, '/');
	size_t setlen = slash ? (size_t)(slash - name) : 0;
	const char *base = slash ? slash + 1 : name;

	for (struct device *d = pool->devices; d; d = d->next) {
		if (d->deleted)
			continue;
		if (strcmp(d->row.name, base))
			continue;
		if (slash ? (strlen(d->row.set) == setlen && !strncmp(d->row.set, name, setlen))
			  : !d->row.set[0])
			return d;
	}
	return NULL;
}

static int load_layer(void *arg, const struct meta_layer_row *r)
{
	struct pool *pool = arg;
	struct layer *l = layer_new(pool, r->id, NULL);

	if (!l)
		return -ENOMEM;
	l->nr_rows = r->nr_rows;
	/* parents are linked once all layers are in */
	l->children = (struct layer **)(uintptr_t)r->parent;
	return 0;
}

static int link_layers(struct pool *pool)
{
	for (struct layer *l = pool->layers; l; l = l->next) {
		uint64_t pid = (uint64_t)(uintptr_t)l->children;
		l->children = NULL;
		l->parent = (struct layer *)(uintptr_t)pid;
	}
	for (struct layer *l = pool->layers; l; l = l->next) {
		uint64_t pid = (uint64_t)(uintptr_t)l->parent;
		l->parent = NULL;
		if (!pid)
			continue;
		struct layer *p = layer_find(pool, pid);
		if (!p || p == l)
			return -EUCLEAN;
		int rc = layer_add_child(p, l);
		if (rc)
			return rc;
	}
	/* a cycle would make a chain that never ends */
	for (struct layer *l = pool->layers; l; l = l->next) {
		uint64_t n = 0;
		for (struct layer *a = l; a; a = a->parent)
			if (++n > 1000000)
				return -EUCLEAN;
	}
	return 0;
}

static int load_device(void *arg, const struct meta_device_row *r)
{
	struct pool *pool = arg;
	struct device *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->row = *r;
	d->layer = layer_find(pool, r->layer);
	if (!d->layer || d->layer->dev) {
		free(d);
		return -EUCLEAN;
	}
	d->layer->dev = d;
	vmap_init(&d->vm);
	d->deleted = !strcmp(r->set, DELETED_SET);
	d->next = pool->devices;
	pool->devices = d;
	return 0;
}

static int load_set(void *arg, const struct meta_set_row *r)
{
	struct pool *pool = arg;
	struct set *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->row = *r;
	s->next = pool->sets;
	pool->sets = s;
	return 0;
}

void pool_free_device(struct device *d)
{
	vmap_destroy(&d->vm);
	free(d->dirty);
	free(d->hidden);
	free(d);
}

static void free_state(struct pool *pool)
{
	while (pool->layers)
		layer_forget(pool, pool->layers);
	while (pool->devices) {
		struct device *d = pool->devices;
		pool->devices = d->next;
		pool_free_device(d);
	}
	while (pool->sets) {
		struct set *s = pool->sets;
		pool->sets = s->next;
		free(s);
	}
	space_destroy(&pool->space);
}

static int load_state(struct pool *pool)
{
	int rc = space_init(&pool->space, pool->prow.nr_data_blocks);

	if (!rc)
		rc = space_load(&pool->space, pool->meta);
	if (!rc)
		rc = meta_layer_foreach(pool->meta, load_layer, pool);
	if (!rc)
		rc = link_layers(pool);
	if (!rc)
		rc = meta_device_foreach(pool->meta, load_device, pool);
	if (!rc)
		rc = meta_set_foreach(pool->meta, load_set, pool);
	return rc;
}

/* Punch every data extent that lies in a free block (after an unclean stop). */
int pool_scrub_free_blocks(struct pool *pool)
{
	uint64_t off = 0, start, end, bs = pool->block_size;
	uint64_t limit = pool->prow.nr_data_blocks * bs;
	int rc;

	if (dio_is_blockdev(pool->dio))
		return 0;
	while (off < limit) {
		rc = dio_next_data(pool->dio, off, &start, &end);
		if (rc == -ENXIO)
			break;
		if (rc)
			return rc == -EOPNOTSUPP ? 0 : rc;
		for (uint64_t b = start / bs; b < div_round_up(end, bs) && b < limit / bs; b++) {
			if (space_is_used(&pool->space, b))
				continue;
			rc = dio_punch(pool->dio, b * bs, bs);
			if (rc)
				return rc;
			pool->nr_punches++;
		}
		off = div_round_up(end, bs) * bs;
	}
	return dio_flush(pool->dio);
}

static int write_lock_holder(int fd, const char *holder)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "%s\n", holder && *holder ? holder : "a process");

	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n)
		return -errno;
	return 0;
}

static int open_lock(struct pool *pool, const char *holder, char *msg, size_t msglen)
{
	char *lock_path = path_join(pool->dir, "lock");
	int rc = 0;

	if (!lock_path)
		return -ENOMEM;
	pool->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (pool->lock_fd < 0) {
		rc = set_msg(msg, msglen, -errno, "cannot open %s: %s", lock_path,
			     strerror(errno));
	} else if (flock(pool->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		char who[256] = "";
		ssize_t n = pread(pool->lock_fd, who, sizeof(who) - 1, 0);
		who[n > 0 ? n : 0] = 0;
		who[strcspn(who, "\n")] = 0;
		rc = set_msg(msg, msglen, -EBUSY, "pool %s is in use by %s", pool->dir,
			     *who ? who : "another process");
	} else {
		rc = write_lock_holder(pool->lock_fd, holder);
	}
	free(lock_path);
	return rc;
}

static int check_data(struct pool *pool, char *msg, size_t msglen)
{
	uint64_t size, need = pool->prow.nr_data_blocks * pool->block_size;
	char uuid[64] = "", *path;
	int rc = dio_size(pool->dio, &size);

	if (rc)
		return set_msg(msg, msglen, rc, "cannot size the data file: %s", strerror(-rc));
	if (size < need)
		return set_msg(msg, msglen, -EUCLEAN,
			       "data file is %llu bytes, the pool needs %llu (truncated or wrong file)",
			       (unsigned long long)size, (unsigned long long)need);
	path = pool->prow.data_path[0] == '/' ? strdup(pool->prow.data_path)
					      : path_join(pool->dir, pool->prow.data_path);
	if (!path)
		return -ENOMEM;
	ssize_t n = getxattr(path, META_UUID_XATTR, uuid, sizeof(uuid) - 1);
	free(path);
	if (n > 0) {
		uuid[n] = 0;
		if (strcmp(uuid, pool->prow.uuid))
			return set_msg(msg, msglen, -EUCLEAN,
				       "data file belongs to another pool (uuid %s, expected %s)",
				       uuid, pool->prow.uuid);
	}
	return 0;
}

int pool_open(const char *dir, unsigned flags, const char *holder, struct pool **out, char *msg,
	      size_t msglen)
{
	struct pool *pool = calloc(1, sizeof(*pool));
	bool rdonly = flags & POOL_OPEN_RDONLY;
	char *data_path = NULL;
	struct stat sb;
	int rc;

	if (!pool)
		return -ENOMEM;
	pool->lock_fd = -1;
	pool->mode = rdonly ? POOL_MODE_READER : POOL_MODE_WRITE;
	/* writers first: under a steady stream of I/O a commit (and so an fsync)
	 * must not wait forever; no path takes the read side twice */
	pthread_rwlockattr_t rwa;
	pthread_rwlockattr_init(&rwa);
	pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&pool->io_lock, &rwa);
	pthread_rwlockattr_destroy(&rwa);
	pthread_mutex_init(&pool->lock, NULL);
	pthread_mutex_init(&pool->commit_lock, NULL);
	pthread_cond_init(&pool->prov_cv, NULL);
	pool->dir = strdup(dir);
	pool->meta_path = path_join(dir, "meta.db");
	if (!pool->dir || !pool->meta_path) {
		rc = -ENOMEM;
		goto out_free;
	}
	if (stat(dir, &sb) < 0) {
		rc = set_msg(msg, msglen, -errno, "%s: %s", dir, strerror(errno));
		goto out_free;
	}
	if (!S_ISDIR(sb.st_mode)) {
		rc = set_msg(msg, msglen, -ENOTDIR, "%s is not a pool directory", dir);
		goto out_free;
	}
	if (lstat(pool->meta_path, &sb) < 0) {
		rc = set_msg(msg, msglen, -ENOENT, "%s is not a thinfs pool (no meta.db)", dir);
		goto out_free;
	}
	if (!rdonly) {
		rc = check_dir_private(dir, msg, msglen);
		if (!rc && (sb.st_mode & (S_IWGRP | S_IWOTH)))
			rc = set_msg(msg, msglen, -EPERM,
				     "%s is writable by group or others; refusing", pool->meta_path);
		if (!rc)
			rc = open_lock(pool, holder, msg, msglen);
		if (rc)
			goto out_free;
	}
	rc = meta_open(pool->meta_path, rdonly, &pool->meta, msg, msglen);
	if (rc)
		goto out_free;
	rc = rdonly ? meta_begin_read(pool->meta) : 0;
	if (!rc)
		rc = meta_pool_get(pool->meta, &pool->prow);
	if (rc) {
		set_msg(msg, msglen, rc, "%s is not a thinfs pool: %s", dir,
			meta_errmsg(pool->meta));
		goto out_free;
	}
	pool->block_size = pool->prow.block_size;
	if (!is_pow2(pool->block_size) || pool->block_size < POOL_MIN_BLOCK_SIZE ||
	    pool->block_size > POOL_MAX_BLOCK_SIZE) {
		rc = set_msg(msg, msglen, -EUCLEAN, "%s: damaged pool (block size %llu)", dir,
			     (unsigned long long)pool->block_size);
		goto out_free;
	}
	pool->block_shift = (unsigned)__builtin_ctzll(pool->block_size);
	data_path = pool->prow.data_path[0] == '/' ? strdup(pool->prow.data_path)
						   : path_join(dir, pool->prow.data_path);
	if (!data_path) {
		rc = -ENOMEM;
		goto out_free;
	}
	rc = dio_open(data_path, rdonly, &pool->dio, msg, msglen);
	if (!rc)
		rc = check_data(pool, msg, msglen);
	if (rc)
		goto out_free;
	rc = load_state(pool);
	if (rc) {
		set_msg(msg, msglen, rc, "%s: cannot load the metadata (%s); run thinctl check",
			dir, rc == -EUCLEAN ? "damaged" : strerror(-rc));
		goto out_free;
	}
	if (needs_check_marked(pool)) {
		/* an error meta.db could not record: the marker kept it */
		pool->prow.needs_check = 1;
		snprintf(pool->ro_reason, sizeof(pool->ro_reason), "%s",
			 "needs_check is set (marker file): run thinctl check --repair");
	}
	if (!rdonly && pool->prow.needs_check)
		pool->mode = POOL_MODE_READ_ONLY;
	if (pool->mode == POOL_MODE_WRITE) {
		if (!pool->prow.clean) {
			rc = pool_scrub_free_blocks(pool);
			if (rc) {
				set_msg(msg, msglen, rc, "cannot scrub free blocks: %s",
					strerror(-rc));
				goto out_free;
			}
		}
		/* mark in use: a crash from now on is an unclean stop */
		pool->prow.clean = 0;
		rc = meta_begin(pool->meta);
		if (!rc)
			rc = meta_pool_put(pool->meta, &pool->prow);
		if (!rc)
			rc = meta_commit(pool->meta);
		if (rc) {
			meta_rollback(pool->meta);
			set_msg(msg, msglen, rc, "cannot write %s: %s", pool->meta_path,
				meta_errmsg(pool->meta));
			goto out_free;
		}
		/* devices deleted while open when the pool stopped: finish them */
		for (struct device *d = pool->devices; d; d = d->next) {
			if (d->deleted) {
				pool->devices_pending_delete = true;
				break;
			}
		}
	}
	free(data_path);
	*out = pool;
	if (pool->devices_pending_delete)
		pool_finish_deletes(pool);
	return 0;
out_free:
	free(data_path);
	free_state(pool);
	if (pool->meta)
		meta_close(pool->meta);
	if (pool->dio)
		dio_close(pool->dio);
	if (pool->lock_fd >= 0)
		close(pool->lock_fd);
	free(pool->unpunched);
	free(pool->dir);
	free(pool->meta_path);
	free(pool);
	return rc;
}

/* ---- dirty tracking (pool lock held) ---- */

void pool_device_mark_dirty(struct pool *pool, struct device *dev, uint64_t vblock)
{
	if (dev->nr_dirty == dev->cap_dirty) {
		size_t cap = dev->cap_dirty ? dev->cap_dirty * 2 : 256;
		uint64_t *n = pool_test_alloc_fails(pool) ? NULL
							  : realloc(dev->dirty, cap * sizeof(*n));
		if (!n) {
			/* cannot track it, so it can never be committed: fail every
			 * later sync rather than report it durable */
			pool_fail(pool, -EIO, "out of memory tracking changes");
			return;
		}
		dev->dirty = n;
		dev->cap_dirty = cap;
	}
	dev->dirty[dev->nr_dirty++] = vblock;
	pool->dirty = true;
}

void pool_device_hide(struct pool *pool, struct device *dev, uint64_t vblock, uint64_t dblock)
{
	if (dev->nr_hidden == dev->cap_hidden) {
		size_t cap = dev->cap_hidden ? dev->cap_hidden * 2 : 64;
		struct hidden *n = realloc(dev->hidden, cap * sizeof(*n));
		if (!n)
			return; /* a block no one sees stays allocated: a leak, never a loss */
		dev->hidden = n;
		dev->cap_hidden = cap;
	}
	dev->hidden[dev->nr_hidden++] = (struct hidden){ vblock, dblock };
	pool->dirty = true;
}

void pool_unmap_block_locked(struct pool *pool, struct device *dev, uint64_t vblock)
{
	uint64_t e = vmap_get(&dev->vm, vblock);

	if (!vm_mapped(e))
		return;
	if (e & VM_OWN)
		space_free(&pool->space, vm_dblock(e));
	else
		pool_device_hide(pool, dev, vblock, vm_dblock(e));
	dev->row.mapped--;
	dev->row_dirty = true;
	if (!(e & VM_DIRTY))
		pool_device_mark_dirty(pool, dev, vblock);
	vmap_set(&dev->vm, vblock, VM_DIRTY | (e & VM_ROW));
	pool_space_short(pool, false);
	pool->dirty = true;
}

int pool_device_load_vmap(struct pool *pool, struct device *dev)
{
	int rc;

	if (dev->vm_loaded)
		return 0;
	rc = layer_resolve(pool, dev->layer, &dev->vm);
	if (rc) {
		vmap_destroy(&dev->vm);
		return rc;
	}
	dev->vm_loaded = true;
	return 0;
}

/* Drop a view nobody uses (nothing dirty in it). */
void pool_maybe_unload_vmap(struct device *dev)
{
	if (dev->vm_loaded && !dev->open_count && !dev->nr_dirty && !dev->nr_hidden &&
	    !dev->pinned) {
		vmap_destroy(&dev->vm);
		dev->vm_loaded = false;
	}
}

/* After the layer tree changed shape, re-resolve the views in use. */
int pool_reload_vmaps(struct pool *pool)
{
	for (struct device *d = pool->devices; d; d = d->next) {
		if (!d->vm_loaded)
			continue;
		vmap_destroy(&d->vm);
		d->vm_loaded = false;
		int rc = pool_device_load_vmap(pool, d);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- the commit protocol ---- */

/* The marker that keeps needs_check when meta.db would not take it. */
static char *needs_check_marker(const struct pool *pool)
{
	return path_join(pool->dir, POOL_NEEDS_CHECK_MARKER);
}

bool needs_check_marked(struct pool *pool)
{
	char *path = needs_check_marker(pool);
	struct stat sb;
	bool marked = path && lstat(path, &sb) == 0;

	free(path);
	return marked;
}

int pool_clear_needs_check_marker(struct pool *pool)
{
	char *path = needs_check_marker(pool);
	int rc = 0;

	if (!path)
		return -ENOMEM;
	if (unlink(path) == 0)
		rc = util_fsync_dir(pool->dir);
	else if (errno != ENOENT)
		rc = -errno;
	free(path);
	return rc;
}

static void write_needs_check_marker(struct pool *pool, const char *why)
{
	char *path = needs_check_marker(pool);
	int fd = path ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600) : -1;

	if (fd >= 0) {
		/* best effort: the database already refused the flag */
		ssize_t n = write(fd, why, strlen(why));
		(void)n;
		fsync(fd);
		close(fd);
		util_fsync_dir(pool->dir);
	}
	free(path);
}

/*
 * WRITE or OUT_OF_SPACE -> FAILED (enum pool_mode in pool_internal.h).
 * needs_check is persisted on top of the last durable pool row (never the
 * in-memory one, which may hold a failed change such as a grow's
 * nr_data_blocks); where meta.db will not take it, a marker file in the pool
 * directory keeps it, so that a remount never forgets the failure.
 */
void pool_fail(struct pool *pool, int err, const char *why)
{
	struct meta_pool_row durable;
	bool saved = false;

	if (!pool_mode_writable(pool))
		return;
	pool->mode = POOL_MODE_FAILED;
	pool->fail_err = err;
	snprintf(pool->ro_reason, sizeof(pool->ro_reason), "%s", why);
	meta_rollback(pool->meta);
	pool->prow.needs_check = 1;
	/* (the crash point lets a test make the database refuse it) */
	if (!pool_crash_point(pool, "readonly/persist") && !meta_pool_get(pool->meta, &durable) &&
	    !meta_begin(pool->meta)) {
		durable.needs_check = 1;
		saved = !meta_pool_put(pool->meta, &durable) && !meta_commit(pool->meta);
		if (!saved)
			meta_rollback(pool->meta);
	}
	if (!saved)
		write_needs_check_marker(pool, why);
}

void pool_space_short(struct pool *pool, bool short_of_space)
{
	if (short_of_space && pool->mode == POOL_MODE_WRITE)
		pool->mode = POOL_MODE_OUT_OF_SPACE;
	else if (!short_of_space && pool->mode == POOL_MODE_OUT_OF_SPACE)
		pool->mode = POOL_MODE_WRITE;
}

void pool_mode_repair(struct pool *pool)
{
	if (pool->mode == POOL_MODE_READ_ONLY)
		pool->mode = POOL_MODE_WRITE;
}

static int writeback_device(struct pool *pool, struct device *dev)
{
	struct layer *l = dev->layer;
	uint64_t time = pool->prow.pool_time;

	for (size_t i = 0; i < dev->nr_dirty; i++) {
		uint64_t vb = dev->dirty[i], e = vmap_get(&dev->vm, vb);
		int rc = 0;

		if (!(e & VM_DIRTY))
			continue;
		if (vm_mapped(e) || l->parent) {
			rc = meta_map_put(pool->meta, l->id, vb,
					  vm_mapped(e) ? vm_dblock(e) : META_TOMBSTONE, time);
			if (!(e & VM_ROW))
				l->nr_rows++;
			e |= VM_ROW;
		} else if (e & VM_ROW) {
			rc = meta_map_del(pool->meta, l->id, vb);
			l->nr_rows--;
			e &= ~VM_ROW;
		}
		if (rc)
			return rc;
		vmap_set(&dev->vm, vb, e & ~VM_DIRTY);
	}
	dev->nr_dirty = 0;
	l->dirty = true;
	dev->row_dirty = true;
	dev->row.mtime = util_now();
	return 0;
}

static int process_hidden(struct pool *pool, struct device *dev)
{
	for (size_t i = 0; i < dev->nr_hidden; i++) {
		struct hidden *h = &dev->hidden[i];
		struct layer *a;
		uint64_t d;
		bool seen;
		int rc = layer_ancestor_row(pool, dev->layer, h->vblock, &a, &d);

		if (rc)
			return rc;
		if (!a || d != h->dblock)
			continue;
		rc = layer_seen_below(pool, a, h->vblock, &seen);
		if (!rc && !seen) {
			rc = meta_map_del(pool->meta, a->id, h->vblock);
			a->nr_rows--;
			a->dirty = true;
			space_free(&pool->space, d);
		}
		if (rc)
			return rc;
	}
	dev->nr_hidden = 0;
	return 0;
}

static int save_state(struct pool *pool)
{
	int rc = 0;

	for (struct layer *l = pool->layers; l && !rc; l = l->next) {
		if (!l->dirty)
			continue;
		struct meta_layer_row r = { .id = l->id,
					    .parent = l->parent ? l->parent->id : 0,
					    .nr_rows = l->nr_rows };
		rc = meta_layer_update(pool->meta, &r);
		l->dirty = false;
	}
	for (struct device *d = pool->devices; d && !rc; d = d->next) {
		if (!d->row_dirty)
			continue;
		rc = meta_device_update(pool->meta, &d->row);
		d->row_dirty = false;
	}
	if (!rc)
		rc = space_save(&pool->space, pool->meta);
	return rc;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Keep blocks whose punch failed, to try again after the next commit. */
static void keep_unpunched(struct pool *pool, const uint64_t *b, size_t n)
{
	if (pool->nr_unpunched + n > pool->cap_unpunched) {
		size_t cap = (pool->nr_unpunched + n) * 2;
		uint64_t *l = realloc(pool->unpunched, cap * sizeof(*l));
		if (!l) {
			/* forgotten here, they stay busy (never reused) until the
			 * next open, which scrubs: the pool stays marked unclean */
			pool->unpunched_lost = true;
			return;
		}
		pool->unpunched = l;
		pool->cap_unpunched = cap;
	}
	memcpy(pool->unpunched + pool->nr_unpunched, b, n * sizeof(*b));
	pool->nr_unpunched += n;
}

/*
 * After a durable commit: punch the freed blocks (contiguous runs in one
 * call), then let them be reused.  A run whose punch fails may still hold old
 * data, so it stays out of use and is tried again after every later commit;
 * while any is left, close does not mark the pool clean, so the next open
 * scrubs free blocks (a fresh block must read zeros outside what is written).
 */
static void release_freed(struct pool *pool)
{
	uint64_t *list;
	size_t n = space_take_freed(&pool->space, &list), kept = 0;

	if (pool->nr_unpunched) {
		uint64_t *all = realloc(list, (n + pool->nr_unpunched) * sizeof(*all));
		if (all) {
			memcpy(all + n, pool->unpunched, pool->nr_unpunched * sizeof(*all));
			n += pool->nr_unpunched;
			pool->nr_unpunched = 0;
			list = all;
		}
	}
	if (!n) {
		free(list);
		return;
	}
	qsort(list, n, sizeof(*list), cmp_u64);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && list[j] == list[j - 1] + 1)
			j++;
		int rc = pool_test_punch_fails(pool)
				 ? -EIO
				 : dio_punch(pool->dio, list[i] * pool->block_size,
					     (list[j - 1] - list[i] + 1) * pool->block_size);
		if (!rc) {
			pool->nr_punches += j - i;
			while (i < j)
				list[kept++] = list[i++];
		} else {
			keep_unpunched(pool, list + i, j - i);
		}
		i = j;
	}
	space_release(&pool->space, list, kept);
	if (kept)
		pool_space_short(pool, false); /* blocks came back */
	free(list);
}

/* Changes up to target are durable: a flush that started after them all
 * completed (and, where mappings changed, the commit after it). */
static void advance_synced(struct pool *pool, uint64_t target)
{
	uint64_t cur = __atomic_load_n(&pool->synced_seq, __ATOMIC_ACQUIRE);

	while (cur < target && !__atomic_compare_exchange_n(&pool->synced_seq, &cur, target, false,
							   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
}

int pool_txn(struct pool *pool, txn_op op, void *arg)
{
	struct meta_pool_row before = pool->prow;
	uint64_t target;
	int rc;

	if (pool->mode == POOL_MODE_FAILED)
		return pool->fail_err;
	if (!pool_mode_writable(pool))
		return -EROFS;
	/* no data I/O is in flight (io lock held for writing): every change
	 * counted so far has completed, and the flush below covers it */
	target = __atomic_load_n(&pool->change_seq, __ATOMIC_ACQUIRE);
	rc = pool_crash_point(pool, "commit/before_flush");
#ifndef THINFS_TEST_BUG_SKIP_DATA_FLUSH
	if (!rc)
		rc = dio_flush(pool->dio);
#endif
	if (rc) {
		pool_fail(pool, -EIO, "flushing the data file failed");
		return -EIO;
	}
	rc = pool_crash_point(pool, "commit/after_flush");
	if (!rc)
		rc = meta_begin(pool->meta);
	for (struct device *d = pool->devices; d && !rc; d = d->next)
		if (d->nr_dirty)
			rc = writeback_device(pool, d);
	for (struct device *d = pool->devices; d && !rc; d = d->next)
		if (d->nr_hidden)
			rc = process_hidden(pool, d);
	if (!rc && op)
		rc = op(pool, arg);
	if (!rc)
		rc = save_state(pool);
	if (!rc) {
		pool->prow.transaction_id++;
		pool->prow.clean = 0;
		rc = meta_pool_put(pool->meta, &pool->prow);
	}
	if (!rc)
		rc = pool_crash_point(pool, "commit/before_commit");
#ifdef THINFS_TEST_BUG_PUNCH_BEFORE_COMMIT
	if (!rc)
		release_freed(pool); /* the bug, for a negative control: punch too early */
#endif
	if (!rc)
		rc = meta_commit(pool->meta);
	if (rc) {
		/* the row as it was: the transaction id, and what a failed op
		 * changed in it (a grow's nr_data_blocks) never became durable */
		pool->prow = before;
		meta_rollback(pool->meta);
		/* the changes in memory can never be made durable: no later sync
		 * may report success; and the views are the only record of the
		 * writes since the last commit, so none may be dropped */
		pool_fail(pool, rc == -ENOSPC ? -ENOSPC : -EIO,
			  rc == -ENOSPC ? "the metadata file system is full"
					: "a metadata commit failed");
		for (struct device *d = pool->devices; d; d = d->next)
			d->pinned = d->vm_loaded;
		return pool->fail_err;
	}
	pool->nr_commits++;
	pool->dirty = false;
	advance_synced(pool, target);
	pool_crash_point(pool, "commit/after_commit");
	release_freed(pool);
	pool_crash_point(pool, "commit/after_punch");
	for (struct device *d = pool->devices; d; d = d->next)
		pool_maybe_unload_vmap(d);
	return 0;
}

int pool_commit_locked(struct pool *pool)
{
	if (!pool->dirty)
		return 0;
	return pool_txn(pool, NULL, NULL);
}

void admin_lock(struct pool *pool)
{
	pthread_rwlock_wrlock(&pool->io_lock);
	pthread_mutex_lock(&pool->lock);
}

void admin_unlock(struct pool *pool)
{
	pthread_mutex_unlock(&pool->lock);
	pthread_rwlock_unlock(&pool->io_lock);
}

int pool_commit(struct pool *pool)
{
	int rc;

	if (pool->mode == POOL_MODE_READER)
		return 0;
	/* the timer's common case: nothing to do, and no reason to drain I/O */
	pthread_mutex_lock(&pool->lock);
	bool dirty = pool->dirty;
	pthread_mutex_unlock(&pool->lock);
	if (!dirty)
		return 0;
	/* another commit may run between the test above and the locks below
	 * (the timer race): then there is nothing left to do, and nothing is
	 * claimed durable here - only pool_txn advances synced_seq */
	pool_crash_point(pool, "timer/before_lock");
	pthread_mutex_lock(&pool->commit_lock);
	admin_lock(pool);
	rc = pool_mode_writable(pool) ? pool_commit_locked(pool) : 0;
#ifdef THINFS_TEST_BUG_TIMER_SYNCED
	/* the old bug, for a negative control: claim durable what a commit that
	 * found nothing to do never flushed */
	if (!rc)
		advance_synced(pool, __atomic_load_n(&pool->change_seq, __ATOMIC_ACQUIRE));
#endif
	admin_unlock(pool);
	pthread_mutex_unlock(&pool->commit_lock);
	return rc;
}

/* Flush the data file alone (no mapping to commit); commit_lock held. */
static int sync_data(struct pool *pool)
{
	uint64_t target = __atomic_load_n(&pool->change_seq, __ATOMIC_ACQUIRE);
	int rc = dio_flush(pool->dio);

	if (rc) {
		pthread_mutex_lock(&pool->lock);
		pool_fail(pool, -EIO, "flushing the data file failed");
		pthread_mutex_unlock(&pool->lock);
		return -EIO;
	}
	advance_synced(pool, target);
	return 0;
}

int pool_sync(struct pool *pool)
{
	uint64_t mine = __atomic_load_n(&pool->change_seq, __ATOMIC_ACQUIRE);
	int rc = 0;

	__atomic_add_fetch(&pool->nr_fsyncs, 1, __ATOMIC_RELAXED);
	if (pool->mode == POOL_MODE_READER)
		return 0;
	pthread_mutex_lock(&pool->commit_lock);
	if (pool->mode == POOL_MODE_FAILED) {
		rc = pool->fail_err;
		goto out;
	}
	/* a flush that started after our writes covered them (synced_seq only
	 * moves in pool_txn and sync_data, after a flush that began later) */
	if (__atomic_load_n(&pool->synced_seq, __ATOMIC_ACQUIRE) >= mine && mine)
		goto out;
	pthread_mutex_lock(&pool->lock);
	bool dirty = pool->dirty && pool_mode_writable(pool);
	pthread_mutex_unlock(&pool->lock);
	if (dirty) {
		/* only mappings need the I/O drained; a data flush does not */
		admin_lock(pool);
		if (pool->dirty && pool_mode_writable(pool))
			rc = pool_txn(pool, NULL, NULL);
		admin_unlock(pool);
	}
	/* no mapping changed (in-place writes only), or the pool went
	 * read-only: flushing the data is what is left to do */
	if (!rc && __atomic_load_n(&pool->synced_seq, __ATOMIC_ACQUIRE) < mine)
		rc = pool->mode == POOL_MODE_FAILED ? pool->fail_err : sync_data(pool);
out:
	pthread_mutex_unlock(&pool->commit_lock);
	return rc;
}

int pool_close(struct pool *pool)
{
	int rc = 0;

	if (!pool)
		return 0;
	if (pool->mode != POOL_MODE_READER) {
		admin_lock(pool);
		if (pool_mode_writable(pool)) {
			rc = pool_commit_locked(pool);
			/* blocks whose punch failed may hold old data: leave the
			 * pool unclean, so the next open scrubs them */
			if (!rc && (pool->nr_unpunched || pool->unpunched_lost))
				release_freed(pool);
			if (!rc && !pool->nr_unpunched && !pool->unpunched_lost) {
				pool->prow.clean = 1;
				rc = meta_begin(pool->meta);
				if (!rc)
					rc = meta_pool_put(pool->meta, &pool->prow);
				if (!rc)
					rc = meta_commit(pool->meta);
				if (rc)
					meta_rollback(pool->meta);
			}
		}
		admin_unlock(pool);
	}
	free_state(pool);
	meta_close(pool->meta);
	dio_close(pool->dio);
	if (pool->lock_fd >= 0) {
		if (pool->mode != POOL_MODE_READER && ftruncate(pool->lock_fd, 0) < 0)
			rc = rc ? rc : -errno;
		close(pool->lock_fd);
	}
	pthread_rwlock_destroy(&pool->io_lock);
	pthread_mutex_destroy(&pool->lock);
	pthread_mutex_destroy(&pool->commit_lock);
	pthread_cond_destroy(&pool->prov_cv);
	free(pool->unpunched);
	free(pool->dir);
	free(pool->meta_path);
	free(pool);
	return rc;
}
