/* SPDX-License-Identifier: MIT */
/*
 * layer.c - the layer tree: how snapshots cost O(1) and how blocks are freed.
 *
 * A device's view is the union of the map rows of its leaf layer and of every
 * ancestor, nearer layers hiding farther ones (a tombstone row hides without
 * mapping).  Taking a snapshot freezes the device's leaf (it becomes interior)
 * and gives the device and the snapshot each a new empty leaf: no rows are
 * copied, whatever the size.  Writes go to the device's own leaf, in place when
 * the row is its own, else to a new block (copy-on-write).
 *
 * Invariants:
 *  - every leaf belongs to exactly one device and every device has one leaf;
 *  - every interior layer has at least two children (one left with a single
 *    child is merged into it, see layer_merge);
 *  - every data block appears in at most one row of one layer, but for a
 *    block cloned by copy_file_range: its clone count (refs.h) is the number
 *    of rows naming it, and every free (space_free) of one of them drops
 *    one reference, the last one the block;
 *  - every non-tombstone row is seen by at least one leaf ("no dead rows"):
 *    a row hidden in every leaf below it is deleted and its block freed, at
 *    commit (layer_seen_below, for copy-on-write and discards) or after a
 *    device is deleted (layer_sweep).
 * So a block is free exactly when no device maps it, as in dm-thin.
 *
 * Called with the pool lock held, inside a metadata transaction.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"

struct layer *layer_new(struct pool *pool, uint64_t id, struct layer *parent)
{
	struct layer *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->id = id;
	if (parent && layer_add_child(parent, l)) {
		free(l);
		return NULL;
	}
	l->parent = parent;
	l->next = pool->layers;
	pool->layers = l;
	return l;
}

struct layer *layer_find(struct pool *pool, uint64_t id)
{
	for (struct layer *l = pool->layers; l; l = l->next)
		if (l->id == id)
			return l;
	return NULL;
}

int layer_add_child(struct layer *parent, struct layer *child)
{
	if (parent->nr_children == parent->cap_children) {
		size_t cap = parent->cap_children ? parent->cap_children * 2 : 4;
		struct layer **n = realloc(parent->children, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		parent->children = n;
		parent->cap_children = cap;
	}
	parent->children[parent->nr_children++] = child;
	child->parent = parent;
	return 0;
}

void layer_remove_child(struct layer *parent, struct layer *child)
{
	for (size_t i = 0; i < parent->nr_children; i++) {
		if (parent->children[i] == child) {
			parent->children[i] = parent->children[--parent->nr_children];
			break;
		}
	}
	child->parent = NULL;
}

void layer_forget(struct pool *pool, struct layer *l)
{
	struct layer **pp;

	if (l->parent)
		layer_remove_child(l->parent, l);
	for (pp = &pool->layers; *pp; pp = &(*pp)->next) {
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	}
	free(l->children);
	free(l);
}

int layer_create(struct pool *pool, struct layer *parent, struct layer **out)
{
	uint64_t id;
	int rc = meta_layer_insert(pool->meta, parent ? parent->id : 0, &id);

	if (rc)
		return rc;
	*out = layer_new(pool, id, parent);
	return *out ? 0 : -ENOMEM;
}

static int layer_save(struct pool *pool, struct layer *l)
{
	struct meta_layer_row r = {
	    .id = l->id, .parent = l->parent ? l->parent->id : 0, .nr_rows = l->nr_rows};
	l->dirty = false;
	return meta_layer_update(pool->meta, &r);
}

int layer_seen_below(struct pool *pool, struct layer *l, uint64_t vblock, bool *seen)
{
	*seen = false;
	for (size_t i = 0; i < l->nr_children && !*seen; i++) {
		struct layer *c = l->children[i];
		uint64_t d;
		int rc = meta_map_get(pool->meta, c->id, vblock, &d);

		if (rc == 0)
			continue; /* c hides it from its whole subtree */
		if (rc != -ENOENT)
			return rc;
		if (c->dev) {
			*seen = true;
			return 0;
		}
		rc = layer_seen_below(pool, c, vblock, seen);
		if (rc)
			return rc;
	}
	return 0;
}

