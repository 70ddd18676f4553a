/* SPDX-License-Identifier: MIT */
/*
 * test_log.c - the log a storage admin reads (issue 17), through the
 * library's callback (pool_set_logger): every administrative change once,
 * with the device; nothing for a refused one; out of data space once per
 * episode (not per write, not per flip of the mode while the pool runs
 * full) and its end once; a failed commit once, however many syncs fail
 * after it; the read-only open that follows, and the repair that ends it.
 * No root needed.
 */
#include "unit_helpers.h"

#include "thinfs/pool_test.h"

#define BS 4096u
#define MAX_LINES 256

static struct {
	int level[MAX_LINES];
	char line[MAX_LINES][1024];
	int n;
} logged;

static void capture(void *arg, int level, const char *line)
{
	if (logged.n < MAX_LINES) {
		logged.level[logged.n] = level;
		snprintf(logged.line[logged.n], sizeof(logged.line[0]), "%s", line);
	}
	logged.n++;
}

static int setup(void **state)
{
	memset(&logged, 0, sizeof(logged));
	pool_set_logger(capture, NULL);
	return 0;
}

static int teardown(void **state)
{
	pool_set_logger(NULL, NULL);
	return 0;
}

/* How many lines logged since `from` hold every one of the NULL-ended words. */
static int count_from(int from, ...)
{
	int hits = 0;

	for (int i = from; i < logged.n && i < MAX_LINES; i++) {
		va_list ap;
		const char *w;
		bool all = true;
		va_start(ap, from);
		while ((w = va_arg(ap, const char *)))
			all = all && strstr(logged.line[i], w);
		va_end(ap);
		hits += all;
	}
	return hits;
}

#define COUNT(...) count_from(0, __VA_ARGS__, NULL)

static void dump_log(void)
{
	for (int i = 0; i < logged.n && i < MAX_LINES; i++)
		print_message("  log %d: %s\n", logged.level[i], logged.line[i]);
}

static void test_log_admin_changes_once(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	int before;

	fx_create(f, "v", 16 * BS);
	fx_snap(f, "v", "s");
	assert_int_equal(pool_snapshot_set(f->p, "monday", f->msg, sizeof(f->msg)), 0);
	assert_int_equal(pool_rename(f->p, "s", "t", f->msg, sizeof(f->msg)), 0);
	assert_int_equal(pool_resize(f->p, "v", 32 * BS, f->msg, sizeof(f->msg)), 0);
	assert_int_equal(pool_grow(f->p, 128 * BS, f->msg, sizeof(f->msg)), 0);
	assert_int_equal(pool_set_owner(f->p, "v", 1, 2, 0640), 0);
	assert_int_equal(pool_delete_set(f->p, "monday", f->msg, sizeof(f->msg)), 0);
	fx_delete(f, "t");
	if (COUNT(f->pool, "created volume 'v'", "64.0K (65536 B, 16 blocks)") != 1 ||
	    COUNT("took snapshot 's' of 'v'") != 1 || COUNT("took snapshot set 'monday'") != 1 ||
	    COUNT("renamed 's' to 't'") != 1 || COUNT("resized 'v' from 64.0K", "to 128.0K") != 1 ||
	    COUNT("grew the data", "64 blocks", "128 blocks") != 1 ||
	    COUNT("'v': owner 1:2, mode 0640") != 1 ||
	    COUNT("deleted snapshot set 'monday'") != 1 || COUNT("deleted 't'") != 1 ||
	    COUNT("property when_full=error") != 1 || logged.n != 10) {
		dump_log();
		fail_msg("admin changes: %d lines", logged.n);
	}
	for (int i = 0; i < logged.n; i++)
		assert_int_equal(logged.level[i], POOL_LOG_INFO);
	/* refused changes are the caller's to report: nothing logged */
	before = logged.n;
	assert_int_equal(pool_create(f->p, "v", BS, f->msg, sizeof(f->msg)), -EEXIST);
	assert_int_equal(pool_resize(f->p, "nosuch", BS, f->msg, sizeof(f->msg)), -ENOENT);
	assert_int_equal(pool_create(f->p, "huge", UINT64_MAX / 2, f->msg, sizeof(f->msg)), -EFBIG);
	assert_int_equal(logged.n, before);
	fx_free(f);
}

