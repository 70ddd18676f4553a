/* SPDX-License-Identifier: MIT */
/*
 * pool_io.c - the data path: open and close devices, read, write (provision
 * and copy-on-write), discard, zero-range, SEEK_DATA/SEEK_HOLE.
 *
 * The hot path does no SQL: it looks up the device's resolved view (vmap)
 * under the pool lock and moves data without it.  Every I/O holds the io lock
 * for reading from lookup to completion (see pool_internal.h), so a commit
 * never sees a mapping whose data is still in flight.
 *
 * Provisioning a block marks its entry PROV until the data is in place; any
 * other access to that vblock waits on prov_cv.  A partial write into a block
 * that must be copied reads the old block once and writes the merged block
 * once.  A write into a fresh block writes only its bytes: free blocks are
 * holes (punched when freed, scrubbed after an unclean stop), so the rest
 * reads zeros; on a block device the rest is written with zeros.
 *
 * External origins (origin.h, pool_origin.c): an unmapped block of a volume
 * made over one reads the origin's bytes (zeros past its end), a partial
 * write into such a block copies the origin's block first, zeroing
 * provisions zero blocks over it, and SEEK_HOLE reports no hole before its
 * end.  Those are the only places here that know of it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool_internal.h"
#include "thinfs/pool_test.h"
#include "util.h"

int pool_volume_open(struct pool *pool, const char *name, struct volume **out)
{
	struct volume *v = calloc(1, sizeof(*v));
	struct device *d;
	int rc = 0;

	if (!v)
		return -ENOMEM;
	pthread_mutex_lock(&pool->lock);
	d = pool_find_device(pool, name);
	if (!d)
		rc = -ENOENT;
	if (!rc)
		rc = pool_device_load_vmap(pool, d);
	if (!rc && !d->open_count)
		rc = pool_device_origin_open(pool, d);
	if (!rc)
		d->open_count++;
	pthread_mutex_unlock(&pool->lock);
	if (rc) {
		free(v);
		return rc;
	}
	v->pool = pool;
	v->dev = d;
	*out = v;
	return 0;
}

static int op_release(struct pool *pool, void *arg)
{
	(void)pool;
	(void)arg;
	return 0;
}

void pool_volume_close(struct volume *vol)
{
	struct pool *pool = vol->pool;
	struct device *d = vol->dev;

	admin_lock(pool);
	if (--d->open_count == 0) {
		if (d->origin)
			origin_close(d->origin);
		if (pool_mode_writable(pool))
			pool_device_stop_writing(pool, d);
		if (d->deleted && pool_mode_writable(pool)) {
			pool->devices_pending_delete = true;
		} else if (d->nr_dirty || d->nr_hidden || d->row_dirty) {
			/* keep the view until its changes are committed */
			if (pool_mode_writable(pool))
				pool_txn(pool, op_release, NULL);
		}
		pool_maybe_unload_vmap(d);
	}
	admin_unlock(pool);
	free(vol);
	/* (a background reclaimer frees it step by step instead) */
	if (pool->devices_pending_delete && !pool->background_reclaim)
		pool_finish_deletes(pool);
}

struct device *pool_volume_device(struct volume *vol)
{
	return vol->dev;
}

struct pool *pool_volume_pool(struct volume *vol)
{
	return vol->pool;
}

void pool_volume_info(struct volume *vol, struct pool_device_info *info)
{
	pthread_mutex_lock(&vol->pool->lock);
	pool_device_fill_info(vol->dev, info);
	pthread_mutex_unlock(&vol->pool->lock);
}

/* Before the first change of a device's content since it was stable: its
 * odd generation made durable (pool_device.c).  No lock held. */
static int op_start_writing(struct pool *pool, void *arg)
{
	struct device *d = arg;

	(void)pool;
	d->row.generation |= 1; /* even G -> G + 1 */
	d->row_dirty = true;
	return 0;
}

