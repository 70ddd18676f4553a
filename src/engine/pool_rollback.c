/* SPDX-License-Identifier: MIT */
/*
 * pool_rollback.c - rollback: a volume reads exactly as a snapshot again, in
 * constant time and metadata only, like `zfs rollback` or taking a
 * snapshot of the snapshot under the volume's own name and identity.
 *
 * The snapshot's leaf is frozen (as a snapshot of it would freeze it): the
 * snapshot and the volume each get a new empty leaf on it; the volume keeps
 * its id, name, owner and mode, and takes the snapshot's size.  Its old leaf
 * becomes a hidden deleted device, released like any delete (at once, or by
 * the background reclaimer), so the rollback itself is O(1).  Snapshots
 * taken after SNAPSHOT are untouched: they hang off layers that stay.
 *
 * Open-handle contract: refused (-EBUSY) while the volume is open; the
 * snapshot may be open (its view does not change).  Admin lock held.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"
#include "util.h"

struct rollback_args {
	struct device *vol, *snap;
};

/* The new leaf the volume will read through: on the snapshot's parent if
 * the snapshot has nothing of its own, else on its frozen leaf. */
static int leaf_under_snapshot(struct pool *pool, struct device *s, struct layer **out)
{
	struct layer *l = s->layer, *l1;
	int rc;

	if (l->nr_rows == 0 && l->parent)
		return layer_create(pool, l->parent, out);
	rc = layer_create(pool, l, &l1);
	if (!rc)
		rc = layer_create(pool, l, out);
	if (rc)
		return rc;
	l->dev = NULL;
	s->layer = l1;
	l1->dev = s;
	s->row.layer = l1->id;
	if (s->vm_loaded)
		vmap_foreach(&s->vm, 0, pool_clear_own, NULL);
	return meta_device_update(pool->meta, &s->row);
}

static int op_rollback(struct pool *pool, void *arg)
{
	struct rollback_args *a = arg;
	struct device *v = a->vol, *old;
	struct layer *nl, *ol = v->layer;
	int rc = leaf_under_snapshot(pool, a->snap, &nl);

	if (rc)
		return rc;
	/* the volume moves to the new leaf first (leaves are unique) */
	v->layer = nl;
	nl->dev = v;
	v->row.layer = nl->id;
	v->row.size = a->snap->row.size;
	v->row.origin = a->snap->row.id;
	v->row.mapped = a->snap->row.mapped;
	v->row.mtime = util_now();
	pool_device_content_changed(v); /* a replication base no more */
	vmap_destroy(&v->vm);
	vmap_init(&v->vm);
	v->vm_loaded = false;
	rc = meta_device_update(pool->meta, &v->row);
	if (rc)
		return rc;
	/* its old leaf: a hidden device, released like a delete */
	old = pool_new_device(pool);
	if (!old)
		return -ENOMEM;
	old->row = v->row;
	old->row.id = 0;
	old->row.layer = ol->id;
	/* hidden from the start: (set, name) is unique */
	snprintf(old->row.set, sizeof(old->row.set), "%s", DELETED_SET);
	snprintf(old->row.name, sizeof(old->row.name), "rollback-%llu-%llu",
		 (unsigned long long)v->row.id, (unsigned long long)pool->prow.pool_time);
	old->layer = ol;
	ol->dev = old;
	rc = meta_device_insert(pool->meta, &old->row);
	if (!rc)
		rc = pool_defer_delete(pool, old);
	a->snap->row.snap_time = pool->prow.pool_time;
	a->snap->row_dirty = true;
	pool->prow.pool_time++;
	if (rc)
		return rc;
	if (pool->background_reclaim) {
		pool->devices_pending_delete = true;
		return 0;
	}
	return pool_release_device(pool, old);
}

/* What refuses a rollback (the names, the kinds, an open volume): 0 or the
 * -errno with the reason; fills a. */
static int rollback_refusal(struct pool *pool, struct rollback_args *a, const char *volume,
			    const char *snapshot, char *msg, size_t msglen)
{
	a->vol = pool_find_device(pool, volume);
	a->snap = pool_find_device(pool, snapshot);
	if (!a->vol)
		return set_msg(msg, msglen, -ENOENT, "volume '%s' does not exist", volume);
	if (!a->snap)
		return set_msg(msg, msglen, -ENOENT, "snapshot '%s' does not exist", snapshot);
	if (a->vol == a->snap)
		return set_msg(msg, msglen, -EINVAL, "'%s' cannot be rolled back to itself",
			       volume);
	if (a->vol->row.set[0] || a->vol->row.read_only)
		return set_msg(msg, msglen, -EROFS,
			       "'%s' is a read-only snapshot set member: only volumes roll back",
			       volume);
	if (!pool_origin_same(a->vol, a->snap))
		return set_msg(msg, msglen, -EINVAL,
			       "'%s' and '%s' have different external origins: a rollback would "
			       "change what their unmapped blocks read",
			       volume, snapshot);
	if (a->vol->open_count)
		return set_msg(msg, msglen, -EBUSY,
			       "volume '%s' is open: close it first (a rollback needs it unused)",
			       volume);
	return 0;
}

int pool_rollback(struct pool *pool, const char *volume, const char *snapshot, char *msg,
		  size_t msglen)
{
	struct rollback_args a = {0};
	int rc;

	admin_lock(pool);
	rc = pool_check_writable(pool, msg, msglen);
	if (!rc)
		rc = rollback_refusal(pool, &a, volume, snapshot, msg, msglen);
	if (!rc) {
		rc = pool_txn(pool, op_rollback, &a);
		if (rc)
			set_msg(msg, msglen, rc, "cannot roll back '%s': %s", volume,
				strerror(-rc));
	}
	admin_unlock(pool);
	return rc;
}
