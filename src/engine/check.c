/* SPDX-License-Identifier: MIT */
/*
 * check.c - thinctl check: verify a pool's metadata against invariant 4 (and
 * SQLite's own integrity), and with repair fix what can be fixed safely.
 *
 * Findings, one line each on the report stream:
 *   fatal   (exit 2) SQLite integrity errors, a block mapped by two rows, a
 *           mapping past the end of the data, a damaged layer tree;
 *   damaged (exit 1) a mapped block marked free, map rows of no layer, the
 *           needs_check flag; --repair marks the block used, drops the rows,
 *           clears the flag;
 *   warning (exit 0) leaks: a block marked used that no device maps, or a row
 *           no device sees; --repair frees them.
 * Read-only checks open the pool read-only (a consistent view, also while it
 * is mounted); --repair needs the pool's lock.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"
#include "util.h"

struct checker {
	struct pool *pool;
	FILE *out;
	bool repair;
	int worst;
	uint64_t nr_blocks;
	uint8_t *inrow; /* block appears in some row */
	uint32_t *refs; /* devices that see the block */
	struct layer *cur;
	uint64_t problems;
	bool fixed_something;
};

static void report(struct checker *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(struct checker *c, int level, const char *fmt, ...)
{
	static const char *const tag[] = {"warning", "damaged", "fatal"};
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	/* clang 14's valist checker misreads this (a false positive) */
	vsnprintf(line, sizeof(line), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
	va_end(ap);
	if (c->out)
		fprintf(c->out, "%s: %s\n", tag[level], line);
	if (level > c->worst)
		c->worst = level;
	c->problems++;
}

static const char *layer_owner(struct layer *l, char *buf, size_t len)
{
	if (l && l->dev)
		snprintf(buf, len, "device '%s%s%s'", l->dev->row.set,
			 l->dev->row.set[0] ? "/" : "", l->dev->row.name);
	else
		snprintf(buf, len, "layer %llu", l ? (unsigned long long)l->id : 0ull);
	return buf;
}

static void integrity_line(void *arg, const char *line)
{
	report(arg, CHECK_FATAL, "sqlite: %s", line);
}

static void orphan_row(void *arg, uint64_t layer, uint64_t vblock, uint64_t dblock)
{
	report(arg, CHECK_DAMAGED, "map row of missing layer %llu (vblock %llu)",
	       (unsigned long long)layer, (unsigned long long)vblock);
}

static int row_scan(void *arg, uint64_t vblock, uint64_t dblock, uint64_t time)
{
	struct checker *c = arg;
	char who[600];

	if (dblock == META_TOMBSTONE)
		return 0;
	if (dblock >= c->nr_blocks) {
		report(c, CHECK_FATAL,
		       "%s maps vblock %llu past the end of the data (block %llu of %llu)",
		       layer_owner(c->cur, who, sizeof(who)), (unsigned long long)vblock,
		       (unsigned long long)dblock, (unsigned long long)c->nr_blocks);
		return 0;
	}
	if (c->inrow[dblock])
		report(c, CHECK_FATAL, "data block %llu is mapped twice (again by %s vblock %llu)",
		       (unsigned long long)dblock, layer_owner(c->cur, who, sizeof(who)),
		       (unsigned long long)vblock);
	c->inrow[dblock] = 1;
	if (!space_is_used(&c->pool->space, dblock)) {
		report(c, CHECK_DAMAGED,
		       "data block %llu is mapped (%s vblock %llu) but marked free",
		       (unsigned long long)dblock, layer_owner(c->cur, who, sizeof(who)),
		       (unsigned long long)vblock);
		if (c->repair) {
			space_set_used(&c->pool->space, dblock);
			c->fixed_something = true;
		}
	}
	return 0;
}

static void count_ref(void *arg, uint64_t vblock, uint64_t *entry)
{
	struct checker *c = arg;

	if (vm_mapped(*entry) && vm_dblock(*entry) < c->nr_blocks)
		c->refs[vm_dblock(*entry)]++;
}

struct dead_ctx {
	struct checker *c;
	struct layer *l;
	uint64_t *vbs;
	size_t n, cap;
};

static int dead_scan(void *arg, uint64_t vblock, uint64_t dblock, uint64_t time)
{
	struct dead_ctx *d = arg;
	struct checker *c = d->c;
	char who[600];

	if (dblock == META_TOMBSTONE || dblock >= c->nr_blocks || c->refs[dblock])
		return 0;
	report(c, CHECK_CLEAN, "leak: data block %llu (%s vblock %llu) is seen by no device",
	       (unsigned long long)dblock, layer_owner(d->l, who, sizeof(who)),
	       (unsigned long long)vblock);
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		uint64_t *n = realloc(d->vbs, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		d->vbs = n;
		d->cap = cap;
	}
	d->vbs[d->n++] = vblock;
	return 0;
}

static int check_layers(struct checker *c)
{
	struct pool *pool = c->pool;
	int rc;

	for (struct layer *l = pool->layers; l; l = l->next) {
		if (!l->dev && l->nr_children < 2)
			report(c, CHECK_CLEAN, "layer %llu is interior with %zu child(ren)",
			       (unsigned long long)l->id, l->nr_children);
		c->cur = l;
		rc = meta_map_foreach(pool->meta, l->id, 0, row_scan, c);
		if (rc)
			return rc;
	}
	for (struct device *d = pool->devices; d; d = d->next) {
		struct vmap vm;
		vmap_init(&vm);
		rc = layer_resolve(pool, d->layer, &vm);
		if (!rc)
			vmap_foreach(&vm, 0, count_ref, c);
		vmap_destroy(&vm);
		if (rc)
			return rc;
	}
	/* rows nobody sees: leaks */
	for (struct layer *l = pool->layers; l; l = l->next) {
		struct dead_ctx d = {.c = c, .l = l};
		rc = meta_map_foreach(pool->meta, l->id, 0, dead_scan, &d);
		for (size_t i = 0; !rc && c->repair && i < d.n; i++) {
			uint64_t db;
			rc = meta_map_get(pool->meta, l->id, d.vbs[i], &db);
			if (!rc)
				rc = meta_map_del(pool->meta, l->id, d.vbs[i]);
			if (!rc) {
				space_free(&pool->space, db);
				c->inrow[db] = 0;
				l->nr_rows--;
				l->dirty = true;
				c->fixed_something = true;
			}
		}
		free(d.vbs);
		if (rc)
			return rc;
	}
	/* blocks marked used that no row holds: leaks */
	for (uint64_t b = 0; b < c->nr_blocks; b++) {
		if (!space_is_used(&pool->space, b) || c->inrow[b])
			continue;
		report(c, CHECK_CLEAN, "leak: data block %llu is marked used but mapped nowhere",
		       (unsigned long long)b);
		if (c->repair) {
			space_free(&pool->space, b);
			c->fixed_something = true;
		}
	}
	return 0;
}

static int fix_layer_counts(struct checker *c)
{
	for (struct layer *l = c->pool->layers; l; l = l->next) {
		uint64_t n;
		int rc = meta_map_count(c->pool->meta, l->id, &n);
		if (rc)
			return rc;
		if (n != l->nr_rows) {
			report(c, CHECK_DAMAGED, "layer %llu records %llu rows but holds %llu",
			       (unsigned long long)l->id, (unsigned long long)l->nr_rows,
			       (unsigned long long)n);
			l->nr_rows = n;
			l->dirty = true;
		}
	}
	return 0;
}

static int op_repair(struct pool *pool, void *arg)
{
	struct checker *c = arg;
	int rc = check_layers(c);

	if (!rc)
		rc = fix_layer_counts(c);
	if (!rc)
		rc = meta_map_delete_orphans(pool->meta);
	if (!rc && c->worst < CHECK_FATAL)
		pool->prow.needs_check = 0;
	return rc;
}

int pool_check(const char *dir, bool repair, FILE *out, char *msg, size_t msglen)
{
	struct checker c = {.out = out, .repair = repair};
	struct pool *pool;
	int rc, nr;

	rc = pool_open(dir, repair ? 0 : POOL_OPEN_RDONLY, "thinctl check --repair", &pool, msg,
		       msglen);
	if (rc)
		return rc;
	c.pool = pool;
	c.nr_blocks = pool->prow.nr_data_blocks;
	c.inrow = calloc(c.nr_blocks ? c.nr_blocks : 1, 1);
	c.refs = calloc(c.nr_blocks ? c.nr_blocks : 1, sizeof(uint32_t));
	if (!c.inrow || !c.refs) {
		rc = -ENOMEM;
		goto out;
	}
	admin_lock(pool);
	nr = meta_integrity(pool->meta, integrity_line, &c);
	if (nr < 0) {
		rc = nr;
		goto out_unlock;
	}
	rc = meta_map_foreach_orphan(pool->meta, orphan_row, &c);
	if (!rc && pool->prow.needs_check)
		report(&c, CHECK_DAMAGED,
		       "needs_check is set: an earlier error made the pool read-only");
	if (rc)
		goto out_unlock;
	if (!repair) {
		rc = check_layers(&c);
	} else if (c.worst < CHECK_FATAL) {
		/* a repair may run on a pool forced read-only: that is what it is for */
		pool_mode_repair(pool);
		c.worst = 0;
		c.problems = 0;
		rc = pool_txn(pool, op_repair, &c);
		/* an earlier error may have left data in free blocks (an unclean
		 * stop, a failed punch): make them read zeros again */
		if (!rc)
			rc = pool_scrub_free_blocks(pool);
		if (!rc && c.worst < CHECK_FATAL)
			rc = pool_clear_needs_check_marker(pool);
		if (!rc && c.out)
			fprintf(c.out, "repaired: %s\n",
				c.problems ? "the findings above" : "nothing to do");
		if (!rc && c.worst < CHECK_FATAL)
			c.worst = CHECK_CLEAN;
	}
out_unlock:
	admin_unlock(pool);
out:
	free(c.inrow);
	free(c.refs);
	pool_close(pool);
	if (rc)
		return set_msg(msg, msglen, rc, "check failed: %s", strerror(-rc));
	return c.worst;
}
