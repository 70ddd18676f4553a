/* SPDX-License-Identifier: MIT */
/*
 * restore.h - pool_restore's shared state, private to its five files:
 * restore.c (the driver), restore_util.c (helpers), restore_parse.c (the XML
 * and the thinfs comments), restore_tree.c (devices, sharing sets, the layer
 * tree, hiding) and restore_write.c (the new pool on disk).
 *
 * Restore makes a new pool from thin_dump XML (thin_dump.c's output, or
 * thin-provisioning-tools' own, with <def>/<ref> shared runs).
 *
 * dm-thin describes each device's view; thinfs stores views as a tree of
 * layers (layer.c).  Restore rebuilds a tree that yields exactly the views:
 *
 *  1. Parse (expat, streaming) into devices and runs (vblock, dblock, length,
 *     time); check every element, attribute and number; refuse overlapping
 *     mappings, blocks past nr_data_blocks, mapped_blocks that lie.
 *  2. Sweep the runs in dblock order: for each data block, the set of devices
 *     mapping it.  They must map it at the same vblock with the same time (a
 *     row has one of each); a block mapped twice by one device is refused.
 *  3. The layer tree:
 *     - from the <!-- thinfs layer --> comments of a thinfs dump (the dumped
 *       pool's own tree), checked: every interior layer has >= 2 children;
 *     - else derived from the sharing sets: sets of >= 2 devices become
 *       clusters greedily (sets that compete with another set at one vblock
 *       first, then the biggest), a set overlapping a chosen cluster without
 *       nesting gets the union of what it overlaps instead; the clusters are
 *       laminar, each one's parent is the smallest strict superset and each
 *       device's leaf hangs under the smallest cluster holding it.  For
 *       laminar sharing (most snapshot histories) every set is a cluster.
 *     Every interior layer has >= 2 children: its children cover it (each of
 *     its devices lies below one) and each is strictly smaller, so one child
 *     would have to be the whole layer.
 *  4. Each block's row goes in the lowest common ancestor of its devices'
 *     leaves (so every row is seen by >= 1 leaf).  Each device below that
 *     layer that is not in the set must not see the row: where it maps the
 *     vblock elsewhere, that row must sit strictly lower on its path (else
 *     the sharing cannot be represented: refused); where it maps nothing, its
 *     leaf gets a tombstone.  For a thinfs dump's own tree this always holds.
 *  5. Write: pool_format (or, to adopt a data image, our own meta_create,
 *     since format empties the data), a needs_check marker while the
 *     metadata is written, then one metadata transaction with the layers,
 *     rows, devices (with dm-thin's ids), sets, space map and an unclean pool
 *     row; then pool_check must find nothing; an adopted image gets its
 *     unmapped blocks punched, and only then is the pool marked clean.
 * Any error removes what this call created (never an adopted image).
 */
#ifndef THINFS_RESTORE_H
#define THINFS_RESTORE_H

#include <expat.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "interop_internal.h"

#define MAX_VBLOCK (1ull << 52)
#define MAX_DEVICE_SIZE ((uint64_t)INT64_MAX)
#define NO_NODE (-1)

struct rrun {
	uint32_t dev; /* device index; UINT32_MAX in a <def> */
	uint64_t vb, db, len, time;
};

struct rdev {
	uint64_t id, mapped_attr, creation_time, snap_time;
	/* from the <!-- thinfs device --> comment */
	bool has_comment, has_parent_layer;
	char set[POOL_NAME_MAX + 1], name[POOL_NAME_MAX + 1];
	uint64_t size, origin, parent_layer;
	bool has_size;
	int read_only;
	int64_t ctime, mtime;
	uint32_t uid, gid, mode;
	uint64_t generation; /* the identity send/receive uses (meta.h) */
	char copy_of[160];
	/* computed */
	size_t run0, nr_runs; /* its runs in runs[], sorted by vblock */
	uint64_t nr_mapped;
};

struct rdef {
	char *name;
	size_t first, n; /* in druns */
};

struct rlayer {
	uint64_t id, parent;
};

struct rsetc {
	char name[POOL_NAME_MAX + 1];
	int64_t ctime;
};

