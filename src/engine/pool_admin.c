/* SPDX-License-Identifier: MIT */
/*
 * pool_admin.c - administrative changes: create, snapshot (one device or an
 * atomic set of all), delete, rename, resize, grow, ownership.
 *
 * Each call validates with the io lock (write) and the pool lock held, so
 * nothing changes between the check and the change, then runs its change as
 * one transaction (pool_txn): durable on return, all or nothing across a
 * crash.  A device deleted while open leaves the namespace at once (it moves
 * to the hidden set ".deleted") and is released at its last close, or at the
 * next open of the pool after a crash.
 *
 * Every change that succeeds is logged once (pool_log, level INFO) with the
 * device and what changed; one whose commit fails, at level ERR (the pool's
 * turn to FAILED is logged by pool_fail).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"
#include "util.h"

int pool_check_writable(struct pool *pool, char *msg, size_t msglen)
{
	if (pool->mode == POOL_MODE_READER)
		return set_msg(msg, msglen, -EROFS, "pool is open read-only");
	if (!pool_mode_writable(pool))
		return set_msg(msg, msglen, -EROFS,
			       "pool is read-only (%s); run thinctl check --repair",
			       pool->ro_reason[0] ? pool->ro_reason : "needs_check is set");
	return 0;
}

/* A change whose commit failed: explain it as "cannot WHAT 'NAME': reason",
 * to the caller and to the log. */
static int change_failed(struct pool *pool, int rc, const char *what, const char *name, char *msg,
			 size_t msglen)
{
	pool_log(pool, POOL_LOG_ERR, "cannot %s '%s': %s", what, name, strerror(-rc));
	return set_msg(msg, msglen, rc, "cannot %s '%s': %s", what, name, strerror(-rc));
}

/* "1.0G (1073741824 B, 16384 blocks)" in this pool's blocks */
static const char *size_text(struct pool *pool, uint64_t bytes, char *buf, size_t len)
{
	return pool_size_text(bytes, pool->block_size, buf, len);
}

/* Run an administrative change as one transaction; explain a failure as
 * "cannot WHAT 'NAME': reason". */
static int run_change(struct pool *pool, txn_op op, void *arg, const char *what, const char *name,
		      char *msg, size_t msglen)
{
	int rc = pool_txn(pool, op, arg);

	if (rc)
		change_failed(pool, rc, what, name, msg, msglen);
	return rc;
}

struct device *pool_new_device(struct pool *pool)
{
	struct device *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	vmap_init(&d->vm);
	d->next = pool->devices;
	pool->devices = d;
	return d;
}

/* ---- create ---- */

struct create_args {
	const char *set, *name;
	uint64_t size;
	uint32_t uid, gid, mode;
};

int pool_create_one(struct pool *pool, const char *set, const char *name, uint64_t size,
		    uint32_t uid, uint32_t gid, uint32_t mode, struct device **out)
{
	struct layer *l;
	struct device *d;
	int64_t now = util_now();
	int rc = layer_create(pool, NULL, &l);

	if (rc)
		return rc;
	d = pool_new_device(pool);
	if (!d)
		return -ENOMEM;
	snprintf(d->row.set, sizeof(d->row.set), "%s", set);
	snprintf(d->row.name, sizeof(d->row.name), "%s", name);
	d->row.size = size;
	d->row.layer = l->id;
	d->row.creation_time = pool->prow.pool_time;
	d->row.ctime = d->row.mtime = now;
	d->row.uid = uid;
	d->row.gid = gid;
	d->row.mode = mode & 07777;
	d->layer = l;
	l->dev = d;
	if (out)
		*out = d;
	return meta_device_insert(pool->meta, &d->row);
}

static int op_create(struct pool *pool, void *arg)
{
	struct create_args *a = arg;

	return pool_create_one(pool, a->set, a->name, a->size, a->uid, a->gid, a->mode, NULL);
}

int pool_create(struct pool *pool, const char *name, uint64_t size, char *msg, size_t msglen)
{
	return pool_create_owned(pool, name, size, 0, 0, 0600, msg, msglen);
}

