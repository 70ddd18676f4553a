/* SPDX-License-Identifier: MIT */
/*
 * check_fix.c - repairing what check_scan.c found, and saying exactly what
 * was done: every finding with a fix gets a result and a line on how.
 *
 * Order (the crash-safety rule: data before the metadata that names it):
 *   1. data: grow a short data file; copy each block mapped twice into a
 *      fresh block for its second row (no free block: that one stays);
 *   2. one pool_txn (the data flushed first): the missing rows and links
 *      of the tree, the devices and sets, the rows to drop or remap, the
 *      unused and single-child layers; then every count recounted, the
 *      clone counts set to the rows that are left (a count stays only
 *      where one was: a block named twice without one is copied, step 1),
 *      and the space map rebuilt from those rows;
 *   3. after the commit: the free blocks scrubbed (they may hold data of a
 *      lost transaction), the needs_check marker removed.
 * A crash at any point leaves the pool as it was or repaired: the metadata
 * changes are one transaction, and a copy nobody maps is a free block.
 *
 * Runs with the admin lock held on a leniently opened pool (check.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/check.h"
#include "engine/util.h"

static void done(struct check_finding *f, int rc, const char *how)
{
	f->result = rc;
	snprintf(f->how, sizeof(f->how), "%s", how);
}

/* ---- 1. the data ---- */

static void fix_copy(struct checker *c, struct check_finding *f)
{
	struct pool *pool = c->pool;
	uint64_t nb;
	int rc = space_alloc(&pool->space, &nb);

	if (rc) {
		done(f, -ENOSPC, "no free data block to copy into: grow the pool and repair again");
		return;
	}
	space_set_used(&pool->space, nb);
	rc = dio_copy(pool->dio, f->c * pool->block_size, nb * pool->block_size, pool->block_size);
	if (rc) {
		space_free(&pool->space, nb);
		snprintf(f->how, sizeof(f->how), "copying the block failed: %s", strerror(-rc));
		f->result = rc;
		return;
	}
	f->newblock = nb;
	f->result = 1; /* data done; the row is remapped in the transaction */
}

static void repair_data(struct checker *c)
{
	/* a copy must never land on a block some row holds, marked free or not */
	for (uint64_t b = 0; b < c->nr_blocks; b++)
		if (c->inrow[b])
			space_set_used(&c->pool->space, b);
	for (size_t i = 0; i < c->nr; i++) {
		struct check_finding *f = &c->f[i];
		int rc;
		if (f->fix == FIX_GROW_DATA) {
			rc = dio_grow(c->pool->dio, f->a);
			if (rc)
				snprintf(f->how, sizeof(f->how), "growing the data file failed: %s",
					 strerror(-rc));
			else
				snprintf(
				    f->how, sizeof(f->how),
				    "data file grown to %llu bytes (the lost tail reads zeros)",
				    (unsigned long long)f->a);
			f->result = rc ? rc : 0;
		} else if (f->fix == FIX_COPY) {
			fix_copy(c, f);
		}
	}
}

/* ---- 2. the metadata, in one transaction ---- */

static int fix_layer_row(struct pool *pool, struct check_finding *f)
{
	struct layer *l = layer_find(pool, f->a);
	struct meta_layer_row r = {.id = f->a};
	uint64_t n = 0;
	int rc;

	if (!l || !l->placeholder) {
		done(f, 0, "recreated with the finding above");
		return 0;
	}
	rc = meta_map_count(pool->meta, f->a, &n);
	r.nr_rows = n;
	if (!rc)
		rc = meta_layer_insert_id(pool->meta, &r);
	if (rc)
		return rc;
	l->placeholder = false;
	l->nr_rows = n;
	snprintf(f->how, sizeof(f->how),
		 "recreated layer %llu as a root holding its %llu rows; what its own lost "
		 "parent mapped reads zeros",
		 (unsigned long long)f->a, (unsigned long long)n);
	return 0;
}

static int fix_new_leaf(struct pool *pool, struct check_finding *f)
{
	struct device *d = check_device_by_id(pool, f->a);
	struct layer *old = d->layer, *nl;
	int rc = layer_create(pool, old, &nl);

	if (rc)
		return rc;
	old->dev = NULL;
	nl->dev = d;
	d->layer = nl;
	d->row.layer = nl->id;
	rc = meta_device_update(pool->meta, &d->row); /* now: a merge may delete old */
	if (rc)
		return rc;
	snprintf(f->how, sizeof(f->how),
		 "layer %llu frozen; the device writes to a new leaf %llu (reads unchanged)",
		 (unsigned long long)old->id, (unsigned long long)nl->id);
	return 0;
}

