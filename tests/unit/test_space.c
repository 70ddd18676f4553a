/* SPDX-License-Identifier: MIT */
/*
 * test_space.c - the pool properties and the space policy in the engine
 * (pool_props.c, pool_space_events.c, pool_autoextend.c): get/set all or
 * none and kept across a reopen; low water once per crossing; when_full
 * error and queue (released by a grow, a delete, the worker's stop, the
 * timeout); autoextend and its limits; discard=ignore and nopassdown; the
 * events' counts kept by the commit.  No root needed.
 */
#include <pthread.h>
#include <time.h>

#include "unit_helpers.h"

#define BS 4096u

static void set(struct fixture *f, const char *pair)
{
	char *p[] = {(char *)pair};

	if (pool_prop_set(f->p, p, 1, f->msg, sizeof(f->msg)))
		fail_msg("set %s: %s", pair, f->msg);
}

static const char *get(struct fixture *f, const char *key, bool *is_default)
{
	static struct pool_prop p;

	assert_int_equal(pool_prop_get(f->p, (size_t)pool_prop_index(key), &p), 0);
	if (is_default)
		*is_default = p.is_default;
	return p.value;
}

static int write_blocks(struct volume *v, uint64_t first, uint64_t n)
{
	char buf[BS];

	memset(buf, 0x5a, sizeof(buf));
	for (uint64_t b = first; b < first + n; b++) {
		ssize_t r = pool_write(v, buf, BS, b * BS);
		if (r != BS)
			return (int)r;
	}
	return 0;
}

/* The next event the worker hands out within ms, or -1. */
static int next_event(struct fixture *f, int ms, struct pool_event *ev)
{
	struct pool_event e;

	if (pool_space_worker(f->p, ev ? ev : &e, ms) != 1)
		return -1;
	return ev ? ev->kind : e.kind;
}

static void test_props_defaults_set_get_and_reopen(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	char *bad[] = {"low_water=30", "when_full=sometimes"};
	char *two[] = {"low_water=30", "autoextend_max=1G"};
	bool def;

	assert_string_equal(get(f, "low_water", &def), "80");
	assert_true(def);
	assert_string_equal(get(f, "discard", NULL), "passdown");
	assert_string_equal(get(f, "queue_timeout", NULL), "60");
	assert_string_equal(get(f, "when_full", &def), "error"); /* fx_new's */
	assert_false(def);
	/* all or none: the good pair is not applied either */
	assert_int_equal(pool_prop_set(f->p, bad, 2, f->msg, sizeof(f->msg)), -EINVAL);
	assert_non_null(strstr(f->msg, "when_full: 'sometimes' is not one of queue|error"));
	assert_string_equal(get(f, "low_water", NULL), "80");
	assert_int_equal(pool_prop_set(f->p, two, 2, f->msg, sizeof(f->msg)), 0);
	assert_string_equal(get(f, "autoextend_max", NULL), "1073741824");
	fx_reopen(f);
	assert_string_equal(get(f, "low_water", &def), "30");
	assert_false(def);
	assert_string_equal(get(f, "autoextend_max", NULL), "1073741824");
	/* refusals name the key and the reason */
	char *refused[][1] = {{"low_water=101"},
			      {"low_water=-1"},
			      {"queue_timeout=x"},
			      {"autoextend_max=1Q"},
			      {"event_command=sh"},
			      {"nokey=1"},
			      {"=1"},
			      {"discard"}};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		assert_int_equal(pool_prop_set(f->p, refused[i], 1, f->msg, sizeof(f->msg)),
				 -EINVAL);
	assert_int_equal(pool_prop_index("nokey"), -ENOENT);
	fx_free(f);
}

static void test_low_water_once_per_crossing(void **state)
{
	struct fixture *f = fx_new(BS, 100);
	struct pool_status st;
	struct pool_event ev;
	struct volume *v;

	set(f, "low_water=50");
	fx_create(f, "v", 200 * BS);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(write_blocks(v, 0, 49), 0);
	assert_int_equal(next_event(f, 0, NULL), -1);
	assert_int_equal(write_blocks(v, 49, 1), 0);
	assert_int_equal(next_event(f, 0, &ev), POOL_EVENT_LOW_WATER);
	assert_int_equal(ev.used_blocks, 50);
	assert_int_equal(ev.nr_data_blocks, 100);
	assert_non_null(strstr(ev.detail, "50 of 100 data blocks"));
	assert_int_equal(write_blocks(v, 50, 20), 0);
	assert_int_equal(next_event(f, 0, NULL), -1); /* still over: no new one */
	/* under it (once the frees are durable), and over again: again */
	assert_int_equal(pool_discard(v, 0, 30 * BS), 0);
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(write_blocks(v, 100, 9), 0);
	assert_int_equal(next_event(f, 0, NULL), -1);
	assert_int_equal(write_blocks(v, 109, 1), 0);
	assert_int_equal(next_event(f, 0, NULL), POOL_EVENT_LOW_WATER);
	pool_volume_close(v);
	/* the counts outlive the mount */
	fx_reopen(f);
	pool_status(f->p, &st);
	assert_int_equal(st.events[POOL_EVENT_LOW_WATER].count, 2);
	assert_non_null(strstr(st.events[POOL_EVENT_LOW_WATER].detail, "low_water is 50%"));
	assert_true(st.low_water_crossed);
	fx_free(f);
}