int pool_start_writing(struct pool *pool, struct device *dev)
{
	int rc = 0;

	pthread_mutex_lock(&pool->lock);
	bool writing = dev->writing;
	pthread_mutex_unlock(&pool->lock);
	if (writing)
		return 0;
	pthread_mutex_lock(&pool->commit_lock);
	admin_lock(pool);
	if (!dev->writing) {
		uint64_t old = dev->row.generation;
		rc = pool_txn(pool, op_start_writing, dev);
		if (rc)
			dev->row.generation = old;
		else
			dev->writing = true;
	}
	admin_unlock(pool);
	pthread_mutex_unlock(&pool->commit_lock);
	return rc;
}

/* The entry of vblock once no provisioning of it is in flight (lock held). */
static uint64_t settled_entry(struct pool *pool, struct device *d, uint64_t vb)
{
	uint64_t e;

	while ((e = vmap_get(&d->vm, vb)) & VM_PROV)
		pthread_cond_wait(&pool->prov_cv, &pool->lock);
	return e;
}

/*
 * The run starting at byte pos (< end): how many bytes, and where they live.
 * A run is a stretch of consecutive vblocks that are all unmapped, or all
 * mapped to consecutive data blocks (all own, if own_only), so it moves with
 * one I/O.  Waits out provisioning.  Pool lock held.
 */
static size_t run_at(struct pool *pool, struct device *d, uint64_t pos, uint64_t end, bool own_only,
		     uint64_t *entry)
{
	uint64_t bs = pool->block_size, vb = pos >> pool->block_shift;
	uint64_t e = settled_entry(pool, d, vb), next;
	uint64_t run_end = (vb + 1) * bs;

	*entry = e;
	while (run_end < end) {
		next = vmap_get(&d->vm, ++vb);
		if (next & VM_PROV)
			break;
		if (vm_mapped(e) != vm_mapped(next))
			break;
		if (vm_mapped(e) &&
		    vm_dblock(next) != vm_dblock(e) + (vb - (pos >> pool->block_shift)))
			break;
		if (own_only && (!(e & VM_OWN) || !(next & VM_OWN)))
			break;
		run_end += bs;
	}
	return (size_t)((run_end < end ? run_end : end) - pos);
}

/* What an unmapped run reads: its origin's bytes, or zeros. */
static int unmapped_bytes(const struct device *d, const struct dio_seg *s)
{
	if (origin_covers(d->origin, s->offset))
		return origin_read(d->origin, s->buf, s->len, s->offset);
	memset(s->buf, 0, s->len);
	return 0;
}

ssize_t pool_read(struct volume *vol, void *buf, size_t len, uint64_t offset)
{
	struct pool *pool = vol->pool;
	struct device *d = vol->dev;
	uint64_t bs = pool->block_size, size;
	size_t done = 0;
	int rc = 0;

	pthread_rwlock_rdlock(&pool->io_lock);
	pthread_mutex_lock(&pool->lock);
	size = d->row.size;
	pthread_mutex_unlock(&pool->lock);
	if (offset >= size)
		goto out;
	if (len > size - offset)
		len = (size_t)(size - offset);
	/* the runs of the range, read all at once: blocks that lie apart in the
	 * data file (written in random order) cost one I/O latency, not many */
	while (done < len && !rc) {
		struct dio_seg seg[DIO_BATCH_MAX], zero[DIO_BATCH_MAX];
		size_t nseg = 0, nzero = 0;

		pthread_mutex_lock(&pool->lock);
		while (done < len && nseg < DIO_BATCH_MAX && nzero < DIO_BATCH_MAX) {
			uint64_t pos = offset + done, e;
			size_t n = run_at(pool, d, pos, offset + len, false, &e);
			/* (an unmapped run keeps its virtual offset: the origin's) */
			struct dio_seg s = {(char *)buf + done, n,
					    vm_mapped(e) ? vm_dblock(e) * bs + (pos & (bs - 1))
							 : pos};
			if (vm_mapped(e))
				seg[nseg++] = s;
			else
				zero[nzero++] = s;
			done += n;
		}
		pthread_mutex_unlock(&pool->lock);
		for (size_t i = 0; i < nzero && !rc; i++)
			rc = unmapped_bytes(d, &zero[i]);
		if (!rc)
			rc = dio_read_batch(pool->dio, seg, nseg);
	}
out:
	pthread_rwlock_unlock(&pool->io_lock);
	return rc ? rc : (ssize_t)len;
}

