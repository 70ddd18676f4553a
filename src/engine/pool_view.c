/* SPDX-License-Identifier: MIT */
/*
 * pool_view.c - a committed read of the pool for dump, delta and
 * send/receive (pool_view.h).  Every call but begin and end needs the pool
 * lock, which pool_view_begin() takes after a read-write pool commits, so the
 * database (what the mappings are read from) holds every completed change.
 *
 * A device's mappings are resolved as layer_resolve() does it, but keep each
 * row's time: the rows of the leaf and of every ancestor are gathered with
 * their distance from the leaf, sorted by (vblock, distance), and the nearest
 * row of each vblock wins; a winning tombstone means "unmapped".
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"
#include "pool_view.h"

void pool_view_begin(struct pool *pool)
{
	if (pool->mode != POOL_MODE_READER)
		pool_commit(pool);
	pthread_mutex_lock(&pool->lock);
}

void pool_view_end(struct pool *pool)
{
	pthread_mutex_unlock(&pool->lock);
}

uint64_t pool_view_block_size(struct pool *pool)
{
	return pool->block_size;
}

void pool_view_pool_row(struct pool *pool, struct meta_pool_row *row)
{
	*row = pool->prow;
	row->transaction_id = pool->user_txid; /* what dumps call the transaction */
}

bool pool_view_writable(struct pool *pool)
{
	return pool->mode != POOL_MODE_READER;
}

const char *pool_view_meta_path(struct pool *pool)
{
	return pool->meta_path;
}

int pool_view_devices(struct pool *pool, struct meta_device_row **rows, size_t *n)
{
	size_t nr = 0, i = 0;

	for (struct device *d = pool->devices; d; d = d->next)
		nr += !d->deleted;
	*rows = malloc((nr ? nr : 1) * sizeof(**rows));
	if (!*rows)
		return -ENOMEM;
	for (struct device *d = pool->devices; d; d = d->next)
		if (!d->deleted)
			(*rows)[i++] = d->row;
	*n = nr;
	return 0;
}

int pool_view_device(struct pool *pool, const char *name, struct meta_device_row *row)
{
	struct device *d = pool_find_device(pool, name);

	if (!d || d->deleted)
		return -ENOENT;
	*row = d->row;
	return 0;
}

int pool_view_layers(struct pool *pool, struct pool_view_layer **layers, size_t *n)
{
	size_t nr = 0, i = 0;

	for (struct layer *l = pool->layers; l; l = l->next)
		nr++;
	*layers = malloc((nr ? nr : 1) * sizeof(**layers));
	if (!*layers)
		return -ENOMEM;
	for (struct layer *l = pool->layers; l; l = l->next)
		(*layers)[i++] = (struct pool_view_layer){l->id, l->parent ? l->parent->id : 0};
	*n = nr;
	return 0;
}

int pool_view_sets(struct pool *pool, struct meta_set_row **sets, size_t *n)
{
	size_t nr = 0, i = 0;

	for (struct set *s = pool->sets; s; s = s->next)
		nr++;
	*sets = malloc((nr ? nr : 1) * sizeof(**sets));
	if (!*sets)
		return -ENOMEM;
	for (struct set *s = pool->sets; s; s = s->next)
		(*sets)[i++] = s->row;
	*n = nr;
	return 0;
}

struct lrow {
	uint64_t vblock, dblock, time;
	uint32_t level;
};

struct gather {
	struct lrow *r;
	size_t n, cap;
	uint32_t level;
};

static int gather_row(void *arg, uint64_t vblock, uint64_t dblock, uint64_t time)
{
	struct gather *g = arg;

	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 1024;
		struct lrow *n = realloc(g->r, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		g->r = n;
		g->cap = cap;
	}
	g->r[g->n++] = (struct lrow){vblock, dblock, time, g->level};
	return 0;
}

static int cmp_lrow(const void *a, const void *b)
{
	const struct lrow *x = a, *y = b;

	if (x->vblock != y->vblock)
		return x->vblock < y->vblock ? -1 : 1;
	return x->level < y->level ? -1 : x->level > y->level;
}

int pool_view_mappings(struct pool *pool, uint64_t leaf, struct pool_view_mapping **m, size_t *n)
{
	struct layer *l = layer_find(pool, leaf);
	struct gather g = {0};
	size_t out = 0;
	int rc = l ? 0 : -ENOENT;

	for (; l && !rc; l = l->parent, g.level++)
		rc = meta_map_foreach(pool->meta, l->id, 0, gather_row, &g);
	if (rc) {
		free(g.r);
		return rc;
	}
	if (g.level > 1 && g.n > 1)
		qsort(g.r, g.n, sizeof(*g.r), cmp_lrow);
	*m = malloc((g.n ? g.n : 1) * sizeof(**m));
	if (!*m) {
		free(g.r);
		return -ENOMEM;
	}
	for (size_t i = 0; i < g.n; i++) {
		if (i && g.r[i].vblock == g.r[i - 1].vblock)
			continue; /* hidden by a nearer row */
		if (g.r[i].dblock == META_TOMBSTONE)
			continue;
		(*m)[out++] = (struct pool_view_mapping){g.r[i].vblock, g.r[i].dblock, g.r[i].time};
	}
	*n = out;
	free(g.r);
	return 0;
}
