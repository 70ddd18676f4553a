/* SPDX-License-Identifier: MIT */
/*
 * test_admin.c - the administration of issue 13 in the engine: rollback
 * (what it reads, what it leaves alone, what it refuses) and background
 * reclaim (a delete that only hides, space back in bounded steps, a crash
 * between steps finished by the next open).
 */
#include <sys/wait.h>

#include "thinfs/interop.h"
#include "unit_helpers.h"

#define BS 4096ull

static void expect_fill(struct fixture *f, const char *dev, uint64_t off, size_t len, int c)
{
	struct volume *v;
	char *buf = malloc(len);

	assert_non_null(buf);
	assert_int_equal(pool_volume_open(f->p, dev, &v), 0);
	assert_int_equal(pool_read(v, buf, len, off), (ssize_t)len);
	pool_volume_close(v);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)buf[i] != (unsigned char)c)
			fail_msg("%s byte %llu is %d, wanted %d", dev,
				 (unsigned long long)(off + i), buf[i], c);
	free(buf);
}

static int check_report(struct fixture *f)
{
	char *out = NULL;
	size_t len = 0;
	FILE *mf = open_memstream(&out, &len);
	int rc;

	pool_close(f->p);
	f->p = NULL;
	rc = pool_check(f->pool, false, mf, f->msg, sizeof(f->msg));
	fclose(mf);
	if (rc != CHECK_CLEAN || len)
		fprintf(stderr, "check %d:\n%s", rc, out);
	free(out);
	if (pool_open(f->pool, 0, "unit test", &f->p, f->msg, sizeof(f->msg)))
		fail_msg("reopen: %s", f->msg);
	return rc || len;
}

/* ---- rollback ---- */

static void test_rollback_reads_the_snapshot_later_ones_intact(void **state)
{
	struct fixture *f = fx_new(BS, 256);
	uint64_t used_before;

	fx_create(f, "v", 8 * BS);
	fx_fill(f, "v", 0, 4 * BS, 'A');
	assert_int_equal(pool_snapshot_set(f->p, "s1", f->msg, sizeof(f->msg)), 0);
	fx_fill(f, "v", 0, 2 * BS, 'B');
	fx_snap(f, "v", "later"); /* taken after s1: must stay intact */
	fx_fill(f, "v", 4 * BS, 2 * BS, 'C');
	used_before = fx_used(f);
	assert_int_equal(pool_rollback(f->p, "v", "s1/v", f->msg, sizeof(f->msg)), 0);
	expect_fill(f, "v", 0, 4 * BS, 'A');
	expect_fill(f, "v", 4 * BS, 4 * BS, 0);
	expect_fill(f, "later", 0, 2 * BS, 'B');
	expect_fill(f, "later", 2 * BS, 2 * BS, 'A');
	expect_fill(f, "s1/v", 0, 4 * BS, 'A');
	/* v's own blocks since "later" (the 'C's) went back to the pool */
	assert_int_equal(fx_used(f), used_before - 2);
	/* the volume writes on, the snapshot does not change */
	fx_fill(f, "v", 0, BS, 'D');
	expect_fill(f, "s1/v", 0, BS, 'A');
	assert_int_equal(check_report(f), 0);
	expect_fill(f, "v", 0, BS, 'D');
	fx_free(f);
}

static void test_rollback_to_a_writable_snapshot(void **state)
{
	struct fixture *f = fx_new(BS, 256);
	struct pool_device_info info;

	fx_create(f, "v", 4 * BS);
	fx_fill(f, "v", 0, BS, 'A');
	fx_snap(f, "v", "w");
	fx_fill(f, "w", BS, BS, 'W');
	assert_int_equal(pool_resize(f->p, "w", 6 * BS, f->msg, sizeof(f->msg)), 0);
	fx_fill(f, "v", 0, BS, 'V');
	assert_int_equal(pool_rollback(f->p, "v", "w", f->msg, sizeof(f->msg)), 0);
	expect_fill(f, "v", 0, BS, 'A');
	expect_fill(f, "v", BS, BS, 'W');
	assert_int_equal(pool_device_info(f->p, "v", &info), 0);
	assert_int_equal(info.size, 6 * BS); /* the snapshot's size */
	/* each writes on its own */
	fx_fill(f, "w", 0, BS, 'X');
	expect_fill(f, "v", 0, BS, 'A');
	assert_int_equal(check_report(f), 0);
	fx_free(f);
}

