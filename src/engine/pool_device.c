/* SPDX-License-Identifier: MIT */
/*
 * pool_device.c - a device's in-memory state: finding it by name, its
 * resolved view (loaded on first use, dropped when nothing needs it), the
 * changes waiting for the next commit (dirty vblocks, hidden ancestor
 * mappings), and its public description.  Pool lock held by every caller.
 *
 * Invariant: a view with dirty or hidden entries, or pinned after a failed
 * commit, is never dropped: it is the only record of those writes.
 *
 * Generations (the identity send/receive relies on, meta.h): the content of
 * a device never changes while its durable generation is even.  The first
 * write, discard or zeroing after the device was stable commits an odd
 * generation before any byte moves (start_writing in pool_io.c); the last
 * close commits the next, even one (pool_device_stop_writing, after the data
 * flush every commit starts with); an open after a crash moves every odd
 * generation on (pool_open.c); resize adds 2.  So a reader that saw an even
 * generation G and later sees G again knows the content did not change in
 * between, whichever process wrote it; an odd one means "being written".
 *
 * External origins: a device's origin is loaded with it (pool_load_origins),
 * opened and checked at its first open (pool_device_origin_open; pool_io.c
 * closes it at the last), and copied to its snapshots in their transaction.
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

void pool_free_device(struct device *d)
{
	vmap_destroy(&d->vm);
	free(d->dirty);
	free(d->hidden);
	origin_free(d->origin);
	free(d);
}

void pool_device_mark_dirty(struct pool *pool, struct device *dev, uint64_t vblock)
{
	if (dev->nr_dirty == dev->cap_dirty) {
		size_t cap = dev->cap_dirty ? dev->cap_dirty * 2 : 256;
		uint64_t *n =
		    pool_test_alloc_fails(pool) ? NULL : realloc(dev->dirty, cap * sizeof(*n));
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
	dev->hidden[dev->nr_hidden++] = (struct hidden){vblock, dblock};
	pool->dirty = true;
}

void pool_drop_mapping(struct pool *pool, struct device *dev, uint64_t vblock, uint64_t e)
{
	if (!vm_mapped(e))
		return;
	if (vm_leaf_names(e))
		space_free(&pool->space, vm_dblock(e)); /* or one clone reference */
	else
		pool_device_hide(pool, dev, vblock, vm_dblock(e));
}

void pool_unmap_block_locked(struct pool *pool, struct device *dev, uint64_t vblock)
{
	uint64_t e = vmap_get(&dev->vm, vblock);

	if (!vm_mapped(e))
		return;
	pool_drop_mapping(pool, dev, vblock, e);
	dev->row.mapped--;
	dev->row_dirty = true;
	if (!(e & VM_DIRTY))
		pool_device_mark_dirty(pool, dev, vblock);
	vmap_set(&dev->vm, vblock, VM_DIRTY | (e & VM_ROW));
	pool_space_short(pool, false, NULL);
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

void pool_device_fill_info(const struct device *d, struct pool_device_info *info)
{
	memset(info, 0, sizeof(*info));
	info->id = d->row.id;
	/* a device deleted while open is in no set: it is only hidden */
	snprintf(info->set, sizeof(info->set), "%s", d->deleted ? "" : d->row.set);
	snprintf(info->name, sizeof(info->name), "%s", d->row.name);
	info->size = d->row.size;
	info->origin_id = d->row.origin;
	info->creation_time = d->row.creation_time;
	info->snap_time = d->row.snap_time;
	info->ctime_sec = d->row.ctime;
	info->mtime_sec = d->row.mtime;
	info->read_only = d->row.read_only;
	info->uid = d->row.uid;
	info->gid = d->row.gid;
	info->mode = d->row.mode;
	info->mapped_blocks = d->row.mapped;
	info->generation = d->row.generation;
	if (d->origin) {
		snprintf(info->origin_path, sizeof(info->origin_path), "%s", d->origin->row.path);
		info->origin_size = d->origin->row.size;
	}
}

void pool_device_stop_writing(struct pool *pool, struct device *dev)
{
	if (!dev->writing)
		return;
	dev->writing = false;
	dev->row.generation = (dev->row.generation | 1) + 1;
	dev->row_dirty = true;
	pool->dirty = true;
}

void pool_device_content_changed(struct device *dev)
{
	dev->row.generation += 2;
	dev->row_dirty = true;
}

/* The device size limit (pool.h): here, below both the data path and
 * administration, which check it. */
uint64_t pool_size_limit(struct pool *pool)
{
	uint64_t by_offset = (uint64_t)INT64_MAX / pool->block_size; /* off_t */

	return (by_offset < POOL_MAX_VBLOCKS ? by_offset : POOL_MAX_VBLOCKS) * pool->block_size;
}

int pool_size_check(struct pool *pool, uint64_t size, char *msg, size_t msglen)
{
	uint64_t limit = pool_size_limit(pool);
	char h[32], bs[32];

	if (size <= limit)
		return 0;
	return set_msg(msg, msglen, -EFBIG,
		       "size %llu is beyond the limit of %s (%llu bytes, %llu blocks of %s)",
		       (unsigned long long)size, pool_human_size(limit, h, sizeof(h)),
		       (unsigned long long)limit, (unsigned long long)(limit / pool->block_size),
		       pool_human_size(pool->block_size, bs, sizeof(bs)));
}

/* ---- external origins (origin.h; made by pool_origin.c) ---- */

static struct device *device_by_id(struct pool *pool, uint64_t id)
{
	for (struct device *d = pool->devices; d; d = d->next)
		if (d->row.id == id)
			return d;
	return NULL;
}

static int load_origin(void *arg, const struct meta_origin_row *r)
{
	struct device *d = device_by_id(arg, r->device);

	if (!d)
		return 0; /* (the foreign key makes this impossible) */
	origin_free(d->origin);
	d->origin = origin_new(r);
	return d->origin ? 0 : -ENOMEM;
}

int pool_load_origins(struct pool *pool)
{
	return meta_origin_foreach(pool->meta, load_origin, pool);
}

static void origin_device_name(const struct device *d, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s", d->row.set, d->row.set[0] ? "/" : "", d->row.name);
}

int pool_device_origin_open(struct pool *pool, struct device *d)
{
	char name[2 * POOL_NAME_MAX + 2], msg[POOL_MSG_MAX];
	int rc;

	if (!d->origin)
		return 0;
	origin_device_name(d, name, sizeof(name));
	rc = origin_open(d->origin, name, msg, sizeof(msg));
	if (rc)
		pool_log(pool, POOL_LOG_ERR, "%s", msg);
	return rc;
}

int pool_origin_copy(struct pool *pool, const struct device *d, struct device *n)
{
	struct meta_origin_row row = d->origin->row;
	int rc;

	row.device = n->row.id;
	rc = meta_origin_insert(pool->meta, &row);
	if (rc)
		return rc;
	n->origin = origin_new(&row);
	return n->origin ? 0 : -ENOMEM;
}

bool pool_origin_same(const struct device *d, const struct device *s)
{
	const struct meta_origin_row *a, *b;

	if (!d->origin || !s->origin)
		return !d->origin && !s->origin;
	a = &d->origin->row;
	b = &s->origin->row;
	return !strcmp(a->path, b->path) && a->size == b->size && a->st_dev == b->st_dev &&
	       a->st_ino == b->st_ino && a->mtime_ns == b->mtime_ns;
}