int pool_create_owned(struct pool *pool, const char *name, uint64_t size, uint32_t uid,
		      uint32_t gid, uint32_t mode, char *msg, size_t msglen)
{
	struct create_args a = {
	    .set = "", .name = name, .size = size, .uid = uid, .gid = gid, .mode = mode};
	int rc = pool_name_valid(name, msg, msglen);
	char sz[96];

	if (rc)
		return rc;
	admin_lock(pool);
	rc = pool_check_writable(pool, msg, msglen);
	if (!rc)
		rc = pool_size_check(pool, size, msg, msglen);
	if (!rc && pool_find_device(pool, name))
		rc = set_msg(msg, msglen, -EEXIST, "volume '%s' already exists", name);
	if (!rc)
		rc = run_change(pool, op_create, &a, "create", name, msg, msglen);
	if (!rc)
		pool_log(pool, POOL_LOG_INFO, "created volume '%s' of %s", name,
			 size_text(pool, size, sz, sizeof(sz)));
	admin_unlock(pool);
	return rc;
}

/* ---- snapshots ---- */

void pool_clear_own(void *arg, uint64_t vblock, uint64_t *entry)
{
	*entry &= ~(VM_OWN | VM_ROW);
}

int pool_snap_one(struct pool *pool, struct device *d, const char *set, const char *name,
		  bool read_only, struct device **out)
{
	struct layer *l = d->layer, *nl, *l1;
	struct device *n;
	int rc;

	if (l->nr_rows == 0 && l->parent) {
		/* nothing of its own yet: the snapshot can share d's parent */
		rc = layer_create(pool, l->parent, &nl);
		if (rc)
			return rc;
	} else {
		/* freeze d's leaf; d and the snapshot each get an empty leaf on it */
		rc = layer_create(pool, l, &l1);
		if (!rc)
			rc = layer_create(pool, l, &nl);
		if (rc)
			return rc;
		l->dev = NULL;
		d->layer = l1;
		l1->dev = d;
		d->row.layer = l1->id;
		if (d->vm_loaded)
			vmap_foreach(&d->vm, 0, pool_clear_own, NULL);
	}
	n = pool_new_device(pool);
	if (!n)
		return -ENOMEM;
	n->row = d->row;
	n->row.id = 0;
	snprintf(n->row.set, sizeof(n->row.set), "%s", set);
	snprintf(n->row.name, sizeof(n->row.name), "%s", name);
	n->row.layer = nl->id;
	n->row.origin = d->row.id;
	n->row.creation_time = pool->prow.pool_time;
	n->row.snap_time = 0;
	n->row.ctime = n->row.mtime = util_now();
	n->row.read_only = read_only;
	/* a new device: its own identity (send_receive.c), nobody's copy */
	n->row.generation = 0;
	n->row.copy_of[0] = 0;
	n->layer = nl;
	if (out)
		*out = n;
	nl->dev = n;
	d->row.snap_time = pool->prow.pool_time;
	d->row_dirty = true;
	/* the origin's row first: its leaf changed, and leaves are unique */
	rc = meta_device_update(pool->meta, &d->row);
	if (!rc)
		rc = meta_device_insert(pool->meta, &n->row);
	if (!rc && d->origin) /* it reads the same origin */
		rc = pool_origin_copy(pool, d, n);
	return rc;
}

struct snap_args {
	struct device *origin;
	const char *name;
	const char *set;
};

static int op_snapshot(struct pool *pool, void *arg)
{
	struct snap_args *a = arg;
	int rc = pool_snap_one(pool, a->origin, "", a->name, false, NULL);

	if (!rc)
		pool->prow.pool_time++;
	return rc;
}

int pool_snapshot(struct pool *pool, const char *origin, const char *name, char *msg, size_t msglen)
{
	struct snap_args a = {.name = name};
	int rc = pool_name_valid(name, msg, msglen);

	if (rc)
		return rc;
	admin_lock(pool);
	rc = pool_check_writable(pool, msg, msglen);
	if (!rc && !(a.origin = pool_find_device(pool, origin)))
		rc = set_msg(msg, msglen, -ENOENT, "origin '%s' does not exist", origin);
	if (!rc && pool_find_device(pool, name))
		rc = set_msg(msg, msglen, -EEXIST, "volume '%s' already exists", name);
	if (!rc)
		rc = run_change(pool, op_snapshot, &a, "snapshot", origin, msg, msglen);
	if (!rc)
		pool_log(pool, POOL_LOG_INFO, "took snapshot '%s' of '%s'", name, origin);
	admin_unlock(pool);
	return rc;
}

