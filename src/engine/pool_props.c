/* SPDX-License-Identifier: MIT */
/*
 * pool_props.c - the pool's properties kept in meta.db's props table: for
 * now the user-visible transaction id (dm-thin's set_transaction_id), which
 * commits never move, unlike the pool row's commit counter.  Loaded at open
 * (pool_props_load); changed in a transaction of its own under the admin
 * lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"
#include "util.h"

void pool_props_load(struct pool *pool)
{
	char v[32];

	pool->user_txid = 0;
	if (!meta_prop_get(pool->meta, META_PROP_TRANSACTION_ID, v, sizeof(v)))
		pool->user_txid = strtoull(v, NULL, 10);
}

static int op_set_txid(struct pool *pool, void *arg)
{
	char v[32];

	snprintf(v, sizeof(v), "%" PRIu64, *(uint64_t *)arg);
	return meta_prop_put(pool->meta, META_PROP_TRANSACTION_ID, v);
}

int pool_set_transaction_id(struct pool *pool, uint64_t old_id, uint64_t new_id, char *msg,
			    size_t msglen)
{
	int rc;

	admin_lock(pool);
	rc = pool_check_writable(pool, msg, msglen);
	if (!rc && pool->user_txid != old_id)
		rc = set_msg(msg, msglen, -ESTALE,
			     "the transaction id is %" PRIu64 ", not %" PRIu64 ": nothing changed",
			     pool->user_txid, old_id);
	if (!rc) {
		rc = pool_txn(pool, op_set_txid, &new_id);
		if (rc)
			set_msg(msg, msglen, rc, "cannot set the transaction id: %s",
				strerror(-rc));
		else
			pool->user_txid = new_id;
	}
	if (!rc)
		pool_log(pool, POOL_LOG_INFO, "transaction id %" PRIu64 " -> %" PRIu64, old_id,
			 new_id);
	admin_unlock(pool);
	return rc;
}