int layer_ancestor_row(struct pool *pool, struct layer *l, uint64_t vblock, struct layer **found,
		       uint64_t *dblock)
{
	*found = NULL;
	for (struct layer *a = l->parent; a; a = a->parent) {
		int rc = meta_map_get(pool->meta, a->id, vblock, dblock);
		if (rc == -ENOENT)
			continue;
		if (rc)
			return rc;
		if (*dblock != META_TOMBSTONE)
			*found = a;
		return 0;
	}
	return 0;
}

/* ---- resolving a view ---- */

struct resolve_ctx {
	struct vmap *vm;
	const struct space *sp;
	bool leaf;
	int rc;
};

static int resolve_row(void *arg, uint64_t vblock, uint64_t dblock, uint64_t time)
{
	struct resolve_ctx *c = arg;
	uint64_t e;

	if (dblock == META_TOMBSTONE)
		e = c->leaf ? VM_ROW : 0;
	else
		e = vm_make(dblock) | (c->leaf ? VM_ROW : 0) |
		    (c->leaf && !space_shared(c->sp, dblock) ? VM_OWN : 0);
	return vmap_set(c->vm, vblock, e);
}

int layer_resolve(struct pool *pool, struct layer *leaf, struct vmap *vm)
{
	struct layer *chain[256], **big = NULL, **path = chain;
	size_t depth = 0, cap = 256;
	int rc = 0;

	for (struct layer *l = leaf; l; l = l->parent) {
		if (depth == cap) {
			struct layer **n = malloc(cap * 2 * sizeof(*n));
			if (!n) {
				free(big);
				return -ENOMEM;
			}
			memcpy(n, path, depth * sizeof(*n));
			free(big);
			big = path = n;
			cap *= 2;
		}
		path[depth++] = l;
	}
	for (size_t i = depth; i-- > 0 && !rc;) {
		struct resolve_ctx c = {.vm = vm, .sp = &pool->space, .leaf = i == 0};
		rc = meta_map_foreach(pool->meta, path[i]->id, 0, resolve_row, &c);
	}
	free(big);
	return rc;
}

/* ---- sets of vblocks (sorted arrays) for the sweep ---- */

struct vbset {
	uint64_t *v;
	size_t n, cap;
	bool universe; /* "everything": the identity of intersection */
};

static int vbset_push(struct vbset *s, uint64_t x)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		uint64_t *n = realloc(s->v, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->v = n;
		s->cap = cap;
	}
	s->v[s->n++] = x;
	return 0;
}

