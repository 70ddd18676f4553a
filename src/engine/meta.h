/* SPDX-License-Identifier: MIT */
/*
 * meta.h - the metadata store: the only layer that speaks SQL.
 *
 * One SQLite database in WAL mode with synchronous=FULL.  Tables: pool (one
 * row of pool-wide values), devices, sets, layers (the tree of mapping layers),
 * map (layer, vblock) -> dblock, and space (the allocation bitmap in chunks).
 * Every change happens inside meta_begin() .. meta_commit(); a failure leaves
 * the transaction for the caller to roll back.
 *
 * Locking: a struct meta is used by one thread at a time (the pool's lock).
 */
#ifndef THINFS_META_H
#define THINFS_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define META_FORMAT_VERSION 3
#define META_APPLICATION_ID 0x7468696e		/* "thin" */
#define META_TOMBSTONE UINT64_MAX		/* a map row that hides its parent layers' */
#define META_SPACE_CHUNK_BITS 32768u		/* data blocks per space row */
#define META_UUID_XATTR "user.thinfs.pool_uuid" /* the pool's uuid on its data file */

struct meta;

struct meta_pool_row {
	char uuid[40];
	uint64_t block_size;
	uint64_t nr_data_blocks;
	uint64_t transaction_id;
	uint64_t pool_time;
	uint64_t next_layer_hint;
	int needs_check;
	int clean;
	int64_t created;
	char data_path[4096];
};

struct meta_device_row {
	uint64_t id;
	char set[256];
	char name[256];
	uint64_t size;
	uint64_t layer;
	uint64_t origin;
	uint64_t creation_time, snap_time;
	int64_t ctime, mtime;
	int read_only;
	uint32_t uid, gid, mode;
	uint64_t mapped;
	/* moves whenever the content can change: odd while a writer has the
	 * device open, +1 at its last close (or the next open after a crash),
	 * +2 for an administrative change of the content (pool_io.c) */
	uint64_t generation;
	/* what the device is a copy of: written by receive, opaque to the engine */
	char copy_of[160];
};

struct meta_set_row {
	char name[256];
	int64_t ctime;
};

struct meta_layer_row {
	uint64_t id;
	uint64_t parent; /* 0 = none */
	uint64_t nr_rows;
};

/* An SQLite result code as a negative errno (0 for OK, ROW and DONE). */
int meta_errno(int rc);

/* Create a new database at path (refusing an existing one) with the schema and
 * the pool row. */
int meta_create(const char *path, const struct meta_pool_row *pool, char *msg, size_t msglen);
/* Open an existing database; checks application_id and the format version. */
int meta_open(const char *path, bool rdonly, struct meta **out, char *msg, size_t msglen);
void meta_close(struct meta *m);

int meta_begin(struct meta *m);	     /* BEGIN IMMEDIATE */
int meta_begin_read(struct meta *m); /* a read transaction: one consistent view */
int meta_commit(struct meta *m);
void meta_rollback(struct meta *m);
const char *meta_errmsg(struct meta *m);
/* journal_mode and synchronous of this connection (for status). */
int meta_settings(struct meta *m, char *journal_mode, size_t len, int *synchronous);

int meta_pool_get(struct meta *m, struct meta_pool_row *row);
int meta_pool_put(struct meta *m, const struct meta_pool_row *row);

typedef int (*meta_device_cb)(void *arg, const struct meta_device_row *row);
int meta_device_foreach(struct meta *m, meta_device_cb cb, void *arg);
int meta_device_insert(struct meta *m, struct meta_device_row *row); /* sets row->id */
int meta_device_update(struct meta *m, const struct meta_device_row *row);
int meta_device_delete(struct meta *m, uint64_t id);
/* Give devices from[i] the ids to[i], inside the caller's transaction. */
int meta_device_renumber(struct meta *m, const uint64_t *from, const uint64_t *to, size_t n);

typedef int (*meta_set_cb)(void *arg, const struct meta_set_row *row);
int meta_set_foreach(struct meta *m, meta_set_cb cb, void *arg);
int meta_set_insert(struct meta *m, const struct meta_set_row *row);
int meta_set_delete(struct meta *m, const char *name);
int meta_set_rename(struct meta *m, const char *oldname, const char *newname);

