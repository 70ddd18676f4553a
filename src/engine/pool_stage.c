/* SPDX-License-Identifier: MIT */
/*
 * pool_stage.c - a device staged aside and committed whole (pool_stage.h):
 * the engine half of an all-or-nothing receive.
 *
 * What it owns: a stage's reserved data blocks (busy in the space map, never
 * used, so no commit can make them durable), its view (the base's committed
 * view at begin) and its own entries (vblock -> fresh block, or "unmapped"
 * as VM_ROW alone), all in memory.
 *
 * Invariants:
 *  - until pool_stage_commit, meta.db never hears of the stage: not a row,
 *    not a space bit, not a transaction (so a refused or failed receive
 *    leaves the pool's transaction id, time and every row as they were);
 *  - every reserved block is either committed as a mapping of the new
 *    device (space_set_used inside the commit's transaction, after the data
 *    flush pool_txn starts with: invariant 5) or punched and released by
 *    the abort (free blocks read zeros: invariant 2); one whose punch fails
 *    stays busy and the pool is left unclean, so the next open scrubs it;
 *  - the base may not change under the stage: it must be stable (even
 *    generation) at begin and have the same generation at commit.
 *
 * Locks: begin and commit take the admin lock (the io lock for writing,
 * then the pool lock) for their checks and the commit; reserving blocks
 * takes the pool lock; the data moves with no lock (the blocks are the
 * stage's alone).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"
#include "pool_stage.h"
#include "util.h"

#define STAGE_RUN_MAX 4096u /* blocks reserved at once */

struct pool_stage {
	struct pool *pool;
	char name[POOL_NAME_MAX + 1];
	bool has_base;
	uint64_t base_id, base_generation, base_nr_vblocks;
	uint64_t size, nr_vblocks;
	struct vmap base_vm; /* the base's committed view at begin */
	struct vmap vm;	     /* staged entries: vm_make(dblock), or VM_ROW: unmapped */
	uint64_t next_vb;    /* vblocks below this are staged or passed */
	uint64_t goal;	     /* where the next run should go: after the last */
	uint64_t *blocks;    /* every reserved data block */
	size_t nr_blocks, cap_blocks;
};

static void stage_free(struct pool_stage *st)
{
	vmap_destroy(&st->base_vm);
	vmap_destroy(&st->vm);
	free(st->blocks);
	free(st);
}

/* The checks of begin, admin lock held. */
static int stage_check(struct pool_stage *st, const char *base, char *msg, size_t msglen)
{
	struct pool *pool = st->pool;
	struct device *d;
	int rc = pool_check_writable(pool, msg, msglen);

	if (rc)
		return rc;
	if (pool_find_device(pool, st->name))
		return set_msg(msg, msglen, -EEXIST, "volume '%s' already exists", st->name);
	if (st->size > (uint64_t)INT64_MAX / pool->block_size * pool->block_size)
		return set_msg(msg, msglen, -EFBIG, "size %llu is too large",
			       (unsigned long long)st->size);
	if (!base)
		return 0;
	d = pool_find_device(pool, base);
	if (!d)
		return set_msg(msg, msglen, -ENOENT, "base '%s' does not exist", base);
	if (d->writing || (d->row.generation & 1))
		return set_msg(msg, msglen, -EBUSY,
			       "base '%s' is being written (generation %llu); close it first", base,
			       (unsigned long long)d->row.generation);
	st->has_base = true;
	st->base_id = d->row.id;
	st->base_generation = d->row.generation;
	st->base_nr_vblocks = div_round_up(d->row.size, pool->block_size);
	rc = layer_resolve(pool, d->layer, &st->base_vm);
	if (rc)
		set_msg(msg, msglen, rc, "cannot read the mappings of '%s': %s", base,
			strerror(-rc));
	return rc;
}

int pool_stage_begin(struct pool *pool, const char *name, const char *base, uint64_t size,
		     struct pool_stage **out, char *msg, size_t msglen)
{
	struct pool_stage *st;
	int rc = pool_name_valid(name, msg, msglen);

	if (rc)
		return rc;
	st = calloc(1, sizeof(*st));
	if (!st)
		return set_msg(msg, msglen, -ENOMEM, "out of memory");
	st->pool = pool;
	snprintf(st->name, sizeof(st->name), "%s", name);
	st->size = size;
	st->nr_vblocks = div_round_up(size, pool->block_size);
	st->goal = SPACE_NO_GOAL;
	vmap_init(&st->base_vm);
	vmap_init(&st->vm);
	admin_lock(pool);
	rc = stage_check(st, base, msg, msglen);
	admin_unlock(pool);
	if (rc) {
		stage_free(st);
		return rc;
	}
	*out = st;
	return 0;
}