static bool name_taken(struct pool *pool, const char *set, const char *name)
{
	for (struct device *d = pool->devices; d; d = d->next)
		if (!strcmp(d->row.set, set) && !strcmp(d->row.name, name))
			return true;
	return false;
}

static int fix_rename(struct pool *pool, struct check_finding *f)
{
	struct device *d = check_device_by_id(pool, f->a);
	char name[POOL_NAME_MAX + 1];

	if (d->row.set[0] && pool_name_valid(d->row.set, NULL, 0)) {
		/* a member of a set with an invalid name: a set of its own */
		snprintf(d->row.set, sizeof(d->row.set), "recovered-%llu",
			 (unsigned long long)d->row.id);
		d->row_dirty = true;
		snprintf(f->how, sizeof(f->how), "moved into set '%s'", d->row.set);
		return 0;
	}
	snprintf(name, sizeof(name), "recovered-%llu", (unsigned long long)d->row.id);
	for (int i = 2; name_taken(pool, d->row.set, name); i++)
		snprintf(name, sizeof(name), "recovered-%llu-%d", (unsigned long long)d->row.id, i);
	memcpy(d->row.name, name, sizeof(name));
	d->row_dirty = true;
	snprintf(f->how, sizeof(f->how), "renamed '%s'", name);
	return 0;
}

static int fix_set_row(struct pool *pool, struct check_finding *f)
{
	struct device *d = check_device_by_id(pool, f->a);
	struct set *s;
	int rc;

	for (s = pool->sets; s; s = s->next)
		if (!strcmp(s->row.name, d->row.set))
			break;
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -ENOMEM;
		snprintf(s->row.name, sizeof(s->row.name), "%s", d->row.set);
		s->row.ctime = d->row.ctime;
		rc = meta_set_insert(pool->meta, &s->row);
		if (rc) {
			free(s);
			return rc;
		}
		s->next = pool->sets;
		pool->sets = s;
	}
	snprintf(f->how, sizeof(f->how), "set '%s' recreated", d->row.set);
	return 0;
}

/* Unmap vblock of layer l: a tombstone where a parent could show through. */
static int drop_row(struct pool *pool, struct layer *l, uint64_t vblock)
{
	if (l && l->parent)
		return meta_map_put(pool->meta, l->id, vblock, META_TOMBSTONE,
				    pool->prow.pool_time);
	return meta_map_del(pool->meta, l ? l->id : 0, vblock);
}

static int fix_past_size(struct pool *pool, struct check_finding *f)
{
	struct device *d = check_device_by_id(pool, f->a);

	snprintf(f->how, sizeof(f->how), "unmapped from the device");
	if (d->layer->id == f->c)
		return meta_map_del(pool->meta, f->c, f->b);
	return meta_map_put(pool->meta, d->layer->id, f->b, META_TOMBSTONE, pool->prow.pool_time);
}

static int fix_layer_drop(struct pool *pool, struct check_finding *f)
{
	struct layer *l = layer_find(pool, f->a);
	int rc;

	if (!l || l->dev || l->nr_children) {
		done(f, 0, "nothing left to drop");
		return 0;
	}
	rc = meta_map_delete_from(pool->meta, l->id, 0);
	if (!rc)
		rc = meta_layer_delete(pool->meta, l->id);
	if (rc)
		return rc;
	layer_forget(pool, l);
	snprintf(f->how, sizeof(f->how), "layer and its rows deleted, its blocks freed");
	return 0;
}

static int fix_layer_merge(struct pool *pool, struct check_finding *f)
{
	struct layer *l = layer_find(pool, f->a);

	if (!l || l->dev || l->nr_children != 1) {
		done(f, 0, "no longer a single-child layer");
		return 0;
	}
	snprintf(f->how, sizeof(f->how), "merged with its child");
	return layer_merge_single(pool, l);
}

