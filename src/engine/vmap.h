/* SPDX-License-Identifier: MIT */
/*
 * vmap.h - a device's resolved view in memory: vblock -> entry.
 *
 * An entry is (dblock + 1) in the low 48 bits (0 = unmapped) plus flags:
 * OWN   the mapping lives in the device's own (leaf) layer and no other map
 *       row names its block: write in place (never set for a cloned block,
 *       space_shared(): a write to it copies, like one to an ancestor's);
 * ROW   the leaf layer has a row here (a mapping or a tombstone);
 * DIRTY changed since the last commit: the row must be written back;
 * PROV  being provisioned: other threads wait until it clears.
 * Pages of 4096 entries (and the radix levels above them) are allocated on
 * first use, so memory follows what is mapped, not the virtual size, up to
 * the largest device.  The pool's lock protects every call.
 */
#ifndef THINFS_VMAP_H
#define THINFS_VMAP_H

#include <stdbool.h>
#include <stdint.h>

#define VM_DIRTY (1ull << 63)
#define VM_OWN (1ull << 62)
#define VM_PROV (1ull << 61)
#define VM_ROW (1ull << 60)
#define VM_DMASK ((1ull << 48) - 1)

struct vmap {
	uint64_t nr_top;
	uint64_t ****top;    /* top -> dirs -> tables -> pages of entries (vmap.c) */
	uint64_t nr_entries; /* non-zero entries, for memory accounting */
};

static inline bool vm_mapped(uint64_t e)
{
	return (e & VM_DMASK) != 0;
}
static inline uint64_t vm_dblock(uint64_t e)
{
	return (e & VM_DMASK) - 1;
}
static inline uint64_t vm_make(uint64_t dblock)
{
	return (dblock + 1) & VM_DMASK;
}

/* Does the device's leaf name the entry's block (its own row, written back or
 * still dirty; for a cloned block OWN is clear but ROW or DIRTY is set), so
 * that dropping the mapping drops that row's reference (space_free), rather
 * than hiding an ancestor layer's row (pool_device_hide)?  An ancestor's
 * mapping carries no flag: a leaf row at that vblock would have hidden it,
 * and a change makes the entry the leaf's (OWN or DIRTY). */
static inline bool vm_leaf_names(uint64_t e)
{
	return vm_mapped(e) && (e & (VM_OWN | VM_ROW | VM_DIRTY));
}

void vmap_init(struct vmap *vm);
void vmap_destroy(struct vmap *vm);
uint64_t vmap_get(const struct vmap *vm, uint64_t vblock);
/* 0, or -ENOMEM (only when vblock's page does not exist yet and entry != 0;
 * after vmap_reserve of vblock it cannot fail). */
int vmap_set(struct vmap *vm, uint64_t vblock, uint64_t entry);
/* Make vblock's page exist, so that setting its entry cannot fail. */
int vmap_reserve(struct vmap *vm, uint64_t vblock);
/* First vblock in [from, limit) whose entry is mapped (want_mapped) or not;
 * returns limit if none. */
uint64_t vmap_find(const struct vmap *vm, uint64_t from, uint64_t limit, bool want_mapped);
/* Call fn for every non-zero entry with vblock >= from, in order. */
void vmap_foreach(struct vmap *vm, uint64_t from,
		  void (*fn)(void *arg, uint64_t vblock, uint64_t *entry), void *arg);

#endif