/* Records come in order, each vblock once, below the size. */
static int stage_range(struct pool_stage *st, uint64_t vblock, uint64_t nr)
{
	if (!nr || vblock < st->next_vb || vblock >= st->nr_vblocks || nr > st->nr_vblocks - vblock)
		return -EINVAL;
	st->next_vb = vblock + nr;
	return 0;
}

/* Reserve a run of up to want blocks: how many (>= 1) from *first, or -errno. */
static int stage_reserve(struct pool_stage *st, uint64_t want, uint64_t *first)
{
	struct pool *pool = st->pool;
	int n;

	if (want > STAGE_RUN_MAX)
		want = STAGE_RUN_MAX;
	if (st->nr_blocks + want > st->cap_blocks) {
		size_t cap = (st->nr_blocks + want) * 2;
		uint64_t *b = realloc(st->blocks, cap * sizeof(*b));
		if (!b)
			return -ENOMEM;
		st->blocks = b;
		st->cap_blocks = cap;
	}
	pthread_mutex_lock(&pool->lock);
	n = pool_mode_writable(pool) ? space_reserve_run(&pool->space, st->goal, want, first)
				     : -EROFS;
	pthread_mutex_unlock(&pool->lock);
	if (n <= 0)
		return n < 0 ? n : -ENOSPC;
	for (int i = 0; i < n; i++)
		st->blocks[st->nr_blocks++] = *first + (uint64_t)i;
	st->goal = *first + (uint64_t)n;
	return n;
}

/* Map [vblock, vblock+nr) to fresh blocks; data (NULL: zeros) written there. */
static int stage_map(struct pool_stage *st, uint64_t vblock, uint64_t nr, const char *data)
{
	struct pool *pool = st->pool;
	uint64_t bs = pool->block_size, first;
	bool write_zeros = !data && dio_is_blockdev(pool->dio);
	int rc = stage_range(st, vblock, nr);

	while (!rc && nr) {
		int n = stage_reserve(st, nr, &first);
		if (n < 0)
			return n;
		if (data)
			rc = dio_write(pool->dio, data, (size_t)n * bs, first * bs);
		else if (write_zeros)
			rc = dio_punch(pool->dio, first * bs, (uint64_t)n * bs); /* zeroes */
		for (int i = 0; i < n && !rc; i++)
			rc = vmap_set(&st->vm, vblock + (uint64_t)i, vm_make(first + (uint64_t)i));
		vblock += (uint64_t)n;
		nr -= (uint64_t)n;
		if (data)
			data += (size_t)n * bs;
	}
	return rc;
}

int pool_stage_write(struct pool_stage *st, uint64_t vblock, uint64_t nr, const void *data)
{
	return stage_map(st, vblock, nr, data);
}

int pool_stage_zero(struct pool_stage *st, uint64_t vblock, uint64_t nr)
{
	/* a free block is a hole (invariant 2), so a fresh one reads zeros; on a
	 * block device, where free blocks are not scrubbed, it is zeroed */
	return stage_map(st, vblock, nr, NULL);
}

int pool_stage_unmap(struct pool_stage *st, uint64_t vblock, uint64_t nr)
{
	uint64_t end = vblock + nr;
	int rc = stage_range(st, vblock, nr);

	/* only what the base maps needs hiding */
	for (uint64_t vb = vblock; !rc && vb < end; vb++) {
		vb = vmap_find(&st->base_vm, vb, end, true);
		if (vb < end)
			rc = vmap_set(&st->vm, vb, VM_ROW);
	}
	return rc;
}

int pool_stage_foreach_mapped(struct pool_stage *st, void (*cb)(void *arg, uint64_t vblock),
			      void *arg)
{
	uint64_t lim = st->nr_vblocks;
	uint64_t b = vmap_find(&st->base_vm, 0, lim, true), s = vmap_find(&st->vm, 0, lim, true);

	while (b < lim || s < lim) {
		uint64_t next = b < s ? b : s;
		if (next == s || !vmap_get(&st->vm, next))
			cb(arg, next);
		if (b == next)
			b = vmap_find(&st->base_vm, next + 1, lim, true);
		if (s == next)
			s = vmap_find(&st->vm, next + 1, lim, true);
	}
	return 0;
}

struct put_ctx {
	struct pool *pool;
	struct layer *leaf;
	uint64_t time;
	int rc;
};