/* Write block vb of v: the result of pool_write. */
static ssize_t write_block(struct volume *v, uint64_t vb)
{
	char buf[BS];

	memset(buf, (int)vb + 1, sizeof(buf));
	return pool_write(v, buf, BS, vb * BS);
}

static void test_log_out_of_space_once_per_episode(void **state)
{
	struct fixture *f = fx_new(BS, 256); /* "back" needs 1% free: 2 blocks */
	struct volume *v;

	fx_create(f, "v", 512 * BS);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	for (uint64_t vb = 0; vb < 256; vb++)
		assert_int_equal(write_block(v, vb), BS);
	for (uint64_t vb = 256; vb < 266; vb++)
		assert_int_equal(write_block(v, vb), -ENOSPC);
	/* the mode flips while the pool runs full: one block back, taken, gone */
	for (int round = 0; round < 5; round++) {
		assert_int_equal(pool_discard(v, (uint64_t)round * BS, BS), 0);
		assert_int_equal(pool_commit(f->p), 0);
		assert_int_equal(write_block(v, 300 + (uint64_t)round), BS);
		assert_int_equal(write_block(v, 400 + (uint64_t)round), -ENOSPC);
	}
	if (COUNT(f->pool, "out of data space", "a write to 'v'") != 1 ||
	    COUNT("data space is back") != 0) {
		dump_log();
		fail_msg("one line for a pool running full, not one per write");
	}
	/* the episode ends when space is back, once */
	assert_int_equal(pool_discard(v, 100 * BS, 20 * BS), 0);
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(COUNT("data space is back", "20 of 256 blocks free"), 1);
	/* and a new episode is a new line */
	for (uint64_t vb = 100; vb < 120; vb++)
		assert_int_equal(write_block(v, vb), BS);
	assert_int_equal(write_block(v, 500), -ENOSPC);
	assert_int_equal(COUNT("out of data space"), 2);
	assert_int_equal(pool_grow(f->p, 512 * BS, f->msg, sizeof(f->msg)), 0);
	assert_int_equal(COUNT("data space is back"), 2);
	pool_volume_close(v);
	fx_free(f);
}

static int fail_commit(void *arg, const char *point)
{
	return !strcmp(point, "commit/before_commit") ? -EIO : 0;
}

static void test_log_failed_commit_read_only_and_repair(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct volume *v;

	fx_create(f, "v", 8 * BS);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	/* an opening's first write commits (its generation): before the fault */
	assert_int_equal(write_block(v, 0), BS);
	assert_int_equal(pool_sync(f->p), 0);
	pool_test_set_crash_hook(f->p, fail_commit, NULL);
	assert_int_equal(write_block(v, 1), BS);
	assert_int_equal(pool_sync(f->p), -EIO);
	assert_int_equal(pool_sync(f->p) < 0, 1);
	assert_int_equal(pool_resize(f->p, "v", BS, f->msg, sizeof(f->msg)), -EROFS);
	if (COUNT(f->pool, "read-only: a metadata commit failed", "check --repair") != 1) {
		dump_log();
		fail_msg("a failed commit is logged once");
	}
	for (int i = 0; i < logged.n; i++)
		if (strstr(logged.line[i], "read-only"))
			assert_int_equal(logged.level[i], POOL_LOG_ERR);
	pool_volume_close(v);
	pool_test_set_crash_hook(f->p, NULL, NULL);
	fx_reopen(f);
	if (COUNT("opened read-only", "check --repair") != 1) {
		dump_log();
		fail_msg("a read-only open is logged");
	}
	assert_int_equal(pool_close(f->p), 0);
	f->p = NULL;
	assert_int_equal(pool_check(f->pool, true, NULL, f->msg, sizeof(f->msg)), CHECK_CLEAN);
	if (COUNT(f->pool, "repaired: read-write again") != 1) {
		dump_log();
		fail_msg("the repair is logged");
	}
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_log_admin_changes_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_log_out_of_space_once_per_episode, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_log_failed_commit_read_only_and_repair, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
