/* SPDX-License-Identifier: MIT */
/*
 * fuse_ops.h - the FUSE front end: a mounted pool as a directory of sparse
 * files (DESIGN.md 1.3), on libfuse3's low-level API.
 *
 * The daemon (main.c) opens the pool, makes the per-mount state with
 * fsops_new(), hands fsops_ll_ops and that state to fuse_session_new(), runs
 * the session loop, then frees the state with fsops_free() before it closes
 * the pool.  The FUSE layer holds no pool logic and speaks no SQL: every
 * request is decoded, passed to one pool_* call and answered exactly once.
 */
#ifndef THINFS_FUSE_OPS_H
#define THINFS_FUSE_OPS_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 34
#endif
#include <fuse_lowlevel.h>
#include <stdbool.h>

#include "thinfs/pool.h"

#define FSOPS_MAX_WRITE (1024u * 1024)	   /* bytes per FUSE_WRITE */
#define FSOPS_MAX_READAHEAD (1024u * 1024) /* kernel read-ahead window */

struct fsops;

struct fsops_config {
	double entry_timeout;	 /* seconds the kernel may cache a name; 1.0 is good */
	double dir_attr_timeout; /* attributes of directories and snapshot files */
};

/* The operations table: pass it with the state from fsops_new to
 * fuse_session_new(). */
extern const struct fuse_lowlevel_ops fsops_ll_ops;

/* Per-mount state over an open pool (which stays the caller's).  NULL on
 * out-of-memory. */
struct fsops *fsops_new(struct pool *pool, const struct fsops_config *cfg);

/* After a change made outside a request (thinctl through the control
 * socket): drop the kernel's cached entries and attributes of device names
 * a and b ("NAME" or "SET/NAME"; may be NULL or ""), or of set names a and b
 * when sets is true, so the mount shows the change at once. */
void fsops_forget_names(struct fsops *fs, struct fuse_session *se, const char *a, const char *b,
			bool sets);

/* Close every volume a request left open and free the state.  Call after the
 * session loop has returned and before pool_close(). */
void fsops_free(struct fsops *fs);

#endif