/* One fix inside the transaction; *f gets how.  0 or -errno. */
static int fix_one(struct checker *c, struct check_finding *f)
{
	struct pool *pool = c->pool;
	struct layer *l;
	int rc = 0;

	switch (f->fix) {
	case FIX_LAYER_ROW:
		return fix_layer_row(pool, f);
	case FIX_LAYER_LINK:
		l = layer_find(pool, f->a);
		if (l)
			l->dirty = true;
		snprintf(f->how, sizeof(f->how), "link cut: layer %llu is a root",
			 (unsigned long long)f->a);
		return 0;
	case FIX_NEW_LEAF:
		return fix_new_leaf(pool, f);
	case FIX_RENAME:
		return fix_rename(pool, f);
	case FIX_SET_ROW:
		return fix_set_row(pool, f);
	case FIX_MEMBER_RO:
		check_device_by_id(pool, f->a)->row.read_only = 1;
		check_device_by_id(pool, f->a)->row_dirty = true;
		snprintf(f->how, sizeof(f->how), "made read-only");
		return 0;
	case FIX_POOL_TIME:
		pool->prow.pool_time = f->a;
		snprintf(f->how, sizeof(f->how), "pool time set to %llu", (unsigned long long)f->a);
		return 0;
	case FIX_NEEDS_CHECK:
		pool->prow.needs_check = 0;
		snprintf(f->how, sizeof(f->how), "cleared");
		return 0;
	case FIX_ROW_DROP:
		snprintf(f->how, sizeof(f->how), "unmapped (the block reads zeros)");
		return drop_row(pool, layer_find(pool, f->a), f->b);
	case FIX_COPY:
		if (f->result != 1)
			return 0; /* the copy failed: the finding stays */
		f->result = 0;
		rc = meta_map_put(pool->meta, f->a, f->b, f->newblock, pool->prow.pool_time);
		snprintf(f->how, sizeof(f->how), "the second mapping got its own copy (block %llu)",
			 (unsigned long long)f->newblock);
		return rc;
	case FIX_PAST_SIZE:
		return fix_past_size(pool, f);
	case FIX_LEAK_ROW:
		snprintf(f->how, sizeof(f->how), "row deleted, its block freed");
		return meta_map_del(pool->meta, f->a, f->b);
	case FIX_ORPHANS:
		snprintf(f->how, sizeof(f->how), "rows deleted, their blocks freed");
		return meta_map_delete_orphans(pool->meta);
	case FIX_LAYER_DROP:
		return fix_layer_drop(pool, f);
	case FIX_LAYER_MERGE:
		return fix_layer_merge(pool, f);
	case FIX_COUNTS:
		snprintf(f->how, sizeof(f->how), "recounted");
		return 0;
	case FIX_SPACE:
		snprintf(f->how, sizeof(f->how), "space map rebuilt from the mappings");
		return 0;
	case FIX_REINDEX:
		snprintf(f->how, sizeof(f->how), "indexes rebuilt");
		return meta_reindex(pool->meta);
	case FIX_REFS:
		snprintf(f->how, sizeof(f->how),
			 "clone count set to the map rows naming the block");
		return 0; /* rebuild_space does it, from the rows left */
	case FIX_GROW_DATA:
	case FIX_NONE:
		return 0;
	}
	return 0;
}

/* The order fixes run in: the tree first, then rows, then layers. */
static const enum check_fix fix_order[] = {
    FIX_REINDEX,   FIX_LAYER_ROW, FIX_LAYER_LINK,  FIX_NEW_LEAF,    FIX_RENAME, FIX_SET_ROW,
    FIX_MEMBER_RO, FIX_POOL_TIME, FIX_NEEDS_CHECK, FIX_ROW_DROP,    FIX_COPY,	FIX_PAST_SIZE,
    FIX_LEAK_ROW,  FIX_ORPHANS,	  FIX_LAYER_DROP,  FIX_LAYER_MERGE, FIX_COUNTS, FIX_SPACE,
};

static void count_mapped(void *arg, uint64_t vblock, uint64_t *entry)
{
	if (vm_mapped(*entry))
		(*(uint64_t *)arg)++;
}

/* Every layer's row count and every device's mapped count, from the rows. */
static int recount(struct pool *pool)
{
	for (struct layer *l = pool->layers; l; l = l->next) {
		uint64_t n;
		int rc = meta_map_count(pool->meta, l->id, &n);
		if (rc)
			return rc;
		if (n != l->nr_rows) {
			l->nr_rows = n;
			l->dirty = true;
		}
	}
	for (struct device *d = pool->devices; d; d = d->next) {
		struct vmap vm;
		uint64_t n = 0;
		int rc;
		vmap_init(&vm);
		rc = layer_resolve(pool, d->layer, &vm);
		if (!rc)
			vmap_foreach(&vm, 0, count_mapped, &n);
		vmap_destroy(&vm);
		if (rc)
			return rc;
		if (n != d->row.mapped) {
			d->row.mapped = n;
			d->row_dirty = true;
		}
	}
	return 0;
}

static int mark_final(void *arg, uint64_t vblock, uint64_t dblock, uint64_t time)
{
	struct checker *c = arg;

	if (dblock != META_TOMBSTONE && dblock < c->nr_blocks) {
		c->claimed[dblock] = 1;
		if (c->nrows[dblock] < UINT32_MAX)
			c->nrows[dblock]++;
	}
	return 0;
}