static void vbset_free(struct vbset *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static int vbset_intersect(struct vbset *a, const struct vbset *b)
{
	size_t i = 0, j = 0, k = 0;

	if (b->universe)
		return 0;
	if (a->universe) {
		a->universe = false;
		for (size_t x = 0; x < b->n; x++)
			if (vbset_push(a, b->v[x]))
				return -ENOMEM;
		return 0;
	}
	while (i < a->n && j < b->n) {
		if (a->v[i] < b->v[j])
			i++;
		else if (a->v[i] > b->v[j])
			j++;
		else {
			a->v[k++] = a->v[i];
			i++;
			j++;
		}
	}
	a->n = k;
	return 0;
}

static int vbset_union(struct vbset *out, const struct vbset *a, const struct vbset *b)
{
	size_t i = 0, j = 0;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	while (!rc && (i < a->n || j < b->n)) {
		if (j >= b->n || (i < a->n && a->v[i] < b->v[j]))
			rc = vbset_push(out, a->v[i++]);
		else if (i >= a->n || b->v[j] < a->v[i])
			rc = vbset_push(out, b->v[j++]);
		else {
			rc = vbset_push(out, a->v[i++]);
			j++;
		}
	}
	return rc;
}

struct rows_ctx {
	struct vbset *s;
};

static int collect_row(void *arg, uint64_t vblock, uint64_t dblock, uint64_t time)
{
	return vbset_push(arg, vblock);
}

static int layer_rows(struct pool *pool, struct layer *l, struct vbset *s)
{
	memset(s, 0, sizeof(*s));
	return meta_map_foreach(pool->meta, l->id, 0, collect_row, s);
}

/* Delete the rows of l at the vblocks in `dead`, freeing their blocks. */
static int delete_rows(struct pool *pool, struct layer *l, const struct vbset *dead,
		       uint64_t *nr_freed)
{
	for (size_t i = 0; i < dead->n; i++) {
		uint64_t d;
		int rc = meta_map_get(pool->meta, l->id, dead->v[i], &d);
		if (rc == -ENOENT)
			continue;
		if (!rc)
			rc = meta_map_del(pool->meta, l->id, dead->v[i]);
		if (rc)
			return rc;
		if (d != META_TOMBSTONE) {
			space_free(&pool->space, d);
			(*nr_freed)++;
		}
		l->nr_rows--;
		l->dirty = true;
	}
	return 0;
}

static int cmp_rows(const void *a, const void *b)
{
	const struct layer *x = *(struct layer *const *)a, *y = *(struct layer *const *)b;

	return x->nr_rows < y->nr_rows ? -1 : x->nr_rows > y->nr_rows;
}

/*
 * Sweep the subtree of l: delete the rows of interior layers that every leaf
 * below hides.  If ha is non-NULL, return in it the set of vblocks hidden in
 * every leaf of the subtree (rows(l) ∪ ⋂ children's).
 */
static int sweep(struct pool *pool, struct layer *l, struct vbset *ha, uint64_t *nr_freed)
{
	struct vbset inter = {.universe = true}, rows = {0};
	struct layer **kids;
	int rc = 0;

	if (!l->nr_children) {
		if (ha)
			return layer_rows(pool, l, ha);
		return 0;
	}
	kids = malloc(l->nr_children * sizeof(*kids));
	if (!kids)
		return -ENOMEM;
	memcpy(kids, l->children, l->nr_children * sizeof(*kids));
	qsort(kids, l->nr_children, sizeof(*kids), cmp_rows);
	for (size_t i = 0; i < l->nr_children && !rc; i++) {
		bool need = inter.universe || inter.n;
		struct vbset h = {0};
		/* every subtree is swept; its set is only built while it matters */
		rc = sweep(pool, kids[i], need ? &h : NULL, nr_freed);
		if (!rc && need)
			rc = vbset_intersect(&inter, &h);
		vbset_free(&h);
	}
	free(kids);
	if (inter.universe)
		inter.universe = false;
	if (!rc && inter.n)
		rc = delete_rows(pool, l, &inter, nr_freed);
	if (!rc && ha) {
		rc = layer_rows(pool, l, &rows);
		if (!rc)
			rc = vbset_union(ha, &rows, &inter);
	}
	if (!rc && l->dirty)
		rc = layer_save(pool, l);
	vbset_free(&rows);
	vbset_free(&inter);
	return rc;
}

int layer_sweep(struct pool *pool, struct layer *root, uint64_t *nr_freed)
{
	uint64_t n = 0;
	int rc = sweep(pool, root, NULL, &n);

	if (nr_freed)
		*nr_freed = n;
	return rc;
}

/* ---- merging a layer left with a single child ---- */

struct overlap_ctx {
	struct pool *pool;
	uint64_t other;	 /* the layer to look in */
	bool free_other; /* free the other's block (else this row's) */
	uint64_t overlaps;
	int rc;
};

static int overlap_row(void *arg, uint64_t vblock, uint64_t dblock, uint64_t time)
{
	struct overlap_ctx *c = arg;
	uint64_t od;
	int rc = meta_map_get(c->pool->meta, c->other, vblock, &od);

	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	c->overlaps++;
	/* the parent's row at vblock is hidden by the child's: it is dead */
	if (c->free_other && od != META_TOMBSTONE)
		space_free(&c->pool->space, od);
	else if (!c->free_other && dblock != META_TOMBSTONE)
		space_free(&c->pool->space, dblock);
	return 0;
}

static int set_device_layer(struct pool *pool, struct device *dev, struct layer *l)
{
	dev->layer = l;
	dev->row.layer = l->id;
	l->dev = dev;
	return meta_device_update(pool->meta, &dev->row);
}

/* Merge interior p into its only child c (or c into p, whichever moves fewer
 * rows).  Returns the surviving layer in *out. */
static int layer_merge(struct pool *pool, struct layer *p, struct layer *c, struct layer **out)
{
	struct overlap_ctx oc = {.pool = pool};
	struct layer *keep;
	int rc;

	if (c->nr_rows <= p->nr_rows) {
		/* move the child's rows up; p takes the child's place */
		oc.other = p->id;
		oc.free_other = true;
		rc = meta_map_foreach(pool->meta, c->id, 0, overlap_row, &oc);
		if (!rc)
			rc = meta_map_move(pool->meta, c->id, p->id, false);
		if (rc)
			return rc;
		p->nr_rows = p->nr_rows + c->nr_rows - oc.overlaps;
		layer_remove_child(p, c);
		while (c->nr_children) {
			struct layer *g = c->children[0];
			layer_remove_child(c, g);
			rc = layer_add_child(p, g);
			if (!rc)
				rc = layer_save(pool, g);
			if (rc)
				return rc;
		}
		if (c->dev) {
			rc = set_device_layer(pool, c->dev, p);
			if (rc)
				return rc;
		}
		rc = meta_layer_delete(pool->meta, c->id);
		if (rc)
			return rc;
		layer_forget(pool, c);
		keep = p;
	} else {
		/* move the parent's rows down where the child has none */
		struct layer *gp = p->parent;
		oc.other = c->id;
		oc.free_other = false;
		rc = meta_map_foreach(pool->meta, p->id, 0, overlap_row, &oc);
		if (!rc)
			rc = meta_map_move(pool->meta, p->id, c->id, true);
		if (rc)
			return rc;
		c->nr_rows = c->nr_rows + p->nr_rows - oc.overlaps;
		layer_remove_child(p, c);
		if (gp) {
			layer_remove_child(gp, p);
			rc = layer_add_child(gp, c);
			if (rc)
				return rc;
		}
		c->parent = gp;
		rc = layer_save(pool, c);
		if (!rc)
			rc = meta_layer_delete(pool->meta, p->id);
		if (rc)
			return rc;
		layer_forget(pool, p);
		keep = c;
	}
	if (!keep->parent) {
		/* a root's tombstones hide nothing */
		rc = meta_map_drop_tombstones(pool->meta, keep->id);
		if (!rc)
			rc = meta_map_count(pool->meta, keep->id, &keep->nr_rows);
		if (rc)
			return rc;
	}
	*out = keep;
	return layer_save(pool, keep);
}

int layer_merge_single(struct pool *pool, struct layer *p)
{
	struct layer *keep;

	if (p->dev || p->nr_children != 1)
		return -EINVAL;
	return layer_merge(pool, p, p->children[0], &keep);
}

int layer_remove_leaf(struct pool *pool, struct layer *l)
{
	struct layer *p = l->parent, *root;
	int rc = meta_layer_delete(pool->meta, l->id);

	if (rc)
		return rc;
	layer_forget(pool, l);
	if (!p)
		return 0;
	if (p->nr_children <= 1 && pool->background_reclaim && !p->parent) {
		/* a root left with one child (or none, when that child went too):
		 * its rows are all the ones that may have died; layer_merge_step
		 * moves or frees them in steps */
		return 0;
	}
	if (p->nr_children == 1) {
		rc = layer_merge(pool, p, p->children[0], &p);
		if (rc)
			return rc;
	} else if (p->nr_children == 0) {
		return -EUCLEAN; /* an interior layer always had two children */
	}
	for (root = p; root->parent; root = root->parent)
		;
	return layer_sweep(pool, root, NULL);
}

/* ---- merging in steps (background reclaim) ---- */

#define MERGE_ROWS 1024 /* rows of the parent moved or freed per step: ~10-20 ms */

struct mrow {
	uint64_t vblock, dblock, time;
};

struct mrows {
	struct mrow *r;
	size_t n, cap;
};

static int collect_mrow(void *arg, uint64_t vblock, uint64_t dblock, uint64_t time)
{
	struct mrows *m = arg;

	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 256;
		struct mrow *n = realloc(m->r, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		m->r = n;
		m->cap = cap;
	}
	m->r[m->n++] = (struct mrow){vblock, dblock, time};
	return m->n == MERGE_ROWS ? 1 : 0;
}

struct layer *layer_merge_candidate(struct pool *pool)
{
	for (struct layer *l = pool->layers; l; l = l->next)
		if (!l->dev && !l->parent && l->nr_children <= 1)
			return l;
	return NULL;
}

/* Row r of p goes down into its only child c (where c has none: the view is
 * the same), or dies (c hides it: its block is freed). */
static int merge_row(struct pool *pool, struct layer *c, const struct mrow *r, bool *moved)
{
	uint64_t cdb;
	int rc = meta_map_get(pool->meta, c->id, r->vblock, &cdb);

	*moved = false;
	if (rc == 0) {
		if (r->dblock != META_TOMBSTONE)
			space_free(&pool->space, r->dblock);
		return 0;
	}
	if (rc != -ENOENT)
		return rc;
	rc = meta_map_put(pool->meta, c->id, r->vblock, r->dblock, r->time);
	*moved = !rc;
	if (!rc && c->dev && c->dev->vm_loaded) {
		/* the leaf's own row now: writes go in place, discards free it */
		uint64_t e = vmap_get(&c->dev->vm, r->vblock);
		e |= VM_ROW;
		if (r->dblock != META_TOMBSTONE && !space_shared(&pool->space, r->dblock))
			e |= VM_OWN;
		rc = vmap_set(&c->dev->vm, r->vblock, e);
	}
	return rc;
}

/* p is empty: its child takes its place in the tree. */
static int merge_finish(struct pool *pool, struct layer *p, struct layer *c)
{
	struct layer *gp = p->parent;
	int rc = 0;

	layer_remove_child(p, c);
	if (gp) {
		layer_remove_child(gp, p);
		rc = layer_add_child(gp, c);
	}
	c->parent = gp;
	if (!rc)
		rc = layer_save(pool, c);
	if (!rc)
		rc = meta_layer_delete(pool->meta, p->id);
	if (!rc)
		layer_forget(pool, p);
	return rc;
}

/* A root with no child and no device: nothing sees its rows. */
static int drop_step(struct pool *pool, struct layer *p, const struct mrows *m, bool last)
{
	int rc = 0;

	for (size_t i = 0; i < m->n; i++)
		if (m->r[i].dblock != META_TOMBSTONE)
			space_free(&pool->space, m->r[i].dblock);
	if (m->n)
		rc = meta_map_delete_upto(pool->meta, p->id, m->r[m->n - 1].vblock);
	p->nr_rows = p->nr_rows > m->n ? p->nr_rows - m->n : 0;
	p->dirty = true;
	if (!rc && last) {
		rc = meta_layer_delete(pool->meta, p->id);
		if (!rc)
			layer_forget(pool, p);
	}
	return rc;
}

int layer_merge_step(struct pool *pool, struct layer *p)
{
	struct layer *c = p->nr_children ? p->children[0] : NULL;
	struct mrows m = {0};
	uint64_t moved = 0;
	int rc = meta_map_foreach(pool->meta, p->id, 0, collect_mrow, &m);
	bool last = rc == 0;

	if (rc < 0)
		goto out;
	rc = 0;
	if (!c) {
		rc = drop_step(pool, p, &m, last);
		goto out;
	}
	for (size_t i = 0; i < m.n && !rc; i++) {
		bool mv;
		rc = merge_row(pool, c, &m.r[i], &mv);
		moved += mv;
	}
	if (!rc && m.n)
		rc = meta_map_delete_upto(pool->meta, p->id, m.r[m.n - 1].vblock);
	if (rc)
		goto out;
	p->nr_rows = p->nr_rows > m.n ? p->nr_rows - m.n : 0;
	c->nr_rows += moved;
	p->dirty = c->dirty = true;
	if (last)
		rc = merge_finish(pool, p, c);
out:
	free(m.r);
	return rc;
}
