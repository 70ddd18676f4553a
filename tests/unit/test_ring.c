/* SPDX-License-Identifier: MIT */
/*
 * test_ring.c - the data layer's io_uring ring under what signals and the
 * kernel do to it (issue 11, TESTING.md S1): EINTR from submit and from the
 * wait while I/O is in flight (SIGSTOP/SIGCONT of the daemon), EAGAIN
 * results and short completions, all injected by dio_test_ring_faults().
 * Every transfer must move exactly its own bytes, and no call may leave an
 * SQE or a CQE behind on its thread's ring (the desync of the old code:
 * every later I/O reaped the previous one's completion).  Direct I/O, and
 * buffered under THINFS_DATA_BUFFERED=1.
 *
 * Negative control: control_ring_resubmit links this test against a build
 * with -DTHINFS_TEST_BUG_RING_RESUBMIT (a wait's EINTR makes the caller
 * submit the I/O again) and must fail.
 */
#include <pthread.h>

#include "unit_helpers.h"
#include "engine/dataio.h"

#define FILE_SIZE (8u << 20)
#define REGION (FILE_SIZE / 2)
#define OPS 1500

static char tmpdir[64];
static char path[128];

static int setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/thinfs-unit.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(path, sizeof(path), "%s/data", tmpdir);
	return dio_create(path, FILE_SIZE, NULL, 0);
}

static int teardown(void **state)
{
	dio_test_ring_faults(0);
	fx_rmrf(tmpdir);
	return 0;
}

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* A stamp that names the op and the byte, so a stale or misplaced transfer
 * is told from the right one. */
static void stamp(unsigned char *buf, size_t len, uint64_t offset, uint32_t op)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = (offset + i) ^ ((uint64_t)op << 40) ^ 0x5a5a5a5a5a5a5a5aull;
		memcpy(buf + i, &v, 8);
	}
}

struct worker {
	struct dio *d;
	uint64_t base, seed;
	unsigned char *model; /* REGION bytes: what the file holds */
	int failures, leftovers;
	char why[160];
};

static void note(struct worker *w, const char *what, uint64_t off)
{
	if (!w->failures++)
		snprintf(w->why, sizeof(w->why), "%s at offset %llu", what,
			 (unsigned long long)off);
}

static void check_idle(struct worker *w, uint64_t off)
{
	if (dio_test_ring_idle()) {
		w->leftovers++;
		note(w, "the ring kept an SQE or a CQE after the call", off);
	}
}

/* Random writes (single and batched) and read-backs inside the worker's region. */
static void *work(void *arg)
{
	struct worker *w = arg;
	unsigned char *buf = dio_buffer(256 * 1024), *rbuf = dio_buffer(256 * 1024);

	for (uint32_t op = 1; op <= OPS && buf && rbuf; op++) {
		uint64_t r = next_rand(&w->seed);
		size_t len = (size_t)(1 + r % 16) * 4096;
		uint64_t off = (r >> 8) % ((REGION - len) / 4096) * 4096;
		bool batch = (r >> 40) & 1;

		stamp(buf, len, w->base + off, op);
		if (!batch) {
			if (dio_write(w->d, buf, len, w->base + off))
				note(w, "write failed", off);
		} else {
			/* two halves, written as one batch */
			struct dio_seg seg[2] = {{buf, len / 2 & ~4095ul, w->base + off}};
			seg[1] = (struct dio_seg){buf + seg[0].len, len - seg[0].len,
						  w->base + off + seg[0].len};
			if (!seg[0].len)
				seg[0] = seg[1];
			if (dio_write_batch(w->d, seg, seg[0].buf == seg[1].buf ? 1 : 2))
				note(w, "batched write failed", off);
		}
		memcpy(w->model + off, buf, len);
		check_idle(w, off);
		memset(rbuf, 0xee, len);
		if (batch) {
			struct dio_seg seg[2] = {{rbuf, 4096, w->base + off},
						 {rbuf + 4096, len - 4096, w->base + off + 4096}};
			if (dio_read_batch(w->d, seg, len > 4096 ? 2 : 1))
				note(w, "batched read failed", off);
		} else if (dio_read(w->d, rbuf, len, w->base + off)) {
			note(w, "read failed", off);
		}
		if (memcmp(rbuf, w->model + off, len))
			note(w, "read back other bytes than written", off);
		check_idle(w, off);
	}
	free(buf);
	free(rbuf);
	return NULL;
}

