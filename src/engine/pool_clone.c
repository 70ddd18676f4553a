/* SPDX-License-Identifier: MIT */
/*
 * pool_clone.c - cloning a range (copy_file_range): the destination maps the
 * source's data blocks instead of copying them.
 *
 * What it owns: pool_clone_range().  Whole blocks at congruent offsets are
 * shared: the destination's entry names the source's data block (dirty, so
 * its leaf row is written at the next commit) and the block's clone count
 * (refs.h) goes up by one; neither side's entry keeps VM_OWN, so a later
 * write to either copies on write (pool_io.c), and the write's drop of the
 * old mapping takes one reference away (space_free).  The mapping the
 * destination had there goes as a discard's does (pool_drop_mapping); a
 * hole in the source makes a hole in the destination.  Partial blocks at
 * the edges, and everything when the offsets are not congruent modulo the
 * block size or either side is over an external origin, are copied through
 * pool_read/pool_write.
 *
 * Invariants:
 *  - a clone count is always the number of map rows (committed or pending in
 *    a view) naming the block, and it changes in memory together with the
 *    entries; the next commit writes the rows and the counts in one SQLite
 *    transaction, so a crash leaves the old mappings and counts, or the new
 *    ones, never a freed block still mapped;
 *  - a block whose count is >= 2 is never VM_OWN in any view (layer.c
 *    resolves and merges it that way too), so it is never written in place.
 *
 * Locks: each batch of shared blocks runs under the admin lock (the io lock
 * for writing, so no I/O and no provisioning is in flight on either side,
 * then the pool lock); copies take the io lock for reading, as writes do.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"
#include "util.h"

#define CLONE_BATCH 16384u    /* blocks shared per admin-lock hold: a few ms */
#define CLONE_COPY (1u << 20) /* bytes per read+write of a copied edge */

