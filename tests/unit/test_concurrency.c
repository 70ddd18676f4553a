/* SPDX-License-Identifier: MIT */
/*
 * test_concurrency.c - threads racing on the same blocks.
 *
 * Four writer threads own interleaved 512-byte sectors (sector % 4 == thread)
 * of one volume, so every 64 KiB block is provisioned, copied and overwritten
 * by several threads at once, while a fifth thread takes snapshot sets, syncs
 * and deletes old sets.  No acknowledged write may be lost (a racing
 * provision or copy-on-write must not drop another thread's sectors), and the
 * space map must stay exact.
 */
#include <pthread.h>

#include "unit_helpers.h"

#define BS (64u * 1024)
#define NR_BLOCKS 16
#define SECT 512u
#define NR_SECT (NR_BLOCKS * BS / SECT)
#define WRITERS 4
#define OPS 3000

static struct fixture *fx;
static struct volume *vol;
static uint32_t last[NR_SECT];
static int stop; /* atomic */

struct wargs {
	int id;
	uint64_t seed;
};

static void *writer(void *arg)
{
	struct wargs *a = arg;
	unsigned char buf[SECT * 8];
	uint64_t s = a->seed;

	for (int op = 1; op <= OPS; op++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		uint32_t first = (uint32_t)(s >> 33) % (NR_SECT / WRITERS) * WRITERS + (uint32_t)a->id;
		uint32_t tag = ((uint32_t)a->id << 24) | (uint32_t)op;
		for (unsigned i = 0; i < SECT / 4; i++)
			memcpy(buf + i * 4, &tag, 4);
		if (pool_write(vol, buf, SECT, (uint64_t)first * SECT) != SECT)
			return (void *)1;
		last[first] = tag;
	}
	return NULL;
}

static void *snapshotter(void *arg)
{
	char name[32];
	int n = 0;

	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		snprintf(name, sizeof(name), "s%d", n);
		if (pool_snapshot_set(fx->p, name, NULL, 0))
			return (void *)1;
		if (n >= 3) {
			snprintf(name, sizeof(name), "s%d", n - 3);
			if (pool_delete_set(fx->p, name, NULL, 0))
				return (void *)1;
		}
		if (n % 2 && pool_sync(fx->p))
			return (void *)1;
		n++;
		usleep(2000);
	}
	return NULL;
}

static void test_racing_writers_and_snapshots(void **state)
{
	pthread_t w[WRITERS], snap;
	struct wargs args[WRITERS];
	unsigned char buf[SECT];
	void *ret;

	fx = fx_new(BS, 1024);
	fx_create(fx, "v", NR_BLOCKS * BS);
	assert_int_equal(pool_volume_open(fx->p, "v", &vol), 0);
	__atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
	assert_int_equal(pthread_create(&snap, NULL, snapshotter, NULL), 0);
	for (int i = 0; i < WRITERS; i++) {
		args[i] = (struct wargs){ .id = i, .seed = (uint64_t)i * 7919 + 1 };
		assert_int_equal(pthread_create(&w[i], NULL, writer, &args[i]), 0);
	}
	for (int i = 0; i < WRITERS; i++) {
		assert_int_equal(pthread_join(w[i], &ret), 0);
		assert_null(ret);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	assert_int_equal(pthread_join(snap, &ret), 0);
	assert_null(ret);
	for (uint32_t s = 0; s < NR_SECT; s++) {
		uint32_t got;
		assert_int_equal(pool_read(vol, buf, SECT, (uint64_t)s * SECT), SECT);
		memcpy(&got, buf, 4);
		if (got != last[s])
			fail_msg("sector %u: %#x, last acknowledged %#x", s, got, last[s]);
	}
	pool_volume_close(vol);
	fx_check_clean(fx);
	fx_free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_racing_writers_and_snapshots),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