static void run_workers(int nr, unsigned permille)
{
	struct dio *d;
	struct worker w[2] = {{0}};
	pthread_t t[2];
	uint64_t before[4], after[4];
	char msg[256];

	assert_int_equal(dio_open(path, false, &d, msg, sizeof(msg)), 0);
	dio_test_ring_fault_counts(before);
	dio_test_ring_faults(permille);
	for (int i = 0; i < nr; i++) {
		w[i] = (struct worker){.d = d,
				       .base = (uint64_t)i * REGION,
				       .seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) + permille,
				       .model = calloc(1, REGION)};
		assert_non_null(w[i].model);
		/* the model starts as the file does */
		assert_int_equal(dio_read(d, w[i].model, REGION, w[i].base), 0);
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	for (int i = 0; i < nr; i++)
		pthread_join(t[i], NULL);
	dio_test_ring_faults(0);
	dio_test_ring_fault_counts(after);
	/* the whole file once more, through a clean ring */
	for (int i = 0; i < nr; i++) {
		unsigned char *all = dio_buffer(REGION);
		assert_non_null(all);
		assert_int_equal(dio_read(d, all, REGION, w[i].base), 0);
		if (!w[i].failures && memcmp(all, w[i].model, REGION))
			note(&w[i], "the file differs from what was written", 0);
		free(all);
	}
	dio_close(d);
	for (int i = 0; i < nr; i++) {
		free(w[i].model);
		if (w[i].failures)
			fail_msg("worker %d: %d failures (%d calls left the ring busy); first: %s",
				 i, w[i].failures, w[i].leftovers, w[i].why);
	}
	if (permille)
		for (int k = 0; k < 4; k++)
			if (after[k] == before[k])
				fail_msg(
				    "fault kind %d was never injected: the test proves nothing", k);
}

/* No faults: the baseline the faulted runs are held to. */
static void test_ring_plain_io(void **state)
{
	run_workers(1, 0);
}

/* A quarter of all submits, waits and results faked: one thread. */
static void test_ring_faults_one_thread(void **state)
{
	run_workers(1, 250);
}

/* Two threads, each with its own ring, faulted at once. */
static void test_ring_faults_two_threads(void **state)
{
	run_workers(2, 250);
}

/* Misaligned transfers take the bounce and read-modify-write paths. */
static void test_ring_faults_misaligned(void **state)
{
	struct dio *d;
	char msg[256];
	unsigned char *model = calloc(1, 1 << 20), buf[9000], rbuf[9000];
	uint64_t s = 42;

	assert_non_null(model);
	assert_int_equal(dio_open(path, false, &d, msg, sizeof(msg)), 0);
	assert_int_equal(dio_read(d, model, 1 << 20, 0), 0);
	dio_test_ring_faults(250);
	for (uint32_t op = 1; op <= 800; op++) {
		uint64_t r = next_rand(&s);
		size_t len = 1 + r % sizeof(buf);
		uint64_t off = (r >> 16) % ((1 << 20) - len);

		for (size_t i = 0; i < len; i++)
			buf[i] = (unsigned char)(op * 31 + i);
		assert_int_equal(dio_write(d, buf, len, off), 0);
		memcpy(model + off, buf, len);
		assert_int_equal(dio_test_ring_idle(), 0);
		assert_int_equal(dio_read(d, rbuf, len, off), 0);
		assert_memory_equal(rbuf, model + off, len);
		assert_int_equal(dio_test_ring_idle(), 0);
	}
	dio_test_ring_faults(0);
	unsigned char *all = malloc(1 << 20);
	assert_non_null(all);
	assert_int_equal(dio_read(d, all, 1 << 20, 0), 0);
	assert_memory_equal(all, model, 1 << 20);
	free(all);
	free(model);
	dio_close(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ring_plain_io),
	    cmocka_unit_test(test_ring_faults_one_thread),
	    cmocka_unit_test(test_ring_faults_two_threads),
	    cmocka_unit_test(test_ring_faults_misaligned),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
