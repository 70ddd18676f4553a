/* SPDX-License-Identifier: MIT */
/*
 * fuse_loop.h - the daemon's request loop (see src/fuse_loop.c).
 */
#ifndef THINFS_FUSE_LOOP_H
#define THINFS_FUSE_LOOP_H

#include <signal.h>

#include "fuse_ops.h"

/* Block the stop signals (SIGTERM, SIGHUP and SIGINT unless ignored) in the
 * calling thread, and so in every thread it starts afterwards; ignore
 * SIGPIPE.  Call before any thread exists.  *stop gets the blocked set. */
int fuse_loop_block_signals(sigset_t *stop);

/* Serve se with nr_workers threads until the file system is unmounted or a
 * signal of stop arrives (*signo then names it, else 0); then call
 * stopping(arg) (may be NULL), so requests that wait end, and stop the
 * workers.  Returns 0, or a negative errno when the loop could not run or
 * reading /dev/fuse failed. */
int fuse_loop_run(struct fuse_session *se, unsigned nr_workers, const sigset_t *stop, int *signo,
		  void (*stopping)(void *arg), void *arg);
/* A worker begins (+1) or ends (-1) a wait inside a request: while fewer
 * than a few workers are free, the loop starts another (the engine's space
 * wait hook; arg unused). */
void fuse_loop_waiting(void *arg, int delta);

#endif
