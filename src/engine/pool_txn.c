/* SPDX-License-Identifier: MIT */
/*
 * pool_txn.c - the commit protocol and durability accounting.
 *
 * pool_txn, in this order, with no data I/O in flight (io lock held for
 * writing, pool lock held):
 *   1. fdatasync the data file: every block a new mapping points at holds its
 *      data before the mapping can be durable;
 *   2. BEGIN; write back the changed mappings of every device; free ancestor
 *      rows that no device sees any more; run the administrative change, if
 *      any; save layers, devices, the space map and the pool row (transaction
 *      id + 1); COMMIT (SQLite, WAL, synchronous=FULL: durable on return);
 *   3. only then punch the blocks freed in that transaction and let the
 *      allocator reuse them (a failed punch is tried again after the next;
 *      with discard=nopassdown they are not punched, and a fresh block's
 *      partial write zeroes the rest of it instead).
 * A failure at 1 or 2 is pool_fail(): FAILED, needs_check persisted.
 *
 * Durability is counted: every completed change bumps change_seq; only a
 * flush moves synced_seq, to the value read before that flush began.  So a
 * sync may skip its own flush only when a later-starting flush covered it.
 *
 * Locks, in this order: commit_lock (serialises commits and syncs), then
 * admin_lock (the io lock for writing, then the pool lock).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "pool_internal.h"
#include "thinfs/pool_test.h"
#include "util.h"

static int writeback_device(struct pool *pool, struct device *dev)
{
	struct layer *l = dev->layer;
	uint64_t time = pool->prow.pool_time;

	for (size_t i = 0; i < dev->nr_dirty; i++) {
		uint64_t vb = dev->dirty[i], e = vmap_get(&dev->vm, vb);
		int rc = 0;

		if (!(e & VM_DIRTY))
			continue;
		if (vm_mapped(e) || l->parent) {
			rc = meta_map_put(pool->meta, l->id, vb,
					  vm_mapped(e) ? vm_dblock(e) : META_TOMBSTONE, time);
			if (!(e & VM_ROW))
				l->nr_rows++;
			e |= VM_ROW;
		} else if (e & VM_ROW) {
			rc = meta_map_del(pool->meta, l->id, vb);
			l->nr_rows--;
			e &= ~VM_ROW;
		}
		if (rc)
			return rc;
		vmap_set(&dev->vm, vb, e & ~VM_DIRTY);
	}
	dev->nr_dirty = 0;
	l->dirty = true;
	dev->row_dirty = true;
	dev->row.mtime = util_now();
	return 0;
}

static int process_hidden(struct pool *pool, struct device *dev)
{
	for (size_t i = 0; i < dev->nr_hidden; i++) {
		struct hidden *h = &dev->hidden[i];
		struct layer *a;
		uint64_t d;
		bool seen;
		int rc = layer_ancestor_row(pool, dev->layer, h->vblock, &a, &d);

		if (rc)
			return rc;
		if (!a || d != h->dblock)
			continue;
		rc = layer_seen_below(pool, a, h->vblock, &seen);
		if (!rc && !seen) {
			rc = meta_map_del(pool->meta, a->id, h->vblock);
			a->nr_rows--;
			a->dirty = true;
			space_free(&pool->space, d);
		}
		if (rc)
			return rc;
	}
	dev->nr_hidden = 0;
	return 0;
}

static int save_state(struct pool *pool)
{
	int rc = 0;

	for (struct layer *l = pool->layers; l && !rc; l = l->next) {
		if (!l->dirty)
			continue;
		struct meta_layer_row r = {
		    .id = l->id, .parent = l->parent ? l->parent->id : 0, .nr_rows = l->nr_rows};
		rc = meta_layer_update(pool->meta, &r);
		l->dirty = false;
	}
	for (struct device *d = pool->devices; d && !rc; d = d->next) {
		if (!d->row_dirty)
			continue;
		rc = meta_device_update(pool->meta, &d->row);
		d->row_dirty = false;
	}
	if (!rc)
		rc = space_save(&pool->space, pool->meta);
	return rc;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Keep blocks whose punch failed, to try again after the next commit. */
static void keep_unpunched(struct pool *pool, const uint64_t *b, size_t n)
{
	if (pool->nr_unpunched + n > pool->cap_unpunched) {
		size_t cap = (pool->nr_unpunched + n) * 2;
		uint64_t *l = realloc(pool->unpunched, cap * sizeof(*l));
		if (!l) {
			/* forgotten here, they stay busy (never reused) until the
			 * next open, which scrubs: the pool stays marked unclean */
			pool->unpunched_lost = true;
			return;
		}
		pool->unpunched = l;
		pool->cap_unpunched = cap;
	}
	memcpy(pool->unpunched + pool->nr_unpunched, b, n * sizeof(*b));
	pool->nr_unpunched += n;
}

