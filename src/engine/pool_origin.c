/* SPDX-License-Identifier: MIT */
/*
 * pool_origin.c - volumes over an external origin (origin.h): making one,
 * loading the origins rows onto the devices, the identity check at a
 * device's first open, a snapshot's copy of its origin, and the checks that
 * check and info run.  The data path's side (reads and copy-on-write from
 * the origin) is in pool_io.c.
 *
 * Invariants: a device has an origin iff it has an origins row (made in the
 * transaction that makes the device; gone with it, ON DELETE CASCADE); a
 * snapshot's row repeats its origin's (same path and identity), so the two
 * read the same bytes where neither maps a block.  An origin's descriptor
 * is open exactly while its device is (open_count > 0).
 *
 * The device-level hooks (loading the rows, the check at a first open, a
 * snapshot's copy) are in pool_device.c, below the administration.
 *
 * Design choices (README, "External origins"):
 *  - discard of an origin volume unmaps whole blocks, which then read the
 *    origin again (dm-thin's external origin does the same); its partial
 *    blocks are zeroed (the origin's block copied first);
 *  - zero-range makes the range read zeros: over the origin, by zero
 *    blocks (provisioned), past its end by unmapping;
 *  - growing the volume past the origin reads zeros there; a shrink and a
 *    grow back reads the origin again where the blocks were unmapped.
 *
 * Locking: as pool_admin.c (admin lock for the change); the load and the
 * open run under the pool lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pool_internal.h"
#include "util.h"

_Static_assert(POOL_ORIGIN_PATH_MAX == META_ORIGIN_PATH_MAX, "one limit for an origin's path");

static void device_name(const struct device *d, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s", d->row.set, d->row.set[0] ? "/" : "", d->row.name);
}

int pool_origin_verify(struct pool *pool, const char *dev, char *msg, size_t msglen)
{
	struct origin *o = NULL;
	char name[2 * POOL_NAME_MAX + 2];
	struct device *d;
	int rc = 0;

	pthread_mutex_lock(&pool->lock);
	d = pool_find_device(pool, dev);
	if (!d)
		rc = set_msg(msg, msglen, -ENOENT, "device '%s' does not exist", dev);
	else if (d->origin && !(o = origin_new(&d->origin->row)))
		rc = -ENOMEM;
	if (o)
		device_name(d, name, sizeof(name));
	pthread_mutex_unlock(&pool->lock);
	/* (a copy: the file is opened without the lock) */
	if (o)
		rc = origin_verify(o, name, msg, msglen);
	origin_free(o);
	return rc;
}

/* ---- create ---- */

struct origin_args {
	const char *name;
	uint64_t size;
	uint32_t uid, gid, mode;
	struct origin *o; /* handed to the device by the op */
};

static int op_create_origin(struct pool *pool, void *arg)
{
	struct origin_args *a = arg;
	struct device *d = NULL;
	int rc = pool_create_one(pool, "", a->name, a->size, a->uid, a->gid, a->mode, &d);

	if (!d)
		return rc ? rc : -ENOMEM;
	d->origin = a->o;
	a->o = NULL;
	d->origin->row.device = d->row.id;
	return rc ? rc : meta_origin_insert(pool->meta, &d->origin->row);
}

/* An origin may not be the pool's own data file or database, nor lie inside
 * a thinfs mount: its reads would come back to a thinfs daemon, maybe this
 * one, whose first open of the volume holds the pool lock (a deadlock). */
static int origin_not_pool(struct pool *pool, const struct meta_origin_row *r, char *msg,
			   size_t msglen)
{
	const char *dp = pool->prow.data_path;
	char *data, fstype[256];
	const char *paths[2];
	struct stat sb;

	pool_mount_fstype(r->path, fstype, sizeof(fstype));
	if (!strcmp(fstype, "fuse.thinfs"))
		return set_msg(msg, msglen, -ELOOP,
			       "origin %s is inside a thinfs mount (its reads would come back "
			       "to a thinfs daemon)",
			       r->path);
	data = dp[0] == '/' ? strdup(dp) : util_path_join(pool->dir, dp);
	paths[0] = data;
	paths[1] = pool->meta_path;
	if (!data)
		return -ENOMEM;
	for (size_t i = 0; i < 2; i++) {
		if (stat(paths[i], &sb) == 0 && (uint64_t)sb.st_dev == r->st_dev &&
		    (uint64_t)sb.st_ino == r->st_ino) {
			free(data);
			return set_msg(msg, msglen, -EINVAL, "origin %s is the pool's own %s",
				       r->path, i ? "metadata database" : "data file");
		}
	}
	free(data);
	return 0;
}

/* What refuses the volume (the pool, the size, the name); admin lock held. */
static int create_refusal(struct pool *pool, const struct origin_args *a, char *msg, size_t msglen)
{
	int rc = pool_check_writable(pool, msg, msglen);

	if (!rc)
		rc = pool_size_check(pool, a->size, msg, msglen);
	if (!rc && pool_find_device(pool, a->name))
		rc = set_msg(msg, msglen, -EEXIST, "volume '%s' already exists", a->name);
	if (!rc)
		rc = origin_not_pool(pool, &a->o->row, msg, msglen);
	return rc;
}

int pool_create_origin(struct pool *pool, const char *name, uint64_t size, const char *origin,
		       uint32_t uid, uint32_t gid, uint32_t mode, char *msg, size_t msglen)
{
	struct origin_args a = {.name = name, .uid = uid, .gid = gid, .mode = mode};
	struct meta_origin_row row;
	char sz[96];
	int rc = pool_name_valid(name, msg, msglen);

	if (!rc)
		rc = origin_probe(origin, &row, msg, msglen);
	if (rc)
		return rc;
	a.size = size ? size : row.size;
	a.o = origin_new(&row);
	if (!a.o)
		return -ENOMEM;
	admin_lock(pool);
	rc = create_refusal(pool, &a, msg, msglen);
	if (!rc) {
		rc = pool_txn(pool, op_create_origin, &a);
		if (rc) {
			pool_log(pool, POOL_LOG_ERR, "cannot create '%s': %s", name, strerror(-rc));
			set_msg(msg, msglen, rc, "cannot create '%s': %s", name, strerror(-rc));
		}
	}
	if (!rc)
		pool_log(pool, POOL_LOG_INFO, "created volume '%s' of %s over origin %s", name,
			 pool_size_text(a.size, pool->block_size, sz, sizeof(sz)), row.path);
	admin_unlock(pool);
	origin_free(a.o);
	return rc;
}
