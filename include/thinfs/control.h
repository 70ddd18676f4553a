/* SPDX-License-Identifier: MIT */
/*
 * control.h - changing a pool whether it is mounted or not, through one code
 * path: an administrative request (struct admin_req) is run by admin_exec()
 * against an open pool, by thinctl itself when the pool is free, or by the
 * daemon that holds it, which thinctl reaches through the control socket
 * POOL/control (like LVM's lvmetad/dmeventd or ZFS's /dev/zfs control
 * paths).  The socket admits root and the owner of the pool directory
 * (SO_PEERCRED); anyone else gets a one-line refusal.  The daemon runs one
 * request at a time; a change is durable and visible in the mount when the
 * reply comes.  Every function returns 0 or a negative errno and fills msg.
 */
#ifndef THINFS_CONTROL_H
#define THINFS_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "thinfs/pool.h"

#define CONTROL_SOCKET "control" /* in the pool directory */
#define CONTROL_TIMEOUT_MS 10000 /* thinctl's default wait for the daemon */

enum admin_op {
	ADMIN_CREATE = 1,    /* a: name, size */
	ADMIN_SNAPSHOT,	     /* a: origin, b: name */
	ADMIN_SNAPSHOT_SET,  /* a: set */
	ADMIN_DELETE,	     /* a: device */
	ADMIN_DELETE_SET,    /* a: set */
	ADMIN_RENAME,	     /* a: old, b: new (devices) */
	ADMIN_RENAME_SET,    /* a: old, b: new (sets) */
	ADMIN_RESIZE,	     /* a: device, size */
	ADMIN_GROW,	     /* size: the data size */
	ADMIN_REPAIR,	     /* check --repair of a pool in use (leaks) */
	ADMIN_ROLLBACK,	     /* a: volume, b: snapshot */
	ADMIN_SET_TXID,	     /* old, new */
	ADMIN_SET_PROPS,     /* text: KEY=VALUE lines */
	ADMIN_CREATE_ORIGIN, /* a: name, b: the origin's absolute path, size (0: the origin's) */
	ADMIN_NR
};

struct admin_req {
	uint32_t op;
	uint32_t uid, gid; /* who asks: the owner of a created volume */
	uint64_t size, old_id, new_id;
	char a[2 * POOL_NAME_MAX + 2], b[2 * POOL_NAME_MAX + 2];
	char text[4096]; /* ADMIN_SET_PROPS */
};

/* The request's name ("create", "rollback", ...), for messages and logs. */
const char *admin_op_name(uint32_t op);

/*
 * Run a request against an open pool.  Its report (check --repair's
 * findings) goes to out (may be NULL).  Returns 0 (or CHECK_* for
 * ADMIN_REPAIR) or a negative errno with the reason in msg.
 */
int admin_exec(struct pool *pool, const struct admin_req *req, FILE *out, char *msg, size_t msglen);

/* ---- the daemon's side ---- */
struct control_server;
/* Called after each request that succeeded, before the reply goes out (the
 * daemon drops the kernel's cached names and sizes there). */
typedef void (*control_changed_fn)(void *arg, const struct admin_req *req);
/* Listen on DIR/control and serve requests on a thread of its own. */
int control_server_start(struct pool *pool, const char *dir, control_changed_fn changed, void *arg,
			 struct control_server **out, char *msg, size_t msglen);
/* Stop serving: the socket is removed first, so a new thinctl finds no daemon
 * and waits for the pool's lock instead. */
void control_server_stop(struct control_server *s);

/* ---- thinctl's side ---- */
struct admin_reply {
	int status;		/* admin_exec's return */
	char msg[POOL_MSG_MAX]; /* its reason, when status < 0 */
	char *out;		/* its report (malloc'd, NUL-terminated, may be NULL) */
};
/*
 * Send req to the daemon serving DIR and wait up to timeout_ms for the
 * reply.  0 with *reply; -ENOENT or -ECONNREFUSED: no daemon serves the pool
 * (run the request locally); -ETIMEDOUT: the daemon did not answer; -EACCES:
 * not allowed.  Free reply->out.
 */
int control_call(const char *dir, const struct admin_req *req, int timeout_ms,
		 struct admin_reply *reply, char *msg, size_t msglen);

#endif
