/* SPDX-License-Identifier: MIT */
/*
 * admin_exec.c - the one code path of every changing command: a typed
 * request run against an open pool, by thinctl on a pool it opened itself or
 * by the daemon on the pool it serves (control_server.c).  Validation is the
 * pool's own (names, sizes, existence, open handles), so both sides refuse
 * alike, with the same message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "thinfs/control.h"

static const char *const op_names[ADMIN_NR] = {
    [ADMIN_CREATE] = "create",
    [ADMIN_SNAPSHOT] = "snapshot",
    [ADMIN_SNAPSHOT_SET] = "snapshot",
    [ADMIN_DELETE] = "delete",
    [ADMIN_DELETE_SET] = "delete",
    [ADMIN_RENAME] = "rename",
    [ADMIN_RENAME_SET] = "rename",
    [ADMIN_RESIZE] = "resize",
    [ADMIN_GROW] = "grow",
    [ADMIN_REPAIR] = "check",
    [ADMIN_ROLLBACK] = "rollback",
    [ADMIN_SET_TXID] = "set-transaction-id",
    [ADMIN_SET_PROPS] = "set",
    [ADMIN_CREATE_ORIGIN] = "create",
};

const char *admin_op_name(uint32_t op)
{
	return op < ADMIN_NR && op_names[op] ? op_names[op] : "unknown";
}

static int exec_create(struct pool *pool, const struct admin_req *req, char *msg, size_t msglen)
{
	/* the volume belongs to whoever asked, as a file they create would */
	return pool_create_owned(pool, req->a, req->size, req->uid, req->gid, 0600, msg, msglen);
}

/* A caller other than root may only put a volume over an origin it could
 * read itself (the daemon reads it on the volume's behalf): owner, group
 * (primary only) or other read permission on the file. */
static int caller_may_read(const struct admin_req *req, char *msg, size_t msglen)
{
	struct stat sb;

	if (req->uid == 0)
		return 0;
	if (stat(req->b, &sb) < 0)
		return 0; /* the create names the error */
	if ((sb.st_uid == req->uid && (sb.st_mode & S_IRUSR)) ||
	    (sb.st_gid == req->gid && (sb.st_mode & S_IRGRP)) || (sb.st_mode & S_IROTH))
		return 0;
	snprintf(msg, msglen, "origin %s: not readable by uid %u", req->b, (unsigned)req->uid);
	return -EACCES;
}

static int exec_create_origin(struct pool *pool, const struct admin_req *req, char *msg,
			      size_t msglen)
{
	int rc = caller_may_read(req, msg, msglen);

	if (rc)
		return rc;
	return pool_create_origin(pool, req->a, req->size, req->b, req->uid, req->gid, 0600, msg,
				  msglen);
}

/* rename: a device, or else a snapshot set of that name (as mv does in
 * .snapshots) */
static int exec_rename(struct pool *pool, const struct admin_req *req, char *msg, size_t msglen)
{
	struct pool_device_info info;
	struct pool_set_info *sets;
	size_t nr;
	bool is_set = false;

	if (pool_device_info(pool, req->a, &info) == -ENOENT && !pool_list_sets(pool, &sets, &nr)) {
		for (size_t i = 0; i < nr; i++)
			is_set |= !strcmp(sets[i].name, req->a);
		free(sets);
	}
	if (is_set)
		return pool_rename_set(pool, req->a, req->b, msg, msglen);
	return pool_rename(pool, req->a, req->b, msg, msglen);
}

/* set: the KEY=VALUE lines of req->text, all or none */
static int exec_set_props(struct pool *pool, const struct admin_req *req, char *msg, size_t msglen)
{
	char text[sizeof(req->text)], *pairs[64], *save = NULL;
	size_t nr = 0;

	snprintf(text, sizeof(text), "%s", req->text);
	for (char *p = strtok_r(text, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
		if (nr == sizeof(pairs) / sizeof(pairs[0])) {
			snprintf(msg, msglen, "too many properties in one set");
			return -E2BIG;
		}
		pairs[nr++] = p;
	}
	return pool_prop_set(pool, pairs, nr, msg, msglen);
}

int admin_exec(struct pool *pool, const struct admin_req *req, FILE *out, char *msg, size_t msglen)
{
	if (msg && msglen)
		msg[0] = 0;
	switch (req->op) {
	case ADMIN_CREATE:
		return exec_create(pool, req, msg, msglen);
	case ADMIN_SNAPSHOT:
		return pool_snapshot(pool, req->a, req->b, msg, msglen);
	case ADMIN_SNAPSHOT_SET:
		return pool_snapshot_set(pool, req->a, msg, msglen);
	case ADMIN_DELETE:
		return pool_delete(pool, req->a, msg, msglen);
	case ADMIN_DELETE_SET:
		return pool_delete_set(pool, req->a, msg, msglen);
	case ADMIN_RENAME:
		return exec_rename(pool, req, msg, msglen);
	case ADMIN_RENAME_SET:
		return pool_rename_set(pool, req->a, req->b, msg, msglen);
	case ADMIN_RESIZE:
		return pool_resize(pool, req->a, req->size, msg, msglen);
	case ADMIN_GROW:
		return pool_grow(pool, req->size, msg, msglen);
	case ADMIN_REPAIR:
		return pool_check_live(pool, out, msg, msglen);
	case ADMIN_ROLLBACK:
		return pool_rollback(pool, req->a, req->b, msg, msglen);
	case ADMIN_SET_TXID:
		return pool_set_transaction_id(pool, req->old_id, req->new_id, msg, msglen);
	case ADMIN_SET_PROPS:
		return exec_set_props(pool, req, msg, msglen);
	case ADMIN_CREATE_ORIGIN:
		return exec_create_origin(pool, req, msg, msglen);
	}
	snprintf(msg, msglen, "unknown request %u", req->op);
	return -EINVAL;
}
