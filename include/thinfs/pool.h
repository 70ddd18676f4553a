/* SPDX-License-Identifier: MIT */
/*
 * pool.h - the thin pool: the only interface the daemon and the tools use.
 *
 * A pool is a directory with a data file (fixed-size data blocks) and a SQLite
 * metadata database.  Devices (thin volumes and snapshots) map virtual blocks
 * to data blocks.  Names: a device is "NAME" (a volume or a writable snapshot,
 * at the top level) or "SET/NAME" (a read-only member of snapshot set SET).
 *
 * Errors: every function returns 0 (or a byte count) on success and a negative
 * errno on failure.  Functions taking `msg` fill it with a one-line reason
 * (without a trailing newline) on failure; msg may be NULL.
 *
 * Locking: all functions are thread-safe.  A struct volume may be used by many
 * threads at once.  Administrative calls are durable when they return.
 */
#ifndef THINFS_POOL_H
#define THINFS_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define POOL_NAME_MAX 255
#define POOL_MSG_MAX 512
#define POOL_ORIGIN_PATH_MAX 512 /* an external origin's path, with its NUL */
#define POOL_DEFAULT_BLOCK_SIZE (64ull * 1024)
#define POOL_MIN_BLOCK_SIZE (4ull * 1024)
#define POOL_MAX_BLOCK_SIZE (1024ull * 1024 * 1024)
/* The most virtual blocks a device may have.  A device's view keeps one
 * pointer per 4096 blocks up to its highest mapped one, so at this limit that
 * table is 128 MiB: 256 TiB devices with 4 KiB blocks, 4 PiB with 64 KiB. */
#define POOL_MAX_VBLOCKS (1ull << 36)

struct pool;
struct volume;

struct pool_format_opts {
	uint64_t block_size;   /* bytes; 0 = default */
	uint64_t data_size;    /* bytes; 0 = size of an existing --data, else error */
	const char *data_path; /* NULL = POOL/data */
	bool force;	       /* overwrite an existing pool */
	const char *uuid;      /* the pool's uuid (restore keeps a dump's); NULL: new */
	bool keep_data;	       /* adopt data_path as it is (restore --data): its
				* content is kept, never punched (the caller's
				* metadata says which blocks are in use) */
};

/* Create a pool in `dir` (created if missing).  Durable on return. */
int pool_format(const char *dir, const struct pool_format_opts *opts, char *msg, size_t msglen);

enum {
	POOL_OPEN_RDONLY = 1 << 0, /* no lock, no writes: a consistent read view */
};

/*
 * Open a pool.  Read-write opens take the pool's exclusive lock (flock on
 * POOL/lock) and record `holder` (e.g. "thinfs pid 12 on /mnt") in it, so a
 * refused opener can name the holder.  A read-write open of a pool that was not
 * closed cleanly punches data that free blocks may still hold.
 */
int pool_open(const char *dir, unsigned flags, const char *holder, struct pool **out, char *msg,
	      size_t msglen);

/* Commit, punch freed blocks, mark clean, release the lock and free.  Returns
 * the first error met (the pool is closed anyway). */
int pool_close(struct pool *pool);

/* ---- administration (all durable on return) ---- */
/* A new top-level volume owned by root, mode 0600. */
int pool_create(struct pool *pool, const char *name, uint64_t size, char *msg, size_t msglen);
/* The same, owned by uid:gid with mode (& 07777), in the same transaction:
 * a volume never exists with another owner, not even across a crash. */
int pool_create_owned(struct pool *pool, const char *name, uint64_t size, uint32_t uid,
		      uint32_t gid, uint32_t mode, char *msg, size_t msglen);
/*
 * A new top-level volume over an external origin: a read-only file or block
 * device, never written.  Its unmapped blocks read the origin's bytes (zeros
 * past its end); writes provision pool blocks (a partial write copies the
 * origin's block first).  size 0: the origin's size.  The origin's canonical
 * path, size and identity (st_dev, st_ino, size, mtime) are recorded with the
 * volume in one transaction; an open of the volume whose origin changed or
 * vanished since is refused (-ESTALE, the reason in the log).  Snapshots of
 * it keep the origin; delete forgets it.
 */
int pool_create_origin(struct pool *pool, const char *name, uint64_t size, const char *origin,
		       uint32_t uid, uint32_t gid, uint32_t mode, char *msg, size_t msglen);