int pool_test_dblock(struct volume *vol, uint64_t vblock, uint64_t *dblock)
{
	uint64_t e;

	pthread_mutex_lock(&vol->pool->lock);
	e = vmap_get(&vol->dev->vm, vblock);
	pthread_mutex_unlock(&vol->pool->lock);
	if (!vm_mapped(e))
		return -ENOENT;
	*dblock = vm_dblock(e);
	return 0;
}

/* Provisioning needs a commit first to release blocks freed since the last one. */
#define NEED_COMMIT 1

/*
 * Write n bytes at boff of vblock vb (data NULL = zeros, and then an unmapped
 * block stays unmapped).  Called with the io lock held for reading.
 */
/* Write (data) or zero (NULL) n bytes at byte off of the data file. */
static int write_or_zero(struct pool *pool, const void *data, size_t n, uint64_t off)
{
	void *zeros;
	int rc;

	if (data)
		return dio_write(pool->dio, data, n, off);
	zeros = dio_buffer(n);
	if (!zeros)
		return -ENOMEM;
	memset(zeros, 0, n);
	rc = dio_write(pool->dio, zeros, n, off);
	free(zeros);
	return rc;
}

/* Fill new block nb (for vblock vb of d) for a write of n bytes at boff: the
 * old block's content first when it is copied on write (old mapped, the write
 * partial), or the origin's block (unmapped over an origin), zeros where the
 * rest must read zero and the file cannot be trusted to (a block device),
 * else just the bytes written (a fresh block is a hole). */
static int fill_new_block(struct pool *pool, const struct device *d, uint64_t vb, uint64_t old,
			  uint64_t nb, uint64_t boff, size_t n, const void *data)
{
	uint64_t bs = pool->block_size;
	bool whole = boff == 0 && n == bs;
	bool cow = vm_mapped(old) && !whole;
	bool from_origin = !vm_mapped(old) && !whole && origin_covers(d->origin, vb * bs);
	/* a free block reads zeros unless the data file is a device or freed
	 * blocks keep their old extents (discard=nopassdown) */
	bool zero_rest =
	    !data || (!whole && (dio_is_blockdev(pool->dio) ||
				 __atomic_load_n(&pool->props.discard, __ATOMIC_RELAXED) ==
				     DISCARD_NOPASSDOWN));
	char *bounce;
	int rc = 0;

	if (!cow && !from_origin && !zero_rest)
		return dio_write(pool->dio, data, n, nb * bs + boff);
	bounce = dio_buffer(bs);
	if (!bounce)
		return -ENOMEM;
	if (cow || from_origin) {
		if (cow)
			rc = dio_read(pool->dio, bounce, bs, vm_dblock(old) * bs);
		else
			rc = origin_read(d->origin, bounce, bs, vb * bs);
		__atomic_add_fetch(&pool->nr_cow, 1, __ATOMIC_RELAXED);
	} else {
		memset(bounce, 0, bs);
	}
	if (!rc) {
		if (data)
			memcpy(bounce + boff, data, n);
		else
			memset(bounce + boff, 0, n);
		rc = dio_write(pool->dio, bounce, bs, nb * bs);
	}
	free(bounce);
	return rc;
}

/* Map new block nb at vb (marked PROV until its data is in place); lock held. */
static void start_provision(struct pool *pool, struct device *d, uint64_t vb, uint64_t old,
			    uint64_t nb)
{
	vmap_set(&d->vm, vb,
		 vm_make(nb) | VM_OWN | VM_PROV | VM_DIRTY | (old & (VM_ROW | VM_DIRTY)));
	if (!(old & VM_DIRTY))
		pool_device_mark_dirty(pool, d, vb);
	if (!vm_mapped(old)) {
		d->row.mapped++;
		d->row_dirty = true;
	}
	pool->dirty = true;
}

