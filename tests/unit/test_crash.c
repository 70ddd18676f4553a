/* SPDX-License-Identifier: MIT */
/*
 * test_crash.c - in-process power cuts at every commit step.
 *
 * A seeded random workload (writes of any alignment, discards, syncs,
 * snapshot sets and their deletes, reopens) runs in a forked child on a pool
 * whose data file simulates a volatile write cache (dataio's pre-image
 * tracking).  The child "loses power" at the K-th crash point it passes
 * (commit/before_flush, after_flush, before_commit, after_commit,
 * after_punch): unflushed data writes are undone and the process _exits
 * without closing anything.  The parent reopens the pool and checks, against
 * a model of every 512-byte sector:
 *   I1/I2  each sector holds its last acknowledged content or a later write
 *          (zeros for discards), never anything else;
 *   I3     every snapshot set that exists reads exactly as its volumes did;
 *   I4     pool_check finds nothing.
 * K runs from 1 until the workload completes without reaching K points.
 *
 * Built a second time against a library compiled with
 * THINFS_TEST_BUG_SKIP_DATA_FLUSH (no data flush before COMMIT) as
 * control_crash_noflush, which must FAIL: the runner counts its success as a
 * failure.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include "unit_helpers.h"
#include "engine/dataio.h"
#include "thinfs/pool_test.h"

#define BS 4096u
#define SECT 512u
#define NR_VOLS 2
#define VOL_BLOCKS 12
#define VOL_SECTS (VOL_BLOCKS * BS / SECT)
#define NR_OPS 60
#define MAX_SETS 8
#define MAX_CAND 64

enum op_kind { OP_WRITE, OP_DISCARD, OP_SYNC, OP_SET, OP_DELSET, OP_REOPEN };

struct op {
	enum op_kind kind;
	int vol;
	uint32_t first, count; /* sectors */
	int set;	       /* OP_SET / OP_DELSET: set number */
};

struct shared {
	volatile int completed; /* ops completed by the child */
	volatile int points;	/* crash points passed */
	volatile int crash_at;	/* crash at this point (0 = never) */
};

static struct shared *shm;
static struct fixture *child_fx;

static uint64_t rng_state;
static uint32_t rnd(uint32_t n)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rng_state >> 33) % n;
}

static void gen_ops(uint64_t seed, struct op *ops)
{
	bool set_live[MAX_SETS] = {0};
	int next_set = 0;

	rng_state = seed * 2654435761u + 1;
	for (int i = 0; i < NR_OPS; i++) {
		struct op *o = &ops[i];
		uint32_t r = rnd(100);

		memset(o, 0, sizeof(*o));
		o->vol = (int)rnd(NR_VOLS);
		o->first = rnd(VOL_SECTS);
		o->count = 1 + rnd(r < 50 ? 24 : 4);
		if (o->first + o->count > VOL_SECTS)
			o->count = VOL_SECTS - o->first;
		if (r < 55) {
			o->kind = OP_WRITE;
		} else if (r < 70) {
			o->kind = OP_DISCARD;
		} else if (r < 82) {
			o->kind = OP_SYNC;
		} else if (r < 90 && next_set < MAX_SETS) {
			o->kind = OP_SET;
			o->set = next_set++;
			set_live[o->set] = true;
		} else if (r < 95) {
			o->kind = OP_DELSET;
			o->set = -1;
			for (int s = 0; s < next_set; s++)
				if (set_live[s]) {
					o->set = s;
					set_live[s] = false;
					break;
				}
			if (o->set < 0)
				o->kind = OP_SYNC;
		} else {
			o->kind = OP_REOPEN;
		}
	}
}

/* The content of a sector written by op i: its tag, op+1, in every word. */
static void fill_sector(unsigned char *p, uint32_t tag)
{
	for (unsigned w = 0; w < SECT / 4; w++)
		memcpy(p + w * 4, &tag, 4);
}

static uint32_t sector_tag(const unsigned char *p, bool *torn)
{
	uint32_t t;

	memcpy(&t, p, 4);
	*torn = false;
	for (unsigned w = 1; w < SECT / 4; w++)
		if (memcmp(p + w * 4, &t, 4))
			*torn = true;
	return t;
}

static const char *vol_name(int v)
{
	return v ? "v1" : "v0";
}

static int crash_hook(void *arg, const char *point)
{
	struct fixture *f = arg;

	shm->points++;
	if (shm->crash_at && shm->points == shm->crash_at) {
		dio_test_lose_unflushed(pool_test_dio(f->p));
		_exit(0);
	}
	return 0;
}

