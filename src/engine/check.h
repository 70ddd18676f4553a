/* SPDX-License-Identifier: MIT */
/*
 * check.h - the checker's state, shared by check.c (the driver and the
 * report), check_scan.c (finding damage) and check_fix.c (repairing it).
 *
 * A scan produces findings, each with a level (warning, damaged, fatal) and
 * the fix that repairs it (FIX_NONE: it cannot be repaired).  check and
 * check --repair run the same scan, so check finds everything repair does;
 * a repair applies the fixes, and the driver scans again to prove it.
 *
 * Locking: the checker runs with the admin lock of a pool opened with
 * POOL_OPEN_LENIENT, which nobody else uses.
 */
#ifndef THINFS_CHECK_H
#define THINFS_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/pool_internal.h"

enum check_fix {
	FIX_NONE,	 /* cannot be repaired */
	FIX_GROW_DATA,	 /* a: bytes the data file must hold */
	FIX_SPACE,	 /* the space map is rebuilt from the map rows */
	FIX_LAYER_ROW,	 /* a: layer: insert its missing row, as a root */
	FIX_LAYER_LINK,	 /* a: layer: save its parent link, cut by the loader */
	FIX_NEEDS_CHECK, /* clear the flag and the marker file */
	FIX_POOL_TIME,	 /* a: the pool time it must at least be */
	FIX_SET_ROW,	 /* a: device: insert the row of its set */
	FIX_MEMBER_RO,	 /* a: device: a set member is read-only */
	FIX_RENAME,	 /* a: device: give it a valid name */
	FIX_ROW_DROP,	 /* a: layer, b: vblock: drop the row (tombstone under a parent) */
	FIX_COPY,	 /* a: layer, b: vblock, c: dblock: give the row its own copy */
	FIX_COUNTS,	 /* rows of each layer, mapped blocks of each device, recounted */
	FIX_ORPHANS,	 /* a: layer: delete the rows of a layer nothing names */
	FIX_LEAK_ROW,	 /* a: layer, b: vblock: a row no device sees */
	FIX_LAYER_DROP,	 /* a: layer: no device, no children: its rows and its row */
	FIX_LAYER_MERGE, /* a: layer: interior with one child: merged */
	FIX_NEW_LEAF,	 /* a: device: its leaf has children: freeze it, a new leaf */
	FIX_PAST_SIZE,	 /* a: device, b: vblock, c: layer of the row: unmapped */
	FIX_REINDEX,	 /* SQLite's indexes rebuilt from their tables */
	FIX_REFS,	 /* a: dblock: its clone count set to the rows naming it */
};

struct check_finding {
	int level; /* CHECK_CLEAN (a warning), CHECK_DAMAGED, CHECK_FATAL */
	enum check_fix fix;
	uint64_t a, b, c;
	char text[480];
	uint64_t newblock; /* FIX_COPY: the copy's data block */
	int result;	   /* after a repair: 0 repaired, else -errno */
	char how[400];	   /* what the repair did, or why it could not */
};

struct check_live {
	uint64_t layer, vblock;
};

struct checker {
	struct pool *pool;
	uint64_t nr_blocks;
	struct check_finding *f;
	size_t nr, cap;
	int worst;
	int err; /* out of memory while recording */
	/* the scan's working state */
	uint8_t *inrow;		 /* the block is in some row */
	uint8_t *claimed;	 /* the block is in some row a device sees */
	uint64_t *owner_layer;	 /* the first such row's layer ... */
	uint64_t *owner_vb;	 /* ... and vblock */
	uint32_t *nrows;	 /* map rows naming the block (clone counts) */
	struct check_live *live; /* (layer, vblock) some device sees, sorted */
	size_t nr_live, cap_live;
	uint64_t *drop_layers; /* layers FIX_LAYER_DROP removes whole */
	size_t nr_drop, cap_drop;
};

/* check_scan.c: find everything; 0, or -errno when the scan itself failed. */
int check_scan(struct checker *c);
void check_free(struct checker *c);
/* The device with this id, or NULL. */
struct device *check_device_by_id(struct pool *pool, uint64_t id);
/* A device's name for messages: "NAME", "SET/NAME" or "device ID". */
void check_device_name(struct pool *pool, uint64_t id, char *buf, size_t len);
void check_add(struct checker *c, int level, enum check_fix fix, uint64_t a, uint64_t b,
	       uint64_t cc, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

/* check_fix.c: repair every finding that has a fix, filling result and how.
 * The data first (growth, copies: flushed by the commit), then one
 * transaction for the metadata, then (scrub) the free blocks scrubbed.  0,
 * or the -errno that stopped it (the findings say what was and was not done). */
int check_repair(struct checker *c, bool scrub);

#endif
