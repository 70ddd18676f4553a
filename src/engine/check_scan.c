/* SPDX-License-Identifier: MIT */
/*
 * check_scan.c - finding damage: every table of meta.db against the others
 * and against the data file, invariant 4 of DESIGN.md and the layer tree's
 * invariants (layer.c).  One finding per problem, each with its fix.
 *
 *   fatal    SQLite's integrity_check fails (but for an index that disagrees
 *            with its table: damaged, rebuilt); two devices name one leaf.
 *   damaged  a layer, a parent or a set row is missing; a cycle of parents;
 *            a device leaf with children; a mapping past the end of the
 *            data or of its device; a block mapped twice; a mapped block
 *            marked free; a damaged space row or bits past the end; a short
 *            data file; wrong row or mapped counts; an invalid name; a
 *            writable set member; pool time behind a device; map rows of a
 *            layer nothing names; needs_check (flag or marker file); a
 *            clone count (refs) that is not the number of map rows naming
 *            its block.
 *   warning  leaks: a row no device sees, a block marked used that no row
 *            holds, a layer with no device and no children; an interior
 *            layer with a single child.
 *
 * A row is live when some device sees it: its view (leaf first, nearest row
 * of each vblock winning) takes that row.  Blocks are claimed by live rows in
 * scan order; a second live row of a claimed block is "mapped twice", unless
 * the block has a clone count (copy_file_range shares it on purpose): then
 * the count must equal the number of rows (live or not) naming it.
 *
 * Runs with the admin lock held on a leniently opened pool (check.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/check.h"
#include "engine/util.h"

void check_add(struct checker *c, int level, enum check_fix fix, uint64_t a, uint64_t b,
	       uint64_t cc, const char *fmt, ...)
{
	struct check_finding *f;
	va_list ap;

	if (c->nr == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 32;
		struct check_finding *n = realloc(c->f, cap * sizeof(*n));
		if (!n) {
			c->err = -ENOMEM;
			return;
		}
		c->f = n;
		c->cap = cap;
	}
	f = &c->f[c->nr++];
	memset(f, 0, sizeof(*f));
	f->level = level;
	f->fix = fix;
	f->a = a;
	f->b = b;
	f->c = cc;
	va_start(ap, fmt);
	/* clang 14's valist checker misreads this (a false positive) */
	vsnprintf(f->text, sizeof(f->text), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
	va_end(ap);
	if (level > c->worst)
		c->worst = level;
}

struct device *check_device_by_id(struct pool *pool, uint64_t id)
{
	for (struct device *d = pool->devices; d; d = d->next)
		if (d->row.id == id)
			return d;
	return NULL;
}

void check_device_name(struct pool *pool, uint64_t id, char *buf, size_t len)
{
	struct device *d = check_device_by_id(pool, id);

	if (d)
		snprintf(buf, len, "'%s%s%s'", d->row.set, d->row.set[0] ? "/" : "", d->row.name);
	else
		snprintf(buf, len, "device %llu", (unsigned long long)id);
}

/* "device 'x'" for a leaf, "layer N" for any other layer. */
static const char *layer_desc(struct pool *pool, uint64_t id, char *buf, size_t len)
{
	struct layer *l = layer_find(pool, id);
	char name[600];

	if (l && l->dev) {
		check_device_name(pool, l->dev->row.id, name, sizeof(name));
		snprintf(buf, len, "device %s", name);
	} else {
		snprintf(buf, len, "layer %llu", (unsigned long long)id);
	}
	return buf;
}

/* ---- what the loader met ---- */