static bool all_zero(const char *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Copy len bytes from src at soff to dst at doff, by reading and writing
 * (zeros by zeroing, so that a hole copied stays unmapped). */
static int copy_bytes(struct volume *src, uint64_t soff, struct volume *dst, uint64_t doff,
		      uint64_t len, uint64_t *done)
{
	char *buf = malloc(len < CLONE_COPY ? (size_t)len : CLONE_COPY);
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	while (len) {
		size_t n = len < CLONE_COPY ? (size_t)len : CLONE_COPY;
		ssize_t r = pool_read(src, buf, n, soff);
		if (r <= 0) {
			rc = (int)r;
			break;
		}
		ssize_t w = (ssize_t)r;
		if (all_zero(buf, (size_t)r)) {
			/* a hole (or zeros) stays a hole: zeroing maps nothing */
			rc = pool_volume_grow(dst, doff + (uint64_t)r);
			if (!rc)
				rc = pool_zero_range(dst, doff, (uint64_t)r);
			if (rc)
				break;
		} else if ((w = pool_write(dst, buf, (size_t)r, doff)) < 0) {
			rc = (int)w;
			break;
		}
		soff += (uint64_t)w;
		doff += (uint64_t)w;
		len -= (uint64_t)w;
		*done += (uint64_t)w;
		if (w < r)
			break;
	}
	free(buf);
	return rc;
}

/* dst's vblock dvb comes to name src's svb (lock held, admin lock). */
static int share_one(struct pool *pool, struct device *s, uint64_t svb, struct device *d,
		     uint64_t dvb)
{
	uint64_t se = vmap_get(&s->vm, svb), de = vmap_get(&d->vm, dvb), x;
	int rc;

	if (!vm_mapped(se)) {
		pool_unmap_block_locked(pool, d, dvb); /* a hole makes a hole */
		return 0;
	}
	x = vm_dblock(se);
	if (vm_mapped(de) && vm_dblock(de) == x)
		return 0; /* already the same block (a snapshot's) */
	rc = vmap_reserve(&d->vm, dvb);
	if (!rc)
		rc = space_ref(&pool->space, x);
	if (rc)
		return rc;
	/* shared now: the source writes it in place no more */
	if (se & VM_OWN)
		vmap_set(&s->vm, svb, se & ~VM_OWN);
	pool_drop_mapping(pool, d, dvb, de);
	if (!(de & VM_DIRTY))
		pool_device_mark_dirty(pool, d, dvb);
	if (!vm_mapped(de))
		d->row.mapped++;
	vmap_set(&d->vm, dvb, vm_make(x) | VM_DIRTY | (de & VM_ROW));
	d->row_dirty = true;
	pool->dirty = true;
	return 0;
}

/* Share nr whole blocks from svb on into dvb on, in batches; *done counts
 * the blocks shared.  dst grows to cover them as they are. */
static int share_blocks(struct pool *pool, struct device *s, uint64_t svb, struct device *d,
			uint64_t dvb, uint64_t nr, uint64_t *done)
{
	int rc = 0;

	while (*done < nr && !rc) {
		uint64_t end = *done + CLONE_BATCH < nr ? *done + CLONE_BATCH : nr;
		admin_lock(pool);
		if (!pool_mode_writable(pool))
			rc = -EROFS;
		while (!rc && *done < end) {
			rc = share_one(pool, s, svb + *done, d, dvb + *done);
			*done += !rc;
		}
		uint64_t reach = (dvb + *done) << pool->block_shift;
		if (reach > d->row.size) {
			d->row.size = reach;
			d->row_dirty = true;
			pool->dirty = true;
		}
		if (*done)
			d->row.mtime = util_now();
		admin_unlock(pool);
	}
	__atomic_add_fetch(&pool->change_seq, 1, __ATOMIC_RELEASE);
	return rc;
}

/* The refusals and the clipping of a clone: 0 with *len clipped to the
 * source's end, or -errno. */
static int clone_refusal(struct volume *src, uint64_t soff, struct volume *dst, uint64_t doff,
			 uint64_t *len)
{
	struct pool *pool = src->pool;
	uint64_t size, limit = pool_size_limit(pool);
	int rc;

	if (dst->pool != pool)
		return -EXDEV;
	rc = pool_check_volume_write(dst);
	if (rc)
		return rc;
	pthread_mutex_lock(&pool->lock);
	size = src->dev->row.size;
	pthread_mutex_unlock(&pool->lock);
	if (soff >= size)
		*len = 0;
	else if (*len > size - soff)
		*len = size - soff;
	if (!*len)
		return 0;
	if (doff >= limit || *len > limit - doff)
		return -EFBIG;
	if (src->dev == dst->dev && soff < doff + *len && doff < soff + *len)
		return -EINVAL; /* overlapping ranges of one file, as copy_file_range(2) */
	return pool_start_writing(pool, dst->dev);
}

int pool_clone_range(struct volume *src, uint64_t src_off, struct volume *dst, uint64_t dst_off,
		     uint64_t len, uint64_t *done)
{
	struct pool *pool = src->pool;
	uint64_t bs = pool->block_size, head, nr, shared = 0;
	int rc = clone_refusal(src, src_off, dst, dst_off, &len);

	*done = 0;
	if (rc || !len)
		return rc;
	/* over an external origin an unmapped block is no hole (it reads the
	 * origin, pool_origin.c): such a range is copied, never shared */
	if (((src_off ^ dst_off) & (bs - 1)) || src->dev->origin || dst->dev->origin)
		return copy_bytes(src, src_off, dst, dst_off, len, done);
	head = (bs - (src_off & (bs - 1))) & (bs - 1);
	if (head > len)
		head = len;
	rc = copy_bytes(src, src_off, dst, dst_off, head, done);
	if (rc || *done < head)
		return rc;
	nr = (len - head) >> pool->block_shift;
	rc = share_blocks(pool, src->dev, (src_off + head) >> pool->block_shift, dst->dev,
			  (dst_off + head) >> pool->block_shift, nr, &shared);
	*done += shared * bs;
	if (rc || shared < nr)
		return *done ? 0 : rc;
	return copy_bytes(src, src_off + *done, dst, dst_off + *done, len - *done, done);
}
