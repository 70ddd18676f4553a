/* SPDX-License-Identifier: MIT */
/*
 * pool_internal.h - the pool's in-memory state, shared by pool.c (open,
 * commit, administration), pool_io.c (the data path), layer.c (the layer
 * tree), pool_list.c and check.c.  Not for the front ends.
 *
 * Locking (always in this order):
 *   io_lock (rwlock)  readers: every data I/O, from lookup until the data
 *                     transfer ends; writer: commit and administration, so a
 *                     commit never includes a mapping whose data is still in
 *                     flight, and a freed block is never reused under a read.
 *   lock (mutex)      every in-memory structure and the meta connection.
 *   commit_lock       serialises commits (group commit: waiters find their
 *                     changes already durable).
 */
#ifndef THINFS_POOL_INTERNAL_H
#define THINFS_POOL_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "dataio.h"
#include "meta.h"
#include "origin.h"
#include "thinfs/pool.h"
#include "space.h"
#include "vmap.h"

#include "engine/pool_view.h" /* DELETED_SET, POOL_MAX_DATA_BLOCKS */
_Static_assert(POOL_MAX_DATA_BLOCKS == VM_DMASK - 1, "view entries address every data block");

struct device;

/* A node of the layer tree: a set of map rows.  Leaves belong to exactly one
 * device; interior layers are frozen and always have two or more children. */
struct layer {
	uint64_t id;
	struct layer *parent;
	struct layer **children;
	size_t nr_children, cap_children;
	struct device *dev; /* the device whose leaf this is, or NULL */
	uint64_t nr_rows;
	bool placeholder;   /* stands in for a missing layers row (check only) */
	bool dirty;	    /* parent or nr_rows changed since the last commit */
	struct layer *next; /* all layers */
};

/* A hidden ancestor mapping: the device stopped seeing (vblock -> dblock) of an
 * ancestor layer; at commit, free it if no other device sees it. */
struct hidden {
	uint64_t vblock, dblock;
};

/* A device: every field [L] (pool->lock), changed shape only under [A]. */
struct device {
	struct meta_device_row row;
	struct layer *layer;
	struct vmap vm; /* entries [L]; a PROV entry belongs to its provisioner */
	bool vm_loaded;
	unsigned open_count;
	bool deleted;	 /* gone from the namespace; released on last close */
	bool pinned;	 /* a commit failed: this view is ahead of the db, keep it */
	bool row_dirty;	 /* the device row changed */
	bool writing;	 /* its odd generation is durable: changes may go on
			  * until the last close makes it even again */
	uint64_t *dirty; /* vblocks whose entry has VM_DIRTY */
	size_t nr_dirty, cap_dirty;
	struct hidden *hidden;
	size_t nr_hidden, cap_hidden;
	struct origin *origin; /* its external origin, or NULL; open while
				* open_count > 0 (pool_origin.c) */
	struct device *next;
};

struct set {
	struct meta_set_row row;
	struct set *next;
};

/*
 * Damage the loader met.  A lenient open (check's) records it and goes on
 * with a usable tree; every other open refuses the pool, naming the first.
 */
enum pool_damage_kind {
	PD_PARENT_MISSING, /* layer id names missing parent ref: a placeholder stands in */
	PD_CYCLE,	   /* layer id's parent link (to ref) closed a cycle: cut */
	PD_LAYER_MISSING,  /* device id names missing layer ref: a placeholder stands in */
	PD_LAYER_SHARED,   /* device id names layer ref, another device's leaf: not loaded */
	PD_SPACE_CHUNK,	   /* space row id is damaged (ref bytes): ignored */
	PD_DATA_SHORT,	   /* the data file is id bytes, the pool needs ref */
};
struct pool_damage {
	enum pool_damage_kind kind;
	uint64_t id, ref;
};
/* Internal open flag: load damaged metadata as far as it goes (check). */
#define POOL_OPEN_LENIENT (1u << 30)
/* One line on a damage. */
void pool_damage_describe(const struct pool_damage *d, char *buf, size_t len);

