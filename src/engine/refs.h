/* SPDX-License-Identifier: MIT */
/*
 * refs.h - reference counts of data blocks shared by clones
 * (copy_file_range), in memory: the cache of meta.db's refs table.
 *
 * A block named by one map row (the common case, and every block the layer
 * tree shares between snapshots: one row, seen through ancestor layers) has
 * no entry.  A block named by n >= 2 map rows has the entry n.  So the table
 * stays as small as what was cloned, and a lookup of an unshared block is
 * one probe of an empty slot.  Entries changed since the last save are kept
 * in a dirty list; space_save writes them (count >= 2: put, else: delete).
 *
 * Linear probing with backward-shift deletion: no tombstones.
 *
 * Locking: the caller (the pool, through struct space) serialises all calls.
 */
#ifndef THINFS_REFS_H
#define THINFS_REFS_H

#include <stddef.h>
#include <stdint.h>

struct refs {
	uint64_t *keys;	  /* dblock + 1; 0 = empty slot */
	uint32_t *counts; /* >= 2 */
	size_t cap, nr;	  /* cap: a power of two, or 0 */
	uint64_t *dirty;  /* dblocks changed since the last save (may repeat) */
	size_t nr_dirty, cap_dirty;
};

void refs_init(struct refs *r);
void refs_destroy(struct refs *r);
/* The number of map rows naming dblock if it is shared (>= 2), else 0. */
uint32_t refs_get(const struct refs *r, uint64_t dblock);
/* Set the count (0 or 1: remove the entry) and remember it for the next
 * save; dirty: false when the value comes from the table (load). */
int refs_set(struct refs *r, uint64_t dblock, uint32_t count, int dirty);
/* One more map row names dblock (1 -> 2 when it had no entry). */
int refs_inc(struct refs *r, uint64_t dblock);
/* One map row naming dblock went: true if the block is still named by
 * another (the count went down), false if that was the last row (free it). */
int refs_dec(struct refs *r, uint64_t dblock);
/* Call fn for every entry (any order). */
void refs_foreach(const struct refs *r, void (*fn)(void *arg, uint64_t dblock, uint32_t count),
		  void *arg);

#endif