static void test_rollback_refusals_change_nothing(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct volume *vol;
	uint64_t tid;

	fx_create(f, "v", 4 * BS);
	fx_fill(f, "v", 0, BS, 'A');
	assert_int_equal(pool_snapshot_set(f->p, "s", f->msg, sizeof(f->msg)), 0);
	tid = fx_tid(f);
	assert_int_equal(pool_volume_open(f->p, "v", &vol), 0);
	assert_int_equal(pool_rollback(f->p, "v", "s/v", f->msg, sizeof(f->msg)), -EBUSY);
	assert_non_null(strstr(f->msg, "is open"));
	pool_volume_close(vol);
	assert_int_equal(pool_rollback(f->p, "s/v", "v", f->msg, sizeof(f->msg)), -EROFS);
	assert_int_equal(pool_rollback(f->p, "v", "v", f->msg, sizeof(f->msg)), -EINVAL);
	assert_int_equal(pool_rollback(f->p, "nope", "s/v", f->msg, sizeof(f->msg)), -ENOENT);
	assert_int_equal(pool_rollback(f->p, "v", "nope", f->msg, sizeof(f->msg)), -ENOENT);
	assert_int_equal(fx_tid(f), tid);
	fx_free(f);
}

/* ---- background reclaim ---- */

#define BIG 10000 /* rows: three steps and a bit */

static void fill_big(struct fixture *f, const char *name)
{
	struct volume *v;
	char buf[BS];

	memset(buf, 'R', sizeof(buf));
	fx_create(f, name, BIG * BS);
	assert_int_equal(pool_volume_open(f->p, name, &v), 0);
	for (uint64_t vb = 0; vb < BIG; vb++)
		assert_int_equal(pool_write(v, buf, 16, vb * BS), 16);
	pool_volume_close(v);
	assert_int_equal(pool_sync(f->p), 0);
}

static void test_background_delete_frees_in_steps(void **state)
{
	struct fixture *f = fx_new(BS, BIG + 64);
	struct pool_status st;
	int steps = 0;

	fill_big(f, "big");
	pool_set_background_reclaim(f->p, true);
	assert_int_equal(pool_delete(f->p, "big", f->msg, sizeof(f->msg)), 0);
	/* gone from the namespace at once; the space still being freed */
	assert_int_equal(pool_volume_open(f->p, "big", &(struct volume *){NULL}), -ENOENT);
	assert_int_equal(pool_status(f->p, &st), 0);
	assert_int_equal(st.reclaim_devices, 1);
	assert_true(st.reclaim_rows >= BIG);
	assert_int_equal(st.used_blocks, BIG);
	while (pool_reclaim_pending(f->p)) {
		assert_int_equal(pool_reclaim_step(f->p), 0);
		steps++;
		assert_true(steps < 100);
	}
	assert_true(steps >= 3); /* bounded: several transactions */
	assert_int_equal(pool_status(f->p, &st), 0);
	assert_int_equal(st.reclaim_devices, 0);
	assert_int_equal(st.used_blocks, 0);
	assert_int_equal(check_report(f), 0);
	fx_free(f);
}

static void test_crash_mid_reclaim_finished_at_open(void **state)
{
	struct fixture *f = fx_new(BS, BIG + 64);
	struct pool_status st;
	pid_t pid;
	int status;

	fill_big(f, "big");
	fx_create(f, "keep", 4 * BS);
	fx_fill(f, "keep", 0, BS, 'K');
	pool_close(f->p);
	f->p = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct pool *p;
		char msg[POOL_MSG_MAX];
		if (pool_open(f->pool, 0, "child", &p, msg, sizeof(msg)))
			_exit(2);
		pool_set_background_reclaim(p, true);
		if (pool_delete(p, "big", msg, sizeof(msg)) || pool_reclaim_step(p))
			_exit(3);
		_exit(0); /* a crash: no close, one step done */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(WEXITSTATUS(status), 0);
	if (pool_open(f->pool, 0, "unit test", &f->p, f->msg, sizeof(f->msg)))
		fail_msg("reopen: %s", f->msg);
	assert_int_equal(pool_status(f->p, &st), 0);
	assert_int_equal(st.reclaim_devices, 0);
	assert_int_equal(st.used_blocks, 1);
	expect_fill(f, "keep", 0, BS, 'K');
	assert_int_equal(check_report(f), 0);
	fx_free(f);
}

