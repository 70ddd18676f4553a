/* SPDX-License-Identifier: MIT */
/*
 * vmap.c - the in-memory resolved view of a device: a radix tree of entries
 * (see vmap.h).  A vblock splits into four parts of its bits:
 *
 *   top index (the rest) | table in dir (12) | page in table (12) | entry (12)
 *
 * top[] is a flat array grown on demand (at most 2^15 pointers for the
 * largest device of a 4 KiB-block pool); a dir holds 4096 tables, a table
 * 4096 pages, a page 4096 entries.  Nothing is allocated where nothing was
 * set, so memory follows what is mapped, not the virtual size: a write at
 * 4 EiB costs three small arrays and a page, where one flat table of page
 * pointers would have needed terabytes.  The pool's lock protects every call.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmap.h"

#define LEVEL_SHIFT 12
#define LEVEL_SIZE (1ull << LEVEL_SHIFT)
#define LEVEL_MASK (LEVEL_SIZE - 1)
#define PAGE_SHIFT LEVEL_SHIFT		       /* entries per page */
#define TABLE_SHIFT (PAGE_SHIFT + LEVEL_SHIFT) /* vblocks per table */
#define DIR_SHIFT (TABLE_SHIFT + LEVEL_SHIFT)  /* vblocks per dir (a top entry) */

void vmap_init(struct vmap *vm)
{
	memset(vm, 0, sizeof(*vm));
}

void vmap_destroy(struct vmap *vm)
{
	for (uint64_t t = 0; t < vm->nr_top; t++) {
		uint64_t ***dir = vm->top[t];
		if (!dir)
			continue;
		for (uint64_t d = 0; d < LEVEL_SIZE; d++) {
			if (!dir[d])
				continue;
			for (uint64_t p = 0; p < LEVEL_SIZE; p++)
				free(dir[d][p]);
			free(dir[d]);
		}
		free(dir);
	}
	free(vm->top);
	memset(vm, 0, sizeof(*vm));
}

/* The page holding vblock, or NULL. */
static uint64_t *page_of(const struct vmap *vm, uint64_t vblock)
{
	uint64_t t = vblock >> DIR_SHIFT;
	uint64_t ***dir, **table;

	if (t >= vm->nr_top || !(dir = vm->top[t]))
		return NULL;
	table = dir[(vblock >> TABLE_SHIFT) & LEVEL_MASK];
	if (!table)
		return NULL;
	return table[(vblock >> PAGE_SHIFT) & LEVEL_MASK];
}

uint64_t vmap_get(const struct vmap *vm, uint64_t vblock)
{
	const uint64_t *page = page_of(vm, vblock);

	return page ? page[vblock & LEVEL_MASK] : 0;
}

/* A zeroed array of LEVEL_SIZE elements of `size` bytes in *slot, unless one is there. */
static int level_get(void **slot, size_t size)
{
	if (!*slot)
		*slot = calloc(LEVEL_SIZE, size);
	return *slot ? 0 : -ENOMEM;
}

int vmap_reserve(struct vmap *vm, uint64_t vblock)
{
	uint64_t t = vblock >> DIR_SHIFT;
	uint64_t ***dir, **table;

	if (t >= vm->nr_top) {
		uint64_t n = vm->nr_top ? vm->nr_top : 1;
		while (n <= t)
			n *= 2;
		uint64_t ****top = realloc(vm->top, n * sizeof(*top));
		if (!top)
			return -ENOMEM;
		memset(top + vm->nr_top, 0, (n - vm->nr_top) * sizeof(*top));
		vm->top = top;
		vm->nr_top = n;
	}
	if (level_get((void **)&vm->top[t], sizeof(**vm->top)))
		return -ENOMEM;
	dir = vm->top[t];
	if (level_get((void **)&dir[(vblock >> TABLE_SHIFT) & LEVEL_MASK], sizeof(**dir)))
		return -ENOMEM;
	table = dir[(vblock >> TABLE_SHIFT) & LEVEL_MASK];
	return level_get((void **)&table[(vblock >> PAGE_SHIFT) & LEVEL_MASK], sizeof(**table));
}

int vmap_set(struct vmap *vm, uint64_t vblock, uint64_t entry)
{
	uint64_t *page = page_of(vm, vblock), *slot;

	if (!page) {
		if (!entry)
			return 0;
		int rc = vmap_reserve(vm, vblock);
		if (rc)
			return rc;
		page = page_of(vm, vblock);
	}
	slot = &page[vblock & LEVEL_MASK];
	if (!*slot && entry)
		vm->nr_entries++;
	else if (*slot && !entry)
		vm->nr_entries--;
	*slot = entry;
	return 0;
}

/* How many vblocks from vb on lie in the same missing part of the tree (0:
 * vb's page exists).  A missing top entry, dir or table skips all it spans. */
static uint64_t hole_span(const struct vmap *vm, uint64_t vb)
{
	uint64_t t = vb >> DIR_SHIFT, shift;
	uint64_t ***dir, **table;

	if (t >= vm->nr_top)
		return UINT64_MAX - vb; /* nothing set from here on */
	if (!(dir = vm->top[t]))
		shift = DIR_SHIFT;
	else if (!(table = dir[(vb >> TABLE_SHIFT) & LEVEL_MASK]))
		shift = TABLE_SHIFT;
	else if (!table[(vb >> PAGE_SHIFT) & LEVEL_MASK])
		shift = PAGE_SHIFT;
	else
		return 0;
	return ((vb >> shift) + 1 == 0) ? UINT64_MAX - vb : (((vb >> shift) + 1) << shift) - vb;
}

uint64_t vmap_find(const struct vmap *vm, uint64_t from, uint64_t limit, bool want_mapped)
{
	uint64_t vb = from;

	while (vb < limit) {
		uint64_t skip = hole_span(vm, vb);
		if (skip) {
			if (!want_mapped)
				return vb;
			if (skip >= limit - vb)
				return limit;
			vb += skip;
			continue;
		}
		if (vm_mapped(vmap_get(vm, vb)) == want_mapped)
			return vb;
		vb++;
	}
	return limit;
}

void vmap_foreach(struct vmap *vm, uint64_t from,
		  void (*fn)(void *arg, uint64_t vblock, uint64_t *entry), void *arg)
{
	uint64_t vb = from;

	while (vb >> DIR_SHIFT < vm->nr_top) {
		uint64_t skip = hole_span(vm, vb), *page;
		if (skip) {
			if (skip > UINT64_MAX - vb)
				return;
			vb += skip;
			continue;
		}
		page = page_of(vm, vb);
		for (uint64_t i = vb & LEVEL_MASK; i < LEVEL_SIZE; i++)
			if (page[i])
				fn(arg, (vb & ~LEVEL_MASK) | i, &page[i]);
		vb = (vb | LEVEL_MASK) + 1;
		if (!vb)
			return;
	}
}
