/* SPDX-License-Identifier: MIT */
/*
 * space.h - the data-block allocator (space map).
 *
 * Two bitmaps over the data blocks: `used` is what the metadata says (it is
 * persisted, in chunks, at every commit) and `busy` is used | freed-but-not-
 * yet-released.  A block freed in the open transaction keeps its busy bit until
 * that transaction is durable and its hole is punched (space_take_freed() and
 * space_release()), so it is never reused before the free is durable.
 *
 * Clone counts (refs.h) live here too, so that the one call every path uses
 * when a map row naming a block goes away, space_free(), honours them: a
 * block named by other rows only loses a reference; the last one frees it.
 *
 * Locking: the caller (the pool) serialises all calls.
 */
#ifndef THINFS_SPACE_H
#define THINFS_SPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "refs.h"

struct meta;

struct space {
	uint64_t nr_blocks;
	uint64_t *used;
	uint64_t *busy;
	uint64_t nr_used;
	uint64_t nr_busy;
	uint64_t cursor;       /* next-fit allocation cursor */
	uint8_t *dirty_chunks; /* one byte per META_SPACE_CHUNK_BITS blocks */
	uint64_t nr_chunks;
	uint64_t *freed; /* freed in the open transaction */
	size_t nr_freed, cap_freed;
	struct refs refs; /* blocks named by two or more map rows (clones) */
};

int space_init(struct space *sp, uint64_t nr_blocks);
void space_destroy(struct space *sp);
/* Load the used bitmap (and the clone counts) from the metadata.  A damaged row (out of range, or
 * of the wrong length) is -EUCLEAN, or with `bad` set, reported to it and
 * skipped (its blocks read free; the chunk is rewritten at the next save). */
typedef int (*space_bad_chunk)(void *arg, uint64_t chunk, size_t len); /* non-zero: stop */
int space_load(struct space *sp, struct meta *m, space_bad_chunk bad, void *arg);
/* Rewrite every chunk at the next save (check --repair). */
void space_mark_all_dirty(struct space *sp);
/* Bits set past nr_blocks in the last chunk (damage); clear them. */
uint64_t space_nr_beyond(const struct space *sp);
void space_clear_beyond(struct space *sp);
/* Write the chunks and clone counts changed since the last save (inside a
 * transaction). */
int space_save(struct space *sp, struct meta *m);
int space_grow(struct space *sp, uint64_t nr_blocks);

/* Allocate a block that is neither used nor awaiting release: -ENOSPC if none. */
int space_alloc(struct space *sp, uint64_t *dblock);
#define SPACE_NO_GOAL UINT64_MAX
/*
 * Allocate up to `want` consecutive blocks, at `goal` if it is free (the block
 * after a neighbour's, so a stream stays in order), else at the next free
 * block: the number allocated (>= 1) starting at *first, or -ENOSPC.  Runs let
 * a volume's consecutive blocks move with one I/O.
 */
int space_alloc_run(struct space *sp, uint64_t goal, uint64_t want, uint64_t *first);
/*
 * Reserve a run as space_alloc_run() allocates one, but only busy: no commit
 * saves it (`used` is what is persisted), so a staged device's blocks
 * (pool_stage.c) are free in the metadata until its own commit marks them
 * used (space_set_used), or until space_release() hands them back.
 */
int space_reserve_run(struct space *sp, uint64_t goal, uint64_t want, uint64_t *first);
/* A map row naming dblock goes away.  If other rows name it too (a clone,
 * refs.h), one reference goes; else the block is freed: it stays busy until
 * released after the commit.  Every path that drops a map row calls this. */
void space_free(struct space *sp, uint64_t dblock);
/* One more map row names dblock (a clone): 0, -ENOMEM or -EOVERFLOW. */
int space_ref(struct space *sp, uint64_t dblock);
/* The number of map rows naming dblock when two or more do, else 0. */
static inline uint32_t space_refs(const struct space *sp, uint64_t dblock)
{
	return refs_get(&sp->refs, dblock);
}
/* Is dblock named by several map rows (so no row may write it in place)? */
static inline bool space_shared(const struct space *sp, uint64_t dblock)
{
	return sp->refs.nr && refs_get(&sp->refs, dblock) >= 2;
}
/* Set dblock's count as check --repair or restore found it (< 2: none). */
int space_set_refs(struct space *sp, uint64_t dblock, uint32_t count);
bool space_is_used(const struct space *sp, uint64_t dblock);
/* Mark a block used (repair, restore). */
void space_set_used(struct space *sp, uint64_t dblock);
/* Hand over the blocks freed so far (the caller owns the array), and forget them. */
size_t space_take_freed(struct space *sp, uint64_t **list);
/* Put blocks freed in a durable transaction back into circulation. */
void space_release(struct space *sp, const uint64_t *list, size_t nr);
/* Forget uncommitted frees (rollback): they become used again. */
void space_unfree(struct space *sp);
/* Blocks neither used nor busy. */
static inline uint64_t space_nr_free(const struct space *sp)
{
	return sp->nr_blocks - sp->nr_busy;
}

#endif
