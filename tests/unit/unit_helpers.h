/* SPDX-License-Identifier: MIT */
/*
 * unit_helpers.h - shared fixtures for the cmocka engine tests: a pool in a
 * fresh temporary directory, and small pattern helpers.  No root needed.
 */
#ifndef THINFS_UNIT_HELPERS_H
#define THINFS_UNIT_HELPERS_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "thinfs/pool.h"

struct fixture {
	char dir[64];
	char pool[96];
	struct pool *p;
	char msg[POOL_MSG_MAX];
};

static inline void fx_rmrf(const char *dir)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

/* A pool of nr_blocks blocks of bs bytes, opened read-write. */
static inline struct fixture *fx_new(uint64_t bs, uint64_t nr_blocks)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct pool_format_opts o = {.block_size = bs, .data_size = bs * nr_blocks};

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/thinfs-unit.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->pool, sizeof(f->pool), "%s/pool", f->dir);
	if (pool_format(f->pool, &o, f->msg, sizeof(f->msg)))
		fail_msg("format: %s", f->msg);
	if (pool_open(f->pool, 0, "unit test", &f->p, f->msg, sizeof(f->msg)))
		fail_msg("open: %s", f->msg);
	/* these tests want a full pool's ENOSPC at once, not dm-thin's
	 * default queueing (test_space.c tests that) */
	char *error[] = {"when_full=error"};
	if (pool_prop_set(f->p, error, 1, f->msg, sizeof(f->msg)))
		fail_msg("set when_full: %s", f->msg);
	return f;
}

static inline void fx_reopen(struct fixture *f)
{
	assert_int_equal(pool_close(f->p), 0);
	if (pool_open(f->pool, 0, "unit test", &f->p, f->msg, sizeof(f->msg)))
		fail_msg("reopen: %s", f->msg);
}

static inline void fx_free(struct fixture *f)
{
	if (f->p)
		pool_close(f->p);
	fx_rmrf(f->dir);
	free(f);
}

static inline uint64_t fx_used(struct fixture *f)
{
	struct pool_status st;

	assert_int_equal(pool_status(f->p, &st), 0);
	return st.used_blocks;
}

static inline uint64_t fx_tid(struct fixture *f)
{
	struct pool_status st;

	assert_int_equal(pool_status(f->p, &st), 0);
	return st.commit_id;
}

static inline void fx_create(struct fixture *f, const char *name, uint64_t size)
{
	if (pool_create(f->p, name, size, f->msg, sizeof(f->msg)))
		fail_msg("create %s: %s", name, f->msg);
}

static inline void fx_snap(struct fixture *f, const char *origin, const char *name)
{
	if (pool_snapshot(f->p, origin, name, f->msg, sizeof(f->msg)))
		fail_msg("snapshot %s %s: %s", origin, name, f->msg);
}

static inline void fx_delete(struct fixture *f, const char *name)
{
	if (pool_delete(f->p, name, f->msg, sizeof(f->msg)))
		fail_msg("delete %s: %s", name, f->msg);
}

/* Fill [off, off+len) of a volume with byte c. */
static inline void fx_fill(struct fixture *f, const char *name, uint64_t off, size_t len, int c)
{
	struct volume *v;
	char *buf = malloc(len);

	assert_non_null(buf);
	memset(buf, c, len);
	assert_int_equal(pool_volume_open(f->p, name, &v), 0);
	assert_int_equal(pool_write(v, buf, len, off), (ssize_t)len);
	pool_volume_close(v);
	free(buf);
}

/* Assert every byte of [off, off+len) equals c. */
static inline void fx_expect(struct fixture *f, const char *name, uint64_t off, size_t len, int c)
{
	struct volume *v;
	unsigned char *buf = malloc(len);

	assert_non_null(buf);
	assert_int_equal(pool_volume_open(f->p, name, &v), 0);
	assert_int_equal(pool_read(v, buf, len, off), (ssize_t)len);
	pool_volume_close(v);
	for (size_t i = 0; i < len; i++)
		if (buf[i] != (unsigned char)c)
			fail_msg("%s: byte %llu is %#x, expected %#x", name,
				 (unsigned long long)(off + i), buf[i], c);
	free(buf);
}

static inline uint64_t fx_mapped(struct fixture *f, const char *name)
{
	struct pool_device_info info;

	assert_int_equal(pool_device_info(f->p, name, &info), 0);
	return info.mapped_blocks;
}

/* Run stmt on the pool's meta.db directly (damage, or a state the engine
 * would never write); it must succeed. */
static inline void fx_sql(const char *pool, const char *stmt)
{
	char path[160];
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/meta.db", pool);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_exec(db, stmt, NULL, NULL, NULL) != SQLITE_OK)
		fail_msg("%s: %s", stmt, sqlite3_errmsg(db));
	sqlite3_close(db);
}

/* pool_check on the committed state must find nothing at all. */
static inline void fx_check_clean(struct fixture *f)
{
	char *out = NULL;
	size_t len = 0;
	FILE *mf;
	int rc;

	assert_int_equal(pool_commit(f->p), 0);
	mf = open_memstream(&out, &len);
	assert_non_null(mf);
	rc = pool_check(f->pool, false, mf, f->msg, sizeof(f->msg));
	fclose(mf);
	if (rc != 0 || len)
		fail_msg("check returned %d: %s%s", rc, out ? out : "", rc < 0 ? f->msg : "");
	free(out);
}

#endif
