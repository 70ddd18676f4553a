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
 *
 * Two threads writing 8-block requests to two volumes at once must each get
 * consecutive data blocks per request (allocated as one run), not blocks
 * interleaved with the other thread's.
 *
 * Below the pool, threads rewrite their own byte ranges of the data file that
 * share 4 KiB pages across the 64 MiB point where the read-modify-write lock
 * stripes wrap around: a lost update shows a stripe left unlocked.
 */
#include <pthread.h>

#include "unit_helpers.h"
#include "engine/dataio.h"
#include "thinfs/pool_test.h"

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
		uint32_t first =
		    (uint32_t)(s >> 33) % (NR_SECT / WRITERS) * WRITERS + (uint32_t)a->id;
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
		args[i] = (struct wargs){.id = i, .seed = (uint64_t)i * 7919 + 1};
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

/* ---- data file: read-modify-writes racing across the stripe wrap ---- */

#define WRAP (64ull << 20) /* 1024 stripes of 64 KiB */
#define DIO_OPS 2000

static const struct {
	uint64_t off;
	size_t len;
} ranges[] = {
    {WRAP - 100, 200},	       /* both pages: the wrapped stripes 1023 and 0 */
    {WRAP - 4000, 1000},       /* the page before the wrap */
    {WRAP + 1000, 1000},       /* the page after it */
    {WRAP - 200, 50},	       /* next to the first, same page */
    {WRAP - 65536 - 50, 4196}, /* across a stripe boundary that does not wrap */
};
#define NR_RANGES (sizeof(ranges) / sizeof(ranges[0]))

static struct dio *dio;

static unsigned char dio_tag(unsigned id, int op)
{
	return op ? (unsigned char)(((id * 50 + (unsigned)op) & 0xff) | 1) : 0;
}

/* Each op first checks that the range still holds the previous op's bytes:
 * another thread's stale read-modify-write shows at once, not only when it
 * happens to hit the last write. */
static void *dio_writer(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	unsigned char buf[8192];

	for (int op = 1; op <= DIO_OPS; op++) {
		if (dio_read(dio, buf, ranges[id].len, ranges[id].off))
			return (void *)1;
		for (size_t b = 0; b < ranges[id].len; b++)
			if (buf[b] != dio_tag(id, op - 1)) {
				fprintf(stderr, "range %u byte %zu: %#x after op %d wrote %#x\n",
					id, b, buf[b], op - 1, dio_tag(id, op - 1));
				return (void *)1;
			}
		memset(buf, dio_tag(id, op), ranges[id].len);
		if (dio_write(dio, buf, ranges[id].len, ranges[id].off))
			return (void *)1;
	}
	return NULL;
}

static void test_rmw_across_the_stripe_wrap(void **state)
{
	char dir[] = "/tmp/thinfs-unit.XXXXXX", path[64];
	pthread_t t[NR_RANGES];
	unsigned char buf[8192];
	void *ret;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/data", dir);
	assert_int_equal(dio_create(path, WRAP + (1 << 20), NULL, 0), 0);
	assert_int_equal(dio_open(path, false, &dio, NULL, 0), 0);
	for (unsigned i = 0; i < NR_RANGES; i++)
		assert_int_equal(pthread_create(&t[i], NULL, dio_writer, (void *)(uintptr_t)i), 0);
	for (unsigned i = 0; i < NR_RANGES; i++) {
		assert_int_equal(pthread_join(t[i], &ret), 0);
		assert_null(ret);
	}
	for (unsigned i = 0; i < NR_RANGES; i++) {
		unsigned char want = dio_tag(i, DIO_OPS);
		assert_int_equal(dio_read(dio, buf, ranges[i].len, ranges[i].off), 0);
		for (size_t b = 0; b < ranges[i].len; b++)
			if (buf[b] != want)
				fail_msg("range %u byte %zu: %#x, last written %#x", i, b, buf[b],
					 want);
	}
	dio_close(dio);
	fx_rmrf(dir);
}

#define RUN_WRITES 24
#define RUN_BLOCKS 8

static void *run_writer(void *arg)
{
	struct volume *v = arg;
	char *buf = malloc(RUN_BLOCKS * BS);

	if (!buf)
		return (void *)1;
	memset(buf, 7, RUN_BLOCKS * BS);
	for (int i = 0; i < RUN_WRITES; i++)
		if (pool_write(v, buf, RUN_BLOCKS * BS, (uint64_t)i * RUN_BLOCKS * BS) !=
		    RUN_BLOCKS * BS) {
			free(buf);
			return (void *)1;
		}
	free(buf);
	return NULL;
}

static void test_concurrent_requests_get_runs(void **state)
{
	struct fixture *f = fx_new(BS, 2 * RUN_WRITES * RUN_BLOCKS + 16);
	struct volume *v[2];
	pthread_t t[2];
	void *res;

	for (int i = 0; i < 2; i++) {
		fx_create(f, i ? "b" : "a", RUN_WRITES * RUN_BLOCKS * BS);
		assert_int_equal(pool_volume_open(f->p, i ? "b" : "a", &v[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, run_writer, v[i]), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(t[i], &res), 0);
		assert_null(res);
	}
	for (int i = 0; i < 2; i++) {
		for (uint64_t w = 0; w < RUN_WRITES; w++) {
			uint64_t first, b;
			assert_int_equal(pool_test_dblock(v[i], w * RUN_BLOCKS, &first), 0);
			for (uint64_t k = 1; k < RUN_BLOCKS; k++) {
				assert_int_equal(pool_test_dblock(v[i], w * RUN_BLOCKS + k, &b), 0);
				assert_int_equal(b, first + k);
			}
		}
		pool_volume_close(v[i]);
	}
	fx_expect(f, "a", 0, RUN_WRITES * RUN_BLOCKS * BS, 7);
	fx_expect(f, "b", 0, RUN_WRITES * RUN_BLOCKS * BS, 7);
	fx_check_clean(f);
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_racing_writers_and_snapshots),
	    cmocka_unit_test(test_rmw_across_the_stripe_wrap),
	    cmocka_unit_test(test_concurrent_requests_get_runs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