struct beyond_ctx {
	uint64_t nr_blocks, found;
};

static void find_beyond(void *arg, uint64_t dblock, uint32_t count)
{
	struct beyond_ctx *b = arg;

	(void)count;
	if (dblock >= b->nr_blocks)
		b->found = dblock;
}

/* The clone counts as the rows left say (c->nrows filled by mark_final):
 * a count is kept only where one was; before the space map, so that a block
 * no row names is freed, not merely unreferenced. */
static int rebuild_refs(struct checker *c)
{
	struct space *sp = &c->pool->space;
	int rc = 0;

	for (uint64_t b = 0; sp->refs.nr && b < c->nr_blocks && !rc; b++) {
		uint32_t r = space_refs(sp, b), n = c->nrows[b];
		if (r && r != n)
			rc = space_set_refs(sp, b, n);
	}
	/* counts past the data: found one at a time (removing one moves others) */
	for (struct beyond_ctx b = {c->nr_blocks, UINT64_MAX}; !rc; b.found = UINT64_MAX) {
		refs_foreach(&sp->refs, find_beyond, &b);
		if (b.found == UINT64_MAX)
			break;
		rc = space_set_refs(sp, b.found, 0);
	}
	return rc;
}

/* The space map exactly as the rows left say: used iff some row holds it. */
static int rebuild_space(struct checker *c)
{
	struct pool *pool = c->pool;
	int rc = 0;

	memset(c->claimed, 0, c->nr_blocks ? c->nr_blocks : 1);
	memset(c->nrows, 0, (c->nr_blocks ? c->nr_blocks : 1) * sizeof(*c->nrows));
	for (struct layer *l = pool->layers; l && !rc; l = l->next)
		rc = meta_map_foreach(pool->meta, l->id, 0, mark_final, c);
	if (!rc)
		rc = rebuild_refs(c);
	if (rc)
		return rc;
	for (uint64_t b = 0; b < c->nr_blocks; b++) {
		bool used = space_is_used(&pool->space, b);
		if (c->claimed[b] && !used)
			space_set_used(&pool->space, b);
		else if (!c->claimed[b] && used)
			space_free(&pool->space, b); /* punched once durable */
	}
	space_clear_beyond(&pool->space);
	space_mark_all_dirty(&pool->space);
	return meta_space_delete_from(pool->meta, pool->space.nr_chunks);
}

static int repair_op(struct pool *pool, void *arg)
{
	struct checker *c = arg;
	int rc = 0;

	for (size_t k = 0; k < sizeof(fix_order) / sizeof(fix_order[0]) && !rc; k++) {
		bool once_done = false;
		size_t first = 0;
		for (size_t i = 0; i < c->nr && !rc; i++) {
			struct check_finding *f = &c->f[i];
			if (f->fix != fix_order[k])
				continue;
			/* one statement fixes them all */
			if ((f->fix == FIX_ORPHANS || f->fix == FIX_REINDEX) && once_done) {
				memcpy(f->how, c->f[first].how, sizeof(f->how));
				continue;
			}
			if (f->fix == FIX_ORPHANS || f->fix == FIX_REINDEX) {
				once_done = true;
				first = i;
			}
			rc = fix_one(c, f);
		}
	}
	if (!rc)
		rc = recount(pool);
	if (!rc)
		rc = rebuild_space(c);
	return rc;
}

int check_repair(struct checker *c, bool scrub)
{
	struct pool *pool = c->pool;
	int rc;

	repair_data(c);
	pool_mode_repair(pool);
	rc = pool_txn(pool, repair_op, c);
	/* the data file may hold data of a lost transaction in free blocks */
	if (!rc && scrub)
		rc = pool_scrub_free_blocks(pool);
	if (!rc && !pool->prow.needs_check)
		rc = pool_clear_needs_check_marker(pool);
	for (size_t i = 0; i < c->nr; i++) {
		struct check_finding *f = &c->f[i];
		if (!rc && f->fix == FIX_NEEDS_CHECK)
			pool_log(pool, POOL_LOG_NOTICE, "repaired: read-write again");
		if (f->fix == FIX_NONE) {
			f->result = -EUCLEAN;
			if (!f->how[0])
				snprintf(f->how, sizeof(f->how),
					 "cannot be repaired in place: dump what can be read "
					 "(thinctl dump) and restore it into a new pool");
		} else if (rc && f->result == 0) {
			f->result = rc;
			snprintf(f->how, sizeof(f->how), "the repair's commit failed: %s",
				 strerror(-rc));
		}
	}
	return rc;
}
