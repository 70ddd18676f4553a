/* SPDX-License-Identifier: MIT */
/*
 * vmap.c - the in-memory resolved view of a device: a two-level array of
 * entries (see vmap.h).  Empty pages are never allocated, so a sparse 1 TiB
 * volume costs memory only where it is mapped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmap.h"

#define PAGE_SHIFT 12
#define PAGE_ENTRIES (1ull << PAGE_SHIFT)

void vmap_init(struct vmap *vm)
{
	memset(vm, 0, sizeof(*vm));
}

void vmap_destroy(struct vmap *vm)
{
	for (uint64_t i = 0; i < vm->nr_pages; i++)
		free(vm->pages[i]);
	free(vm->pages);
	memset(vm, 0, sizeof(*vm));
}

uint64_t vmap_get(const struct vmap *vm, uint64_t vblock)
{
	uint64_t p = vblock >> PAGE_SHIFT;

	if (p >= vm->nr_pages || !vm->pages[p])
		return 0;
	return vm->pages[p][vblock & (PAGE_ENTRIES - 1)];
}

int vmap_set(struct vmap *vm, uint64_t vblock, uint64_t entry)
{
	uint64_t p = vblock >> PAGE_SHIFT;
	uint64_t *slot;

	if (p >= vm->nr_pages) {
		if (!entry)
			return 0;
		uint64_t n = vm->nr_pages ? vm->nr_pages : 16;
		while (n <= p)
			n *= 2;
		uint64_t **np = realloc(vm->pages, n * sizeof(*np));
		if (!np)
			return -ENOMEM;
		memset(np + vm->nr_pages, 0, (n - vm->nr_pages) * sizeof(*np));
		vm->pages = np;
		vm->nr_pages = n;
	}
	if (!vm->pages[p]) {
		if (!entry)
			return 0;
		vm->pages[p] = calloc(PAGE_ENTRIES, sizeof(uint64_t));
		if (!vm->pages[p])
			return -ENOMEM;
	}
	slot = &vm->pages[p][vblock & (PAGE_ENTRIES - 1)];
	if (!*slot && entry)
		vm->nr_entries++;
	else if (*slot && !entry)
		vm->nr_entries--;
	*slot = entry;
	return 0;
}

uint64_t vmap_find(const struct vmap *vm, uint64_t from, uint64_t limit, bool want_mapped)
{
	uint64_t vb = from;

	while (vb < limit) {
		uint64_t p = vb >> PAGE_SHIFT;
		if (p >= vm->nr_pages || !vm->pages[p]) {
			if (!want_mapped)
				return vb;
			vb = (p + 1) << PAGE_SHIFT;
			continue;
		}
		if (vm_mapped(vm->pages[p][vb & (PAGE_ENTRIES - 1)]) == want_mapped)
			return vb;
		vb++;
	}
	return limit;
}

void vmap_foreach(struct vmap *vm, uint64_t from,
		  void (*fn)(void *arg, uint64_t vblock, uint64_t *entry), void *arg)
{
	for (uint64_t p = from >> PAGE_SHIFT; p < vm->nr_pages; p++) {
		if (!vm->pages[p])
			continue;
		uint64_t i = p == (from >> PAGE_SHIFT) ? (from & (PAGE_ENTRIES - 1)) : 0;
		for (; i < PAGE_ENTRIES; i++)
			if (vm->pages[p][i])
				fn(arg, (p << PAGE_SHIFT) | i, &vm->pages[p][i]);
	}
}