static void open_pool(struct fixture *f, struct volume **vols)
{
	if (pool_open(f->pool, 0, "crash test", &f->p, f->msg, sizeof(f->msg))) {
		fprintf(stderr, "open: %s\n", f->msg);
		_exit(3);
	}
	dio_test_track_unflushed(pool_test_dio(f->p), true);
	pool_test_set_crash_hook(f->p, crash_hook, f);
	for (int v = 0; v < NR_VOLS; v++)
		if (pool_volume_open(f->p, vol_name(v), &vols[v]))
			_exit(4);
}

static void run_child(struct fixture *f, const struct op *ops)
{
	struct volume *vols[NR_VOLS];
	unsigned char buf[VOL_SECTS * SECT];
	char name[32];

	open_pool(f, vols);
	for (int i = 0; i < NR_OPS; i++) {
		const struct op *o = &ops[i];
		int rc = 0;

		switch (o->kind) {
		case OP_WRITE:
			for (uint32_t s = 0; s < o->count; s++)
				fill_sector(buf + s * SECT, (uint32_t)i + 1);
			rc = pool_write(vols[o->vol], buf, o->count * SECT,
					(uint64_t)o->first * SECT) == (ssize_t)(o->count * SECT)
				 ? 0
				 : -EIO;
			break;
		case OP_DISCARD:
			rc = pool_discard(vols[o->vol], (uint64_t)o->first * SECT,
					  (uint64_t)o->count * SECT);
			break;
		case OP_SYNC:
			rc = pool_sync(f->p);
			break;
		case OP_SET:
			snprintf(name, sizeof(name), "s%d", o->set);
			rc = pool_snapshot_set(f->p, name, NULL, 0);
			break;
		case OP_DELSET:
			snprintf(name, sizeof(name), "s%d", o->set);
			rc = pool_delete_set(f->p, name, NULL, 0);
			break;
		case OP_REOPEN:
			for (int v = 0; v < NR_VOLS; v++)
				pool_volume_close(vols[v]);
			pool_close(f->p);
			open_pool(f, vols);
			break;
		}
		if (rc) {
			fprintf(stderr, "op %d failed: %d\n", i, rc);
			_exit(5);
		}
		shm->completed = i + 1;
	}
	_exit(0);
}

struct model {
	uint32_t cur[NR_VOLS][VOL_SECTS];
	uint32_t acked[NR_VOLS][VOL_SECTS];
	uint32_t cand[NR_VOLS][VOL_SECTS][MAX_CAND];
	int nr_cand[NR_VOLS][VOL_SECTS];
	uint32_t set_img[MAX_SETS][NR_VOLS][VOL_SECTS];
	int set_state[MAX_SETS]; /* 0 none, 1 live, 2 maybe (in flight) */
};

static void model_ack(struct model *m)
{
	memcpy(m->acked, m->cur, sizeof(m->acked));
	memset(m->nr_cand, 0, sizeof(m->nr_cand));
}

static void model_put(struct model *m, int v, uint32_t s, uint32_t tag)
{
	m->cur[v][s] = tag;
	if (m->nr_cand[v][s] < MAX_CAND)
		m->cand[v][s][m->nr_cand[v][s]++] = tag;
}

/* Apply ops [0, done) fully and op `done` (if any) as in flight. */
static void build_model(struct model *m, const struct op *ops, int done)
{
	memset(m, 0, sizeof(*m));
	for (int i = 0; i <= done && i < NR_OPS; i++) {
		const struct op *o = &ops[i];
		bool in_flight = i == done;

		switch (o->kind) {
		case OP_WRITE:
		case OP_DISCARD:
			for (uint32_t s = o->first; s < o->first + o->count; s++)
				model_put(m, o->vol, s, o->kind == OP_WRITE ? (uint32_t)i + 1 : 0);
			/* a partially discarded block is zeroed in place; whole ones unmapped */
			break;
		case OP_SYNC:
		case OP_REOPEN:
			if (!in_flight)
				model_ack(m);
			break;
		case OP_SET:
			memcpy(m->set_img[o->set], m->cur, sizeof(m->cur));
			m->set_state[o->set] = in_flight ? 2 : 1;
			if (!in_flight)
				model_ack(m);
			break;
		case OP_DELSET:
			m->set_state[o->set] = in_flight ? 2 : 0;
			if (!in_flight)
				model_ack(m);
			break;
		}
	}
}