static int op_snapshot_set(struct pool *pool, void *arg)
{
	struct snap_args *a = arg;
	struct meta_set_row row = {.ctime = util_now()};
	struct device **list = NULL;
	size_t n = 0, cap = 0;
	struct set *s;
	int rc;

	snprintf(row.name, sizeof(row.name), "%s", a->set);
	rc = meta_set_insert(pool->meta, &row);
	if (rc)
		return rc;
	/* the members, taken before new devices join the list */
	for (struct device *d = pool->devices; d; d = d->next) {
		if (d->deleted || d->row.set[0])
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			struct device **nl = realloc(list, cap * sizeof(*nl));
			if (!nl) {
				free(list);
				return -ENOMEM;
			}
			list = nl;
		}
		list[n++] = d;
	}
	for (size_t i = 0; i < n && !rc; i++)
		rc = pool_snap_one(pool, list[i], a->set, list[i]->row.name, true, NULL);
	free(list);
	if (rc)
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->row = row;
	s->next = pool->sets;
	pool->sets = s;
	pool->prow.pool_time++;
	return 0;
}

static struct set *find_set(struct pool *pool, const char *name)
{
	for (struct set *s = pool->sets; s; s = s->next)
		if (!strcmp(s->row.name, name))
			return s;
	return NULL;
}

int pool_snapshot_set(struct pool *pool, const char *set, char *msg, size_t msglen)
{
	struct snap_args a = {.set = set};
	int rc = pool_name_valid(set, msg, msglen);

	if (rc)
		return rc;
	admin_lock(pool);
	rc = pool_check_writable(pool, msg, msglen);
	if (!rc && find_set(pool, set))
		rc = set_msg(msg, msglen, -EEXIST, "snapshot set '%s' already exists", set);
	if (!rc)
		rc = run_change(pool, op_snapshot_set, &a, "take snapshot set", set, msg, msglen);
	if (!rc)
		pool_log(pool, POOL_LOG_INFO, "took snapshot set '%s' of every volume", set);
	admin_unlock(pool);
	return rc;
}

/* ---- delete ---- */

/* Hide an open device until its last close. */
int pool_defer_delete(struct pool *pool, struct device *d)
{
	snprintf(d->row.set, sizeof(d->row.set), "%s", DELETED_SET);
	snprintf(d->row.name, sizeof(d->row.name), "%llu", (unsigned long long)d->row.id);
	d->deleted = true;
	d->row_dirty = true;
	return meta_device_update(pool->meta, &d->row);
}

static int remove_device(struct pool *pool, struct device *d)
{
	if (d->open_count || pool->background_reclaim) {
		pool->devices_pending_delete |= !d->open_count;
		return pool_defer_delete(pool, d);
	}
	return pool_release_device(pool, d);
}

static int op_delete(struct pool *pool, void *arg)
{
	return remove_device(pool, arg);
}

int pool_delete(struct pool *pool, const char *dev, char *msg, size_t msglen)
{
	struct device *d = NULL;
	bool was_open;
	int rc;

	admin_lock(pool);
	rc = pool_check_writable(pool, msg, msglen);
	if (!rc && !(d = pool_find_device(pool, dev)))
		rc = set_msg(msg, msglen, -ENOENT, "volume '%s' does not exist", dev);
	was_open = d && d->open_count; /* d may be gone after the change */
	if (!rc)
		rc = run_change(pool, op_delete, d, "delete", dev, msg, msglen);
	if (!rc)
		pool_log(pool, POOL_LOG_INFO, "deleted '%s'%s", dev,
			 was_open ? " (open: its blocks return at its last close)" : "");
	admin_unlock(pool);
	return rc;
}

static int op_delete_set(struct pool *pool, void *arg)
{
	struct set *s = arg;
	int rc = 0;
	bool again = true;

	while (again && !rc) {
		again = false;
		for (struct device *d = pool->devices; d; d = d->next) {
			if (d->deleted || strcmp(d->row.set, s->row.name))
				continue;
			rc = remove_device(pool, d);
			again = true; /* the list changed under us */
			break;
		}
	}
	if (!rc)
		rc = meta_set_delete(pool->meta, s->row.name);
	if (rc)
		return rc;
	for (struct set **pp = &pool->sets; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			free(s);
			break;
		}
	}
	return 0;
}

