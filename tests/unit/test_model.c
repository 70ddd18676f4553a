/* SPDX-License-Identifier: MIT */
/*
 * test_model.c - the engine against an in-memory model, over random
 * sequences of every operation: create, write (any size and alignment),
 * discard, zero-range, writable snapshots (of snapshots too), snapshot sets,
 * delete in any order (origins before snapshots and the reverse), rename,
 * resize (shrink and grow back), clones (copy_file_range: aligned or not,
 * between devices or within one, growing the destination), sync, close and
 * reopen.
 *
 * After every operation each live device must read exactly as its model; every
 * few operations pool_check must find nothing (no leak, no double mapping: a
 * block is free iff no device maps it), and used_blocks must equal the number
 * of distinct blocks the devices map (counted through list's sharing data).
 */
#include "unit_helpers.h"

#define BS 4096u
#define MAXDEV 24
#define MAXBLK 8
#define DEVSZ (MAXBLK * BS)

struct mdev {
	bool live;
	char name[64];
	bool ro;
	uint64_t size;
	unsigned char data[DEVSZ];
};

static struct mdev model[MAXDEV];
static uint32_t rnd(uint32_t n);
/* devices held open across operations, as a loop device holds a volume */
static struct volume *held[MAXDEV];

static struct volume *vol_get(struct fixture *f, int i)
{
	struct volume *v;

	if (held[i])
		return held[i];
	assert_int_equal(pool_volume_open(f->p, model[i].name, &v), 0);
	return v;
}

static void vol_put(int i, struct volume *v)
{
	if (v != held[i])
		pool_volume_close(v);
}

static void release_all(void)
{
	for (int i = 0; i < MAXDEV; i++) {
		if (held[i])
			pool_volume_close(held[i]);
		held[i] = NULL;
	}
}

static void hold_some(struct fixture *f)
{
	for (int i = 0; i < MAXDEV; i++)
		if (model[i].live && !held[i] && rnd(2))
			assert_int_equal(pool_volume_open(f->p, model[i].name, &held[i]), 0);
}
static uint64_t rs;

static uint32_t rnd(uint32_t n)
{
	rs = rs * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rs >> 33) % n;
}

static int pick_live(bool writable)
{
	int cand[MAXDEV], n = 0;

	for (int i = 0; i < MAXDEV; i++)
		if (model[i].live && (!writable || !model[i].ro))
			cand[n++] = i;
	return n ? cand[rnd((uint32_t)n)] : -1;
}

static int free_slot(void)
{
	for (int i = 0; i < MAXDEV; i++)
		if (!model[i].live)
			return i;
	return -1;
}

static void verify_all(struct fixture *f, int step)
{
	unsigned char buf[DEVSZ];

	for (int i = 0; i < MAXDEV; i++) {
		struct volume *v;
		struct mdev *m = &model[i];
		if (!m->live)
			continue;
		if (pool_volume_open(f->p, m->name, &v))
			fail_msg("step %d: %s missing", step, m->name);
		ssize_t n = pool_read(v, buf, DEVSZ, 0);
		pool_volume_close(v);
		assert_int_equal(n, (ssize_t)m->size);
		for (uint64_t b = 0; b < m->size; b++)
			if (buf[b] != m->data[b])
				fail_msg("step %d: %s byte %llu = %u, model %u", step, m->name,
					 (unsigned long long)b, buf[b], m->data[b]);
	}
}

static void verify_space(struct fixture *f, int step)
{
	struct pool_device_info *devs;
	size_t nr;
	uint64_t exclusive = 0;

	fx_check_clean(f);
	/* every block is mapped by someone: used = distinct mapped blocks.  With
	 * sharing, distinct = sum(exclusive) + shared blocks counted once, which
	 * check already proves; here: used >= exclusive sum and <= mapped sum. */
	assert_int_equal(pool_list(f->p, true, &devs, &nr), 0);
	uint64_t mapped = 0;
	for (size_t i = 0; i < nr; i++) {
		exclusive += devs[i].exclusive_blocks;
		mapped += devs[i].mapped_blocks;
	}
	free(devs);
	uint64_t used = fx_used(f);
	if (used < exclusive || used > mapped)
		fail_msg("step %d: used %llu outside [%llu, %llu]", step, (unsigned long long)used,
			 (unsigned long long)exclusive, (unsigned long long)mapped);
}