/* 0 when device `dev` has no external origin or its origin is as recorded;
 * -ESTALE (changed or gone) or -ENOENT (no such device) with the reason. */
int pool_origin_verify(struct pool *pool, const char *dev, char *msg, size_t msglen);
/* A snapshot of device `origin`; read_only snapshots are only made as set members. */
int pool_snapshot(struct pool *pool, const char *origin, const char *name, char *msg,
		  size_t msglen);
/* Atomic snapshot of every top-level device into set `set` (read-only members). */
int pool_snapshot_set(struct pool *pool, const char *set, char *msg, size_t msglen);
/* Delete a device.  Open handles: the device leaves the namespace at once
 * (its name may be reused), and every handle keeps reading and writing it
 * as before; its blocks are released at the last close (or, after a crash,
 * at the next open of the pool). */
int pool_delete(struct pool *pool, const char *dev, char *msg, size_t msglen);
/*
 * Background reclaim, for a daemon that must not stall I/O: with it on, a
 * delete only hides the device (O(1)); its space comes back through
 * pool_reclaim_step(), each call one bounded transaction (a few thousand
 * rows), to be called while pool_reclaim_pending().  Off (the default), a
 * delete frees everything before it returns.  A pool closed or crashed with
 * deletes pending finishes them at its next read-write open.
 */
void pool_set_background_reclaim(struct pool *pool, bool on);
bool pool_reclaim_pending(struct pool *pool);
int pool_reclaim_step(struct pool *pool);
/* Delete a snapshot set and all its members. */
int pool_delete_set(struct pool *pool, const char *set, char *msg, size_t msglen);
/* Rename a top-level device, or a set when both names are set names (is_set). */
int pool_rename(struct pool *pool, const char *oldname, const char *newname, char *msg,
		size_t msglen);
int pool_rename_set(struct pool *pool, const char *oldname, const char *newname, char *msg,
		    size_t msglen);
/* rename(2) semantics: an existing top-level NEW is replaced atomically (deleted,
 * or hidden until its last close if open, in the same transaction). */
int pool_rename_replace(struct pool *pool, const char *oldname, const char *newname, char *msg,
			size_t msglen);
/* Set a device's virtual size in bytes; shrinking unmaps the tail and zeroes
 * what a partial last block holds past the new end.  Open handles see the new
 * size at once: reads past it are short (a later write grows it again).
 * Durable on return; a failed commit leaves the size as it was (and the pool
 * FAILED).  Past pool_size_limit(): -EFBIG. */
int pool_resize(struct pool *pool, const char *dev, uint64_t size, char *msg, size_t msglen);
/* Resize the device behind an open handle (also one deleted while open). */
int pool_volume_resize(struct volume *vol, uint64_t size, char *msg, size_t msglen);
/* VOLUME reads exactly as SNAPSHOT (any other device) did, again: O(1),
 * metadata only; VOLUME keeps its name, id, owner and mode and takes the
 * snapshot's size; its old blocks are released like a delete's.  Refused
 * (-EBUSY) while VOLUME is open; set members cannot be rolled back. */
int pool_rollback(struct pool *pool, const char *volume, const char *snapshot, char *msg,
		  size_t msglen);
/* The user-visible transaction id, compare-and-swap, as dm-thin's
 * set_transaction_id: -ESTALE (nothing changed) unless it is old_id now.
 * Kept in dumps as thin_dump's transaction; commits never move it. */
int pool_set_transaction_id(struct pool *pool, uint64_t old_id, uint64_t new_id, char *msg,
			    size_t msglen);
/* Grow the device behind an open handle to at least size bytes (never
 * shrinks): what fallocate(2) without KEEP_SIZE does, and what a write past
 * the end does by itself.  The range gained reads zeros.  Like a write's
 * mappings, the new size is durable with the next commit (pool_sync, the
 * timer), not on return.  -EFBIG past pool_size_limit(), -EROFS on a
 * read-only device or pool. */
int pool_volume_grow(struct volume *vol, uint64_t size);
/* Grow the data capacity to data_size bytes (never shrinks). */
int pool_grow(struct pool *pool, uint64_t data_size, char *msg, size_t msglen);
/* The largest virtual size a device of this pool may have, in bytes: at most
 * POOL_MAX_VBLOCKS blocks, and below 2^63 (an off_t).  No lock needed. */