struct writer {
	struct fixture *f;
	struct volume *v;
	uint64_t first, n;
	int rc;
	int64_t ms; /* how long it took */
};

static int64_t mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	int64_t start = mono_ms();

	w->rc = write_blocks(w->v, w->first, w->n);
	w->ms = mono_ms() - start;
	return NULL;
}

static void wait_queued(struct fixture *f, uint64_t n)
{
	struct pool_status st;

	for (int i = 0; i < 1000; i++) {
		pool_status(f->p, &st);
		if (st.queued_writes >= n)
			return;
		usleep(10000);
	}
	fail_msg("no write queued for space");
}

static void test_when_full_error_and_queue(void **state)
{
	struct fixture *f = fx_new(BS, 32);
	struct writer w = {.f = f, .first = 32, .n = 8};
	struct pool_status st;
	struct volume *v;
	pthread_t t;

	fx_create(f, "v", 64 * BS);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(write_blocks(v, 0, 32), 0);
	/* error: at once */
	int64_t start = mono_ms();
	assert_int_equal(write_blocks(v, 32, 1), -ENOSPC);
	assert_true(mono_ms() - start < 1000);
	assert_int_equal(next_event(f, 0, NULL), POOL_EVENT_LOW_WATER);
	assert_int_equal(next_event(f, 0, NULL), POOL_EVENT_FULL);
	/* queue: held until a grow, then every byte lands */
	set(f, "when_full=queue");
	w.v = v;
	assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
	wait_queued(f, 1);
	usleep(200000);
	pool_status(f->p, &st);
	assert_int_equal(st.queued_writes, 1);
	assert_string_equal(st.when_full, "queue");
	assert_int_equal(pool_grow(f->p, 64 * BS, f->msg, sizeof(f->msg)), 0);
	pthread_join(t, NULL);
	assert_int_equal(w.rc, 0);
	pool_volume_close(v);
	fx_expect(f, "v", 32 * BS, 8 * BS, 0x5a);
	pool_status(f->p, &st);
	assert_int_equal(st.queued_writes, 0);
	assert_int_equal(next_event(f, 0, NULL), POOL_EVENT_SPACE_BACK);
	fx_free(f);
}

static void test_queue_released_by_delete_timeout_and_stop(void **state)
{
	struct fixture *f = fx_new(BS, 16);
	struct writer w = {.f = f, .first = 16, .n = 4};
	struct volume *v;
	pthread_t t;

	set(f, "when_full=queue");
	fx_create(f, "v", 64 * BS);
	fx_create(f, "junk", 64 * BS);
	fx_fill(f, "junk", 0, 8 * BS, 1);
	assert_int_equal(pool_volume_open(f->p, "v", &w.v), 0);
	v = w.v;
	assert_int_equal(write_blocks(v, 0, 8), 0);
	/* a delete frees blocks: the queued write goes on */
	assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
	wait_queued(f, 1);
	fx_delete(f, "junk");
	pthread_join(t, NULL);
	assert_int_equal(w.rc, 0);
	/* the timeout: ENOSPC after it, not before */
	assert_int_equal(write_blocks(v, 20, 4), 0); /* full again */
	set(f, "queue_timeout=1");
	int64_t start = mono_ms();
	assert_int_equal(write_blocks(v, 40, 1), -ENOSPC);
	assert_true(mono_ms() - start >= 1000);
	/* the worker's stop (the daemon's end): ENOSPC now */
	set(f, "queue_timeout=0");
	w.first = 41;
	w.n = 1;
	assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
	wait_queued(f, 1);
	pool_space_worker_stop(f->p);
	pthread_join(t, NULL);
	assert_int_equal(w.rc, -ENOSPC);
	assert_int_equal(pool_space_worker(f->p, &(struct pool_event){0}, 0), -ESHUTDOWN);
	pool_volume_close(v);
	fx_free(f);
}

struct worker {
	struct fixture *f;
	bool stop; /* atomic */
	int events[POOL_EVENT_NR];
};

static void *worker_main(void *arg)
{
	struct worker *k = arg;
	struct pool_event ev;
	int rc;

	while (!__atomic_load_n(&k->stop, __ATOMIC_ACQUIRE) &&
	       (rc = pool_space_worker(k->f->p, &ev, 50)) != -ESHUTDOWN)
		if (rc == 1)
			__atomic_add_fetch(&k->events[ev.kind], 1, __ATOMIC_RELAXED);
	return NULL;
}