/* A set of `big` whose blocks `big` then overwrote all: its removal leaves
 * the frozen layer with one child, merged in background steps. */
static void set_of_overwritten(struct fixture *f)
{
	struct volume *v;
	char buf[BS];

	fill_big(f, "big");
	assert_int_equal(pool_snapshot_set(f->p, "s", f->msg, sizeof(f->msg)), 0);
	memset(buf, 'N', sizeof(buf));
	assert_int_equal(pool_volume_open(f->p, "big", &v), 0);
	for (uint64_t vb = 0; vb < BIG; vb++)
		assert_int_equal(pool_write(v, buf, 16, vb * BS), 16);
	pool_volume_close(v);
	assert_int_equal(pool_sync(f->p), 0);
	pool_set_background_reclaim(f->p, true);
	assert_int_equal(pool_delete_set(f->p, "s", f->msg, sizeof(f->msg)), 0);
}

static void test_background_merge_in_steps(void **state)
{
	struct fixture *f = fx_new(BS, 2 * BIG + 64);
	int steps = 0;

	set_of_overwritten(f);
	assert_int_equal(fx_used(f), 2 * BIG);
	/* a snapshot in the middle of the merge sees what big sees */
	assert_int_equal(pool_reclaim_step(f->p), 0);
	fx_snap(f, "big", "mid");
	while (pool_reclaim_pending(f->p)) {
		assert_int_equal(pool_reclaim_step(f->p), 0);
		assert_true(++steps < 100);
	}
	assert_true(steps >= 2);
	assert_int_equal(fx_used(f), BIG);
	expect_fill(f, "big", 0, 16, 'N');
	expect_fill(f, "big", (BIG - 1) * BS, 16, 'N');
	expect_fill(f, "mid", (BIG / 2) * BS, 16, 'N');
	assert_int_equal(check_report(f), 0);
	fx_free(f);
}

static void test_background_merge_then_delete(void **state)
{
	struct fixture *f = fx_new(BS, 2 * BIG + 64);

	set_of_overwritten(f);
	assert_int_equal(pool_reclaim_step(f->p), 0); /* the merge has begun */
	assert_int_equal(pool_delete(f->p, "big", f->msg, sizeof(f->msg)), 0);
	while (pool_reclaim_pending(f->p))
		assert_int_equal(pool_reclaim_step(f->p), 0);
	assert_int_equal(fx_used(f), 0);
	assert_int_equal(check_report(f), 0);
	fx_free(f);
}

static void test_crash_mid_merge_finished_at_open(void **state)
{
	struct fixture *f = fx_new(BS, 2 * BIG + 64);

	set_of_overwritten(f);
	assert_int_equal(pool_reclaim_step(f->p), 0);
	/* close without finishing: the next open does */
	assert_int_equal(pool_close(f->p), 0);
	if (pool_open(f->pool, 0, "unit test", &f->p, f->msg, sizeof(f->msg)))
		fail_msg("reopen: %s", f->msg);
	assert_int_equal(fx_used(f), BIG);
	expect_fill(f, "big", 0, 16, 'N');
	assert_int_equal(check_report(f), 0);
	fx_free(f);
}

/* ---- check --repair of a pool in use ---- */

static int live_check(struct fixture *f, char **out)
{
	size_t len = 0;
	FILE *mf = open_memstream(out, &len);
	int rc = pool_check_live(f->p, mf, f->msg, sizeof(f->msg));

	fclose(mf);
	return rc;
}