uint64_t pool_size_limit(struct pool *pool);
/* 0 if a device may have `size` bytes, else -EFBIG with the limit in msg.
 * pool_create and pool_resize (so a mount's truncate too) refuse with it;
 * whatever else sets a device's size must call it too. */
int pool_size_check(struct pool *pool, uint64_t size, char *msg, size_t msglen);
/* Owner and mode of a device's file (persisted, durable on return).  Acts on
 * the device named now.  A failed commit leaves them as they were. */
int pool_set_owner(struct pool *pool, const char *dev, uint32_t uid, uint32_t gid, uint32_t mode);
/* The same for the device behind an open handle, whatever its name is now
 * (also after it was deleted, or its name given to another device). */
int pool_volume_set_owner(struct volume *vol, uint32_t uid, uint32_t gid, uint32_t mode);

/* ---- properties (pool_props.c), like zfs get/set ---- */
/*
 * low_water=PCT            data blocks used at which the low_water event runs
 *                          (once per upward crossing; 0 = off; default 80)
 * autoextend_percent=PCT   at low water (or when full), grow the data file by
 * autoextend_max=SIZE      PCT of its size, up to SIZE (either 0 = off)
 * when_full=queue|error    a write that needs a block in a full pool waits for
 * queue_timeout=SECONDS    space up to SECONDS (0 = for ever), or fails with
 *                          ENOSPC at once (default queue, 60: dm-thin's)
 * discard=passdown|nopassdown|ignore
 *                          punch freed blocks in the data file; free them but
 *                          leave the data file's extents; or refuse discards
 *                          (EOPNOTSUPP, so nobody believes a range zeroed)
 * event_command=PATH       run on every event (see pool_event_name), "" = none
 * Kept in meta.db's props table: a set is durable on return, dump/restore
 * carries them; changeable while mounted through the daemon.
 */
#define POOL_PROP_VALUE_MAX 1024
struct pool_prop {
	const char *key;
	char value[POOL_PROP_VALUE_MAX]; /* canonical text (sizes in bytes) */
	bool is_default;		 /* never set (SOURCE "default"), else "local" */
};
/* The number of properties; the i-th (0 .. count-1) of an open pool. */
size_t pool_prop_count(void);
int pool_prop_get(struct pool *pool, size_t i, struct pool_prop *out);
/* The index of `key`, or -ENOENT. */
int pool_prop_index(const char *key);
/* Set KEY=VALUE pairs: all checked first, then all written in one
 * transaction, or none (a one-line reason in msg). */
int pool_prop_set(struct pool *pool, char *const *pairs, size_t nr, char *msg, size_t msglen);

/* ---- space events (pool_space_events.c) ---- */
enum pool_event_kind {
	POOL_EVENT_LOW_WATER,	      /* used blocks crossed low_water upward */
	POOL_EVENT_FULL,	      /* a write needed a block and none was free */
	POOL_EVENT_AUTOEXTEND,	      /* the data file grew by itself */
	POOL_EVENT_AUTOEXTEND_FAILED, /* it could not (autoextend_max, the host) */
	POOL_EVENT_SPACE_BACK,	      /* free again after full */
	POOL_EVENT_NR
};
struct pool_event {
	int kind;
	int64_t time; /* wall clock, seconds */
	uint64_t used_blocks, nr_data_blocks, block_size;
	char detail[256];
};
/* "low_water", "full", "autoextend", "autoextend_failed", "space_back". */
const char *pool_event_name(int kind);
/*
 * The space worker (the daemon runs it on a thread of its own): waits up to
 * timeout_ms for work, runs an autoextend that low water or a full pool asked
 * for, and returns 1 with the oldest event not yet handed out in *ev (events
 * are logged when they happen; the caller runs event_command), 0 if none,
 * or -ESHUTDOWN after pool_space_worker_stop.
 */
int pool_space_worker(struct pool *pool, struct pool_event *ev, int timeout_ms);
/* Called with +1 by a thread about to wait for space (when_full=queue), and
 * with -1 when it stops waiting, with no lock held: the daemon starts
 * another FUSE worker so that reads and other requests are still served
 * while writers wait.  Set before any I/O. */
void pool_set_space_wait_hook(struct pool *pool, void (*fn)(void *arg, int delta), void *arg);
/* Wake the worker for good, and let every write queued for space fail now. */
void pool_space_worker_stop(struct pool *pool);
/* The event command to run now ("" = none), copied into buf. */
void pool_event_command(struct pool *pool, char *buf, size_t len);
/* Grow the data file as autoextend_percent/_max say (what the worker runs);
 * 1 if it grew, 0 if there was nothing to do, or a negative errno.  Either
 * way the event is recorded. */