static void test_autoextend_grows_and_stops_at_max(void **state)
{
	struct fixture *f = fx_new(BS, 100);
	struct worker k = {.f = f};
	struct pool_status st;
	struct volume *v;
	pthread_t t;
	char max[32];

	snprintf(max, sizeof(max), "autoextend_max=%u", 300 * BS);
	set(f, "low_water=60");
	set(f, "autoextend_percent=50");
	set(f, max);
	set(f, "when_full=queue");
	fx_create(f, "v", 1000 * BS);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(pthread_create(&t, NULL, worker_main, &k), 0);
	/* 250 blocks in a 100-block pool: autoextend makes room, writes queue
	 * meanwhile and never fail */
	assert_int_equal(write_blocks(v, 0, 250), 0);
	pool_status(f->p, &st);
	assert_true(st.nr_data_blocks > 250);
	assert_true(st.nr_data_blocks <= 300);
	/* past the maximum: autoextend_failed, and with error, ENOSPC */
	set(f, "when_full=error");
	assert_true(write_blocks(v, 250, 100) == -ENOSPC);
	/* (the worker hands the events out in turn: wait for it, under load too) */
	for (int i = 0; i < 3000 &&
			!__atomic_load_n(&k.events[POOL_EVENT_AUTOEXTEND_FAILED], __ATOMIC_RELAXED);
	     i++)
		usleep(10000);
	__atomic_store_n(&k.stop, true, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	pool_status(f->p, &st);
	assert_int_equal(st.nr_data_blocks, 300);
	assert_true(k.events[POOL_EVENT_AUTOEXTEND] >= 1);
	assert_int_equal(k.events[POOL_EVENT_AUTOEXTEND_FAILED], 1);
	assert_non_null(strstr(st.events[POOL_EVENT_AUTOEXTEND_FAILED].detail, "autoextend_max"));
	pool_volume_close(v);
	fx_expect(f, "v", 0, 250 * BS, 0x5a);
	fx_check_clean(f);
	fx_free(f);
}

static void test_autoextend_off_without_both(void **state)
{
	struct fixture *f = fx_new(BS, 16);
	struct pool_status st;

	set(f, "autoextend_percent=50"); /* no max: off */
	assert_int_equal(pool_autoextend(f->p), 0);
	set(f, "autoextend_max=1M");
	assert_int_equal(pool_autoextend(f->p), 1);
	pool_status(f->p, &st);
	assert_int_equal(st.nr_data_blocks, 24);
	fx_free(f);
}

static void test_discard_policies(void **state)
{
	struct fixture *f = fx_new(BS, 16);
	struct pool_status st;
	struct volume *v;
	unsigned char buf[BS];
	uint64_t punches;

	fx_create(f, "v", 16 * BS);
	fx_fill(f, "v", 0, 16 * BS, 0xee);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	set(f, "discard=ignore");
	assert_int_equal(pool_discard(v, 0, 4 * BS), -EOPNOTSUPP);
	pool_volume_close(v);
	fx_expect(f, "v", 0, 4 * BS, 0xee);
	assert_int_equal(fx_mapped(f, "v"), 16);
	/* nopassdown: freed, not punched; a reused block reads zeros around a
	 * partial write all the same */
	set(f, "discard=nopassdown");
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	pool_status(f->p, &st);
	punches = st.punches;
	assert_int_equal(pool_discard(v, 0, 16 * BS), 0);
	assert_int_equal(pool_commit(f->p), 0);
	pool_status(f->p, &st);
	assert_int_equal(st.used_blocks, 0);
	assert_int_equal(st.punches, punches);
	memset(buf, 7, 10);
	for (uint64_t b = 0; b < 16; b++)
		assert_int_equal(pool_write(v, buf, 10, b * BS + 100), 10);
	pool_volume_close(v);
	for (uint64_t b = 0; b < 16; b++) {
		fx_expect(f, "v", b * BS, 100, 0);
		fx_expect(f, "v", b * BS + 100, 10, 7);
		fx_expect(f, "v", b * BS + 110, BS - 110, 0);
	}
	fx_check_clean(f);
	fx_free(f);
}

static int setup(void **state)
{
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_props_defaults_set_get_and_reopen),
	    cmocka_unit_test(test_low_water_once_per_crossing),
	    cmocka_unit_test(test_when_full_error_and_queue),
	    cmocka_unit_test(test_queue_released_by_delete_timeout_and_stop),
	    cmocka_unit_test(test_autoextend_grows_and_stops_at_max),
	    cmocka_unit_test(test_autoextend_off_without_both),
	    cmocka_unit_test(test_discard_policies),
	};

	(void)setup;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
