/* SPDX-License-Identifier: MIT */
/*
 * pool_open.c - opening and closing a pool: the lock file, the checks of
 * meta.db and the data file, loading the layers, devices and sets, and the
 * recovery after an unclean stop.
 *
 * A pool that was not closed cleanly may hold data in free blocks (writes of
 * a transaction that never committed, punches that never reached the disk):
 * opening it read-write punches every data extent that lies in a free block,
 * so a newly provisioned block always reads zeros outside what was written.
 * Close commits, and marks the pool clean only when no freed block is left
 * unpunched.  The pool is private to the caller until pool_open returns.
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

static int add_damage(struct pool *pool, enum pool_damage_kind kind, uint64_t id, uint64_t ref)
{
	if (pool->nr_damage == pool->cap_damage) {
		size_t cap = pool->cap_damage ? pool->cap_damage * 2 : 8;
		struct pool_damage *n = realloc(pool->damage, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		pool->damage = n;
		pool->cap_damage = cap;
	}
	pool->damage[pool->nr_damage++] = (struct pool_damage){kind, id, ref};
	return 0;
}

void pool_damage_describe(const struct pool_damage *d, char *buf, size_t len)
{
	static const char *const fmt[] = {
	    [PD_PARENT_MISSING] = "layer %llu names parent layer %llu, which is missing",
	    [PD_CYCLE] = "the parent link of layer %llu (to layer %llu) closes a cycle",
	    [PD_LAYER_MISSING] = "device %llu names layer %llu, which is missing",
	    [PD_LAYER_SHARED] = "device %llu names layer %llu, another device's leaf",
	    [PD_SPACE_CHUNK] = "space row %llu is damaged (%llu bytes)",
	    [PD_DATA_SHORT] = "the data file is %llu bytes, the pool needs %llu",
	};
	snprintf(buf, len, fmt[d->kind], (unsigned long long)d->id, (unsigned long long)d->ref);
}

/* The layer with this id, or a placeholder standing in for its missing row. */
static struct layer *layer_or_placeholder(struct pool *pool, uint64_t id)
{
	struct layer *l = layer_find(pool, id);

	if (!l && (l = layer_new(pool, id, NULL)))
		l->placeholder = true;
	return l;
}

/* Cut one parent link of every cycle (each is damage). */
static int cut_cycles(struct pool *pool)
{
	uint64_t nr = 0;
	int rc;

	for (struct layer *l = pool->layers; l; l = l->next)
		nr++;
	for (struct layer *l = pool->layers; l; l = l->next) {
		struct layer *x = l;
		uint64_t n = 0;
		while (x && n <= nr) {
			x = x->parent;
			n++;
		}
		if (!x)
			continue;
		/* x is on a cycle: cut the link into a device's leaf (a leaf never
		 * has children, so that one is wrong), else x's */
		for (struct layer *y = x->parent; y != x; y = y->parent) {
			if (y->parent->dev) {
				x = y;
				break;
			}
		}
		rc = add_damage(pool, PD_CYCLE, x->id, x->parent->id);
		if (rc)
			return rc;
		layer_remove_child(x->parent, x);
		x->dirty = true;
	}
	return 0;
}

static int link_layers(struct pool *pool)
{
	int rc;

	for (struct layer *l = pool->layers; l; l = l->next) {
		uint64_t pid = (uint64_t)(uintptr_t)l->children;
		l->children = NULL;
		l->parent = (struct layer *)(uintptr_t)pid;
	}
	for (struct layer *l = pool->layers; l; l = l->next) {
		uint64_t pid = (uint64_t)(uintptr_t)l->parent;
		struct layer *p;
		if (l->placeholder)
			continue;
		l->parent = NULL;
		if (!pid)
			continue;
		if (pid == l->id) {
			rc = add_damage(pool, PD_CYCLE, l->id, pid);
			l->dirty = true;
			if (rc)
				return rc;
			continue;
		}
		p = layer_find(pool, pid);
		if (!p) {
			rc = add_damage(pool, PD_PARENT_MISSING, l->id, pid);
			if (!rc && !(p = layer_or_placeholder(pool, pid)))
				rc = -ENOMEM;
			if (rc)
				return rc;
		}
		rc = layer_add_child(p, l);
		if (rc)
			return rc;
	}
	return 0;
}