int pool_autoextend(struct pool *pool);

/* ---- queries ---- */
struct pool_device_info {
	uint64_t id;
	char set[POOL_NAME_MAX + 1]; /* "" for top-level devices */
	char name[POOL_NAME_MAX + 1];
	uint64_t size;		/* bytes */
	uint64_t origin_id;	/* 0 = none */
	uint64_t creation_time; /* pool time at creation */
	uint64_t snap_time;	/* pool time of the last snapshot of it */
	int64_t ctime_sec;	/* wall clock of creation */
	int64_t mtime_sec;	/* wall clock of the last change */
	bool read_only;
	uint32_t uid, gid, mode;
	uint64_t mapped_blocks;
	/* moves whenever the content can change: odd while being written, even
	 * when stable (send/receive's identity; see pool_device.c) */
	uint64_t generation;
	/* the external origin (pool_create_origin): its path ("" for none) and
	 * recorded size in bytes */
	char origin_path[POOL_ORIGIN_PATH_MAX];
	uint64_t origin_size;
	/* filled by pool_list(with_sharing = true) only: */
	uint64_t exclusive_blocks, shared_blocks;
};

struct pool_set_info {
	char name[POOL_NAME_MAX + 1];
	int64_t ctime_sec;
	uint64_t nr_devices;
};

struct pool_status {
	uint64_t block_size;
	uint64_t nr_data_blocks;
	uint64_t used_blocks;	 /* mapped or awaiting release */
	uint64_t transaction_id; /* the user's: set only by pool_set_transaction_id */
	uint64_t commit_id;	 /* commits so far (the last durable one) */
	uint64_t pool_time;
	uint64_t nr_devices, nr_sets;
	uint64_t reclaim_devices, reclaim_rows; /* deleted, space still being freed */
	bool read_only; /* opened read-only, or forced read-only by an error */
	bool needs_check;
	bool out_of_space;
	char mode[24];		  /* "rw", "out_of_data_space", "ro" */
	char mode_reason[256];	  /* why "ro" (a failure, needs_check), else "" */
	uint64_t max_device_size; /* pool_size_limit(): the largest device, bytes */
	char uuid[40];
	char data_path[4096];
	/* counters since open */
	uint64_t commits, fsyncs, punches, cow_copies;
	/* space policy: the last of each event (count 0: never), writes waiting
	 * for space now, and whether used blocks are at or over low_water */
	struct {
		uint64_t count;
		int64_t time;
		char detail[256];
	} events[POOL_EVENT_NR];
	uint64_t queued_writes;
	bool low_water_crossed;
	unsigned low_water; /* percent, 0 = off */
	char when_full[8];
	char journal_mode[16];
	int synchronous;
};

int pool_status(struct pool *pool, struct pool_status *st);
/* All devices, sorted by set then name.  Free *devs with free(). */
int pool_list(struct pool *pool, bool with_sharing, struct pool_device_info **devs, size_t *nr);
int pool_list_sets(struct pool *pool, struct pool_set_info **sets, size_t *nr);
int pool_device_info(struct pool *pool, const char *dev, struct pool_device_info *info);

/* ---- the data path ---- */
/* Open a device for I/O.  Read-only devices (set members) and read-only pools
 * refuse writes with -EROFS. */
int pool_volume_open(struct pool *pool, const char *dev, struct volume **out);
void pool_volume_close(struct volume *vol);
/* Live size and mapped count of an open device. */
void pool_volume_info(struct volume *vol, struct pool_device_info *info);

/* Read len bytes at offset: unmapped ranges read zeros; short at end of device. */
ssize_t pool_read(struct volume *vol, void *buf, size_t len, uint64_t offset);
/* Write: provisions blocks (zeroed outside the data written), copies shared
 * blocks first.  A write past the end grows the device, as a regular file
 * grows: the size is what the write reached (a short write grows it only as
 * far as it got), the gap reads zeros, and the new size is durable with the
 * next commit, like the mappings.  -ENOSPC if a block is needed and none is
 * free (nothing written), -EFBIG at or past pool_size_limit() (a write
 * across it is cut short there), -EROFS on a read-only device. */