/*
 * After a durable commit: punch the freed blocks (contiguous runs in one
 * call), then let them be reused.  A run whose punch fails may still hold old
 * data, so it stays out of use and is tried again after every later commit;
 * while any is left, close does not mark the pool clean, so the next open
 * scrubs free blocks (a fresh block must read zeros outside what is written).
 */
void pool_release_freed(struct pool *pool)
{
	uint64_t *list;
	size_t n = space_take_freed(&pool->space, &list), kept = 0;

	if (pool->nr_unpunched) {
		uint64_t *all = realloc(list, (n + pool->nr_unpunched) * sizeof(*all));
		if (all) {
			memcpy(all + n, pool->unpunched, pool->nr_unpunched * sizeof(*all));
			n += pool->nr_unpunched;
			pool->nr_unpunched = 0;
			list = all;
		}
	}
	if (!n) {
		free(list);
		return;
	}
	qsort(list, n, sizeof(*list), cmp_u64);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && list[j] == list[j - 1] + 1)
			j++;
		/* discard=nopassdown: the data file keeps its extents, and a
		 * fresh block's first partial write writes its zeros itself */
		bool keep = pool->props.discard == DISCARD_NOPASSDOWN;
		int rc = keep ? 0
			 : pool_test_punch_fails(pool)
			     ? -EIO
			     : dio_punch(pool->dio, list[i] * pool->block_size,
					 (list[j - 1] - list[i] + 1) * pool->block_size);
		if (!rc) {
			pool->nr_punches += keep ? 0 : j - i;
			while (i < j)
				list[kept++] = list[i++];
		} else {
			keep_unpunched(pool, list + i, j - i);
		}
		i = j;
	}
	space_release(&pool->space, list, kept);
	if (kept) {
		pool_space_short(pool, false, NULL); /* blocks came back */
		pool_space_changed(pool);
	}
	free(list);
}

/* Punch every data extent that lies in a free block (after an unclean stop). */
int pool_scrub_free_blocks(struct pool *pool)
{
	uint64_t off = 0, start, end, bs = pool->block_size;
	uint64_t limit = pool->prow.nr_data_blocks * bs;
	int rc;

	if (dio_is_blockdev(pool->dio))
		return 0;
	while (off < limit) {
		rc = dio_next_data(pool->dio, off, &start, &end);
		if (rc == -ENXIO)
			break;
		if (rc)
			return rc == -EOPNOTSUPP ? 0 : rc;
		for (uint64_t b = start / bs; b < div_round_up(end, bs) && b < limit / bs; b++) {
			if (space_is_used(&pool->space, b))
				continue;
			rc = dio_punch(pool->dio, b * bs, bs);
			if (rc)
				return rc;
			pool->nr_punches++;
		}
		off = div_round_up(end, bs) * bs;
	}
	return dio_flush(pool->dio);
}

/* Changes up to target are durable: a flush that started after them all
 * completed (and, where mappings changed, the commit after it). */
