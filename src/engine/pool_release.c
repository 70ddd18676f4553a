/* SPDX-License-Identifier: MIT */
/*
 * pool_release.c - releasing a device nobody has open: its own rows and
 * their blocks (freed in the open transaction, so reused only once it is
 * durable), then its leaf layer, whose parent may merge.  Also the deletes
 * that waited for a last close (a device deleted while open is hidden under
 * the ".deleted" set until then, and after a crash finished at open).
 * Callers hold the admin lock, inside a transaction (pool_txn) where stated.
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
	l->dev = NULL;
	l->nr_rows = 0;
	unlink_device(pool, d);
	pool_free_device(d);
	rc = layer_remove_leaf(pool, l);
	if (!rc)
		rc = pool_reload_vmaps(pool);
	return rc;
}

static int op_finish_deletes(struct pool *pool, void *arg)
{
	bool again = true;
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