/* Returns the number of violations (printing the first few). */
static int verify(struct fixture *f, const struct op *ops, int done)
{
	static struct model m;
	unsigned char buf[VOL_SECTS * SECT];
	struct volume *vol;
	int bad = 0;
	char name[32];

	build_model(&m, ops, done);
	for (int v = 0; v < NR_VOLS; v++) {
		if (pool_volume_open(f->p, vol_name(v), &vol))
			return 1000;
		assert_int_equal(pool_read(vol, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
		pool_volume_close(vol);
		for (uint32_t s = 0; s < VOL_SECTS; s++) {
			bool torn, ok;
			uint32_t t = sector_tag(buf + s * SECT, &torn);
			ok = !torn && t == m.acked[v][s];
			for (int c = 0; !ok && !torn && c < m.nr_cand[v][s]; c++)
				ok = t == m.cand[v][s][c];
			if (!ok && bad++ < 5)
				fprintf(stderr, "  %s sector %u: tag %u%s, acked %u (+%d later)\n",
					vol_name(v), s, t, torn ? " (torn)" : "", m.acked[v][s],
					m.nr_cand[v][s]);
		}
	}
	for (int s = 0; s < MAX_SETS; s++) {
		for (int v = 0; v < NR_VOLS; v++) {
			snprintf(name, sizeof(name), "s%d/%s", s, vol_name(v));
			int rc = pool_volume_open(f->p, name, &vol);
			if (rc) {
				if (m.set_state[s] == 1 && bad++ < 5)
					fprintf(stderr, "  set s%d lost\n", s);
				continue;
			}
			if (m.set_state[s] == 0 && bad++ < 5)
				fprintf(stderr, "  set s%d should be gone\n", s);
			pool_read(vol, buf, sizeof(buf), 0);
			pool_volume_close(vol);
			for (uint32_t x = 0; x < VOL_SECTS; x++) {
				bool torn;
				uint32_t t = sector_tag(buf + x * SECT, &torn);
				if ((torn || t != m.set_img[s][v][x]) && bad++ < 5)
					fprintf(stderr, "  %s sector %u: tag %u, snapshot had %u\n",
						name, x, t, m.set_img[s][v][x]);
			}
		}
	}
	return bad;
}

static int run_seed(uint64_t seed, int *nr_cuts)
{
	static struct op ops[NR_OPS];
	int failures = 0;

	gen_ops(seed, ops);
	for (int k = 1;; k++) {
		struct fixture *f = fx_new(BS, 256);
		pid_t pid;
		int status;

		fx_create(f, "v0", VOL_BLOCKS * BS);
		fx_create(f, "v1", VOL_BLOCKS * BS);
		pool_close(f->p);
		f->p = NULL;
		shm->completed = 0;
		shm->points = 0;
		shm->crash_at = k;
		pid = fork();
		if (pid == 0)
			run_child(f, ops);
		waitpid(pid, &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			fprintf(stderr, "seed %llu cut %d: child failed (status %d)\n",
				(unsigned long long)seed, k, status);
			failures++;
			fx_free(f);
			break;
		}
		if (pool_open(f->pool, 0, "crash verify", &f->p, f->msg, sizeof(f->msg))) {
			fprintf(stderr, "seed %llu cut %d: reopen failed: %s\n",
				(unsigned long long)seed, k, f->msg);
			failures++;
		} else {
			int bad = verify(f, ops, shm->completed);
			char *out = NULL;
			size_t len = 0;
			FILE *mf = open_memstream(&out, &len);
			pool_close(f->p);
			f->p = NULL;
			int crc = pool_check(f->pool, false, mf, f->msg, sizeof(f->msg));
			fclose(mf);
			if (crc || len) {
				fprintf(stderr, "  check: %d %s", crc, out ? out : "");
				bad++;
			}
			free(out);
			if (bad) {
				fprintf(stderr,
					"seed %llu: cut at point %d (after op %d): %d violations\n",
					(unsigned long long)seed, k, shm->completed, bad);
				failures++;
			}
		}
		bool finished = shm->completed == NR_OPS;
		fx_free(f);
		if (finished)
			break;
		(*nr_cuts)++;
	}
	return failures;
}

static void test_power_cut_at_every_commit_step(void **state)
{
	int failures = 0, cuts = 0;

	shm = mmap(NULL, sizeof(*shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(shm != MAP_FAILED);
	for (uint64_t seed = 1; seed <= 4; seed++)
		failures += run_seed(seed, &cuts);
	fprintf(stderr, "%d power cuts verified, %d failed\n", cuts, failures);
	assert_true(cuts > 50);
	assert_int_equal(failures, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_power_cut_at_every_commit_step),
	};
	(void)child_fx;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
