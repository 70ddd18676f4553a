/* SPDX-License-Identifier: MIT */
/*
 * restore.c - pool_restore: a new pool from thin_dump XML, step by step
 * (the steps are described in restore.h; each lives in its own file).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "engine/util.h"
#include "restore.h"
#include "thinfs/pool_test.h"

static void restore_free(struct restore *r)
{
	for (size_t i = 0; i < r->nr_defs; i++)
		free(r->defs[i].name);
	free(r->defs);
	free(r->devs);
	free(r->runs);
	free(r->druns);
	free(r->cdevs);
	free(r->clayers);
	free(r->csets);
	free(r->cprops);
	free(r->members);
	free(r->set_off);
	free(r->set_len);
	free(r->set_hash);
	free(r->rr);
	free(r->nodes);
	free(r->set_node);
	free(r->tombs);
}

int pool_restore(const char *dir, FILE *in, const char *data_path, char *msg, size_t msglen)
{
	struct restore r = {.msg = msg, .msglen = msglen, .now = util_now()};
	struct made mk = {0};
	bool has_tree = false;
	int rc;

	rc = rs_parse(&r, in);
	if (!rc)
		rc = rs_prepare_devices(&r);
	if (!rc)
		rc = rs_sweep_blocks(&r);
	for (size_t i = 0; i < r.nr_devs; i++)
		has_tree |= r.devs[i].has_parent_layer;
	if (!rc)
		rc = has_tree || r.nr_clayers ? rs_tree_from_comments(&r) : rs_tree_from_sets(&r);
	if (!rc)
		rc = rs_finish_tree(&r);
	if (!rc)
		rc = rs_place_sets(&r);
	if (!rc)
		rc = rs_plan_hiding(&r);
	/* the input is sound: now make the pool */
	if (!rc)
		rc = rs_make_pool(&r, dir, data_path, &mk);
	if (!rc && (rc = rs_restore_marker(&mk, true)))
		rs_fail(&r, rc, "cannot mark the restore in progress: %s", strerror(-rc));
	if (!rc)
		rc = rs_write_meta(&r, &mk);
	if (!rc)
		rc = rs_restore_point("restore/after_meta");
	/* the metadata is whole and durable (and unclean, so an open after a
	 * crash from here on scrubs free blocks, as finish_pool does) */
	if (!rc && (rc = rs_restore_marker(&mk, false)))
		rs_fail(&r, rc, "cannot clear the restore marker: %s", strerror(-rc));
	if (!rc)
		rc = rs_restore_point("restore/before_finish");
	if (!rc)
		rc = rs_finish_pool(&r, &mk);
	if (rc) {
		rs_remove_made(&mk);
		if (!r.err)
			set_msg(msg, msglen, rc, "restore failed: %s", strerror(-rc));
	}
	free(mk.dir_path);
	free(mk.meta_path);
	free(mk.data_path);
	free(mk.lock_path);
	restore_free(&r);
	return rc;
}
