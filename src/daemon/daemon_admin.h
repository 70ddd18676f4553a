/* SPDX-License-Identifier: MIT */
/*
 * daemon_admin.h - what the daemon runs beside the FUSE loop for online
 * administration: the control socket (thinctl's changes, run on the served
 * pool, with the kernel's caches dropped for what changed) and the
 * background reclaimer (deleted devices' space back in bounded steps).
 */
#ifndef THINFS_DAEMON_ADMIN_H
#define THINFS_DAEMON_ADMIN_H

#include "fuse_ops.h"

struct daemon_admin;

/* Start both; 0 or -errno with the reason in msg. */
int daemon_admin_start(struct pool *pool, const char *pool_dir, struct fsops *fs,
		       struct fuse_session *se, struct daemon_admin **out, char *msg,
		       size_t msglen);
/* Stop both (the control socket disappears first).  NULL is fine. */
void daemon_admin_stop(struct daemon_admin *da);

#endif