static void put_entry(void *arg, uint64_t vblock, uint64_t *entry)
{
	struct put_ctx *c = arg;
	uint64_t d = vm_mapped(*entry) ? vm_dblock(*entry) : META_TOMBSTONE;

	if (c->rc)
		return;
	c->rc = meta_map_put(c->pool->meta, c->leaf->id, vblock, d, c->time);
	if (d != META_TOMBSTONE)
		space_set_used(&c->pool->space, d);
	c->leaf->nr_rows++;
}

static void count_one(void *arg, uint64_t vblock)
{
	(*(uint64_t *)arg)++;
}

struct commit_args {
	struct pool_stage *st;
	struct device *base;
	const char *copy_of;
};

/* Inside pool_txn: the device, its rows, its blocks used. */
static int op_stage_commit(struct pool *pool, void *arg)
{
	struct commit_args *a = arg;
	struct pool_stage *st = a->st;
	struct device *d;
	struct put_ctx c = {.pool = pool};
	int rc;

	if (a->base) {
		rc = pool_snap_one(pool, a->base, "", st->name, false, &d);
		if (!rc)
			pool->prow.pool_time++;
	} else {
		rc = pool_create_one(pool, "", st->name, st->size, 0, 0, 0600, &d);
	}
	if (rc)
		return rc;
	c.leaf = d->layer;
	c.time = pool->prow.pool_time;
	vmap_foreach(&st->vm, 0, put_entry, &c);
	/* a copy smaller than its base: the base's tail hidden */
	for (uint64_t vb = st->nr_vblocks; !c.rc && vb < st->base_nr_vblocks; vb++) {
		vb = vmap_find(&st->base_vm, vb, st->base_nr_vblocks, true);
		if (vb < st->base_nr_vblocks)
			put_entry(&c, vb, &(uint64_t){VM_ROW});
	}
	if (c.rc)
		return c.rc;
	d->row.size = st->size;
	d->row.generation = 0;
	snprintf(d->row.copy_of, sizeof(d->row.copy_of), "%s", a->copy_of ? a->copy_of : "");
	d->row.mapped = 0;
	pool_stage_foreach_mapped(st, count_one, &d->row.mapped);
	d->row_dirty = true;
	c.leaf->dirty = true;
	return 0;
}

/* The checks of commit (admin lock held): the name still free, the base
 * still there and unchanged. */
static int commit_check(struct pool_stage *st, struct device **base, char *msg, size_t msglen)
{
	struct pool *pool = st->pool;
	int rc = pool_check_writable(pool, msg, msglen);

	if (rc)
		return rc;
	if (pool_find_device(pool, st->name))
		return set_msg(msg, msglen, -EEXIST, "volume '%s' already exists", st->name);
	*base = NULL;
	if (!st->has_base)
		return 0;
	for (struct device *d = pool->devices; d; d = d->next)
		if (!d->deleted && d->row.id == st->base_id)
			*base = d;
	if (!*base || (*base)->writing || (*base)->row.generation != st->base_generation)
		return set_msg(msg, msglen, -ESTALE, "the base changed during the receive");
	return 0;
}

int pool_stage_commit(struct pool_stage *st, const char *copy_of, char *msg, size_t msglen)
{
	struct pool *pool = st->pool;
	struct commit_args a = {.st = st, .copy_of = copy_of};
	int rc;

	admin_lock(pool);
	rc = commit_check(st, &a.base, msg, msglen);
	if (!rc) {
		rc = pool_txn(pool, op_stage_commit, &a);
		if (rc)
			set_msg(msg, msglen, rc, "cannot make '%s': %s", st->name, strerror(-rc));
	}
	admin_unlock(pool);
	if (rc) {
		pool_stage_abort(st);
		return rc;
	}
	stage_free(st);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void pool_stage_abort(struct pool_stage *st)
{
	struct pool *pool = st->pool;
	uint64_t bs = pool->block_size, *b = st->blocks;
	size_t n = st->nr_blocks, kept = 0;
	bool lost = false;

	if (n)
		qsort(b, n, sizeof(*b), cmp_u64);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && b[j] == b[j - 1] + 1)
			j++;
		if (dio_punch(pool->dio, b[i] * bs, (b[j - 1] - b[i] + 1) * bs))
			lost = true; /* stays busy; the pool stays unclean: scrubbed at open */
		else
			while (i < j)
				b[kept++] = b[i++];
		i = j;
	}
	admin_lock(pool);
	space_release(&pool->space, b, kept);
	if (lost)
		pool->unpunched_lost = true;
	admin_unlock(pool);
	stage_free(st);
}
