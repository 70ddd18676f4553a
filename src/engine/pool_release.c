/* SPDX-License-Identifier: MIT */
/*
 * pool_release.c - releasing a device nobody has open: its own rows and
 * their blocks (freed in the open transaction, so reused only once it is
 * durable), then its leaf layer, whose parent may merge.  Also the deletes
 * that waited for a last close (a device deleted while open is hidden under
 * the ".deleted" set until then, and after a crash finished at open).
 * Callers hold the admin lock, inside a transaction (pool_txn) where stated.
 *
 * Background reclaim (the daemon's, pool_set_background_reclaim): a delete
 * only hides the device (one O(1) transaction); pool_reclaim_step() then
 * frees its rows RECLAIM_ROWS at a time, each step its own transaction under
 * the admin lock, so a writer on another device waits at most one step, and
 * last releases the empty leaf.  A crash between steps leaves the device
 * hidden with fewer rows: the next open finishes it (pool_finish_deletes).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"
#include "util.h"

static void unlink_device(struct pool *pool, struct device *dev)
{
	for (struct device **pp = &pool->devices; *pp; pp = &(*pp)->next) {
		if (*pp == dev) {
			*pp = dev->next;
			return;
		}
	}
}

static int free_row(void *arg, uint64_t vblock, uint64_t dblock, uint64_t time)
{
	struct pool *pool = arg;

	if (dblock != META_TOMBSTONE)
		space_free(&pool->space, dblock);
	return 0;
}

/* Release a device that nobody has open: its own rows, then its leaf. */
int pool_release_device(struct pool *pool, struct device *d)
{
	struct layer *l = d->layer;
	int rc = meta_map_foreach(pool->meta, l->id, 0, free_row, pool);

	if (!rc)
		rc = meta_map_delete_from(pool->meta, l->id, 0);
	if (!rc)
		rc = meta_device_delete(pool->meta, d->row.id);
	if (rc)
		return rc;
	struct layer *p = l->parent;
	/* a merge may move others' rows, unless a background one will do it */
	bool deferred = pool->background_reclaim && p && !p->parent && p->nr_children <= 2;
	bool others = p && !deferred;
	l->dev = NULL;
	l->nr_rows = 0;
	unlink_device(pool, d);
	pool_free_device(d);
	rc = layer_remove_leaf(pool, l);
	if (!rc && others)
		rc = pool_reload_vmaps(pool);
	return rc;
}

#define RECLAIM_ROWS 4096 /* rows freed per transaction: what one step stalls */

struct reclaim_ctx {
	struct pool *pool;
	uint64_t n, last;
};

static int reclaim_row(void *arg, uint64_t vblock, uint64_t dblock, uint64_t time)
{
	struct reclaim_ctx *c = arg;

	if (dblock != META_TOMBSTONE)
		space_free(&c->pool->space, dblock);
	c->last = vblock;
	return ++c->n == RECLAIM_ROWS ? 1 : 0; /* 1: this step is full */
}

/* One step: up to RECLAIM_ROWS rows of d's leaf, or, once none is left,
 * the device itself. */
static int op_reclaim_step(struct pool *pool, void *arg)
{
	struct device *d = arg;
	struct reclaim_ctx c = {.pool = pool};
	int rc = meta_map_foreach(pool->meta, d->layer->id, 0, reclaim_row, &c);

	bool ended = rc == 0;

	if (rc < 0)
		return rc;
	/* the rows just freed go now, so that none is freed twice: a second
	 * space_free of a cloned block would drop another row's reference */
	rc = c.n ? meta_map_delete_upto(pool->meta, d->layer->id, c.last) : 0;
	if (!rc && ended)
		return pool_release_device(pool, d); /* no row left: the device */
	if (!rc) {
		d->layer->nr_rows = d->layer->nr_rows > c.n ? d->layer->nr_rows - c.n : 0;
		d->layer->dirty = true;
	}
	return rc;
}

static struct device *reclaim_victim(struct pool *pool)
{
	for (struct device *d = pool->devices; d; d = d->next)
		if (d->deleted && !d->open_count)
			return d;
	return NULL;
}

void pool_set_background_reclaim(struct pool *pool, bool on)
{
	pthread_mutex_lock(&pool->lock);
	pool->background_reclaim = on;
	pthread_mutex_unlock(&pool->lock);
}

bool pool_reclaim_pending(struct pool *pool)
{
	bool pending;

	pthread_mutex_lock(&pool->lock);
	pending = pool_mode_writable(pool) && (reclaim_victim(pool) || layer_merge_candidate(pool));
	pthread_mutex_unlock(&pool->lock);
	return pending;
}

static int op_merge_step(struct pool *pool, void *arg)
{
	return layer_merge_step(pool, arg);
}

int pool_reclaim_step(struct pool *pool)
{
	struct device *d;
	struct layer *l;
	int rc = 0;

	admin_lock(pool);
	if (pool_mode_writable(pool) && (d = reclaim_victim(pool)))
		rc = pool_txn(pool, op_reclaim_step, d);
	else if (pool_mode_writable(pool) && (l = layer_merge_candidate(pool)))
		rc = pool_txn(pool, op_merge_step, l);
	pool->devices_pending_delete = reclaim_victim(pool) || layer_merge_candidate(pool);
	admin_unlock(pool);
	return rc;
}

static int op_finish_deletes(struct pool *pool, void *arg)
{
	bool again = true;
	struct layer *l;
	int rc = 0;

	while (again && !rc) {
		again = false;
		for (struct device *d = pool->devices; d; d = d->next) {
			if (d->deleted && !d->open_count) {
				rc = pool_release_device(pool, d);
				again = true;
				break;
			}
		}
	}
	/* and merges (or drops) a background reclaim left unfinished */
	bool merged = false;
	while (!rc && (l = layer_merge_candidate(pool))) {
		rc = l->nr_children ? layer_merge_single(pool, l) : layer_merge_step(pool, l);
		merged = true;
	}
	if (!rc && merged)
		rc = pool_reload_vmaps(pool);
	return rc;
}

void pool_finish_deletes(struct pool *pool)
{
	admin_lock(pool);
	if (pool_mode_writable(pool))
		pool_txn(pool, op_finish_deletes, NULL);
	pool->devices_pending_delete = false;
	admin_unlock(pool);
}