/* pool_clone_range of a random range, mostly block aligned. */
static void clone_op(struct fixture *f)
{
	int i = pick_live(false), j = pick_live(true);
	uint64_t soff = rnd(MAXBLK) * BS, doff = rnd(MAXBLK) * BS, len = rnd(4 * BS + 1), done;

	if (i < 0 || j < 0)
		return;
	if (rnd(4) == 0) {
		soff += rnd(BS);
		doff += rnd(2) ? rnd(BS) : 0;
	}
	if (doff + len > DEVSZ)
		len = DEVSZ - doff;
	struct volume *s = vol_get(f, i), *d = vol_get(f, j);
	uint64_t clip = soff >= model[i].size ? 0 : model[i].size - soff;
	uint64_t n = len < clip ? len : clip;
	int rc = pool_clone_range(s, soff, d, doff, len, &done);
	if (i == j && n && soff < doff + n && doff < soff + n) {
		assert_int_equal(rc, -EINVAL);
	} else {
		assert_int_equal(rc, 0);
		assert_int_equal(done, n);
		memmove(model[j].data + doff, model[i].data + soff, n);
		if (n && doff + n > model[j].size)
			model[j].size = doff + n;
	}
	vol_put(j, d);
	vol_put(i, s);
}

static void run(uint64_t seed, int steps)
{
	struct fixture *f = fx_new(BS, 1024);
	int nsets = 0, nnames = 0;
	char name[64];

	rs = seed;
	memset(model, 0, sizeof(model));
	for (int step = 0; step < steps; step++) {
		uint32_t r = rnd(100);
		int i, j;

		if (r < 8 || pick_live(true) < 0) {
			/* create */
			if ((i = free_slot()) < 0)
				continue;
			snprintf(name, sizeof(name), "d%d", nnames++);
			uint64_t size = (1 + rnd(MAXBLK)) * BS - (rnd(2) ? rnd(BS) : 0);
			fx_create(f, name, size);
			memset(&model[i], 0, sizeof(model[i]));
			model[i].live = true;
			model[i].size = size;
			snprintf(model[i].name, sizeof(model[i].name), "%s", name);
		} else if (r < 40) {
			/* write */
			i = pick_live(true);
			uint64_t off = rnd((uint32_t)model[i].size);
			size_t len = 1 + rnd(r < 25 ? 2 * BS : 600);
			unsigned char buf[3 * BS];
			if (off + len > model[i].size)
				len = (size_t)(model[i].size - off);
			memset(buf, (int)(1 + rnd(255)), len);
			struct volume *v = vol_get(f, i);
			assert_int_equal(pool_write(v, buf, len, off), (ssize_t)len);
			vol_put(i, v);
			memcpy(model[i].data + off, buf, len);
		} else if (r < 50) {
			/* discard or zero-range */
			i = pick_live(true);
			uint64_t off = rnd((uint32_t)model[i].size);
			uint64_t len = 1 + rnd(3 * BS);
			struct volume *v = vol_get(f, i);
			assert_int_equal(
			    r < 45 ? pool_discard(v, off, len) : pool_zero_range(v, off, len), 0);
			vol_put(i, v);
			if (off + len > model[i].size)
				len = model[i].size - off;
			memset(model[i].data + off, 0, len);
		} else if (r < 60) {
			/* writable snapshot of anything live (sets' members included) */
			i = pick_live(false);
			if ((j = free_slot()) < 0)
				continue;
			snprintf(name, sizeof(name), "w%d", nnames++);
			fx_snap(f, model[i].name, name);
			model[j] = model[i];
			model[j].ro = false;
			snprintf(model[j].name, sizeof(model[j].name), "%s", name);
		} else if (r < 66) {
			/* snapshot set of every top-level device */
			int n = 0;
			for (i = 0; i < MAXDEV; i++)
				n += model[i].live && !strchr(model[i].name, '/');
			int nfree = 0;
			for (i = 0; i < MAXDEV; i++)
				nfree += !model[i].live;
			if (n > nfree)
				continue;
			snprintf(name, sizeof(name), "set%d", nsets++);
			if (pool_snapshot_set(f->p, name, f->msg, sizeof(f->msg)))
				fail_msg("set: %s", f->msg);
			/* members made in this loop have a '/' and are skipped */
			for (i = 0; i < MAXDEV; i++) {
				char member[sizeof(model[i].name)];
				if (!model[i].live || strchr(model[i].name, '/') || model[i].ro)
					continue;
				snprintf(member, sizeof(member), "%.20s/%.40s", name,
					 model[i].name);
				j = free_slot();
				model[j] = model[i];
				model[j].ro = true;
				memcpy(model[j].name, member, sizeof(member));
			}
		} else if (r < 80) {
			/* delete anything (set members through their whole set) */
			i = pick_live(false);
			char *slash = strchr(model[i].name, '/');
			if (slash) {
				snprintf(name, sizeof(name), "%.*s", (int)(slash - model[i].name),
					 model[i].name);
				if (pool_delete_set(f->p, name, f->msg, sizeof(f->msg)))
					fail_msg("delete set %s: %s", name, f->msg);
				size_t l = strlen(name);
				for (j = 0; j < MAXDEV; j++)
					if (model[j].live && !strncmp(model[j].name, name, l) &&
					    model[j].name[l] == '/') {
						model[j].live = false;
						if (held[j])
							pool_volume_close(held[j]);
						held[j] = NULL;
					}
			} else {
				fx_delete(f, model[i].name);
				model[i].live = false;
				/* deleted while open: the handle still reads the old data */
				if (held[i]) {
					unsigned char b[DEVSZ];
					assert_int_equal(pool_read(held[i], b, model[i].size, 0),
							 (ssize_t)model[i].size);
					assert_memory_equal(b, model[i].data, model[i].size);
					pool_volume_close(held[i]);
				}
				held[i] = NULL;
			}
		} else if (r < 85) {
			/* resize */
			i = pick_live(true);
			if (strchr(model[i].name, '/'))
				continue;
			uint64_t size = rnd(MAXBLK * BS + 1);
			if (pool_resize(f->p, model[i].name, size, f->msg, sizeof(f->msg)))
				fail_msg("resize: %s", f->msg);
			if (size < model[i].size)
				memset(model[i].data + size, 0, DEVSZ - size);
			model[i].size = size;
		} else if (r < 88) {
			/* rename */
			i = pick_live(true);
			if (strchr(model[i].name, '/'))
				continue;
			snprintf(name, sizeof(name), "r%d", nnames++);
			if (pool_rename(f->p, model[i].name, name, f->msg, sizeof(f->msg)))
				fail_msg("rename: %s", f->msg);
			snprintf(model[i].name, sizeof(model[i].name), "%s", name);
		} else if (r < 92) {
			clone_op(f);
		} else if (r < 95) {
			assert_int_equal(pool_sync(f->p), 0);
		} else {
			release_all();
			fx_reopen(f);
		}
		if (step % 7 == 0)
			hold_some(f);
		verify_all(f, step);
		if (step % 10 == 9)
			verify_space(f, step);
	}
	release_all();
	verify_space(f, steps);
	fx_free(f);
}

static void test_random_operations_match_model(void **state)
{
	for (uint64_t seed = 1; seed <= 12; seed++)
		run(seed, 300);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_random_operations_match_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