static void advance_synced(struct pool *pool, uint64_t target)
{
	uint64_t cur = __atomic_load_n(&pool->synced_seq, __ATOMIC_ACQUIRE);

	while (cur < target && !__atomic_compare_exchange_n(&pool->synced_seq, &cur, target, false,
							    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
}

int pool_txn(struct pool *pool, txn_op op, void *arg)
{
	struct meta_pool_row before = pool->prow;
	uint64_t target;
	int rc;

	if (pool->mode == POOL_MODE_FAILED)
		return pool->fail_err;
	if (!pool_mode_writable(pool))
		return -EROFS;
	/* no data I/O is in flight (io lock held for writing): every change
	 * counted so far has completed, and the flush below covers it */
	target = __atomic_load_n(&pool->change_seq, __ATOMIC_ACQUIRE);
	rc = pool_crash_point(pool, "commit/before_flush");
#ifndef THINFS_TEST_BUG_SKIP_DATA_FLUSH
	if (!rc)
		rc = dio_flush(pool->dio);
#endif
	if (rc) {
		pool_fail(pool, -EIO, "flushing the data file failed");
		return -EIO;
	}
	rc = pool_crash_point(pool, "commit/after_flush");
	if (!rc)
		rc = meta_begin(pool->meta);
	for (struct device *d = pool->devices; d && !rc; d = d->next)
		if (d->nr_dirty)
			rc = writeback_device(pool, d);
	for (struct device *d = pool->devices; d && !rc; d = d->next)
		if (d->nr_hidden)
			rc = process_hidden(pool, d);
	if (!rc && op)
		rc = op(pool, arg);
	if (!rc)
		rc = pool_space_events_save(pool);
	if (!rc)
		rc = save_state(pool);
	if (!rc) {
		pool->prow.transaction_id++;
		pool->prow.clean = 0;
		rc = meta_pool_put(pool->meta, &pool->prow);
	}
	if (!rc)
		rc = pool_crash_point(pool, "commit/before_commit");
#ifdef THINFS_TEST_BUG_PUNCH_BEFORE_COMMIT
	if (!rc)
		pool_release_freed(pool); /* the bug, for a negative control: punch too early */
#endif
	if (!rc)
		rc = meta_commit(pool->meta);
	if (rc) {
		/* the row as it was: the transaction id, and what a failed op
		 * changed in it (a grow's nr_data_blocks) never became durable */
		pool->prow = before;
		meta_rollback(pool->meta);
		/* the changes in memory can never be made durable: no later sync
		 * may report success; and the views are the only record of the
		 * writes since the last commit, so none may be dropped */
		pool_fail(pool, rc == -ENOSPC ? -ENOSPC : -EIO,
			  rc == -ENOSPC ? "the metadata file system is full"
					: "a metadata commit failed");
		for (struct device *d = pool->devices; d; d = d->next)
			d->pinned = d->vm_loaded;
		return pool->fail_err;
	}
	pool->nr_commits++;
	pool->dirty = false;
	advance_synced(pool, target);
	pool_crash_point(pool, "commit/after_commit");
	pool_release_freed(pool);
	pool_crash_point(pool, "commit/after_punch");
	for (struct device *d = pool->devices; d; d = d->next)
		pool_maybe_unload_vmap(d);
	return 0;
}

int pool_commit_locked(struct pool *pool)
{
	if (!pool->dirty)
		return 0;
	return pool_txn(pool, NULL, NULL);
}

void admin_lock(struct pool *pool)
{
	pthread_rwlock_wrlock(&pool->io_lock);
	pthread_mutex_lock(&pool->lock);
}

void admin_unlock(struct pool *pool)
{
	pthread_mutex_unlock(&pool->lock);
	pthread_rwlock_unlock(&pool->io_lock);
}

int pool_commit(struct pool *pool)
{
	int rc;

	if (pool->mode == POOL_MODE_READER)
		return 0;
	/* the timer's common case: nothing to do, and no reason to drain I/O */
	pthread_mutex_lock(&pool->lock);
	bool dirty = pool->dirty;
	pthread_mutex_unlock(&pool->lock);
	if (!dirty)
		return 0;
	/* another commit may run between the test above and the locks below
	 * (the timer race): then there is nothing left to do, and nothing is
	 * claimed durable here - only pool_txn advances synced_seq */
	pool_crash_point(pool, "timer/before_lock");
	pthread_mutex_lock(&pool->commit_lock);
	admin_lock(pool);
	rc = pool_mode_writable(pool) ? pool_commit_locked(pool) : 0;
#ifdef THINFS_TEST_BUG_TIMER_SYNCED
	/* the old bug, for a negative control: claim durable what a commit that
	 * found nothing to do never flushed */
	if (!rc)
		advance_synced(pool, __atomic_load_n(&pool->change_seq, __ATOMIC_ACQUIRE));
#endif
	admin_unlock(pool);
	pthread_mutex_unlock(&pool->commit_lock);
	return rc;
}

/* Flush the data file alone (no mapping to commit); commit_lock held. */
static int sync_data(struct pool *pool)
{
	uint64_t target = __atomic_load_n(&pool->change_seq, __ATOMIC_ACQUIRE);
	int rc = dio_flush(pool->dio);

	if (rc) {
		pthread_mutex_lock(&pool->lock);
		pool_fail(pool, -EIO, "flushing the data file failed");
		pthread_mutex_unlock(&pool->lock);
		return -EIO;
	}
	advance_synced(pool, target);
	return 0;
}

int pool_sync(struct pool *pool)
{
	uint64_t mine = __atomic_load_n(&pool->change_seq, __ATOMIC_ACQUIRE);
	int rc = 0;

	__atomic_add_fetch(&pool->nr_fsyncs, 1, __ATOMIC_RELAXED);
	if (pool->mode == POOL_MODE_READER)
		return 0;
	pthread_mutex_lock(&pool->commit_lock);
	if (pool->mode == POOL_MODE_FAILED) {
		rc = pool->fail_err;
		goto out;
	}
	/* a flush that started after our writes covered them (synced_seq only
	 * moves in pool_txn and sync_data, after a flush that began later) */
	if (__atomic_load_n(&pool->synced_seq, __ATOMIC_ACQUIRE) >= mine && mine)
		goto out;
	pthread_mutex_lock(&pool->lock);
	bool dirty = pool->dirty && pool_mode_writable(pool);
	pthread_mutex_unlock(&pool->lock);
	if (dirty) {
		/* only mappings need the I/O drained; a data flush does not */
		admin_lock(pool);
		if (pool->dirty && pool_mode_writable(pool))
			rc = pool_txn(pool, NULL, NULL);
		admin_unlock(pool);
	}
	/* no mapping changed (in-place writes only), or the pool went
	 * read-only: flushing the data is what is left to do */
	if (!rc && (__atomic_load_n(&pool->synced_seq, __ATOMIC_ACQUIRE) < mine || !mine))
		rc = pool->mode == POOL_MODE_FAILED ? pool->fail_err : sync_data(pool);
out:
	pthread_mutex_unlock(&pool->commit_lock);
	return rc;
}