int pool_delete_set(struct pool *pool, const char *set, char *msg, size_t msglen)
{
	struct set *s = NULL;
	int rc;

	admin_lock(pool);
	rc = pool_check_writable(pool, msg, msglen);
	if (!rc && !(s = find_set(pool, set)))
		rc = set_msg(msg, msglen, -ENOENT, "snapshot set '%s' does not exist", set);
	if (!rc)
		rc = run_change(pool, op_delete_set, s, "delete set", set, msg, msglen);
	if (!rc)
		pool_log(pool, POOL_LOG_INFO, "deleted snapshot set '%s'", set);
	admin_unlock(pool);
	return rc;
}

/* ---- rename ---- */

struct rename_args {
	struct device *dev;
	struct device *victim; /* replaced by the rename, or NULL */
	struct set *set;
	const char *newname;
};

static int op_rename(struct pool *pool, void *arg)
{
	struct rename_args *a = arg;

	if (a->victim) {
		int rc = remove_device(pool, a->victim);
		if (rc)
			return rc;
	}

	snprintf(a->dev->row.name, sizeof(a->dev->row.name), "%s", a->newname);
	a->dev->row_dirty = true;
	return meta_device_update(pool->meta, &a->dev->row);
}

static int rename_device(struct pool *pool, const char *oldname, const char *newname, bool replace,
			 char *msg, size_t msglen)
{
	struct rename_args a = {.newname = newname};
	struct device *target;
	int rc = pool_name_valid(newname, msg, msglen);

	if (rc)
		return rc;
	admin_lock(pool);
	rc = pool_check_writable(pool, msg, msglen);
	if (!rc && !(a.dev = pool_find_device(pool, oldname)))
		rc = set_msg(msg, msglen, -ENOENT, "volume '%s' does not exist", oldname);
	else if (!rc && a.dev->row.set[0])
		rc = set_msg(msg, msglen, -EROFS, "'%s' is a member of a snapshot set", oldname);
	target = rc ? NULL : pool_find_device(pool, newname);
	if (target == a.dev)
		target = NULL; /* a rename onto itself does nothing */
	if (!rc && target && !replace)
		rc = set_msg(msg, msglen, -EEXIST, "volume '%s' already exists", newname);
	a.victim = target;
	if (!rc && strcmp(oldname, newname)) {
		rc = run_change(pool, op_rename, &a, "rename", oldname, msg, msglen);
		if (!rc)
			pool_log(pool, POOL_LOG_INFO, "renamed '%s' to '%s'%s", oldname, newname,
				 a.victim ? " (replacing the volume of that name)" : "");
	}
	admin_unlock(pool);
	return rc;
}

int pool_rename(struct pool *pool, const char *oldname, const char *newname, char *msg,
		size_t msglen)
{
	return rename_device(pool, oldname, newname, false, msg, msglen);
}

int pool_rename_replace(struct pool *pool, const char *oldname, const char *newname, char *msg,
			size_t msglen)
{
	return rename_device(pool, oldname, newname, true, msg, msglen);
}

static int op_rename_set(struct pool *pool, void *arg)
{
	struct rename_args *a = arg;
	int rc = meta_set_rename(pool->meta, a->set->row.name, a->newname);

	for (struct device *d = pool->devices; d && !rc; d = d->next) {
		if (d->deleted || strcmp(d->row.set, a->set->row.name))
			continue;
		snprintf(d->row.set, sizeof(d->row.set), "%s", a->newname);
		rc = meta_device_update(pool->meta, &d->row);
	}
	if (!rc)
		snprintf(a->set->row.name, sizeof(a->set->row.name), "%s", a->newname);
	return rc;
}

int pool_rename_set(struct pool *pool, const char *oldname, const char *newname, char *msg,
		    size_t msglen)
{
	struct rename_args a = {.newname = newname};
	int rc = pool_name_valid(newname, msg, msglen);

	if (rc)
		return rc;
	admin_lock(pool);
	rc = pool_check_writable(pool, msg, msglen);
	if (!rc && !(a.set = find_set(pool, oldname)))
		rc = set_msg(msg, msglen, -ENOENT, "snapshot set '%s' does not exist", oldname);
	if (!rc && find_set(pool, newname) && strcmp(oldname, newname))
		rc = set_msg(msg, msglen, -EEXIST, "snapshot set '%s' already exists", newname);
	if (!rc && strcmp(oldname, newname)) {
		rc = run_change(pool, op_rename_set, &a, "rename set", oldname, msg, msglen);
		if (!rc)
			pool_log(pool, POOL_LOG_INFO, "renamed snapshot set '%s' to '%s'", oldname,
				 newname);
	}
	admin_unlock(pool);
	return rc;
}