/* The data is in place (rc 0), or not: settle vb; lock held. */
static void end_provision(struct pool *pool, struct device *d, uint64_t vb, uint64_t old,
			  uint64_t nb, int rc)
{
	if (rc) {
		/* the old entry stands exactly as it was (a shared block must not be
		 * written back into this device's own layer); the new block goes
		 * back after the commit */
		vmap_set(&d->vm, vb, old & ~VM_PROV);
		if (!vm_mapped(old))
			d->row.mapped--;
		space_free(&pool->space, nb);
	} else {
		/* the old mapping goes: the leaf's row (a clone's shared block
		 * loses a reference) or an ancestor's (hidden) */
		pool_drop_mapping(pool, d, vb, old);
		vmap_set(&d->vm, vb, vmap_get(&d->vm, vb) & ~VM_PROV);
	}
	pthread_cond_broadcast(&pool->prov_cv);
}

static int write_block(struct pool *pool, struct device *d, uint64_t vb, uint64_t boff, size_t n,
		       const void *data)
{
	uint64_t bs = pool->block_size, old, nb;
	int rc;

	pthread_mutex_lock(&pool->lock);
	old = settled_entry(pool, d, vb);
	if ((old & VM_OWN) && vm_mapped(old)) {
		/* the device's own block: in place */
		pthread_mutex_unlock(&pool->lock);
		return write_or_zero(pool, data, n, vm_dblock(old) * bs + boff);
	}
	if (!data && !vm_mapped(old) && !origin_covers(d->origin, vb * bs)) {
		pthread_mutex_unlock(&pool->lock);
		return 0; /* zeroing what reads zeros already */
	}
	if (!pool_mode_writable(pool)) {
		pthread_mutex_unlock(&pool->lock);
		return -EROFS;
	}
	/* so that mapping it (start/end_provision) cannot fail half way */
	rc = vmap_reserve(&d->vm, vb);
	if (rc) {
		pthread_mutex_unlock(&pool->lock);
		return rc;
	}
	rc = space_alloc(&pool->space, &nb);
	if (rc) {
		bool freed_pending = pool->space.nr_freed > 0;
		if (!freed_pending)
			pool_space_short(pool, true, d->row.name);
		pthread_mutex_unlock(&pool->lock);
		return freed_pending ? NEED_COMMIT : -ENOSPC;
	}
	pool_space_short(pool, false, NULL);
	start_provision(pool, d, vb, old, nb);
	pthread_mutex_unlock(&pool->lock);

	rc = fill_new_block(pool, d, vb, old, nb, boff, n, data);

	pthread_mutex_lock(&pool->lock);
	end_provision(pool, d, vb, old, nb, rc);
	pthread_mutex_unlock(&pool->lock);
	return rc;
}

/*
 * Map fresh blocks for the unmapped whole blocks from vb on (at most nr, all
 * covered by data) and write them with one I/O: a run of data blocks
 * allocated together, placed after the previous vblock's block when that is
 * free, so a volume written in order lies in order and later reads and
 * overwrites of it move with one I/O too.  Block by block, concurrent writers
 * interleaved their blocks and a 1 MiB read became 16 reads in turn.
 * Returns the number of blocks written (0: none taken here, let write_block
 * do it) or a negative errno.  Called with the io lock held for reading.
 */
#define PROVISION_RUN_MAX 256

