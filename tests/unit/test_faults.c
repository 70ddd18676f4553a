/* SPDX-License-Identifier: MIT */
/*
 * test_faults.c - errors at each commit step (injected through the crash
 * hook returning an error).  The caller gets EIO, never a silent success; the
 * pool turns read-only with needs_check persisted; reads keep working; a
 * failed flush stays failed for every later sync (no fsync may succeed after
 * data may have been lost); after a restart the pool stays read-only until
 * check --repair; nothing acknowledged before the fault is lost.
 */
#include "unit_helpers.h"
#include "engine/dataio.h"
#include "thinfs/pool_test.h"

#define BS 4096u

static const char *fail_point;

static int fail_hook(void *arg, const char *point)
{
	return fail_point && !strcmp(point, fail_point) ? -EIO : 0;
}

static void run_fault(const char *point)
{
	struct fixture *f = fx_new(BS, 64);
	struct pool_status st;
	struct volume *v;
	char buf[BS];

	fx_create(f, "v", 8 * BS);
	fx_fill(f, "v", 0, BS, 1); /* acknowledged: committed at close */
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	/* the first write of an opening commits its odd generation (pool_io.c's
	 * start_writing): made before the fault, so the fault meets the sync */
	memset(buf, 1, sizeof(buf));
	assert_int_equal(pool_write(v, buf, BS, 0), BS);
	pool_test_set_crash_hook(f->p, fail_hook, NULL);
	fail_point = point;
	memset(buf, 2, sizeof(buf));
	assert_int_equal(pool_write(v, buf, BS, BS), BS); /* a new mapping */
	assert_int_equal(pool_sync(f->p), -EIO);
	assert_int_equal(pool_sync(f->p) < 0, 1); /* never success after a failure */
	pool_status(f->p, &st);
	assert_string_equal(st.mode, "ro");
	assert_true(st.needs_check);
	assert_int_equal(pool_write(v, buf, BS, 2 * BS), -EROFS);
	assert_int_equal(pool_create(f->p, "w", BS, f->msg, sizeof(f->msg)), -EROFS);
	assert_non_null(strstr(f->msg, "check --repair"));
	assert_int_equal(pool_read(v, buf, BS, 0), BS); /* reads still work */
	assert_int_equal(buf[0], 1);
	pool_volume_close(v);
	/* the write since the last commit is only in memory now: closing and
	 * reopening the device must not drop it while the pool runs */
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(pool_read(v, buf, BS, BS), BS);
	assert_int_equal(buf[0], 2);
	pool_volume_close(v);
	fail_point = NULL;
	fx_reopen(f);
	/* persisted: still read-only after a restart */
	pool_status(f->p, &st);
	assert_string_equal(st.mode, "ro");
	fx_expect(f, "v", 0, BS, 1);
	pool_close(f->p);
	f->p = NULL;
	assert_int_equal(pool_check(f->pool, false, NULL, f->msg, sizeof(f->msg)), CHECK_DAMAGED);
	assert_int_equal(pool_check(f->pool, true, NULL, f->msg, sizeof(f->msg)), 0);
	if (pool_open(f->pool, 0, "unit test", &f->p, f->msg, sizeof(f->msg)))
		fail_msg("%s", f->msg);
	pool_status(f->p, &st);
	assert_string_equal(st.mode, "rw");
	fx_expect(f, "v", 0, BS, 1);
	fx_fill(f, "v", BS, BS, 3);
	fx_check_clean(f);
	fx_free(f);
}

static void test_fault_before_data_flush(void **state)
{
	run_fault("commit/before_flush");
}

static void test_fault_after_data_flush(void **state)
{
	run_fault("commit/after_flush");
}

static void test_fault_before_metadata_commit(void **state)
{
	run_fault("commit/before_commit");
}

static void test_failed_data_write_maps_nothing(void **state)
{
	/* TESTING G1: an I/O error writing data -> EIO, and no mapping to data
	 * that was never written; a shared block keeps its old content */
	struct fixture *f = fx_new(BS, 64);
	struct volume *v;
	char buf[3 * BS];
	struct pool_device_info info;

	fx_create(f, "v", 8 * BS);
	fx_fill(f, "v", 0, BS, 1);
	fx_snap(f, "v", "s");
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	memset(buf, 9, sizeof(buf));
	/* a fresh block */
	dio_test_fail_write(pool_test_dio(f->p), 1, -EIO);
	assert_int_equal(pool_write(v, buf, BS, 3 * BS), -EIO);
	/* copy-on-write of the shared block 0 (partial: copy, then write) */
	dio_test_fail_write(pool_test_dio(f->p), 1, -EIO);
	assert_int_equal(pool_write(v, buf, 100, 0), -EIO);
	/* a run of fresh blocks written with one I/O */
	dio_test_fail_write(pool_test_dio(f->p), 1, -EIO);
	assert_int_equal(pool_write(v, buf, 3 * BS, 4 * BS), -EIO);
	pool_volume_info(v, &info);
	assert_int_equal(info.mapped_blocks, 1);
	assert_int_equal(pool_read(v, buf, BS, 5 * BS), BS);
	assert_int_equal(buf[0], 0);
	assert_int_equal(pool_read(v, buf, BS, 3 * BS), BS);
	assert_int_equal(buf[0], 0);
	assert_int_equal(pool_read(v, buf, BS, 0), BS);
	assert_int_equal(buf[0], 1);
	/* nothing of the failed writes reaches the metadata */
	assert_int_equal(pool_sync(f->p), 0);
	fx_check_clean(f);
	/* the pool goes on: the same writes succeed now */
	memset(buf, 9, sizeof(buf));
	assert_int_equal(pool_write(v, buf, 100, 0), 100);
	pool_volume_close(v);
	assert_int_equal(pool_sync(f->p), 0);
	fx_expect(f, "s", 0, BS, 1);
	fx_expect(f, "v", 0, 100, 9);
	fx_expect(f, "v", 100, BS - 100, 1);
	fx_reopen(f);
	fx_expect(f, "v", 3 * BS, BS, 0);
	fx_expect(f, "v", 4 * BS, 3 * BS, 0);
	fx_check_clean(f); /* the blocks of the failed writes went back: no leak */
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fault_before_data_flush),
	    cmocka_unit_test(test_fault_after_data_flush),
	    cmocka_unit_test(test_fault_before_metadata_commit),
	    cmocka_unit_test(test_failed_data_write_maps_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
