/* SPDX-License-Identifier: MIT */
/*
 * pool_view.h - the engine as the interop features see it: a consistent,
 * committed read of a pool (its row, devices, layers, sets, and each
 * device's mappings with their times), taken between pool_view_begin() and
 * pool_view_end().  Nothing of struct pool shows through: interop depends on
 * this, pool.h and meta.h's row types, never on pool_internal.h.
 */
#ifndef THINFS_POOL_VIEW_H
#define THINFS_POOL_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/meta.h"
#include "thinfs/pool.h"

/* The file in the pool directory that keeps needs_check when meta.db would
 * not take it (and that marks a restore in progress). */
#define POOL_NEEDS_CHECK_MARKER "needs_check"
/* The set that hides devices deleted while open, until their last close. */
#define DELETED_SET ".deleted"
/* The most data blocks a pool can address (a view entry's block field). */
#define POOL_MAX_DATA_BLOCKS ((1ull << 48) - 2)

/* One mapping of a device's view, with the time of its row. */
struct pool_view_mapping {
	uint64_t vblock, dblock, time;
};

/* One node of the layer tree (parent 0: a root). */
struct pool_view_layer {
	uint64_t id, parent;
};

/* A read-write pool commits first (so the database holds every completed
 * change; a failed commit leaves the last durable state, which is what is
 * read), then the pool lock is held until pool_view_end(). */
void pool_view_begin(struct pool *pool);
/* Property i (pool_prop_get) inside a view, with the lock it holds. */
int pool_view_prop(struct pool *pool, size_t i, struct pool_prop *out);
void pool_view_end(struct pool *pool);

/* The block size in bytes (fixed: no lock needed). */
uint64_t pool_view_block_size(struct pool *pool);

/* Between begin and end: */
/* The pool row; its transaction_id is the user's (set-transaction-id), as
 * thin_dump's transaction, not the commit counter. */
void pool_view_pool_row(struct pool *pool, struct meta_pool_row *row);
bool pool_view_writable(struct pool *pool); /* opened read-write (any mode) */
const char *pool_view_meta_path(struct pool *pool);
/* The live devices (none deleted), in no particular order; free(*rows). */
int pool_view_devices(struct pool *pool, struct meta_device_row **rows, size_t *n);
/* A live device by name ("NAME" or "SET/NAME"): 0, or -ENOENT. */
int pool_view_device(struct pool *pool, const char *name, struct meta_device_row *row);
/* Every layer; free(*layers). */
int pool_view_layers(struct pool *pool, struct pool_view_layer **layers, size_t *n);
/* Every snapshot set; free(*sets). */
int pool_view_sets(struct pool *pool, struct meta_set_row **sets, size_t *n);
/* The committed view of the device whose leaf layer is `leaf`: sorted by
 * vblock, the nearest row of each vblock winning, tombstones dropped;
 * free(*m). */
int pool_view_mappings(struct pool *pool, uint64_t leaf, struct pool_view_mapping **m, size_t *n);

#endif