static void scan_damage(struct checker *c)
{
	struct pool *pool = c->pool;
	char name[600];

	for (size_t i = 0; i < pool->nr_damage; i++) {
		const struct pool_damage *d = &pool->damage[i];
		unsigned long long id = d->id, ref = d->ref;
		switch (d->kind) {
		case PD_PARENT_MISSING:
			check_add(c, CHECK_DAMAGED, FIX_LAYER_ROW, ref, 0, 0,
				  "layer %llu names parent layer %llu, which is missing", id, ref);
			break;
		case PD_CYCLE:
			check_add(c, CHECK_DAMAGED, FIX_LAYER_LINK, id, 0, 0,
				  "the parent link of layer %llu (to layer %llu) closes a cycle",
				  id, ref);
			break;
		case PD_LAYER_MISSING:
			check_device_name(pool, id, name, sizeof(name));
			check_add(c, CHECK_DAMAGED, FIX_LAYER_ROW, ref, 0, 0,
				  "device %s names layer %llu, which is missing", name, ref);
			break;
		case PD_LAYER_SHARED:
			check_add(c, CHECK_FATAL, FIX_NONE, 0, 0, 0,
				  "device %llu names layer %llu, the leaf of another device", id,
				  ref);
			break;
		case PD_SPACE_CHUNK:
			check_add(c, CHECK_DAMAGED, FIX_SPACE, 0, 0, 0,
				  "space row %llu is damaged (%llu bytes)", id, ref);
			break;
		case PD_DATA_SHORT:
			check_add(c, dio_is_blockdev(pool->dio) ? CHECK_FATAL : CHECK_DAMAGED,
				  dio_is_blockdev(pool->dio) ? FIX_NONE : FIX_GROW_DATA, ref, 0, 0,
				  "the data file is %llu bytes, the pool needs %llu", id, ref);
			break;
		}
	}
}

/* An index that disagrees with its table is rebuilt from it; any other
 * problem of the database file is fatal. */
static void integrity_line(void *arg, const char *line)
{
	bool index =
	    strstr(line, "missing from index") || strstr(line, "wrong # of entries in index");

	check_add(arg, index ? CHECK_DAMAGED : CHECK_FATAL, index ? FIX_REINDEX : FIX_NONE, 0, 0, 0,
		  "sqlite: %s", line);
}

/* ---- the pool row, the devices, the sets, the layers ---- */

static void scan_pool_row(struct checker *c)
{
	struct pool *pool = c->pool;
	uint64_t t = 0;

	if (pool->prow.needs_check)
		check_add(c, CHECK_DAMAGED, FIX_NEEDS_CHECK, 0, 0, 0,
			  "needs_check is set: an earlier error made the pool read-only");
	else if (needs_check_marked(pool))
		check_add(c, CHECK_DAMAGED, FIX_NEEDS_CHECK, 0, 0, 0,
			  "needs_check is set (marker file %s/" POOL_NEEDS_CHECK_MARKER ")",
			  pool->dir);
	for (struct device *d = pool->devices; d; d = d->next) {
		if (d->row.creation_time > t)
			t = d->row.creation_time;
		if (d->row.snap_time > t)
			t = d->row.snap_time;
	}
	if (t > pool->prow.pool_time)
		check_add(c, CHECK_DAMAGED, FIX_POOL_TIME, t, 0, 0,
			  "pool time %llu is behind a device's time %llu",
			  (unsigned long long)pool->prow.pool_time, (unsigned long long)t);
}

static bool set_exists(struct pool *pool, const char *name)
{
	for (struct set *s = pool->sets; s; s = s->next)
		if (!strcmp(s->row.name, name))
			return true;
	return false;
}

static void scan_devices(struct checker *c)
{
	struct pool *pool = c->pool;
	char name[600];

	for (struct device *d = pool->devices; d; d = d->next) {
		bool member = d->row.set[0] && !d->deleted;
		check_device_name(pool, d->row.id, name, sizeof(name));
		if (pool_name_valid(d->row.name, NULL, 0))
			check_add(c, CHECK_DAMAGED, FIX_RENAME, d->row.id, 0, 0,
				  "device %llu has an invalid name %s",
				  (unsigned long long)d->row.id, name);
		if (member && pool_name_valid(d->row.set, NULL, 0))
			check_add(c, CHECK_DAMAGED, FIX_RENAME, d->row.id, 0, 0,
				  "device %s is in a set with an invalid name", name);
		else if (member && !set_exists(pool, d->row.set))
			check_add(c, CHECK_DAMAGED, FIX_SET_ROW, d->row.id, 0, 0,
				  "device %s is in set '%s', which has no row", name, d->row.set);
		if (member && !d->row.read_only)
			check_add(c, CHECK_DAMAGED, FIX_MEMBER_RO, d->row.id, 0, 0,
				  "snapshot set member %s is not read-only", name);
		if (d->layer->nr_children)
			check_add(c, CHECK_DAMAGED, FIX_NEW_LEAF, d->row.id, 0, 0,
				  "the leaf layer %llu of device %s has %zu child layer(s)",
				  (unsigned long long)d->layer->id, name, d->layer->nr_children);
	}
}

static int push_u64(uint64_t **v, size_t *n, size_t *cap, uint64_t x)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		uint64_t *nv = realloc(*v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = x;
	return 0;
}