/* ---- resize, grow, owner ---- */

struct resize_args {
	struct device *dev;
	uint64_t size;
};

static int op_resize(struct pool *pool, void *arg)
{
	struct resize_args *a = arg;

	a->dev->row.size = a->size;
	a->dev->row.mtime = util_now();
	pool_device_content_changed(a->dev);
	return meta_device_update(pool->meta, &a->dev->row);
}

/*
 * Resize the device named dev, or the one behind an open handle (which may
 * have been deleted from the namespace meanwhile).  Open handles: a shrink
 * takes effect for them at once (reads past the new end are short, writes
 * -EFBIG).  Everything happens with the io lock held for writing, so no
 * write lands in the tail between its zeroing and the shrink.  A failed
 * commit leaves the size as it was (the pool then is read-only).
 */
static int resize(struct pool *pool, const char *dev, struct volume *vol, uint64_t size, char *msg,
		  size_t msglen)
{
	struct resize_args a = {.size = size};
	uint64_t bs = pool->block_size, old_size, old_mtime, old_gen = 0;
	struct device *d;
	const char *what = dev;
	int rc;

	admin_lock(pool);
	rc = pool_check_writable(pool, msg, msglen);
	if (!rc)
		rc = pool_size_check(pool, size, msg, msglen);
	if (rc)
		goto out;
	d = vol ? pool_volume_device(vol) : pool_find_device(pool, dev);
	if (!d) {
		rc = set_msg(msg, msglen, -ENOENT, "volume '%s' does not exist", dev);
		goto out;
	}
	what = d->row.name;
	if (d->row.read_only) {
		rc = set_msg(msg, msglen, -EROFS, "'%s' is a read-only snapshot", what);
		goto out;
	}
	a.dev = d;
	old_size = d->row.size;
	old_mtime = (uint64_t)d->row.mtime;
	old_gen = d->row.generation;
	if (size < d->row.size) {
		uint64_t first = div_round_up(size, bs);
		uint64_t last = div_round_up(d->row.size, bs);
		rc = pool_device_load_vmap(pool, d);
		if (!rc && size % bs) {
			/* a partial last block keeps only what lies below the new end */
			uint64_t end = first * bs < d->row.size ? first * bs : d->row.size;
			pthread_mutex_unlock(&pool->lock);
			rc = pool_zero_partial_iolocked(pool, d, size, (size_t)(end - size));
			pthread_mutex_lock(&pool->lock);
		}
		for (uint64_t vb = first; !rc && vb < last; vb++) {
			vb = vmap_find(&d->vm, vb, last, true);
			if (vb < last)
				pool_unmap_block_locked(pool, d, vb);
		}
	}
	if (!rc)
		rc = pool_txn(pool, op_resize, &a);
	if (rc) {
		d->row.size = old_size;
		d->row.mtime = (int64_t)old_mtime;
		d->row.generation = old_gen;
		change_failed(pool, rc, "resize", what, msg, msglen);
	} else if (old_size != size) {
		char from[96], to[96];
		pool_log(pool, POOL_LOG_INFO, "resized '%s' from %s to %s", what,
			 size_text(pool, old_size, from, sizeof(from)),
			 size_text(pool, size, to, sizeof(to)));
	}
	pool_maybe_unload_vmap(d);
out:
	admin_unlock(pool);
	return rc;
}

int pool_resize(struct pool *pool, const char *dev, uint64_t size, char *msg, size_t msglen)
{
	return resize(pool, dev, NULL, size, msg, msglen);
}

int pool_volume_resize(struct volume *vol, uint64_t size, char *msg, size_t msglen)
{
	return resize(pool_volume_pool(vol), NULL, vol, size, msg, msglen);
}

static int op_grow(struct pool *pool, void *arg)
{
	pool->prow.nr_data_blocks = *(uint64_t *)arg;
	return 0;
}