/* The properties in force (pool_props.c keeps them and the table of keys). */
enum pool_when_full { WHEN_FULL_QUEUE, WHEN_FULL_ERROR };
enum pool_discard_policy { DISCARD_PASSDOWN, DISCARD_NOPASSDOWN, DISCARD_IGNORE };
struct pool_props {
	unsigned low_water;	     /* percent of data blocks used, 0 = off */
	unsigned autoextend_percent; /* 0 = off */
	uint64_t autoextend_max;     /* bytes, 0 = off */
	int when_full;		     /* enum pool_when_full */
	unsigned queue_timeout;	     /* seconds, 0 = for ever */
	int discard;		     /* enum pool_discard_policy */
	char event_command[POOL_PROP_VALUE_MAX];
	uint32_t set_mask; /* bit i: property i was set (not a default) */
};

/*
 * Space events and the writes queued for space (pool_space_events.c), all
 * [L] but the condition variables.  An event is logged when it happens,
 * counted in last[] (saved in the props table by the next commit, so an
 * unmounted pool's status shows them too) and kept in ring[] until the
 * space worker hands it out.
 */
#define SPACE_EVENT_RING 32
struct space_events {
	bool low_water_crossed; /* used >= low_water: the next crossing waits */
	bool full;		/* a full episode: "full" given, "space_back" not yet */
	bool autoextend_wanted; /* the worker should grow the data file */
	bool at_max_reported;	/* autoextend_failed given for autoextend_max */
	bool saved;		/* last[] is in the props table */
	bool stop;		/* the worker stopped: queued writes fail */
	unsigned nr_queued;	/* writes waiting for space now */
	void (*wait_hook)(void *arg, int delta); /* [i] pool_set_space_wait_hook */
	void *wait_arg;
	pthread_cond_t space_cv; /* a queued write waits here */
	pthread_cond_t work_cv;	 /* the worker waits here */
	struct pool_event ring[SPACE_EVENT_RING];
	uint64_t nr_recorded, nr_taken;
	struct {
		uint64_t count;
		struct pool_event last;
	} last[POOL_EVENT_NR];
};

/* test hooks: called at named crash points; a non-zero return "crashes" */
typedef int (*pool_crash_hook)(void *arg, const char *point);

/*
 * The pool's mode: one field, changed only by the functions named below (all
 * in pool_mode.c, which logs every change once), written under the pool lock (with the io lock held
 * for writing where a commit is involved).  The data path reads it without the lock as a fast
 * refusal; every decision that matters is taken again under the lock.
 *
 *   pool_open(POOL_OPEN_RDONLY) ............................... -> READER
 *       a consistent read view: no lock file, no writes, never changes.
 *   pool_open(read-write), pool_mode_opened() ................. -> WRITE,
 *       or -> READ_ONLY when needs_check is set (in meta.db, or the
 *       needs_check marker file): reads only; nothing is pending, so a sync
 *       succeeds.  Left only by pool_mode_repair() (check --repair).
 *   WRITE -> OUT_OF_SPACE: pool_space_short(true), a write that needs a
 *       block found none (writes to mapped, unshared blocks go on).
 *   OUT_OF_SPACE -> WRITE: pool_space_short(false), an allocation
 *       succeeded, freed blocks were released, or the pool grew.
 *   WRITE, OUT_OF_SPACE -> FAILED: pool_fail(err, why), exactly when
 *       the data flush before a commit fails, a metadata commit fails, or
 *       a change cannot be tracked (out of memory).  What was accepted since
 *       the last commit can never become durable: every later sync returns
 *       fail_err, writes and changes -EROFS, reads go on, the views are kept;
 *       needs_check is persisted over the last durable pool row (or in the
 *       marker file).  Final for this open.
 */
enum pool_mode {
	POOL_MODE_READER,
	POOL_MODE_WRITE,
	POOL_MODE_OUT_OF_SPACE,
	POOL_MODE_READ_ONLY,
	POOL_MODE_FAILED,
};

/*
 * Locks: [i] immutable after pool_open; [L] pool->lock; [A] admin_lock
 * (io lock for writing + pool lock); [C] commit_lock; [a] atomic.
 */
struct pool {
	char *dir;		   /* [i] */
	char *meta_path;	   /* [i] */
	int lock_fd;		   /* [i] */
	enum pool_mode mode;	   /* [L] written; read unlocked as a hint */
	int fail_err;		   /* [L] the error every sync returns in FAILED */
	struct meta *meta;	   /* [L] the one connection */
	struct dio *dio;	   /* [i] thread-safe itself */
	struct space space;	   /* [L] */
	struct meta_pool_row prow; /* [L] the durable row, plus the open transaction's changes */
	struct layer *layers;	   /* [L] */
	struct device *devices;	   /* [L] */
	struct set *sets;	   /* [L] */
	uint64_t block_size;	   /* [i] */
	unsigned block_shift;	   /* [i] */

