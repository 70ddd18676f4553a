/* SPDX-License-Identifier: MIT */
/*
 * test_durability.c - regression tests for the ways issue 11 found to lose
 * or misreport acknowledged data, one test per finding:
 *  - the timer race (TESTING.md S3): a timer commit held between its dirty
 *    test and its lock while another commit runs must not make a later
 *    in-place write's fsync skip its flush;
 *  - change tracking out of memory: no later sync may report success;
 *  - a failed punch: the block is retried after later commits and, while it
 *    is left, the pool is not marked clean, so the next open scrubs it;
 *  - check --repair scrubs free blocks (a needs_check pool is never scrubbed
 *    at open);
 *  - a failed commit leaves the durable pool row as it was (transaction id,
 *    a failed grow's size), and the device size as it was;
 *  - a needs_check that meta.db will not take is kept in a marker file.
 * Negative control: control_timer_race links this file against a build with
 * -DTHINFS_TEST_BUG_TIMER_SYNCED (the old synced_seq update) and must fail.
 */
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <sqlite3.h>

#include "unit_helpers.h"
#include "engine/dataio.h"
#include "thinfs/pool_test.h"

#define BS 4096u

/* ---- the timer race ---- */

struct timer_hold {
	sem_t reached, release;
	bool armed;
};

static int hold_hook(void *arg, const char *point)
{
	struct timer_hold *h = arg;

	if (h->armed && !strcmp(point, "timer/before_lock")) {
		h->armed = false;
		sem_post(&h->reached);
		sem_wait(&h->release);
	}
	return 0;
}

static void *timer_thread(void *arg)
{
	struct pool *p = arg;

	return (void *)(intptr_t)pool_commit(p);
}

static void test_timer_race_inplace_fsync_flushes(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct timer_hold h = {.armed = true};
	struct volume *v;
	char buf[BS];
	pthread_t t;
	void *ret;

	sem_init(&h.reached, 0, 0);
	sem_init(&h.release, 0, 0);
	fx_create(f, "v", 16 * BS);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	memset(buf, 1, BS);
	assert_int_equal(pool_write(v, buf, BS, 0), BS);
	assert_int_equal(pool_sync(f->p), 0);		  /* block 0 is v's own, committed */
	assert_int_equal(pool_write(v, buf, BS, BS), BS); /* a new mapping: dirty */
	pool_test_set_crash_hook(f->p, hold_hook, &h);
	pthread_create(&t, NULL, timer_thread, f->p);
	sem_wait(&h.reached);		      /* the timer saw dirty, and waits before its lock */
	assert_int_equal(pool_sync(f->p), 0); /* another commit: nothing dirty now */
	dio_test_track_unflushed(pool_test_dio(f->p), true);
	memset(buf, 2, BS);
	assert_int_equal(pool_write(v, buf, BS, 0), BS); /* in place: no mapping changes */
	sem_post(&h.release);
	pthread_join(t, &ret);
	assert_int_equal((intptr_t)ret, 0);
	assert_int_equal(pool_sync(f->p), 0); /* acknowledges the in-place write */
	/* a power cut now: whatever was not flushed goes */
	int lost = dio_test_lose_unflushed(pool_test_dio(f->p));
	dio_test_track_unflushed(pool_test_dio(f->p), false);
	if (lost)
		fail_msg("the fsync of an in-place write returned without a flush (%d ranges lost)",
			 lost);
	pool_volume_close(v);
	fx_expect(f, "v", 0, BS, 2);
	sem_destroy(&h.reached);
	sem_destroy(&h.release);
	fx_free(f);
}

/* ---- change tracking out of memory ---- */

static void test_tracking_oom_fails_every_sync(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct pool_status st;
	struct volume *v;
	char buf[BS];

	fx_create(f, "v", 16 * BS);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	memset(buf, 3, BS);
	pool_test_fail(f->p, POOL_TEST_FAIL_ALLOC, 1);
	pool_write(v, buf, BS, 0); /* its mapping cannot be tracked */
	pool_status(f->p, &st);
	assert_string_equal(st.mode, "ro");
	assert_true(pool_sync(f->p) < 0);
	assert_true(pool_sync(f->p) < 0); /* and stays failed */
	pool_volume_close(v);
	fx_free(f);
}

/* ---- failed punches ---- */

static uint64_t dblock_of(struct fixture *f, const char *name, uint64_t vblock)
{
	struct volume *v;
	uint64_t db;

	assert_int_equal(pool_volume_open(f->p, name, &v), 0);
	assert_int_equal(pool_test_dblock(v, vblock, &db), 0);
	pool_volume_close(v);
	return db;
}

/* Bytes of data block db that are not zero, read from the data file itself. */
static size_t nonzero_in_block(struct fixture *f, uint64_t db)
{
	char path[160], buf[BS];
	size_t n = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/data", f->pool);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, BS, (off_t)(db * BS)), BS);
	close(fd);
	for (size_t i = 0; i < BS; i++)
		n += buf[i] != 0;
	return n;
}

static void test_failed_punch_scrubbed_after_clean_close(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	uint64_t db;

	fx_create(f, "secret", 4 * BS);
	fx_fill(f, "secret", 0, BS, 'S');
	db = dblock_of(f, "secret", 0);
	pool_test_fail(f->p, POOL_TEST_FAIL_PUNCH, -1);
	fx_delete(f, "secret"); /* freed and durable, but not punched */
	assert_int_equal(nonzero_in_block(f, db), BS);
	fx_reopen(f); /* a clean close: the next open must scrub all the same */
	assert_int_equal(nonzero_in_block(f, db), 0);
	fx_free(f);
}