static bool dropped(const struct checker *c, uint64_t layer)
{
	for (size_t i = 0; i < c->nr_drop; i++)
		if (c->drop_layers[i] == layer)
			return true;
	return false;
}

static int scan_layers(struct checker *c)
{
	for (struct layer *l = c->pool->layers; l; l = l->next) {
		if (l->dev || l->nr_children > 1)
			continue;
		if (l->nr_children == 1) {
			check_add(c, CHECK_CLEAN, FIX_LAYER_MERGE, l->id, 0, 0,
				  "layer %llu is interior with a single child (layer %llu)",
				  (unsigned long long)l->id,
				  (unsigned long long)l->children[0]->id);
			continue;
		}
		uint64_t n = 0;
		int rc = meta_map_count(c->pool->meta, l->id, &n);
		if (!rc)
			rc = push_u64(&c->drop_layers, &c->nr_drop, &c->cap_drop, l->id);
		if (rc)
			return rc;
		check_add(c, CHECK_CLEAN, FIX_LAYER_DROP, l->id, 0, 0,
			  "leak: layer %llu has no device and no children (%llu rows)",
			  (unsigned long long)l->id, (unsigned long long)n);
	}
	return 0;
}

/* ---- views: which rows some device sees ---- */

/* An open-addressing set of vblocks (stored + 1; 0 = empty). */
struct vbset {
	uint64_t *slot;
	size_t mask, n;
};

static bool vbset_add(struct vbset *s, uint64_t vb, int *err)
{
	if ((s->n + 1) * 2 > s->mask + 1) {
		size_t cap = (s->mask + 1) * 2;
		uint64_t *old = s->slot, *n = calloc(cap, sizeof(*n));
		if (!n) {
			*err = -ENOMEM;
			return false;
		}
		s->slot = n;
		size_t omask = s->mask;
		s->mask = cap - 1;
		s->n = 0;
		for (size_t i = 0; old && i <= omask; i++)
			if (old[i])
				vbset_add(s, old[i] - 1, err);
		free(old);
	}
	size_t i = (size_t)((vb * 0x9e3779b97f4a7c15ull) >> 16) & s->mask;
	while (s->slot[i]) {
		if (s->slot[i] == vb + 1)
			return false;
		i = (i + 1) & s->mask;
	}
	s->slot[i] = vb + 1;
	s->n++;
	return true;
}

struct view_ctx {
	struct checker *c;
	struct device *d;
	struct layer *l;
	struct vbset seen;
	uint64_t mapped, nr_vblocks;
	int err;
};