static void test_live_repair_fixes_leaks_refuses_damage(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	char *out = NULL;

	fx_create(f, "v", 4 * BS);
	fx_fill(f, "v", 0, BS, 'A');
	pool_close(f->p);
	f->p = NULL;
	/* block 40 marked used behind the pool's back: a leak */
	fx_sql(f->pool, "UPDATE space SET bits = substr(bits, 1, 5) || x'01' || substr(bits, 7)");
	if (pool_open(f->pool, 0, "unit test", &f->p, f->msg, sizeof(f->msg)))
		fail_msg("%s", f->msg);
	assert_int_equal(live_check(f, &out), CHECK_CLEAN);
	assert_non_null(strstr(out, "leak: data block 40"));
	assert_non_null(strstr(out, ": repaired ("));
	free(out);
	assert_int_equal(check_report(f), 0);
	expect_fill(f, "v", 0, BS, 'A');
	/* a mapped block marked free: damage, which needs the pool unmounted */
	pool_close(f->p);
	f->p = NULL;
	fx_sql(f->pool, "UPDATE space SET bits = zeroblob(4096)");
	if (pool_open(f->pool, 0, "unit test", &f->p, f->msg, sizeof(f->msg)))
		fail_msg("%s", f->msg);
	assert_int_equal(live_check(f, &out), CHECK_DAMAGED);
	assert_non_null(strstr(out, "not repaired (needs the pool unmounted"));
	assert_null(strstr(out, ": repaired ("));
	free(out);
	pool_close(f->p);
	f->p = NULL;
	assert_int_equal(pool_check(f->pool, false, NULL, f->msg, sizeof(f->msg)), CHECK_DAMAGED);
	fx_free(f);
}

/* ---- the user's transaction id ---- */

static void test_set_transaction_id_compare_and_swap(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct pool_status st;
	char *dump = NULL;
	size_t len = 0;
	FILE *mf;

	assert_int_equal(pool_status(f->p, &st), 0);
	assert_int_equal(st.transaction_id, 0);
	assert_int_equal(pool_set_transaction_id(f->p, 0, 5, f->msg, sizeof(f->msg)), 0);
	/* a wrong OLD changes nothing, and says what the id is */
	assert_int_equal(pool_set_transaction_id(f->p, 4, 9, f->msg, sizeof(f->msg)), -ESTALE);
	assert_non_null(strstr(f->msg, "is 5, not 4"));
	/* commits never move it; it survives a reopen; dumps carry it */
	uint64_t c0 = fx_tid(f);
	fx_create(f, "v", 4 * BS);
	fx_fill(f, "v", 0, BS, 'A');
	assert_int_equal(pool_sync(f->p), 0);
	fx_reopen(f);
	assert_int_equal(pool_status(f->p, &st), 0);
	assert_int_equal(st.transaction_id, 5);
	assert_true(st.commit_id > c0);
	mf = open_memstream(&dump, &len);
	assert_int_equal(pool_dump(f->p, mf, f->msg, sizeof(f->msg)), 0);
	fclose(mf);
	assert_non_null(strstr(dump, "transaction=\"5\""));
	free(dump);
	assert_int_equal(pool_set_transaction_id(f->p, 5, 6, f->msg, sizeof(f->msg)), 0);
	assert_int_equal(pool_status(f->p, &st), 0);
	assert_int_equal(st.transaction_id, 6);
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rollback_reads_the_snapshot_later_ones_intact),
	    cmocka_unit_test(test_rollback_to_a_writable_snapshot),
	    cmocka_unit_test(test_rollback_refusals_change_nothing),
	    cmocka_unit_test(test_background_delete_frees_in_steps),
	    cmocka_unit_test(test_crash_mid_reclaim_finished_at_open),
	    cmocka_unit_test(test_set_transaction_id_compare_and_swap),
	    cmocka_unit_test(test_background_merge_in_steps),
	    cmocka_unit_test(test_background_merge_then_delete),
	    cmocka_unit_test(test_crash_mid_merge_finished_at_open),
	    cmocka_unit_test(test_live_repair_fixes_leaks_refuses_damage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