ssize_t pool_write(struct volume *vol, const void *buf, size_t len, uint64_t offset);
/* (with when_full=queue, such a write first waits for space: see the
 * properties above) */
/*
 * Clone len bytes of src at src_off into dst at dst_off (copy_file_range):
 * whole blocks at offsets congruent modulo the block size are shared (dst
 * maps src's data blocks, counted in the clone counts; a later write to
 * either side copies on write; a hole in src makes a hole in dst), the rest
 * is copied.  len is clipped to src's end; dst grows past its end as a write
 * would.  *done: bytes cloned (short only after an error, which is then
 * returned only if nothing was done).  Like a write, durable with the next
 * commit.  -EXDEV across pools, -EROFS on a read-only dst or pool, -EINVAL
 * for overlapping ranges of one device, -EFBIG past pool_size_limit(),
 * -ENOSPC if an edge needs a block and none is free.  src and dst may be
 * the same handle.
 */
int pool_clone_range(struct volume *src, uint64_t src_off, struct volume *dst, uint64_t dst_off,
		     uint64_t len, uint64_t *done);
/* Discard: unmap whole blocks, zero partial ones; -EOPNOTSUPP with the pool
 * property discard=ignore (nothing changes). */
int pool_discard(struct volume *vol, uint64_t offset, uint64_t len);
/* Make a range read as zeros (whole blocks unmapped, partial ones zeroed). */
int pool_zero_range(struct volume *vol, uint64_t offset, uint64_t len);
/* lseek(SEEK_DATA / SEEK_HOLE) over the mapping: -ENXIO past the end / no data. */
int pool_seek(struct volume *vol, uint64_t offset, int whence, uint64_t *result);

/* Make every completed write durable: flush the data file and, if any mapping
 * changed, commit.  One commit serves all callers waiting at once. */
int pool_sync(struct pool *pool);
/* Commit now if anything changed (the daemon's one-second timer). */
int pool_commit(struct pool *pool);

/* The status as one JSON document (what `thinctl status --json` prints and the
 * daemon serves as the xattr "user.thinfs.status" of its mount's root).
 * Returns the length written, or -ENOSPC if len is too small. */
int pool_status_json(const struct pool_status *st, char *buf, size_t len);

/* ---- checking ---- */
enum { CHECK_CLEAN = 0, CHECK_DAMAGED = 1, CHECK_FATAL = 2 };
/* Check (and with repair, fix) an unopened pool; findings go to `report`, one a
 * line.  Returns CHECK_* or a negative errno when the pool can't be opened. */
int pool_check(const char *dir, bool repair, FILE *report, char *msg, size_t msglen);
/* check --repair of an open pool in use: leaks are fixed at once (one
 * commit); damage is reported as needing the pool unmounted and nothing is
 * changed.  Returns CHECK_* or a negative errno. */
int pool_check_live(struct pool *pool, FILE *report, char *msg, size_t msglen);

/* ---- the log ---- */
/* Levels, as syslog's. */
enum { POOL_LOG_ERR = 3, POOL_LOG_WARNING = 4, POOL_LOG_NOTICE = 5, POOL_LOG_INFO = 6 };
/* One line for a storage admin, without a newline, naming the pool's
 * directory, the device where there is one, and the reason. */
typedef void (*pool_log_fn)(void *arg, int level, const char *line);
/*
 * Where the library's log goes (process-wide; NULL, the default, drops it).
 * Logged once each: every administrative change, every mode change (out of
 * data space and back, read-only at open, a failure: a failed commit or data
 * flush, needs_check, and the repair that ends it).  fn may be called from
 * any thread with pool locks held: it must not call into the pool.
 */
void pool_set_logger(pool_log_fn fn, void *arg);

/* ---- helpers shared by the front ends ---- */
/* 0 if `name` is a valid volume or set name, else -EINVAL with a reason in msg. */
int pool_name_valid(const char *name, char *msg, size_t msglen);
/* Parse a size: an integer with an optional K, M, G or T suffix (powers of 1024). */
int pool_parse_size(const char *s, uint64_t *bytes);
/* A size for people: "512B", "64.0K", "1.5G" (powers of 1024).  Returns buf. */
const char *pool_human_size(uint64_t bytes, char *buf, size_t len);
/* A size three ways, "1.0G (1073741824 B, 16384 blocks)" (blocks rounded up). */
const char *pool_size_text(uint64_t bytes, uint64_t block_size, char *buf, size_t len);

#endif