int pool_grow(struct pool *pool, uint64_t data_size, char *msg, size_t msglen)
{
	uint64_t nr = data_size / pool->block_size, old_nr;
	int rc;

	admin_lock(pool);
	rc = pool_check_writable(pool, msg, msglen);
	if (!rc && nr < pool->prow.nr_data_blocks)
		rc = set_msg(msg, msglen, -EINVAL,
			     "data size %llu is smaller than the pool's %llu; pools only grow",
			     (unsigned long long)data_size,
			     (unsigned long long)pool->prow.nr_data_blocks *
				 (unsigned long long)pool->block_size);
	if (!rc && nr > POOL_MAX_DATA_BLOCKS)
		rc =
		    set_msg(msg, msglen, -EINVAL,
			    "data size %llu is beyond the limit of %llu blocks of %llu bytes",
			    (unsigned long long)data_size, (unsigned long long)POOL_MAX_DATA_BLOCKS,
			    (unsigned long long)pool->block_size);
	if (rc || nr == pool->prow.nr_data_blocks)
		goto out;
	rc = dio_grow(pool->dio, nr * pool->block_size);
	if (rc) {
		set_msg(msg, msglen, rc, "cannot grow the data file: %s", strerror(-rc));
		goto out;
	}
	old_nr = pool->prow.nr_data_blocks;
	rc = space_grow(&pool->space, nr);
	if (!rc)
		rc = pool_txn(pool, op_grow, &nr);
	if (rc) {
		pool_log(pool, POOL_LOG_ERR, "cannot grow the data: %s", strerror(-rc));
		set_msg(msg, msglen, rc, "cannot grow the pool: %s", strerror(-rc));
	} else {
		char from[96], to[96];
		pool_log(pool, POOL_LOG_INFO, "grew the data from %s to %s",
			 size_text(pool, old_nr * pool->block_size, from, sizeof(from)),
			 size_text(pool, nr * pool->block_size, to, sizeof(to)));
		pool_space_short(pool, false, NULL);
		pool_space_changed(pool); /* queued writes go on */
	}
out:
	admin_unlock(pool);
	return rc;
}

struct owner_args {
	struct device *dev;
	uint32_t uid, gid, mode;
};

static int op_owner(struct pool *pool, void *arg)
{
	struct owner_args *a = arg;

	a->dev->row.uid = a->uid;
	a->dev->row.gid = a->gid;
	a->dev->row.mode = a->mode & 07777;
	return meta_device_update(pool->meta, &a->dev->row);
}

/* Change the owner of the device named dev, or of the one behind vol. */
static int set_owner(struct pool *pool, const char *dev, struct volume *vol, uint32_t uid,
		     uint32_t gid, uint32_t mode)
{
	struct owner_args a = {.uid = uid, .gid = gid, .mode = mode};
	int rc;

	admin_lock(pool);
	rc = pool_check_writable(pool, NULL, 0);
	if (!rc && !(a.dev = vol   ? pool_volume_device(vol)
			     : dev ? pool_find_device(pool, dev)
				   : NULL))
		rc = -ENOENT;
	if (!rc && a.dev->row.read_only)
		rc = -EROFS;
	if (!rc) {
		struct meta_device_row old = a.dev->row;
		if (!dev)
			dev = old.name; /* through a handle: the device's own name */
		rc = pool_txn(pool, op_owner, &a);
		if (rc) {
			a.dev->row = old; /* never durable: the mount must not show it */
			change_failed(pool, rc, "set the owner of", dev, NULL, 0);
		} else if (old.uid != a.uid || old.gid != a.gid || old.mode != (a.mode & 07777)) {
			pool_log(pool, POOL_LOG_INFO,
				 "'%s': owner %u:%u, mode %04o (was %u:%u, %04o)", dev, a.uid,
				 a.gid, a.mode & 07777, old.uid, old.gid, old.mode);
		}
	}
	admin_unlock(pool);
	return rc;
}

int pool_set_owner(struct pool *pool, const char *dev, uint32_t uid, uint32_t gid, uint32_t mode)
{
	return set_owner(pool, dev, NULL, uid, gid, mode);
}

int pool_volume_set_owner(struct volume *vol, uint32_t uid, uint32_t gid, uint32_t mode)
{
	return set_owner(pool_volume_pool(vol), NULL, vol, uid, gid, mode);
}