	pthread_rwlock_t io_lock;
	pthread_mutex_t lock;
	pthread_mutex_t commit_lock;
	pthread_cond_t prov_cv; /* a provisioning finished */

	bool dirty;	     /* [L] something to commit */
	uint64_t change_seq; /* [a] bumped by every completed change */
	uint64_t synced_seq; /* [a] changes up to here are durable; moved only by
			      * pool_txn and sync_data, after a flush that began
			      * once they had completed */

	/* counters: [L], nr_fsyncs and nr_cow [a] */
	uint64_t nr_commits, nr_fsyncs, nr_punches, nr_cow;

	bool devices_pending_delete; /* [L] deleted-while-open devices to finish */
	bool background_reclaim;     /* [L] deletes only hide; pool_reclaim_step frees */
	uint64_t user_txid;	     /* [L] the user's transaction id (pool_props.c) */
	char ro_reason[256];	     /* [L] why READ_ONLY or FAILED */
	struct pool_props props;     /* [L] the properties in force */
	struct space_events sev;     /* [L] */

	uint64_t *unpunched; /* [A] freed and durable, but their punch failed */
	size_t nr_unpunched, cap_unpunched;
	bool unpunched_lost; /* [A] some could not even be remembered */

	struct pool_damage *damage; /* [i] what a lenient open found */
	size_t nr_damage, cap_damage;
	bool lenient; /* [i] opened with POOL_OPEN_LENIENT */

	pool_crash_hook crash_hook; /* tests only */
	void *crash_arg;
	int fail_alloc, fail_punch; /* test failures (pool_test_fail) [L] */
};

static inline bool pool_mode_writable(const struct pool *pool)
{
	return pool->mode == POOL_MODE_WRITE || pool->mode == POOL_MODE_OUT_OF_SPACE;
}

/* pool_format.c: the pool directory is private (not group/other writable) */
int pool_check_dir_private(const char *dir, char *msg, size_t msglen);
/* pool_format.c: the file system type ("ext4", "fuse.thinfs") of the mount
 * holding the canonical path, from /proc/self/mountinfo ("" if unknown). */
void pool_mount_fstype(const char *path, char *fstype, size_t len);
/* pool_mode.c: is the needs_check marker file there? */
bool needs_check_marked(struct pool *pool);
/* pool_txn.c: after a durable commit, punch the freed blocks and reuse them */
void pool_release_freed(struct pool *pool);

/* pool.c */
bool pool_test_alloc_fails(struct pool *pool);
bool pool_test_punch_fails(struct pool *pool);
/* Remove the needs_check marker file (after a repair). */
int pool_clear_needs_check_marker(struct pool *pool);
/* Write the marker file with `why` (best effort, made durable). */
void pool_write_needs_check_marker(struct pool *pool, const char *why);
/* Punch every data extent lying in a free block; lock held or pool private. */
int pool_scrub_free_blocks(struct pool *pool);
struct device *pool_find_device(struct pool *pool, const char *name);
int pool_commit_locked(struct pool *pool);
/* WRITE/OUT_OF_SPACE -> FAILED (see enum pool_mode); pool lock held. */
void pool_fail(struct pool *pool, int err, const char *why);
/* WRITE <-> OUT_OF_SPACE (dev: the device whose write found no block, or
 * NULL); nothing in other modes; pool lock held. */