static int provision_run(struct pool *pool, struct device *d, uint64_t vb, uint64_t nr,
			 const void *data)
{
	uint64_t bs = pool->block_size, goal = SPACE_NO_GOAL, first, e;
	uint64_t old[PROVISION_RUN_MAX], n = 0;
	int got, rc;

	if (nr > PROVISION_RUN_MAX)
		nr = PROVISION_RUN_MAX;
	pthread_mutex_lock(&pool->lock);
	if (!pool_mode_writable(pool))
		goto none;
	while (n < nr && !vm_mapped(e = vmap_get(&d->vm, vb + n)) && !(e & VM_PROV))
		old[n++] = e;
	if (n < 2)
		goto none; /* one block: write_block's path, which also waits out provisioning */
	/* n <= 256 entries lie in at most two pages: reserved, setting them
	 * below cannot fail (write_block reports an -ENOMEM) */
	if (vmap_reserve(&d->vm, vb) || vmap_reserve(&d->vm, vb + n - 1))
		goto none;
	if (vb > 0) {
		e = vmap_get(&d->vm, vb - 1);
		if (vm_mapped(e) && (e & VM_OWN))
			goal = vm_dblock(e) + 1;
	}
	got = space_alloc_run(&pool->space, goal, n, &first);
	if (got < 0)
		goto none; /* write_block tells ENOSPC from blocks awaiting a commit */
	if ((uint64_t)got < n)
		n = (uint64_t)got; /* a run may come out shorter, never longer */
	for (uint64_t i = 0; i < n; i++) {
		vmap_set(&d->vm, vb + i, vm_make(first + i) | VM_OWN | VM_PROV | VM_DIRTY | old[i]);
		if (!(old[i] & VM_DIRTY))
			pool_device_mark_dirty(pool, d, vb + i);
	}
	d->row.mapped += n;
	d->row_dirty = true;
	pool->dirty = true;
	pool_space_short(pool, false, NULL);
	pthread_mutex_unlock(&pool->lock);

	rc = dio_write(pool->dio, data, n * bs, first * bs);

	pthread_mutex_lock(&pool->lock);
	for (uint64_t i = 0; i < n; i++) {
		if (rc) /* unmapped again, as before; the blocks return after the commit */
			space_free(&pool->space, first + i);
		vmap_set(&d->vm, vb + i, rc ? old[i] : vmap_get(&d->vm, vb + i) & ~VM_PROV);
	}
	if (rc)
		d->row.mapped -= n;
	pthread_cond_broadcast(&pool->prov_cv);
	pthread_mutex_unlock(&pool->lock);
	return rc ? rc : (int)n;
none:
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

/* The device reaches at least `end` bytes (a write or fallocate past its end);
 * io lock held for reading, so no shrink or commit runs in between.  The
 * range gained is unmapped (a shrink unmapped it and zeroed a partial last
 * block past the end), so it reads zeros; the new size is written with the
 * device row at the next commit, like a mapping. */
static void grow_to(struct pool *pool, struct device *d, uint64_t end)
{
	pthread_mutex_lock(&pool->lock);
	if (end > d->row.size) {
		d->row.size = end;
		d->row.mtime = util_now();
		d->row_dirty = true;
		pool->dirty = true;
	}
	pthread_mutex_unlock(&pool->lock);
}

/* Blocks of d's own from byte `*done` of the range on, in place: each run
 * one write, and the runs that follow each other written all at once.  1
 * (and *done moved on), 0 if the range goes on with no own block, or a
 * negative errno.  Io lock held for reading. */
static int write_own_runs(struct pool *pool, struct device *d, const char *buf, uint64_t offset,
			  size_t len, size_t *done)
{
	struct dio_seg seg[DIO_BATCH_MAX];
	size_t nseg = 0, at = *done;
	uint64_t bs = pool->block_size, e;
	int rc;

	pthread_mutex_lock(&pool->lock);
	while (at < len && nseg < DIO_BATCH_MAX) {
		uint64_t p = offset + at;
		size_t run = run_at(pool, d, p, offset + len, true, &e);
		if (!(e & VM_OWN) || !vm_mapped(e))
			break;
		seg[nseg++] =
		    (struct dio_seg){(char *)buf + at, run, vm_dblock(e) * bs + (p & (bs - 1))};
		at += run;
	}
	pthread_mutex_unlock(&pool->lock);
	if (!nseg)
		return 0;
	rc = dio_write_batch(pool->dio, seg, nseg);
	if (rc)
		return rc;
	*done = at;
	return 1;
}

/*
 * Write or zero [offset, offset+len), block by block.  Zeroing (buf NULL)
 * stops at the device's end; a write goes past it and then grows the device
 * as far as it got (also before it lets go of the io lock for a commit, so a
 * commit never finds a mapping past the size).  The size is read under the
 * io lock, so a shrink (which holds it for writing) either comes first, or
 * comes after and unmaps what the write mapped: never a block past the end.
 */
static ssize_t write_range(struct volume *vol, const void *buf, size_t len, uint64_t offset)
{
	struct pool *pool = vol->pool;
	struct device *d = vol->dev;
	uint64_t bs = pool->block_size, size, max = pool_size_limit(pool);
	size_t done = 0;
	bool retried = false;
	int64_t deadline = 0; /* of a wait for space (when_full=queue) */
	int rc = 0;

	pthread_rwlock_rdlock(&pool->io_lock);
	pthread_mutex_lock(&pool->lock);
	size = buf ? max : d->row.size;
	pthread_mutex_unlock(&pool->lock);
	if (offset >= size) {
		rc = buf ? -EFBIG : 0;
		len = 0;
	} else if (len > size - offset) {
		len = (size_t)(size - offset);
	}
	while (done < len) {
		uint64_t pos = offset + done, vb = pos >> pool->block_shift;
		uint64_t boff = pos & (bs - 1);
		size_t n = (size_t)(bs - boff) < len - done ? (size_t)(bs - boff) : len - done;

		if (buf) {
			int wrote = write_own_runs(pool, d, buf, offset, len, &done);
			if (wrote < 0) {
				rc = wrote;
				break;
			}
			if (wrote)
				continue;
		}
		if (buf && !boff && len - done >= 2 * bs) {
			int got =
			    provision_run(pool, d, vb, (len - done) / bs, (const char *)buf + done);
			if (got < 0) {
				rc = got;
				break;
			}
			if (got > 0) {
				done += (size_t)got * bs;
				continue;
			}
		}
		rc = write_block(pool, d, vb, boff, n, buf ? (const char *)buf + done : NULL);
		if (rc == NEED_COMMIT && !retried) {
			/* blocks freed since the last commit come back after it */
			if (buf && done)
				grow_to(pool, d, offset + done);
			pthread_rwlock_unlock(&pool->io_lock);
			rc = pool_commit(pool);
			pthread_rwlock_rdlock(&pool->io_lock);
			retried = true;
			if (!rc)
				continue;
		}
		if (rc == NEED_COMMIT)
			rc = -ENOSPC;
		if (rc == -ENOSPC && buf) {
			/* when_full=queue: wait for space without the io lock */
			if (done)
				grow_to(pool, d, offset + done);
			pthread_rwlock_unlock(&pool->io_lock);
			rc = pool_space_wait(pool, &deadline);
			pthread_rwlock_rdlock(&pool->io_lock);
			retried = false;
			if (!rc)
				continue;
		}
		if (rc)
			break;
		retried = false;
		done += n;
	}
	if (buf && done)
		grow_to(pool, d, offset + done);
	pthread_rwlock_unlock(&pool->io_lock);
	__atomic_add_fetch(&pool->change_seq, 1, __ATOMIC_RELEASE);
	if (done)
		return (ssize_t)done;
	return rc;
}

int pool_check_volume_write(struct volume *vol)
{
	/* a hint, unlocked: provisioning checks the mode again under the lock */
	if (!pool_mode_writable(vol->pool) || vol->dev->row.read_only)
		return -EROFS;
	return 0;
}

ssize_t pool_write(struct volume *vol, const void *buf, size_t len, uint64_t offset)
{
	int rc = pool_check_volume_write(vol);

	if (rc)
		return rc;
	if (!len)
		return 0;
	rc = pool_start_writing(vol->pool, vol->dev);
	if (rc)
		return rc;
	return write_range(vol, buf, len, offset);
}

int pool_volume_grow(struct volume *vol, uint64_t size)
{
	struct pool *pool = vol->pool;
	int rc = pool_check_volume_write(vol);

	if (rc)
		return rc;
	if (size > pool_size_limit(pool))
		return -EFBIG;
	pthread_rwlock_rdlock(&pool->io_lock);
	grow_to(pool, vol->dev, size);
	pthread_rwlock_unlock(&pool->io_lock);
	__atomic_add_fetch(&pool->change_seq, 1, __ATOMIC_RELEASE);
	return 0;
}

/* The origin of d open for zeroing the block at offset of a device nobody
 * has open (resize): 0, or the refusal of a changed origin; *opened if it
 * was opened here. */
static int origin_for_zeroing(struct pool *pool, struct device *d, uint64_t offset, bool *opened)
{
	int rc = 0;

	*opened = false;
	if (!origin_covers(d->origin, offset))
		return 0;
	pthread_mutex_lock(&pool->lock);
	if (d->origin->fd < 0) {
		rc = pool_device_origin_open(pool, d);
		*opened = !rc;
	}
	pthread_mutex_unlock(&pool->lock);
	return rc;
}

int pool_zero_partial_iolocked(struct pool *pool, struct device *d, uint64_t offset, size_t len)
{
	uint64_t vb = offset >> pool->block_shift, boff = offset & (pool->block_size - 1);
	bool opened;
	int rc = origin_for_zeroing(pool, d, vb << pool->block_shift, &opened);

	if (!rc)
		rc = write_block(pool, d, vb, boff, len, NULL);
	if (rc == NEED_COMMIT) {
		/* blocks freed since the last commit come back after it */
		pthread_mutex_lock(&pool->lock);
		rc = pool_txn(pool, NULL, NULL);
		pthread_mutex_unlock(&pool->lock);
		if (!rc)
			rc = write_block(pool, d, vb, boff, len, NULL);
		if (rc == NEED_COMMIT)
			rc = -ENOSPC;
	}
	pthread_mutex_lock(&pool->lock);
	if (opened && !d->open_count) /* (an open since then keeps it) */
		origin_close(d->origin);
	pthread_mutex_unlock(&pool->lock);
	__atomic_add_fetch(&pool->change_seq, 1, __ATOMIC_RELEASE);
	return rc;
}

/* Unmap the whole blocks of a range and zero the partial ones. */
static int unmap_range(struct volume *vol, uint64_t offset, uint64_t len)
{
	struct pool *pool = vol->pool;
	struct device *d = vol->dev;
	uint64_t bs = pool->block_size, size, end, first, last;
	ssize_t w;
	int rc = pool_check_volume_write(vol);

	if (rc)
		return rc;
	pthread_mutex_lock(&pool->lock);
	size = d->row.size;
	pthread_mutex_unlock(&pool->lock);
	if (offset >= size || !len)
		return 0;
	rc = pool_start_writing(pool, d);
	if (rc)
		return rc;
	end = len > size - offset ? size : offset + len;
	first = div_round_up(offset, bs);
	last = end / bs;
	if (first >= last) {
		/* within one block */
		w = write_range(vol, NULL, (size_t)(end - offset), offset);
		return w < 0 ? (int)w : 0;
	}
	if (offset < first * bs) {
		w = write_range(vol, NULL, (size_t)(first * bs - offset), offset);
		if (w < 0)
			return (int)w;
	}
	if (end > last * bs && end < size) {
		w = write_range(vol, NULL, (size_t)(end - last * bs), last * bs);
		if (w < 0)
			return (int)w;
	} else if (end > last * bs) {
		last++; /* the device's last, partial block: all of it goes */
	}
	pthread_rwlock_rdlock(&pool->io_lock);
	pthread_mutex_lock(&pool->lock);
	for (uint64_t vb = first; vb < last; vb++) {
		vb = vmap_find(&d->vm, vb, last, true);
		if (vb >= last)
			break;
		settled_entry(pool, d, vb);
		pool_unmap_block_locked(pool, d, vb);
	}
	pthread_mutex_unlock(&pool->lock);
	pthread_rwlock_unlock(&pool->io_lock);
	__atomic_add_fetch(&pool->change_seq, 1, __ATOMIC_RELEASE);
	return 0;
}

int pool_discard(struct volume *vol, uint64_t offset, uint64_t len)
{
	struct pool *pool = vol->pool;
	bool ignore;

	/* discard=ignore: refused, so nobody takes the range for zeroed (the
	 * io lock keeps pool_prop_set out) */
	pthread_rwlock_rdlock(&pool->io_lock);
	ignore = __atomic_load_n(&pool->props.discard, __ATOMIC_RELAXED) == DISCARD_IGNORE;
	pthread_rwlock_unlock(&pool->io_lock);
	if (ignore)
		return -EOPNOTSUPP;
	return unmap_range(vol, offset, len);
}

int pool_zero_range(struct volume *vol, uint64_t offset, uint64_t len)
{
	struct origin *o = vol->dev->origin;

	if (origin_covers(o, offset)) {
		/* over an origin, unmapped blocks read the origin: the part it
		 * covers gets zero blocks (provisioned; ENOSPC is possible) */
		uint64_t n = len < o->row.size - offset ? len : o->row.size - offset;
		int rc = pool_check_volume_write(vol);
		ssize_t w;

		if (!rc)
			rc = pool_start_writing(vol->pool, vol->dev);
		if (rc)
			return rc;
		w = write_range(vol, NULL, (size_t)n, offset);
		if (w < 0 || len == n)
			return w < 0 ? (int)w : 0;
		offset += n;
		len -= n;
	}
	/* unmapped blocks read zeros: zeroing a range is unmapping it */
	return unmap_range(vol, offset, len);
}

int pool_seek(struct volume *vol, uint64_t offset, int whence, uint64_t *result)
{
	struct pool *pool = vol->pool;
	struct device *d = vol->dev;
	uint64_t bs = pool->block_size, size, nr, vb;

	pthread_mutex_lock(&pool->lock);
	size = d->row.size;
	nr = div_round_up(size, bs);
	if (offset >= size) {
		pthread_mutex_unlock(&pool->lock);
		return -ENXIO;
	}
	if (d->origin && offset < d->origin->row.size) {
		/* what the origin covers is data, mapped or not */
		uint64_t oend = div_round_up(d->origin->row.size, bs);
		vb = whence == SEEK_DATA ? offset / bs : vmap_find(&d->vm, oend, nr, false);
	} else {
		vb = vmap_find(&d->vm, offset / bs, nr, whence == SEEK_DATA);
	}
	pthread_mutex_unlock(&pool->lock);
	if (whence == SEEK_DATA) {
		if (vb >= nr)
			return -ENXIO;
		*result = vb * bs > offset ? vb * bs : offset;
	} else {
		uint64_t h = vb * bs > offset ? vb * bs : offset;
		*result = h < size ? h : size;
	}
	return 0;
}

int pool_test_provision(struct volume *vol, uint64_t first, uint64_t n)
{
	struct pool *pool = vol->pool;
	struct device *d = vol->dev;
	int rc = pool_start_writing(pool, d);

	if (rc)
		return rc;
	pthread_rwlock_rdlock(&pool->io_lock);
	pthread_mutex_lock(&pool->lock);
	for (uint64_t vb = first; vb < first + n && !rc; vb++) {
		uint64_t e = vmap_get(&d->vm, vb), nb;
		if (vm_mapped(e))
			continue;
		rc = space_alloc(&pool->space, &nb);
		if (rc)
			break;
		rc = vmap_set(&d->vm, vb, vm_make(nb) | VM_OWN | VM_DIRTY | (e & VM_ROW));
		if (!(e & VM_DIRTY))
			pool_device_mark_dirty(pool, d, vb);
		d->row.mapped++;
		d->row_dirty = true;
	}
	pthread_mutex_unlock(&pool->lock);
	pthread_rwlock_unlock(&pool->io_lock);
	return rc;
}