typedef int (*meta_layer_cb)(void *arg, const struct meta_layer_row *row);
int meta_layer_foreach(struct meta *m, meta_layer_cb cb, void *arg);
int meta_layer_insert(struct meta *m, uint64_t parent, uint64_t *id);
int meta_layer_update(struct meta *m, const struct meta_layer_row *row);
/* Insert a layer with a given id (check --repair recreating a missing row). */
int meta_layer_insert_id(struct meta *m, const struct meta_layer_row *row);
int meta_layer_delete(struct meta *m, uint64_t id);

/* Map rows.  dblock META_TOMBSTONE marks a tombstone. */
int meta_map_get(struct meta *m, uint64_t layer, uint64_t vblock, uint64_t *dblock);
int meta_map_put(struct meta *m, uint64_t layer, uint64_t vblock, uint64_t dblock, uint64_t time);
int meta_map_del(struct meta *m, uint64_t layer, uint64_t vblock);
typedef int (*meta_map_cb)(void *arg, uint64_t vblock, uint64_t dblock, uint64_t time);
/* Rows of a layer with vblock >= from, in vblock order.  A non-zero return of
 * cb stops the walk and is returned. */
int meta_map_foreach(struct meta *m, uint64_t layer, uint64_t from, meta_map_cb cb, void *arg);
int meta_map_delete_from(struct meta *m, uint64_t layer, uint64_t from);
int meta_map_delete_upto(struct meta *m, uint64_t layer, uint64_t last); /* vblock <= last */
/* Move every row of `from` into `to`: where both have a row, `to` keeps its own
 * (keep_to) or takes from's (!keep_to).  `from` is left empty. */
int meta_map_move(struct meta *m, uint64_t from, uint64_t to, bool keep_to);
/* Delete the tombstones of a layer (once it has no parent they hide nothing). */
int meta_map_drop_tombstones(struct meta *m, uint64_t layer);
int meta_map_count(struct meta *m, uint64_t layer, uint64_t *nr);
/* Every (layer, vblock, dblock) whose layer is not in the layers table. */
int meta_map_foreach_orphan(struct meta *m,
			    void (*cb)(void *arg, uint64_t layer, uint64_t vblock, uint64_t dblock),
			    void *arg);
int meta_map_delete_orphans(struct meta *m);

typedef int (*meta_space_cb)(void *arg, uint64_t chunk, const void *bits, size_t len);
int meta_space_foreach(struct meta *m, meta_space_cb cb, void *arg);
int meta_space_put(struct meta *m, uint64_t chunk, const void *bits, size_t len);
int meta_space_delete_from(struct meta *m, uint64_t chunk);

/* Clone counts (table refs, format 3): a row (dblock, count) only for a data
 * block named by count >= 2 map rows.  A format-2 pool opened read-only has
 * no table and reads as having none. */
typedef int (*meta_refs_cb)(void *arg, uint64_t dblock, uint64_t count);
int meta_refs_foreach(struct meta *m, meta_refs_cb cb, void *arg);
int meta_refs_put(struct meta *m, uint64_t dblock, uint64_t count);
int meta_refs_del(struct meta *m, uint64_t dblock);

/* PRAGMA integrity_check (the foreign keys are the checker's, who says what
 * a dangling one means): cb per problem line; returns
 * the number of problems (>= 0) or a negative errno. */
int meta_integrity(struct meta *m, void (*cb)(void *arg, const char *line), void *arg);
/* Pool properties (table props): the value of key, -ENOENT if none; set one
 * inside the caller's transaction. */
int meta_prop_get(struct meta *m, const char *key, char *value, size_t len);
int meta_prop_put(struct meta *m, const char *key, const char *value);
#define META_PROP_TRANSACTION_ID "transaction_id" /* the user's, as dm-thin's */
/* REINDEX: every index rebuilt from its table (inside a transaction). */
int meta_reindex(struct meta *m);

/* External origins (table origins, format 3): a volume's read-only origin
 * file and the identity it had when it was recorded.  Deleting the device
 * deletes its row (ON DELETE CASCADE).  A read-only open of an older pool
 * has no table: no origins. */
#define META_ORIGIN_PATH_MAX 512 /* bytes with the NUL: the control wire's limit */
struct meta_origin_row {
	uint64_t device;
	char path[META_ORIGIN_PATH_MAX];
	uint64_t size, st_dev, st_ino;
	int64_t mtime_ns;
};
typedef int (*meta_origin_cb)(void *arg, const struct meta_origin_row *row);
int meta_origin_foreach(struct meta *m, meta_origin_cb cb, void *arg);
int meta_origin_insert(struct meta *m, const struct meta_origin_row *row);

#endif