void pool_space_short(struct pool *pool, bool short_of_space, const char *dev);
/* READ_ONLY -> WRITE for check --repair's transaction; admin lock held. */
void pool_mode_repair(struct pool *pool);
/* A read-write open: WRITE, or READ_ONLY when needs_check is set. */
void pool_mode_opened(struct pool *pool);
/* A line of the log (pool_set_logger), prefixed with the pool's directory. */
void pool_log(struct pool *pool, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int pool_device_load_vmap(struct pool *pool, struct device *dev);
void pool_device_mark_dirty(struct pool *pool, struct device *dev, uint64_t vblock);
void pool_device_hide(struct pool *pool, struct device *dev, uint64_t vblock, uint64_t dblock);
int pool_crash_point(struct pool *pool, const char *point);
/* pool_props.c: read the properties at open */
void pool_props_load(struct pool *pool);
/* pool_space_events.c (pool lock held): record an event (logged, counted,
 * queued for the worker); re-evaluate low water after the used blocks
 * changed; blocks came back (grow, release): wake queued writes */
void pool_event(struct pool *pool, int kind, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void pool_space_level(struct pool *pool);
void pool_space_changed(struct pool *pool);
/* A data write found no free block (io lock not held): with when_full=queue
 * wait until blocks may be back (0: try again) or the deadline (*deadline
 * 0: set it now) passes (-ENOSPC). */
int pool_space_wait(struct pool *pool, int64_t *deadline_ms);
void pool_space_events_init(struct pool *pool);
/* The events' counts: read from the props table (open), saved to it (a
 * commit, when they changed). */
void pool_space_events_load(struct pool *pool);
int pool_space_events_save(struct pool *pool);
bool pool_autoextend_configured(const struct pool *pool);
bool pool_over_low_water(const struct pool *pool);
int64_t pool_now_ms(void); /* monotonic */
/* Wait on cv (pool lock held) at most until pool_now_ms() reaches until_ms. */
void pool_wait_until(struct pool *pool, pthread_cond_t *cv, int64_t until_ms);
void pool_space_events_destroy(struct pool *pool);
/* pool_admin.c: the shared steps of administrative changes */
int pool_check_writable(struct pool *pool, char *msg, size_t msglen);
struct device *pool_new_device(struct pool *pool); /* linked in, row zeroed */
/* Hide d under DELETED_SET (inside a transaction): released later. */
int pool_defer_delete(struct pool *pool, struct device *d);
/* vmap_foreach callback: no entry is the leaf's own any more (it froze). */
void pool_clear_own(void *arg, uint64_t vblock, uint64_t *entry);
/* pool_device.c: a device's generation (meta.h; pool_io.c makes it odd
 * before the first change): at its last close, or the pool's close, make it
 * even again (pool lock held; committed by the caller's next transaction);
 * an administrative change of the content adds 2 (keeps the parity). */
void pool_device_stop_writing(struct pool *pool, struct device *dev);
void pool_device_content_changed(struct device *dev);
/* pool_release.c: release a device nobody has open, inside a transaction */
int pool_release_device(struct pool *pool, struct device *d);
/* pool_release.c: finish the deletes that waited for a last close (takes the
 * admin lock itself) */
void pool_finish_deletes(struct pool *pool);
/* The mapping e of dev at vblock goes away (replaced or unmapped; lock held):
 * a block the leaf names is freed (released after the commit) or, when other
 * map rows name it too (a clone), loses one reference; an ancestor's mapping
 * is hidden (freed at commit if no device sees it any more). */
void pool_drop_mapping(struct pool *pool, struct device *dev, uint64_t vblock, uint64_t e);
/* Unmap one whole block of dev (lock held): drops its mapping as above. */
void pool_unmap_block_locked(struct pool *pool, struct device *dev, uint64_t vblock);
/*
 * An administrative change, run by pool_txn inside its transaction, after the
 * data flush and the write-back of the mappings, before the space map and the
 * pool row are saved and the transaction commits.  The contract, as
 * dm-transaction-manager.h writes its own:
 *  - do everything that can be refused (names, sizes, existence, the mode)
 *    before calling pool_txn, with the admin lock held so nothing changes in
 *    between: an op should fail only when the database or memory does;
 *  - an op may change rows through meta_* and in-memory state under the pool
 *    lock (devices, layers, sets, prow), and free blocks with space_free
 *    (they are reused only after the commit is durable), exactly once per
 *    map row that goes: a block cloned by copy_file_range (its clone count,
 *    refs.h, is the number of rows naming it) loses one reference per call
 *    and is freed with the last, so a second call for one row would free a
 *    block another row still names;
 *  - if the op or the commit fails, the transaction is rolled back, prow is
 *    restored, and the pool goes FAILED; in-memory changes the op made are
 *    NOT undone (the caller undoes what a mount would show, e.g. a size),
 *    and the views are kept as the only record of the writes since the
 *    last commit.
 */
typedef int (*txn_op)(struct pool *pool, void *arg);
/* Run op (may be NULL: a plain commit) inside one commit; io lock (write)
 * and pool lock held.  0, or the error every later sync returns too. */
int pool_txn(struct pool *pool, txn_op op, void *arg);
int pool_reload_vmaps(struct pool *pool);
void pool_free_device(struct device *dev);
void pool_maybe_unload_vmap(struct device *dev);
/* pool_io.c: zero [offset, offset+len), which lies within one block of d, with
 * the io lock held for writing and the pool lock not held (resize's partial
 * last block, so no write can slip in between the zeroing and the shrink). */
int pool_zero_partial_iolocked(struct pool *pool, struct device *d, uint64_t offset, size_t len);
/* An open handle (pool_io.c opens and closes it). */
struct volume {
	struct pool *pool;
	struct device *dev;
};

/* pool_io.c: before the first change of dev's content since it was stable,
 * make its odd generation durable (no lock held); and the unlocked refusal
 * of a change through a handle (-EROFS: read-only device or pool). */
int pool_start_writing(struct pool *pool, struct device *dev);
int pool_check_volume_write(struct volume *vol);
/* pool_io.c: what an open handle refers to */
struct device *pool_volume_device(struct volume *vol);
struct pool *pool_volume_pool(struct volume *vol);
/* pool_list.c: a device's public description (pool lock held) */
void pool_device_fill_info(const struct device *dev, struct pool_device_info *info);
/* pool_admin.c, for the ops of other services (inside pool_txn): a new empty
 * volume; a snapshot of d (O(1) rows: d's leaf is frozen, each gets a new
 * one); *out the new device (may be NULL).  And the refusal of every change
 * to a pool that is not writable, with the reason. */
int pool_create_one(struct pool *pool, const char *set, const char *name, uint64_t size,
		    uint32_t uid, uint32_t gid, uint32_t mode, struct device **out);
int pool_snap_one(struct pool *pool, struct device *d, const char *set, const char *name,
		  bool read_only, struct device **out);
void admin_lock(struct pool *pool);
void admin_unlock(struct pool *pool);

/* pool_origin.c: external origins.  Load the origins rows onto the devices
 * (pool_open); open d's origin at its first open, checking its identity (a
 * change or a vanished origin refuses with -ESTALE, logged once per open);
 * give snapshot n the origin of d (inside its transaction); do d and s read
 * the same origin (or none)?  Pool lock held. */
int pool_load_origins(struct pool *pool);
int pool_device_origin_open(struct pool *pool, struct device *d);
int pool_origin_copy(struct pool *pool, const struct device *d, struct device *n);
bool pool_origin_same(const struct device *d, const struct device *s);

/* layer.c */
struct layer *layer_new(struct pool *pool, uint64_t id, struct layer *parent);
struct layer *layer_find(struct pool *pool, uint64_t id);
int layer_add_child(struct layer *parent, struct layer *child);
void layer_remove_child(struct layer *parent, struct layer *child);
void layer_forget(struct pool *pool, struct layer *l);
/* Create a layer in the db and in memory. */
int layer_create(struct pool *pool, struct layer *parent, struct layer **out);
/* Is (layer->parent chain) mapping at vblock seen by any leaf under `l`? */
int layer_seen_below(struct pool *pool, struct layer *l, uint64_t vblock, bool *seen);
/* The ancestor of leaf `l` (excluded) holding a row for vblock, or NULL. */
int layer_ancestor_row(struct pool *pool, struct layer *l, uint64_t vblock, struct layer **found,
		       uint64_t *dblock);
/* Remove leaf `l` (whose rows are already gone): merge its parent if it is left
 * with one child, then free the rows no device sees any more. */
int layer_remove_leaf(struct pool *pool, struct layer *l);
/* Merge interior `p`, left with one child, with that child (check --repair). */
int layer_merge_single(struct pool *pool, struct layer *p);
/* Background reclaim: an interior layer with a single child (a root left so
 * by a release), or NULL; one bounded step of merging it into that child,
 * inside a transaction (the last step removes it). */
struct layer *layer_merge_candidate(struct pool *pool);
int layer_merge_step(struct pool *pool, struct layer *p);
/* Free every row of the tree under `root` that no leaf sees. */
int layer_sweep(struct pool *pool, struct layer *root, uint64_t *nr_freed);
/* Resolve the view of a leaf into vm (root first, leaf last). */
int layer_resolve(struct pool *pool, struct layer *leaf, struct vmap *vm);

#endif
