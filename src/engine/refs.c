/* SPDX-License-Identifier: MIT */
/*
 * refs.c - the clone reference counts in memory (refs.h): an open-addressing
 * hash of dblock -> count for the blocks named by two or more map rows.
 *
 * Invariants: every stored count is >= 2; nr < cap / 2 (so probes stay
 * short and an empty slot always ends a probe); a key is stored as
 * dblock + 1 so that 0 marks an empty slot.  Every change is appended to the
 * dirty list, which space_save drains into meta.db inside the commit.
 *
 * No locks of its own: struct space's caller (the pool lock) serialises.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "refs.h"

void refs_init(struct refs *r)
{
	memset(r, 0, sizeof(*r));
}

void refs_destroy(struct refs *r)
{
	free(r->keys);
	free(r->counts);
	free(r->dirty);
	memset(r, 0, sizeof(*r));
}

static size_t slot_of(const struct refs *r, uint64_t dblock)
{
	uint64_t h = (dblock + 1) * 0x9e3779b97f4a7c15ull;

	return (size_t)(h >> 20) & (r->cap - 1);
}

/* The slot holding dblock, or the empty slot where it would go. */
static size_t find(const struct refs *r, uint64_t dblock)
{
	size_t i = slot_of(r, dblock);

	while (r->keys[i] && r->keys[i] != dblock + 1)
		i = (i + 1) & (r->cap - 1);
	return i;
}

uint32_t refs_get(const struct refs *r, uint64_t dblock)
{
	size_t i;

	if (!r->nr)
		return 0;
	i = find(r, dblock);
	return r->keys[i] ? r->counts[i] : 0;
}

static int grow(struct refs *r)
{
	size_t cap = r->cap ? r->cap * 2 : 64, old = r->cap;
	uint64_t *keys = calloc(cap, sizeof(*keys)), *ok = r->keys;
	uint32_t *counts = calloc(cap, sizeof(*counts)), *oc = r->counts;

	if (!keys || !counts) {
		free(keys);
		free(counts);
		return -ENOMEM;
	}
	r->keys = keys;
	r->counts = counts;
	r->cap = cap;
	for (size_t i = 0; i < old; i++) {
		if (!ok[i])
			continue;
		size_t j = find(r, ok[i] - 1);
		r->keys[j] = ok[i];
		r->counts[j] = oc[i];
	}
	free(ok);
	free(oc);
	return 0;
}

/* Remove slot i, shifting back the entries of its probe run. */
static void remove_slot(struct refs *r, size_t i)
{
	size_t j = i;

	r->keys[i] = 0;
	for (;;) {
		j = (j + 1) & (r->cap - 1);
		if (!r->keys[j])
			break;
		size_t home = slot_of(r, r->keys[j] - 1);
		/* j's entry may move to i if i lies cyclically in [home, j) */
		bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
		if (movable) {
			r->keys[i] = r->keys[j];
			r->counts[i] = r->counts[j];
			r->keys[j] = 0;
			i = j;
		}
	}
	r->nr--;
}

static int note_dirty(struct refs *r, uint64_t dblock)
{
	if (r->nr_dirty == r->cap_dirty) {
		size_t cap = r->cap_dirty ? r->cap_dirty * 2 : 64;
		uint64_t *n = realloc(r->dirty, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		r->dirty = n;
		r->cap_dirty = cap;
	}
	r->dirty[r->nr_dirty++] = dblock;
	return 0;
}

int refs_set(struct refs *r, uint64_t dblock, uint32_t count, int dirty)
{
	size_t i;
	int rc;

	/* room first, so that nothing below can fail half way */
	if (dirty && (rc = note_dirty(r, dblock)))
		return rc;
	if (count >= 2 && (r->nr + 1) * 2 > r->cap && (rc = grow(r))) {
		if (dirty)
			r->nr_dirty--;
		return rc;
	}
	if (!r->cap)
		return 0;
	i = find(r, dblock);
	if (count < 2) {
		if (r->keys[i])
			remove_slot(r, i);
		return 0;
	}
	if (!r->keys[i]) {
		r->keys[i] = dblock + 1;
		r->nr++;
	}
	r->counts[i] = count;
	return 0;
}

int refs_inc(struct refs *r, uint64_t dblock)
{
	uint32_t n = refs_get(r, dblock);

	if (n == UINT32_MAX)
		return -EOVERFLOW;
	return refs_set(r, dblock, n ? n + 1 : 2, 1);
}

int refs_dec(struct refs *r, uint64_t dblock)
{
	uint32_t n = refs_get(r, dblock);

	if (n < 2)
		return 0;
	/* 2 -> 1 removes the entry: setting a smaller count never allocates
	 * more than the dirty note, and if even that fails the count stays
	 * (a block kept too long, which check reports, never one freed early) */
	refs_set(r, dblock, n - 1, 1);
	return 1;
}

void refs_foreach(const struct refs *r, void (*fn)(void *arg, uint64_t dblock, uint32_t count),
		  void *arg)
{
	for (size_t i = 0; i < r->cap; i++)
		if (r->keys[i])
			fn(arg, r->keys[i] - 1, r->counts[i]);
}