static void test_failed_punch_retried_after_next_commit(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	uint64_t db;

	fx_create(f, "secret", 4 * BS);
	fx_fill(f, "secret", 0, BS, 'S');
	db = dblock_of(f, "secret", 0);
	pool_test_fail(f->p, POOL_TEST_FAIL_PUNCH, 1);
	fx_delete(f, "secret");
	assert_int_equal(nonzero_in_block(f, db), BS);
	fx_create(f, "other", BS); /* the next commit punches it */
	assert_int_equal(nonzero_in_block(f, db), 0);
	fx_free(f);
}

/* ---- repair scrubs ---- */

static void test_repair_scrubs_free_blocks(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	char path[160], junk[BS];
	int fd;

	pool_close(f->p);
	f->p = NULL;
	/* old data in free block 7, in a pool an error left marked needs_check */
	snprintf(path, sizeof(path), "%s/data", f->pool);
	fd = open(path, O_WRONLY);
	memset(junk, 'J', sizeof(junk));
	assert_int_equal(pwrite(fd, junk, BS, 7 * BS), BS);
	close(fd);
	fx_sql(f->pool, "UPDATE pool SET needs_check = 1, clean = 1");
	assert_int_equal(pool_check(f->pool, true, NULL, f->msg, sizeof(f->msg)), CHECK_CLEAN);
	assert_int_equal(nonzero_in_block(f, 7), 0);
	fx_free(f);
}

/* ---- failed commits ---- */

static const char *fail_point;

static int fail_hook(void *arg, const char *point)
{
	return fail_point && !strcmp(point, fail_point) ? -EIO : 0;
}

static void failed_grow_keeps_row(const char *point)
{
	struct fixture *f = fx_new(BS, 64);
	struct pool_status st;
	uint64_t tid;

	fx_create(f, "v", BS);
	tid = fx_tid(f);
	pool_test_set_crash_hook(f->p, fail_hook, NULL);
	fail_point = point;
	assert_true(pool_grow(f->p, 128 * BS, f->msg, sizeof(f->msg)) < 0);
	fail_point = NULL;
	pool_status(f->p, &st);
	assert_int_equal(st.commit_id, tid);
	assert_int_equal(st.nr_data_blocks, 64);
	fx_reopen(f);
	pool_status(f->p, &st);
	assert_int_equal(st.commit_id, tid);
	assert_int_equal(st.nr_data_blocks, 64);
	assert_true(st.needs_check);
	fx_free(f);
}

static void test_failed_commit_before_increment_keeps_tid(void **state)
{
	failed_grow_keeps_row("commit/after_flush");
}

static void test_failed_commit_keeps_durable_row(void **state)
{
	failed_grow_keeps_row("commit/before_commit");
}

static void test_failed_resize_keeps_size(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct pool_device_info info;

	fx_create(f, "v", 8 * BS);
	pool_test_set_crash_hook(f->p, fail_hook, NULL);
	fail_point = "commit/before_commit";
	assert_true(pool_resize(f->p, "v", 16 * BS, f->msg, sizeof(f->msg)) < 0);
	fail_point = NULL;
	assert_int_equal(pool_device_info(f->p, "v", &info), 0);
	assert_int_equal(info.size, 8 * BS);
	fx_free(f);
}

/* ---- needs_check where meta.db will not take it ---- */

static int fail_two_hook(void *arg, const char *point)
{
	return !strcmp(point, "commit/before_commit") || !strcmp(point, "readonly/persist") ? -EIO
											    : 0;
}

static void test_needs_check_marker_survives_remount(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct pool_status st;
	char path[160];

	fx_create(f, "v", BS);
	/* the commit fails, and so does writing needs_check into meta.db */
	pool_test_set_crash_hook(f->p, fail_two_hook, NULL);
	assert_true(pool_create(f->p, "w", BS, f->msg, sizeof(f->msg)) < 0);
	pool_close(f->p);
	f->p = NULL;
	snprintf(path, sizeof(path), "%s/needs_check", f->pool);
	assert_int_equal(access(path, F_OK), 0);
	/* a remount remembers: read-only, needs_check */
	assert_int_equal(pool_open(f->pool, 0, "unit", &f->p, f->msg, sizeof(f->msg)), 0);
	pool_status(f->p, &st);
	assert_true(st.needs_check);
	assert_string_equal(st.mode, "ro");
	pool_close(f->p);
	f->p = NULL;
	assert_int_equal(pool_check(f->pool, false, NULL, f->msg, sizeof(f->msg)), CHECK_DAMAGED);
	assert_int_equal(pool_check(f->pool, true, NULL, f->msg, sizeof(f->msg)), CHECK_CLEAN);
	assert_int_equal(access(path, F_OK), -1); /* the repair removed it */
	assert_int_equal(pool_open(f->pool, 0, "unit", &f->p, f->msg, sizeof(f->msg)), 0);
	pool_status(f->p, &st);
	assert_string_equal(st.mode, "rw");
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_timer_race_inplace_fsync_flushes),
	    cmocka_unit_test(test_tracking_oom_fails_every_sync),
	    cmocka_unit_test(test_failed_punch_scrubbed_after_clean_close),
	    cmocka_unit_test(test_failed_punch_retried_after_next_commit),
	    cmocka_unit_test(test_repair_scrubs_free_blocks),
	    cmocka_unit_test(test_failed_commit_before_increment_keeps_tid),
	    cmocka_unit_test(test_failed_commit_keeps_durable_row),
	    cmocka_unit_test(test_failed_resize_keeps_size),
	    cmocka_unit_test(test_needs_check_marker_survives_remount),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
