/* SPDX-License-Identifier: MIT */
/*
 * meta_interop.c - the interop features' SQL, on a second connection to a
 * pool's meta.db (meta.c's connection and statements are private to it).
 *
 * What it says:
 *  - restore keeps dm-thin's device ids: meta_device_insert() numbers devices
 *    itself, so restore renumbers them inside its one transaction
 *    (meta_device_renumber in meta.c);
 *  - send/receive's identities: the table interop_received (created here with
 *    CREATE TABLE IF NOT EXISTS, so the pool format version stays 1) records,
 *    for each device made by pool_receive, whose copy it is:
 *      interop_received(dev_id INTEGER PRIMARY KEY, dev_creation_time, dev_ctime,
 *                       src_uuid, src_dev_id, src_creation_time, src_ctime, received)
 *    A row is valid only while the device dev_id still has that creation time
 *    and ctime (ids are reused after a delete); readers check.  Receives
 *    since format 2 keep the identity in the device row itself (copy_of,
 *    written in the same transaction that makes the device): this table is
 *    only read, for devices received before;
 *  - the generation a device has in meta.db now, read past the view a
 *    read-only pool holds (send checks the device did not change under it).
 *
 * The conventions are meta.c's: WAL with synchronous=FULL on the connection,
 * values bound, never pasted, every statement finalized, 0 or a negative
 * errno.  Use a struct meta_ix only while the pool's own connection holds no
 * write transaction (SQLite allows one writer; busy_timeout waits it out).
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interop_internal.h"
#include "engine/meta.h"

struct meta_ix {
	sqlite3 *db;
	bool rdonly;
};

static int ix_exec(struct meta_ix *x, const char *sql)
{
	return meta_errno(sqlite3_exec(x->db, sql, NULL, NULL, NULL));
}

int meta_ix_open(const char *path, bool rdonly, struct meta_ix **out)
{
	struct meta_ix *x = calloc(1, sizeof(*x));
	int flags = (rdonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOFOLLOW;
	int rc;

	if (!x)
		return -ENOMEM;
	x->rdonly = rdonly;
	rc = meta_errno(sqlite3_open_v2(path, &x->db, flags, NULL));
	if (!rc) {
		sqlite3_busy_timeout(x->db, 5000);
		sqlite3_extended_result_codes(x->db, 1);
		rc = ix_exec(x, "PRAGMA synchronous=FULL");
	}
	if (rc) {
		meta_ix_close(x);
		return rc;
	}
	*out = x;
	return 0;
}

void meta_ix_close(struct meta_ix *x)
{
	if (!x)
		return;
	sqlite3_close(x->db);
	free(x);
}

/* Prepare, bind n int64 values, step once, finalize. */
static int ix_run(struct meta_ix *x, const char *sql, int n, const int64_t *vals)
{
	sqlite3_stmt *s;
	int rc = meta_errno(sqlite3_prepare_v2(x->db, sql, -1, &s, NULL));

	if (rc)
		return rc;
	for (int i = 0; i < n; i++)
		sqlite3_bind_int64(s, i + 1, vals[i]);
	rc = sqlite3_step(s);
	rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : meta_errno(rc);
	sqlite3_finalize(s);
	return rc;
}

static const char recv_schema[] =
    "CREATE TABLE IF NOT EXISTS interop_received(dev_id INTEGER PRIMARY KEY, "
    "dev_creation_time INTEGER NOT NULL, dev_ctime INTEGER NOT NULL, "
    "src_uuid TEXT NOT NULL, src_dev_id INTEGER NOT NULL, "
    "src_creation_time INTEGER NOT NULL, src_ctime INTEGER NOT NULL, "
    "received INTEGER NOT NULL)";

int meta_ix_recv_put(struct meta_ix *x, const struct meta_ix_recv *r)
{
	sqlite3_stmt *s = NULL;
	int rc = ix_exec(x, recv_schema);

	if (!rc)
		rc = meta_errno(sqlite3_prepare_v2(
		    x->db,
		    "INSERT OR REPLACE INTO interop_received(dev_id, dev_creation_time, "
		    "dev_ctime, src_uuid, src_dev_id, src_creation_time, src_ctime, received) "
		    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
		    -1, &s, NULL));
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, (int64_t)r->dev_id);
	sqlite3_bind_int64(s, 2, (int64_t)r->dev_creation_time);
	sqlite3_bind_int64(s, 3, r->dev_ctime);
	sqlite3_bind_text(s, 4, r->src.uuid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, (int64_t)r->src.dev_id);
	sqlite3_bind_int64(s, 6, (int64_t)r->src.creation_time);
	sqlite3_bind_int64(s, 7, r->src.ctime);
	sqlite3_bind_int64(s, 8, r->received);
	rc = sqlite3_step(s);
	rc = rc == SQLITE_DONE ? 0 : meta_errno(rc);
	sqlite3_finalize(s);
	return rc;
}

static bool recv_table_exists(struct meta_ix *x)
{
	sqlite3_stmt *s;
	bool found = false;

	if (sqlite3_prepare_v2(x->db,
			       "SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
			       "name = 'interop_received'",
			       -1, &s, NULL) != SQLITE_OK)
		return false;
	found = sqlite3_step(s) == SQLITE_ROW;
	sqlite3_finalize(s);
	return found;
}

int meta_ix_recv_get(struct meta_ix *x, uint64_t dev_id, struct meta_ix_recv *r)
{
	sqlite3_stmt *s;
	int rc;

	if (!recv_table_exists(x))
		return -ENOENT;
	rc = meta_errno(sqlite3_prepare_v2(
	    x->db,
	    "SELECT dev_creation_time, dev_ctime, src_uuid, src_dev_id, src_creation_time, "
	    "src_ctime, received FROM interop_received WHERE dev_id = ?1",
	    -1, &s, NULL));
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, (int64_t)dev_id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const unsigned char *u = sqlite3_column_text(s, 2);
		memset(r, 0, sizeof(*r));
		r->dev_id = dev_id;
		r->dev_creation_time = (uint64_t)sqlite3_column_int64(s, 0);
		r->dev_ctime = sqlite3_column_int64(s, 1);
		snprintf(r->src.uuid, sizeof(r->src.uuid), "%s", u ? (const char *)u : "");
		r->src.dev_id = (uint64_t)sqlite3_column_int64(s, 3);
		r->src.creation_time = (uint64_t)sqlite3_column_int64(s, 4);
		r->src.ctime = sqlite3_column_int64(s, 5);
		r->received = sqlite3_column_int64(s, 6);
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? -ENOENT : meta_errno(rc);
	}
	sqlite3_finalize(s);
	return rc;
}

int meta_ix_recv_del(struct meta_ix *x, uint64_t dev_id)
{
	int64_t v = (int64_t)dev_id;

	if (!recv_table_exists(x))
		return 0;
	return ix_run(x, "DELETE FROM interop_received WHERE dev_id = ?1", 1, &v);
}

int meta_ix_device_generation(struct meta_ix *x, uint64_t dev_id, uint64_t *generation)
{
	sqlite3_stmt *s;
	int rc = meta_errno(sqlite3_prepare_v2(
	    x->db, "SELECT generation FROM devices WHERE id = ?1", -1, &s, NULL));

	if (rc)
		return -EINVAL; /* format 1: no generations */
	sqlite3_bind_int64(s, 1, (int64_t)dev_id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*generation = (uint64_t)sqlite3_column_int64(s, 0);
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? -ENOENT : meta_errno(rc);
	}
	sqlite3_finalize(s);
	return rc;
}