/* A pool property comment (a key set, not a default). */
struct rprop {
	char key[64];
	char value[POOL_PROP_VALUE_MAX];
};

/* A run of rows of one sharing set. */
struct rowrun {
	uint32_t set;
	uint64_t vb, db, len, time;
};

struct tnode {
	int32_t parent;
	uint32_t depth;
	int32_t dev; /* its device for a leaf, else -1 */
	uint32_t nr_children;
	uint32_t tin, tout;
	uint64_t layer_id, nr_rows;
};

struct tomb {
	uint32_t dev;
	uint64_t vb;
};

struct restore {
	XML_Parser xp;
	char *msg;
	size_t msglen;
	int err;
	int64_t now;

	/* the superblock */
	bool sb_open, sb_done;
	char uuid[40];
	uint64_t time, transaction, nr_data_blocks, block_size;
	/* where the parser is */
	enum { IN_NONE, IN_SB, IN_DEV, IN_DEF, IN_MAP, IN_DEF_MAP } where;
	int depth;
	int32_t cur_dev, cur_def;

	struct rdev *devs;
	size_t nr_devs, cap_devs;
	struct rrun *runs;
	size_t nr_runs, cap_runs;
	struct rrun *druns;
	size_t nr_druns, cap_druns;
	struct rdef *defs;
	size_t nr_defs, cap_defs;
	struct rdev *cdevs; /* device comments, until matched */
	size_t nr_cdevs, cap_cdevs;
	struct rlayer *clayers;
	size_t nr_clayers, cap_clayers;
	struct rsetc *csets;
	size_t nr_csets, cap_csets;
	struct rprop *cprops;
	size_t nr_cprops, cap_cprops;

	/* sharing sets: members (device indices, sorted) */
	uint32_t *members;
	size_t nr_members, cap_members;
	size_t *set_off, *set_len;
	size_t nr_sets, cap_sets;
	size_t *set_hash; /* open addressing: set index + 1 */
	size_t hash_cap;
	struct rowrun *rr;
	size_t nr_rr, cap_rr;

	/* the tree: interior nodes, then one leaf per device */
	struct tnode *nodes;
	size_t nr_nodes, nr_interior;
	int32_t *set_node; /* the layer of each set's rows */
	struct tomb *tombs;
	size_t nr_tombs, cap_tombs;
};

struct made {
	char *dir_path, *meta_path, *data_path, *lock_path;
	bool dir_created, data_created, pool_made, lock_existed, marker_made;
	const char *adopted; /* the adopted image (never removed) */
};

/* restore_util.c: helpers */
/* qsort and bsearch that take an empty (even NULL) array */
void rs_sort_n(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *));
void *rs_search_n(const void *key, const void *base, size_t n, size_t size,
		  int (*cmp)(const void *, const void *));
/* Make room for `need` elements of `size` in *p (capacity *cap). */
int rs_grow(void **p, size_t *cap, size_t need, size_t size);
#define GROW(arr, nr, cap) rs_grow((void **)&(arr), &(cap), (nr) + 1, sizeof(*(arr)))
/* Record the first error (with the XML line while parsing), stop the parser. */
int rs_fail(struct restore *r, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* restore_parse.c: step 1, the input into devices and runs */
int rs_parse(struct restore *r, FILE *in);
/* restore_tree.c: steps 2-4 */
int rs_prepare_devices(struct restore *r);
int rs_sweep_blocks(struct restore *r);
int rs_tree_from_comments(struct restore *r);
int rs_tree_from_sets(struct restore *r);
int rs_finish_tree(struct restore *r);
int rs_place_sets(struct restore *r);
int rs_plan_hiding(struct restore *r);
int32_t rs_leaf_of(struct restore *r, uint32_t dev);
/* restore_write.c: step 5 */
int rs_make_pool(struct restore *r, const char *dir, const char *adopt, struct made *mk);
int rs_restore_point(const char *point);
int rs_restore_marker(struct made *mk, bool on);
int rs_write_meta(struct restore *r, struct made *mk);
int rs_finish_pool(struct restore *r, struct made *mk);
void rs_remove_made(struct made *mk);

#endif