static int load_device(void *arg, const struct meta_device_row *r)
{
	struct pool *pool = arg;
	struct device *d;
	struct layer *l = layer_find(pool, r->layer);
	int rc = 0;

	if (!l) {
		rc = add_damage(pool, PD_LAYER_MISSING, r->id, r->layer);
		if (!rc && !(l = layer_or_placeholder(pool, r->layer)))
			rc = -ENOMEM;
	} else if (l->dev) {
		/* check reports it; no device can share a leaf */
		return add_damage(pool, PD_LAYER_SHARED, r->id, r->layer);
	}
	if (rc)
		return rc;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->row = *r;
	d->layer = l;
	l->dev = d;
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

static void free_state(struct pool *pool)
{
	/* unlinked first: a parent may come before its children in the list
	 * (a placeholder of a lenient open is added last, at the head) */
	for (struct layer *l = pool->layers; l; l = l->next) {
		l->parent = NULL;
		l->nr_children = 0;
	}
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

static int bad_space_chunk(void *arg, uint64_t chunk, size_t len)
{
	return add_damage(arg, PD_SPACE_CHUNK, chunk, len);
}

static int load_state(struct pool *pool)
{
	int rc = space_init(&pool->space, pool->prow.nr_data_blocks);

	if (!rc)
		rc = space_load(&pool->space, pool->meta, bad_space_chunk, pool);
	if (!rc)
		rc = meta_layer_foreach(pool->meta, load_layer, pool);
	if (!rc)
		rc = link_layers(pool);
	if (!rc)
		rc = meta_device_foreach(pool->meta, load_device, pool);
	if (!rc) /* after the devices: which link is wrong depends on them */
		rc = cut_cycles(pool);
	if (!rc)
		rc = pool_load_origins(pool);
	if (!rc)
		rc = meta_set_foreach(pool->meta, load_set, pool);
	if (!rc)
		pool_props_load(pool);
	return rc;
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
	char *lock_path = util_path_join(pool->dir, "lock");
	int rc = 0;

	if (!lock_path)
		return -ENOMEM;
	pool->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (pool->lock_fd < 0) {
		rc = set_msg(msg, msglen, -errno, "cannot open %s: %s", lock_path, strerror(errno));
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
	if (size < need && pool->lenient)
		return add_damage(pool, PD_DATA_SHORT, size, need); /* check grows it */
	if (size < need)
		return set_msg(
		    msg, msglen, -EUCLEAN,
		    "data file is %llu bytes, the pool needs %llu (truncated or wrong file)",
		    (unsigned long long)size, (unsigned long long)need);
	path = pool->prow.data_path[0] == '/' ? strdup(pool->prow.data_path)
					      : util_path_join(pool->dir, pool->prow.data_path);
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

/* A zeroed pool with its locks made (writers first: under a steady stream
 * of I/O a commit, and so an fsync, must not wait forever). */
static struct pool *pool_alloc(const char *dir, bool rdonly)
{
	struct pool *pool = calloc(1, sizeof(*pool));
	pthread_rwlockattr_t rwa;

	if (!pool)
		return NULL;
	pool->lock_fd = -1;
	pool->mode = rdonly ? POOL_MODE_READER : POOL_MODE_WRITE;
	pthread_rwlockattr_init(&rwa);
	pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&pool->io_lock, &rwa);
	pthread_rwlockattr_destroy(&rwa);
	pthread_mutex_init(&pool->lock, NULL);
	pthread_mutex_init(&pool->commit_lock, NULL);
	pthread_cond_init(&pool->prov_cv, NULL);
	pool_space_events_init(pool);
	pool->dir = strdup(dir);
	pool->meta_path = util_path_join(dir, "meta.db");
	return pool;
}

static void pool_free(struct pool *pool)
{
	free_state(pool);
	if (pool->meta)
		meta_close(pool->meta);
	if (pool->dio)
		dio_close(pool->dio);
	if (pool->lock_fd >= 0)
		close(pool->lock_fd);
	pthread_rwlock_destroy(&pool->io_lock);
	pthread_mutex_destroy(&pool->lock);
	pthread_mutex_destroy(&pool->commit_lock);
	pthread_cond_destroy(&pool->prov_cv);
	pool_space_events_destroy(pool);
	free(pool->unpunched);
	free(pool->damage);
	free(pool->dir);
	free(pool->meta_path);
	free(pool);
}

/* The directory holds a pool; a read-write open also wants it private and
 * takes the lock. */
static int open_dir(struct pool *pool, const char *holder, char *msg, size_t msglen)
{
	struct stat sb;
	int rc;

	if (stat(pool->dir, &sb) < 0)
		return set_msg(msg, msglen, -errno, "%s: %s", pool->dir, strerror(errno));
	if (!S_ISDIR(sb.st_mode))
		return set_msg(msg, msglen, -ENOTDIR, "%s is not a pool directory", pool->dir);
	if (lstat(pool->meta_path, &sb) < 0)
		return set_msg(msg, msglen, -ENOENT, "%s is not a thinfs pool (no meta.db)",
			       pool->dir);
	if (pool->mode == POOL_MODE_READER)
		return 0;
	rc = pool_check_dir_private(pool->dir, msg, msglen);
	if (!rc && (sb.st_mode & (S_IWGRP | S_IWOTH)))
		rc = set_msg(msg, msglen, -EPERM, "%s is writable by group or others; refusing",
			     pool->meta_path);
	if (!rc)
		rc = open_lock(pool, holder, msg, msglen);
	return rc;
}

/* meta.db and its pool row (a read view begins here for a read-only open). */
static int open_meta(struct pool *pool, char *msg, size_t msglen)
{
	bool rdonly = pool->mode == POOL_MODE_READER;
	int rc = meta_open(pool->meta_path, rdonly, &pool->meta, msg, msglen);

	if (rc)
		return rc;
	rc = rdonly ? meta_begin_read(pool->meta) : 0;
	if (!rc)
		rc = meta_pool_get(pool->meta, &pool->prow);
	if (rc)
		return set_msg(msg, msglen, rc, "%s is not a thinfs pool: %s", pool->dir,
			       meta_errmsg(pool->meta));
	pool->block_size = pool->prow.block_size;
	if (!is_pow2(pool->block_size) || pool->block_size < POOL_MIN_BLOCK_SIZE ||
	    pool->block_size > POOL_MAX_BLOCK_SIZE)
		return set_msg(msg, msglen, -EUCLEAN, "%s: damaged pool (block size %llu)",
			       pool->dir, (unsigned long long)pool->block_size);
	pool->block_shift = (unsigned)__builtin_ctzll(pool->block_size);
	return 0;
}

/* The data file the pool row names, checked against the row. */
static int open_data(struct pool *pool, char *msg, size_t msglen)
{
	const char *name = pool->prow.data_path;
	char *path = name[0] == '/' ? strdup(name) : util_path_join(pool->dir, name);
	int rc;

	if (!path)
		return -ENOMEM;
	rc = dio_open(path, pool->mode == POOL_MODE_READER, &pool->dio, msg, msglen);
	free(path);
	if (!rc)
		rc = check_data(pool, msg, msglen);
	return rc;
}

/* Persist the pool row with clean set to `clean`, in a transaction of its own. */
static int write_clean(struct pool *pool, int clean)
{
	int rc;

	pool->prow.clean = clean;
	rc = meta_begin(pool->meta);
	for (struct device *d = pool->devices; d && !rc; d = d->next)
		if (d->row_dirty)
			rc = meta_device_update(pool->meta, &d->row);
	if (!rc)
		rc = meta_pool_put(pool->meta, &pool->prow);
	if (!rc)
		rc = meta_commit(pool->meta);
	if (rc)
		meta_rollback(pool->meta);
	return rc;
}

/* A read-write open: recover from an unclean stop (scrub free blocks), then
 * mark the pool in use, so a crash from now on is an unclean stop. */
static int open_for_writing(struct pool *pool, char *msg, size_t msglen)
{
	int rc;

	if (!pool->prow.clean) {
		rc = pool_scrub_free_blocks(pool);
		if (rc)
			return set_msg(msg, msglen, rc, "cannot scrub free blocks: %s",
				       strerror(-rc));
	}
	/* a device written when the pool stopped: its content may have changed
	 * since anyone saw that odd generation (pool_device.c) */
	for (struct device *d = pool->devices; d; d = d->next) {
		if (d->row.generation & 1) {
			d->row.generation++;
			d->row_dirty = true;
		}
	}
	rc = write_clean(pool, 0);
	for (struct device *d = pool->devices; d; d = d->next)
		d->row_dirty = false;
	if (rc)
		return set_msg(msg, msglen, rc, "cannot write %s: %s", pool->meta_path,
			       meta_errmsg(pool->meta));
	/* devices deleted while open when the pool stopped: finished below */
	for (struct device *d = pool->devices; d; d = d->next)
		if (d->deleted)
			pool->devices_pending_delete = true;
	/* (and a merge a background reclaim left unfinished) */
	if (layer_merge_candidate(pool))
		pool->devices_pending_delete = true;
	return 0;
}

/* A strict open refuses damage the loader met (naming the first); a lenient
 * one (check) keeps the pool as loaded, in WRITE or READER mode, untouched. */
static int open_state(struct pool *pool, char *msg, size_t msglen)
{
	char what[200];
	int rc = load_state(pool);

	if (rc)
		return set_msg(msg, msglen, rc,
			       "%s: cannot load the metadata (%s); run thinctl check", pool->dir,
			       strerror(-rc));
	if (pool->lenient || !pool->nr_damage)
		return 0;
	pool_damage_describe(&pool->damage[0], what, sizeof(what));
	return set_msg(msg, msglen, -EUCLEAN,
		       "%s: damaged metadata (%s): run thinctl check --repair %s", pool->dir, what,
		       pool->dir);
}

int pool_open(const char *dir, unsigned flags, const char *holder, struct pool **out, char *msg,
	      size_t msglen)
{
	struct pool *pool = pool_alloc(dir, flags & POOL_OPEN_RDONLY);
	int rc;

	if (!pool)
		return -ENOMEM;
	pool->lenient = flags & POOL_OPEN_LENIENT;
	rc = pool->dir && pool->meta_path ? 0 : -ENOMEM;
	if (!rc)
		rc = open_dir(pool, holder, msg, msglen);
	if (!rc)
		rc = open_meta(pool, msg, msglen);
	if (!rc)
		rc = open_data(pool, msg, msglen);
	if (!rc)
		rc = open_state(pool, msg, msglen);
	if (rc) {
		pool_free(pool);
		return rc;
	}
	*out = pool;
	if (pool->lenient)
		return 0;
	if (needs_check_marked(pool)) {
		/* an error meta.db could not record, or damage check found */
		pool->prow.needs_check = 1;
		snprintf(pool->ro_reason, sizeof(pool->ro_reason),
			 "needs_check is set (marker file): run thinctl check --repair %s", dir);
	}
	pool_mode_opened(pool);
	if (pool->mode == POOL_MODE_WRITE && (rc = open_for_writing(pool, msg, msglen))) {
		pool_free(pool);
		*out = NULL;
		return rc;
	}
	if (pool->devices_pending_delete)
		pool_finish_deletes(pool);
	return 0;
}

int pool_close(struct pool *pool)
{
	int rc = 0;

	if (!pool)
		return 0;
	if (pool->mode != POOL_MODE_READER) {
		admin_lock(pool);
		if (pool_mode_writable(pool)) {
			/* handles left open (a daemon's shutdown): writers stop here */
			for (struct device *d = pool->devices; d; d = d->next)
				pool_device_stop_writing(pool, d);
			rc = pool_commit_locked(pool);
			/* blocks whose punch failed may hold old data: leave the
			 * pool unclean, so the next open scrubs them */
			if (!rc && (pool->nr_unpunched || pool->unpunched_lost))
				pool_release_freed(pool);
			/* clean means "free blocks are holes and every write is
			 * durable": flush the punches and any in-place writes no
			 * commit covered before saying so (crash enumeration) */
			/* (a lenient open marks nothing: check decides) */
			if (!rc && !pool->nr_unpunched && !pool->unpunched_lost && !pool->lenient) {
				rc = dio_flush(pool->dio);
				if (!rc)
					rc = write_clean(pool, 1);
			}
		}
		admin_unlock(pool);
	}
	/* the lock file names no holder once the pool is closed */
	if (pool->lock_fd >= 0 && pool->mode != POOL_MODE_READER && ftruncate(pool->lock_fd, 0) < 0)
		rc = rc ? rc : -errno;
	pool_free(pool);
	return rc;
}