static int view_row(void *arg, uint64_t vblock, uint64_t dblock, uint64_t time)
{
	struct view_ctx *v = arg;
	struct checker *c = v->c;
	char name[600];

	if (!vbset_add(&v->seen, vblock, &v->err))
		return v->err;
	if (dblock == META_TOMBSTONE)
		return 0;
	if (c->nr_live == c->cap_live) {
		size_t cap = c->cap_live ? c->cap_live * 2 : 1024;
		struct check_live *n = realloc(c->live, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		c->live = n;
		c->cap_live = cap;
	}
	c->live[c->nr_live++] = (struct check_live){v->l->id, vblock};
	v->mapped++;
	if (vblock >= v->nr_vblocks) {
		check_device_name(c->pool, v->d->row.id, name, sizeof(name));
		check_add(c, CHECK_DAMAGED, FIX_PAST_SIZE, v->d->row.id, vblock, v->l->id,
			  "device %s maps vblock %llu, past its size (%llu blocks)", name,
			  (unsigned long long)vblock, (unsigned long long)v->nr_vblocks);
	}
	return 0;
}

static int cmp_live(const void *a, const void *b)
{
	const struct check_live *x = a, *y = b;

	if (x->layer != y->layer)
		return x->layer < y->layer ? -1 : 1;
	return x->vblock < y->vblock ? -1 : x->vblock > y->vblock;
}

static int scan_views(struct checker *c)
{
	char name[600];

	for (struct device *d = c->pool->devices; d; d = d->next) {
		struct view_ctx v = {.c = c, .d = d};
		int rc = 0;
		v.nr_vblocks = div_round_up(d->row.size, c->pool->block_size);
		for (struct layer *l = d->layer; l && !rc; l = l->parent) {
			v.l = l;
			rc = meta_map_foreach(c->pool->meta, l->id, 0, view_row, &v);
		}
		free(v.seen.slot);
		if (rc)
			return rc;
		if (v.mapped != d->row.mapped) {
			check_device_name(c->pool, d->row.id, name, sizeof(name));
			check_add(c, CHECK_DAMAGED, FIX_COUNTS, 0, 0, 0,
				  "device %s records %llu mapped blocks but maps %llu", name,
				  (unsigned long long)d->row.mapped, (unsigned long long)v.mapped);
		}
	}
	if (c->nr_live)
		qsort(c->live, c->nr_live, sizeof(*c->live), cmp_live);
	return 0;
}

static bool is_live(const struct checker *c, uint64_t layer, uint64_t vblock)
{
	struct check_live key = {layer, vblock};

	if (!c->nr_live)
		return false;
	return bsearch(&key, c->live, c->nr_live, sizeof(key), cmp_live) != NULL;
}

/* ---- rows against blocks ---- */

struct row_ctx {
	struct checker *c;
	struct layer *l;
	uint64_t nr_rows;
};

static int scan_row(void *arg, uint64_t vblock, uint64_t dblock, uint64_t time)
{
	struct row_ctx *r = arg;
	struct checker *c = r->c;
	struct pool *pool = c->pool;
	unsigned long long vb = vblock, db = dblock;
	char who[700], first[700];

	r->nr_rows++;
	if (dblock == META_TOMBSTONE)
		return 0;
	layer_desc(pool, r->l->id, who, sizeof(who));
	if (dblock >= c->nr_blocks) {
		check_add(c, CHECK_DAMAGED, FIX_ROW_DROP, r->l->id, vblock, 0,
			  "%s maps vblock %llu past the end of the data (block %llu of %llu)", who,
			  vb, db, (unsigned long long)c->nr_blocks);
		return 0;
	}
	c->inrow[dblock] = 1;
	if (c->nrows[dblock] < UINT32_MAX)
		c->nrows[dblock]++;
	if (dropped(c, r->l->id))
		return 0;
	if (!is_live(c, r->l->id, vblock)) {
		check_add(c, CHECK_CLEAN, FIX_LEAK_ROW, r->l->id, vblock, 0,
			  "leak: data block %llu (%s vblock %llu) is seen by no device", db, who,
			  vb);
		return 0;
	}
	if (c->claimed[dblock] && space_shared(&pool->space, dblock))
		return 0; /* a clone: its count is checked in scan_refs */
	if (c->claimed[dblock]) {
		layer_desc(pool, c->owner_layer[dblock], first, sizeof(first));
		check_add(c, CHECK_DAMAGED, FIX_COPY, r->l->id, vblock, dblock,
			  "data block %llu is mapped twice: by %s vblock %llu and by %s vblock "
			  "%llu",
			  db, first, (unsigned long long)c->owner_vb[dblock], who, vb);
		return 0;
	}
	c->claimed[dblock] = 1;
	c->owner_layer[dblock] = r->l->id;
	c->owner_vb[dblock] = vblock;
	if (!space_is_used(&pool->space, dblock))
		check_add(c, CHECK_DAMAGED, FIX_SPACE, 0, 0, 0,
			  "data block %llu is mapped (%s vblock %llu) but marked free", db, who,
			  vb);
	return 0;
}

static int scan_rows(struct checker *c)
{
	for (struct layer *l = c->pool->layers; l; l = l->next) {
		struct row_ctx r = {.c = c, .l = l};
		int rc = meta_map_foreach(c->pool->meta, l->id, 0, scan_row, &r);
		if (rc)
			return rc;
		if (r.nr_rows != l->nr_rows && !l->placeholder)
			check_add(c, CHECK_DAMAGED, FIX_COUNTS, 0, 0, 0,
				  "layer %llu records %llu rows but holds %llu",
				  (unsigned long long)l->id, (unsigned long long)l->nr_rows,
				  (unsigned long long)r.nr_rows);
	}
	return 0;
}

/* Map rows of layers that neither the layers table nor anything else names. */
struct orphan_ctx {
	struct checker *c;
	uint64_t *layers, *counts;
	size_t n, cap;
	int err;
};

static void orphan_row(void *arg, uint64_t layer, uint64_t vblock, uint64_t dblock)
{
	struct orphan_ctx *o = arg;
	size_t i;

	if (dblock != META_TOMBSTONE && dblock < o->c->nr_blocks) {
		o->c->inrow[dblock] = 1; /* reported with its layer, not as a leak */
		if (o->c->nrows[dblock] < UINT32_MAX)
			o->c->nrows[dblock]++;
	}
	for (i = 0; i < o->n && o->layers[i] != layer; i++)
		;
	if (i == o->n) {
		size_t n = o->n, cap = o->cap;
		if (push_u64(&o->layers, &n, &cap, layer) ||
		    push_u64(&o->counts, &o->n, &o->cap, 0)) {
			o->err = -ENOMEM;
			return;
		}
	}
	o->counts[i]++;
}

static int scan_orphans(struct checker *c)
{
	struct orphan_ctx o = {.c = c};
	int rc = meta_map_foreach_orphan(c->pool->meta, orphan_row, &o);

	for (size_t i = 0; !rc && i < o.n; i++) {
		struct layer *l = layer_find(c->pool, o.layers[i]);
		if (l && l->placeholder)
			continue; /* the rows of a missing layer something names */
		check_add(c, CHECK_DAMAGED, FIX_ORPHANS, o.layers[i], 0, 0,
			  "%llu map rows name layer %llu, which nothing else names",
			  (unsigned long long)o.counts[i], (unsigned long long)o.layers[i]);
	}
	free(o.layers);
	free(o.counts);
	return rc ? rc : o.err;
}

static void scan_space(struct checker *c)
{
	struct space *sp = &c->pool->space;
	uint64_t beyond = space_nr_beyond(sp);

	for (uint64_t b = 0; b < c->nr_blocks; b++)
		if (space_is_used(sp, b) && !c->inrow[b])
			check_add(c, CHECK_CLEAN, FIX_SPACE, 0, 0, 0,
				  "leak: data block %llu is marked used but mapped nowhere",
				  (unsigned long long)b);
	if (beyond)
		check_add(c, CHECK_DAMAGED, FIX_SPACE, 0, 0, 0,
			  "the space map marks %llu blocks past the end of the data used",
			  (unsigned long long)beyond);
}

static void ref_beyond(void *arg, uint64_t dblock, uint32_t count)
{
	struct checker *c = arg;

	if (dblock >= c->nr_blocks)
		check_add(c, CHECK_DAMAGED, FIX_REFS, dblock, 0, 0,
			  "a clone count of %u names data block %llu, past the end of the data",
			  count, (unsigned long long)dblock);
}

/* Every clone count against the rows naming its block. */
static void scan_refs(struct checker *c)
{
	const struct space *sp = &c->pool->space;

	for (uint64_t b = 0; sp->refs.nr && b < c->nr_blocks; b++) {
		uint32_t r = space_refs(sp, b);
		if (r && r != c->nrows[b])
			check_add(c, CHECK_DAMAGED, FIX_REFS, b, 0, 0,
				  "data block %llu has a clone count of %u but %u map rows name it",
				  (unsigned long long)b, r, c->nrows[b]);
	}
	refs_foreach(&sp->refs, ref_beyond, c);
}

int check_scan(struct checker *c)
{
	uint64_t n;
	int rc;

	c->nr_blocks = c->pool->prow.nr_data_blocks;
	n = c->nr_blocks ? c->nr_blocks : 1;
	c->inrow = calloc(n, 1);
	c->claimed = calloc(n, 1);
	c->owner_layer = calloc(n, sizeof(uint64_t));
	c->owner_vb = calloc(n, sizeof(uint64_t));
	c->nrows = calloc(n, sizeof(uint32_t));
	if (!c->inrow || !c->claimed || !c->owner_layer || !c->owner_vb || !c->nrows)
		return -ENOMEM;
	scan_damage(c);
	rc = meta_integrity(c->pool->meta, integrity_line, c);
	if (rc < 0)
		return rc;
	scan_pool_row(c);
	scan_devices(c);
	rc = scan_layers(c);
	if (!rc)
		rc = scan_views(c);
	if (!rc)
		rc = scan_rows(c);
	if (!rc)
		rc = scan_orphans(c);
	if (!rc) {
		scan_space(c);
		scan_refs(c);
	}
	return rc ? rc : c->err;
}

void check_free(struct checker *c)
{
	free(c->f);
	free(c->inrow);
	free(c->claimed);
	free(c->owner_layer);
	free(c->owner_vb);
	free(c->nrows);
	free(c->live);
	free(c->drop_layers);
	memset(c, 0, sizeof(*c));
}
