/* SPDX-License-Identifier: MIT */
/*
 * test_clone.c - pool_clone_range (copy_file_range) and the clone counts of
 * the blocks it shares (issue 14): the clone takes no new block; a write to
 * either side copies on write and the other side keeps reading the old
 * data; discard and delete of either side free a shared block only when the
 * last map row naming it goes, with the space accounting exact; a snapshot
 * of a clone; unaligned edges and holes; the refusals; a power cut at every
 * commit step of a clone and of its overwrite; check clean after each, and
 * check finding (and --repair fixing) a wrong clone count.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "thinfs/interop.h"
#include "thinfs/pool_test.h"
#include "unit_helpers.h"
#include "engine/dataio.h"
#include "engine/refs.h"

#define BS 4096ull
#define NBLK 256
#define NR 8 /* blocks cloned */

static struct fixture *with_ab(void)
{
	struct fixture *f = fx_new(BS, NBLK);

	fx_create(f, "a", NR * BS);
	fx_create(f, "b", NR * BS);
	for (unsigned i = 0; i < NR; i++)
		fx_fill(f, "a", i * BS, BS, 'a' + (int)i);
	fx_fill(f, "b", 0, NR * BS, 'B');
	assert_int_equal(pool_commit(f->p), 0);
	return f;
}

/* Clone [soff, soff+len) of src into dst at doff; assert it all went. */
static void do_clone(struct fixture *f, const char *src, uint64_t soff, const char *dst,
		     uint64_t doff, uint64_t len)
{
	struct volume *s, *d;
	uint64_t done = 0;

	assert_int_equal(pool_volume_open(f->p, src, &s), 0);
	assert_int_equal(pool_volume_open(f->p, dst, &d), 0);
	assert_int_equal(pool_clone_range(s, soff, d, doff, len, &done), 0);
	assert_int_equal(done, len);
	pool_volume_close(d);
	pool_volume_close(s);
}

static uint64_t dblock_of(struct fixture *f, const char *dev, uint64_t vb)
{
	struct volume *v;
	uint64_t d = UINT64_MAX;

	assert_int_equal(pool_volume_open(f->p, dev, &v), 0);
	if (pool_test_dblock(v, vb, &d))
		d = UINT64_MAX;
	pool_volume_close(v);
	return d;
}

static void expect_a_pattern(struct fixture *f, const char *dev)
{
	for (unsigned i = 0; i < NR; i++)
		fx_expect(f, dev, i * BS, BS, 'a' + (int)i);
}

static void test_clone_shares_blocks_when_aligned(void **state)
{
	struct fixture *f = with_ab();
	uint64_t used = fx_used(f);

	do_clone(f, "a", 0, "b", 0, NR * BS);
	assert_int_equal(pool_commit(f->p), 0);
	/* b's own blocks went back, and nothing new was taken */
	assert_int_equal(fx_used(f), used - NR);
	for (unsigned i = 0; i < NR; i++)
		assert_int_equal(dblock_of(f, "b", i), dblock_of(f, "a", i));
	expect_a_pattern(f, "b");
	fx_check_clean(f);
	fx_reopen(f);
	expect_a_pattern(f, "b");
	expect_a_pattern(f, "a");
	fx_check_clean(f);
	fx_free(f);
}

/* A write to one side copies; the other reads the old data. */
static void overwrite_side(const char *written, const char *other)
{
	struct fixture *f = with_ab();
	uint64_t used;

	do_clone(f, "a", 0, "b", 0, NR * BS);
	assert_int_equal(pool_commit(f->p), 0);
	used = fx_used(f);
	fx_fill(f, written, 2 * BS + 100, 10, 'Z'); /* partial: copy on write */
	fx_fill(f, written, 3 * BS, BS, 'W');	    /* whole */
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(fx_used(f), used + 2);
	expect_a_pattern(f, other);
	fx_expect(f, written, 2 * BS + 100, 10, 'Z');
	fx_expect(f, written, 2 * BS, 100, 'c');
	fx_expect(f, written, 3 * BS, BS, 'W');
	assert_int_not_equal(dblock_of(f, "a", 2), dblock_of(f, "b", 2));
	/* writing again in place: the block is its own now */
	fx_fill(f, written, 3 * BS, BS, 'V');
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(fx_used(f), used + 2);
	fx_check_clean(f);
	fx_reopen(f);
	expect_a_pattern(f, other);
	fx_expect(f, written, 3 * BS, BS, 'V');
	fx_check_clean(f);
	fx_free(f);
}

static void test_clone_overwrite_source_keeps_clone(void **state)
{
	overwrite_side("a", "b");
}

static void test_clone_overwrite_clone_keeps_source(void **state)
{
	overwrite_side("b", "a");
}

/* Discard one side, then the other: freed with the last mapping. */
static void discard_sides(const char *first, const char *second)
{
	struct fixture *f = with_ab();
	struct volume *v;
	uint64_t used;

	do_clone(f, "a", 0, "b", 0, NR * BS);
	assert_int_equal(pool_commit(f->p), 0);
	used = fx_used(f);
	assert_int_equal(pool_volume_open(f->p, first, &v), 0);
	assert_int_equal(pool_discard(v, 0, NR * BS), 0);
	pool_volume_close(v);
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(fx_used(f), used);
	expect_a_pattern(f, second);
	fx_expect(f, first, 0, NR * BS, 0);
	fx_check_clean(f);
	assert_int_equal(pool_volume_open(f->p, second, &v), 0);
	assert_int_equal(pool_discard(v, 0, 4 * BS), 0);
	pool_volume_close(v);
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(fx_used(f), used - 4);
	fx_check_clean(f);
	fx_reopen(f);
	fx_expect(f, second, 4 * BS, BS, 'e');
	fx_check_clean(f);
	fx_free(f);
}

static void test_clone_discard_source_then_clone(void **state)
{
	discard_sides("a", "b");
}

static void test_clone_discard_clone_then_source(void **state)
{
	discard_sides("b", "a");
}

/* Delete one side, then the other: space accounting exact. */
static void delete_sides(const char *first, const char *second)
{
	struct fixture *f = with_ab();
	uint64_t used;

	do_clone(f, "a", 0, "b", 0, NR * BS);
	assert_int_equal(pool_commit(f->p), 0);
	used = fx_used(f);
	assert_int_equal(used, NR);
	fx_delete(f, first);
	assert_int_equal(fx_used(f), used);
	expect_a_pattern(f, second);
	fx_check_clean(f);
	fx_reopen(f);
	expect_a_pattern(f, second);
	/* the survivor owns them now: a write copies once more, then frees */
	fx_fill(f, second, 0, BS, 'Q');
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(fx_used(f), used);
	fx_delete(f, second);
	assert_int_equal(fx_used(f), 0);
	fx_check_clean(f);
	fx_free(f);
}

static void test_clone_delete_source_then_clone(void **state)
{
	delete_sides("a", "b");
}

static void test_clone_delete_clone_then_source(void **state)
{
	delete_sides("b", "a");
}

/* A snapshot of the clone, and a clone of a snapshot's block. */
static void test_clone_snapshot_of_clone(void **state)
{
	struct fixture *f = with_ab();

	do_clone(f, "a", 0, "b", 0, NR * BS);
	fx_snap(f, "b", "s");
	fx_fill(f, "b", 0, BS, 'X');
	fx_fill(f, "a", BS, BS, 'Y');
	assert_int_equal(pool_commit(f->p), 0);
	expect_a_pattern(f, "s");
	fx_expect(f, "b", 0, BS, 'X');
	fx_expect(f, "b", BS, BS, 'b');
	fx_check_clean(f);
	/* a clone out of the snapshot (its blocks live in a frozen layer) */
	fx_create(f, "c", NR * BS);
	do_clone(f, "s", 0, "c", 0, NR * BS);
	fx_delete(f, "a");
	fx_delete(f, "b");
	fx_check_clean(f);
	expect_a_pattern(f, "s");
	expect_a_pattern(f, "c");
	fx_delete(f, "s");
	fx_check_clean(f);
	expect_a_pattern(f, "c");
	assert_int_equal(fx_used(f), NR);
	fx_delete(f, "c");
	assert_int_equal(fx_used(f), 0);
	fx_check_clean(f);
	fx_free(f);
}

/* Unaligned edges copied, a hole in the source makes a hole, the clone
 * grows the destination, and a clone within one volume. */
static void test_clone_edges_holes_and_growth(void **state)
{
	struct fixture *f = with_ab();
	struct volume *v;
	uint64_t used;

	assert_int_equal(pool_volume_open(f->p, "a", &v), 0);
	assert_int_equal(pool_discard(v, 4 * BS, BS), 0); /* a hole at vblock 4 */
	pool_volume_close(v);
	fx_create(f, "c", 0);
	assert_int_equal(pool_commit(f->p), 0);
	used = fx_used(f);
	/* from byte 100 of vblock 1 to byte 200 of vblock 6 */
	do_clone(f, "a", BS + 100, "c", BS + 100, 5 * BS + 100);
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(fx_used(f), used + 2); /* the two edges */
	assert_int_equal(fx_mapped(f, "c"), 5);
	fx_expect(f, "c", 0, BS + 100, 0);
	fx_expect(f, "c", BS + 100, BS - 100, 'b');
	fx_expect(f, "c", 2 * BS, BS, 'c');
	fx_expect(f, "c", 4 * BS, BS, 0);
	fx_expect(f, "c", 6 * BS, 200, 'g');
	assert_int_equal(dblock_of(f, "c", 2), dblock_of(f, "a", 2));
	/* a hole over b's data unmaps it */
	do_clone(f, "a", 4 * BS, "b", 4 * BS, BS);
	fx_expect(f, "b", 4 * BS, BS, 0);
	/* unaligned offsets: all copied */
	do_clone(f, "a", 0, "b", 10, 100);
	fx_expect(f, "b", 10, 100, 'a');
	/* a hole copied (unaligned) stays a hole, and still grows the file */
	fx_create(f, "h", 0);
	do_clone(f, "a", 4 * BS + 10, "h", 3 * BS + 20, 100);
	assert_int_equal(fx_mapped(f, "h"), 0);
	fx_expect(f, "h", 0, 3 * BS + 120, 0);
	/* within one volume */
	do_clone(f, "b", 0, "b", 6 * BS, BS);
	assert_int_equal(dblock_of(f, "b", 0), dblock_of(f, "b", 6));
	fx_fill(f, "b", 6 * BS + 300, 1, '!');
	fx_expect(f, "b", 300, 1, 'B');
	fx_check_clean(f);
	fx_free(f);
}

static void test_clone_refusals(void **state)
{
	struct fixture *f = with_ab();
	struct volume *a, *s;
	uint64_t done = 0;

	assert_int_equal(pool_snapshot_set(f->p, "set", NULL, 0), 0);
	assert_int_equal(pool_volume_open(f->p, "a", &a), 0);
	assert_int_equal(pool_volume_open(f->p, "set/b", &s), 0);
	assert_int_equal(pool_clone_range(a, 0, s, 0, BS, &done), -EROFS);
	assert_int_equal(pool_clone_range(a, 0, a, BS, 2 * BS, &done), -EINVAL);
	/* from a read-only member is fine; past the source's end: nothing */
	assert_int_equal(pool_clone_range(s, 0, a, 0, BS, &done), 0);
	assert_int_equal(done, BS);
	assert_int_equal(pool_clone_range(s, NR * BS, a, 0, BS, &done), 0);
	assert_int_equal(done, 0);
	pool_volume_close(s);
	pool_volume_close(a);
	fx_expect(f, "a", 0, BS, 'B');
	fx_check_clean(f);
	fx_free(f);
}

/* thinctl list: cloned blocks are shared, a copy on write exclusive. */
static void test_clone_list_counts_shared(void **state)
{
	struct fixture *f = with_ab();
	struct pool_device_info *devs;
	size_t n;

	do_clone(f, "a", 0, "b", 0, NR * BS);
	fx_fill(f, "b", 0, BS, 'X');
	assert_int_equal(pool_list(f->p, true, &devs, &n), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(devs[i].mapped_blocks, NR);
		assert_int_equal(devs[i].exclusive_blocks, 1);
		assert_int_equal(devs[i].shared_blocks, NR - 1);
	}
	free(devs);
	fx_free(f);
}

/* Background reclaim of a deleted side, and a rollback over a clone. */
static void test_clone_reclaim_and_rollback(void **state)
{
	struct fixture *f = with_ab();

	pool_set_background_reclaim(f->p, true);
	do_clone(f, "a", 0, "b", 0, NR * BS);
	fx_snap(f, "b", "s");
	fx_fill(f, "b", 0, BS, 'X');
	if (pool_rollback(f->p, "b", "s", f->msg, sizeof(f->msg)))
		fail_msg("rollback: %s", f->msg);
	for (int i = 0; i < 100 && pool_reclaim_pending(f->p); i++)
		assert_int_equal(pool_reclaim_step(f->p), 0);
	fx_check_clean(f);
	expect_a_pattern(f, "b");
	fx_delete(f, "a");
	for (int i = 0; i < 100 && pool_reclaim_pending(f->p); i++)
		assert_int_equal(pool_reclaim_step(f->p), 0);
	assert_false(pool_reclaim_pending(f->p));
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(fx_used(f), NR);
	expect_a_pattern(f, "b");
	expect_a_pattern(f, "s");
	fx_check_clean(f);
	fx_delete(f, "s");
	fx_delete(f, "b");
	for (int i = 0; i < 100 && pool_reclaim_pending(f->p); i++)
		assert_int_equal(pool_reclaim_step(f->p), 0);
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(fx_used(f), 0);
	fx_check_clean(f);
	fx_free(f);
}

/* Clones racing with writes to both sides and with commits: every block of
 * each side reads whole (one writer's byte or the other's), check clean. */
struct racer {
	struct fixture *f;
	const char *dev;
	int c;
};

static void *race_writer(void *arg)
{
	struct racer *r = arg;
	struct volume *v;
	char buf[BS];

	assert_int_equal(pool_volume_open(r->f->p, r->dev, &v), 0);
	for (int i = 0; i < 400; i++) {
		memset(buf, r->c, sizeof(buf));
		assert_int_equal(pool_write(v, buf, BS, (uint64_t)(i % NR) * BS), (ssize_t)BS);
		if (i % 50 == 0)
			assert_int_equal(pool_sync(r->f->p), 0);
	}
	pool_volume_close(v);
	return NULL;
}

static void test_clone_races_with_writes(void **state)
{
	struct fixture *f = with_ab();
	struct racer ra = {f, "a", 'P'}, rb = {f, "b", 'Q'};
	struct volume *a, *b;
	pthread_t ta, tb;
	uint64_t done;

	assert_int_equal(pool_volume_open(f->p, "a", &a), 0);
	assert_int_equal(pool_volume_open(f->p, "b", &b), 0);
	assert_int_equal(pthread_create(&ta, NULL, race_writer, &ra), 0);
	assert_int_equal(pthread_create(&tb, NULL, race_writer, &rb), 0);
	for (int i = 0; i < 200; i++) {
		assert_int_equal(i % 2 ? pool_clone_range(a, 0, b, 0, NR * BS, &done)
				       : pool_clone_range(b, 0, a, 0, NR * BS, &done),
				 0);
		assert_int_equal(done, NR * BS);
	}
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	pool_volume_close(b);
	pool_volume_close(a);
	for (unsigned i = 0; i < NR; i++) {
		unsigned char c[2][BS];
		struct volume *v;
		for (int k = 0; k < 2; k++) {
			assert_int_equal(pool_volume_open(f->p, k ? "b" : "a", &v), 0);
			assert_int_equal(pool_read(v, c[k], BS, i * BS), (ssize_t)BS);
			pool_volume_close(v);
			assert_true(c[k][0] == 'P' || c[k][0] == 'Q');
			for (size_t j = 1; j < BS; j++)
				assert_int_equal(c[k][j], c[k][0]);
		}
	}
	fx_check_clean(f);
	fx_reopen(f);
	fx_check_clean(f);
	fx_free(f);
}

/* ---- delta, send and receive stay exact ---- */

static char *delta_of(struct fixture *f, const char *a, const char *b)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mf = open_memstream(&buf, &len);

	assert_non_null(mf);
	if (pool_delta(f->p, a, b, POOL_DELTA_RANGES, mf, f->msg, sizeof(f->msg)))
		fail_msg("delta: %s", f->msg);
	fclose(mf);
	return buf;
}

static void send_to(struct fixture *from, const char *dev, const char *base, struct fixture *to,
		    const char *name)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mf = open_memstream(&buf, &len);

	assert_non_null(mf);
	if (pool_send(from->p, dev, base, mf, from->msg, sizeof(from->msg)))
		fail_msg("send %s: %s", dev, from->msg);
	fclose(mf);
	mf = fmemopen(buf, len, "r");
	if (pool_receive(to->p, name, mf, to->msg, sizeof(to->msg)))
		fail_msg("receive %s: %s", name, to->msg);
	fclose(mf);
	free(buf);
}

static void test_clone_delta_send_receive_exact(void **state)
{
	struct fixture *f = with_ab(), *g = fx_new(BS, NBLK);
	char *d;

	do_clone(f, "a", 0, "b", 0, NR * BS);
	assert_int_equal(pool_commit(f->p), 0);
	d = delta_of(f, "a", "b");
	assert_string_equal(d, ""); /* the same blocks: no difference */
	free(d);
	fx_fill(f, "b", 2 * BS, BS, 'X');
	assert_int_equal(pool_commit(f->p), 0);
	d = delta_of(f, "a", "b");
	assert_non_null(strstr(d, "8192 4096"));
	free(d);
	/* full, then b incremental from a: the clone arrives as plain data */
	send_to(f, "a", NULL, g, "a");
	send_to(f, "b", "a", g, "b");
	expect_a_pattern(g, "a");
	fx_expect(g, "b", 2 * BS, BS, 'X');
	fx_expect(g, "b", 3 * BS, BS, 'd');
	fx_check_clean(g);
	fx_check_clean(f);
	fx_free(g);
	fx_free(f);
}

/* ---- check ---- */

static int run_check(struct fixture *f, bool repair, const char *expect)
{
	char *out = NULL;
	size_t len = 0;
	FILE *mf = open_memstream(&out, &len);
	int rc = pool_check(f->pool, repair, mf, f->msg, sizeof(f->msg));

	fclose(mf);
	if (expect && (!out || !strstr(out, expect)))
		fail_msg("check output lacks '%s': %s", expect, out ? out : "");
	free(out);
	return rc;
}

static void test_clone_check_finds_wrong_count(void **state)
{
	struct fixture *f = with_ab();

	do_clone(f, "a", 0, "b", 0, NR * BS);
	assert_int_equal(pool_close(f->p), 0);
	f->p = NULL;
	fx_sql(f->pool, "UPDATE refs SET count = 3 WHERE rowid = (SELECT min(rowid) FROM refs)");
	assert_int_equal(run_check(f, false, "clone count of 3 but 2 map rows"), 1);
	assert_int_equal(run_check(f, true, NULL), 0);
	assert_int_equal(run_check(f, false, NULL), 0);
	/* a count that went missing: the block is mapped twice, copied */
	fx_sql(f->pool, "DELETE FROM refs WHERE rowid = (SELECT min(rowid) FROM refs)");
	assert_int_equal(run_check(f, false, "mapped twice"), 1);
	assert_int_equal(run_check(f, true, NULL), 0);
	/* a count for a block one row names */
	fx_sql(f->pool, "INSERT INTO refs(dblock, count) SELECT dblock, 2 FROM map "
			"WHERE dblock NOT IN (SELECT dblock FROM refs) LIMIT 1");
	assert_int_equal(run_check(f, false, "but 1 map rows"), 1);
	assert_int_equal(run_check(f, true, NULL), 0);
	if (pool_open(f->pool, 0, "unit test", &f->p, f->msg, sizeof(f->msg)))
		fail_msg("open: %s", f->msg);
	expect_a_pattern(f, "a");
	expect_a_pattern(f, "b");
	fx_check_clean(f);
	fx_free(f);
}

/* ---- thin_dump XML: a block mapped by several devices, natively ---- */

static char *dump_of(struct fixture *f)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mf = open_memstream(&buf, &len);

	assert_non_null(mf);
	if (pool_dump(f->p, mf, f->msg, sizeof(f->msg)))
		fail_msg("dump: %s", f->msg);
	fclose(mf);
	return buf;
}

/* The dump without its superblock line (the uuid differs). */
static const char *after_superblock(const char *xml)
{
	const char *nl = strchr(xml, '\n');

	return nl ? nl : xml;
}

static void test_clone_dump_restore_keeps_sharing(void **state)
{
	struct fixture *f = with_ab(), *g = calloc(1, sizeof(*g));
	char cmd[512], *xml, *xml2;
	FILE *in;

	do_clone(f, "a", 0, "b", 0, NR * BS);	  /* two trees, one vblock */
	do_clone(f, "a", 0, "a", 5 * BS, 2 * BS); /* one device, two vblocks */
	assert_int_equal(pool_snapshot_set(f->p, "set", NULL, 0), 0);
	fx_create(f, "c", NR * BS);
	do_clone(f, "set/a", 2 * BS, "c", 3 * BS, BS); /* from a frozen layer */
	fx_check_clean(f);
	xml = dump_of(f);
	assert_int_equal(pool_close(f->p), 0);
	f->p = NULL;
	assert_non_null(g);
	snprintf(g->dir, sizeof(g->dir), "%s", f->dir);
	snprintf(g->pool, sizeof(g->pool), "%s/restored", f->dir);
	snprintf(cmd, sizeof(cmd), "cp '%s/data' '%s/image'", f->pool, f->dir);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s/image", f->dir);
	in = fmemopen(xml, strlen(xml), "r");
	if (pool_restore(g->pool, in, cmd, g->msg, sizeof(g->msg)))
		fail_msg("restore: %s", g->msg);
	fclose(in);
	if (pool_open(g->pool, 0, "unit test", &g->p, g->msg, sizeof(g->msg)))
		fail_msg("open: %s", g->msg);
	fx_check_clean(g);
	xml2 = dump_of(g);
	assert_string_equal(after_superblock(xml), after_superblock(xml2));
	expect_a_pattern(g, "b");
	for (unsigned i = 0; i < NR; i++) /* vblocks 5, 6 cloned from 0, 1 */
		fx_expect(g, "set/a", i * BS, BS,
			  i == 5 || i == 6 ? 'a' + (int)i - 5 : 'a' + (int)i);
	fx_expect(g, "a", 5 * BS, BS, 'a');
	fx_expect(g, "c", 3 * BS, BS, 'c');
	/* the counts came back: writes copy, deletes free only the last */
	fx_fill(g, "b", 0, BS, 'X');
	fx_delete(g, "a");
	fx_check_clean(g);
	fx_expect(g, "set/a", 0, BS, 'a');
	fx_expect(g, "c", 3 * BS, BS, 'c');
	pool_close(g->p);
	free(g);
	free(xml);
	free(xml2);
	fx_free(f);
}

/* A foreign dump mapping one data block at two vblocks (of two devices, or
 * of one): restored as clones (it was refused before clone counts). */
static const char *const clone_xml[] = {
    "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
    "nr_data_blocks=\"10\"><device dev_id=\"1\" mapped_blocks=\"1\" transaction=\"0\" "
    "creation_time=\"0\" snap_time=\"0\"><single_mapping origin_block=\"0\" data_block=\"3\" "
    "time=\"0\"/></device><device dev_id=\"2\" mapped_blocks=\"1\" transaction=\"0\" "
    "creation_time=\"0\" snap_time=\"0\"><single_mapping origin_block=\"4\" data_block=\"3\" "
    "time=\"0\"/></device></superblock>",
    "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
    "nr_data_blocks=\"10\"><device dev_id=\"1\" mapped_blocks=\"2\" transaction=\"0\" "
    "creation_time=\"0\" snap_time=\"0\"><single_mapping origin_block=\"0\" data_block=\"3\" "
    "time=\"0\"/><single_mapping origin_block=\"1\" data_block=\"3\" time=\"0\"/></device>"
    "</superblock>",
};

static void test_clone_restore_foreign_block_at_two_vblocks(void **state)
{
	for (size_t i = 0; i < sizeof(clone_xml) / sizeof(clone_xml[0]); i++) {
		struct fixture *f = fx_new(BS, NBLK);
		char dir[80];
		FILE *in = fmemopen((void *)clone_xml[i], strlen(clone_xml[i]), "r");

		snprintf(dir, sizeof(dir), "%s/restored", f->dir);
		if (pool_restore(dir, in, NULL, f->msg, sizeof(f->msg)))
			fail_msg("restore %zu: %s", i, f->msg);
		fclose(in);
		pool_close(f->p);
		snprintf(f->pool, sizeof(f->pool), "%s", dir);
		if (pool_open(f->pool, 0, "unit test", &f->p, f->msg, sizeof(f->msg)))
			fail_msg("open: %s", f->msg);
		fx_check_clean(f);
		assert_int_equal(fx_used(f), 1);
		fx_fill(f, "dev1", 0, 10, 'x'); /* copies on write */
		assert_int_equal(fx_used(f), 2);
		fx_check_clean(f);
		fx_free(f);
	}
}

/* ---- the in-memory table (refs.c) against a plain array ---- */

static void count_entry(void *arg, uint64_t dblock, uint32_t count)
{
	(void)dblock;
	(void)count;
	(*(size_t *)arg)++;
}

static void test_refs_table_matches_model(void **state)
{
	enum { KEYS = 3000 };
	static uint32_t model[KEYS];
	struct refs r;
	uint64_t rs = 7;

	refs_init(&r);
	memset(model, 0, sizeof(model));
	for (int step = 0; step < 200000; step++) {
		rs = rs * 6364136223846793005ull + 1442695040888963407ull;
		/* keys spread and clustered: some collide in the hash */
		uint64_t k = (rs >> 33) % KEYS, key = k * (k % 3 ? 1 : 4096);
		if ((rs >> 20) % 3) {
			assert_int_equal(refs_inc(&r, key), 0);
			model[k] = model[k] ? model[k] + 1 : 2;
		} else {
			int still = refs_dec(&r, key);
			assert_int_equal(still, model[k] >= 2);
			model[k] = model[k] > 2 ? model[k] - 1 : 0;
		}
		if (step % 20000 == 0)
			r.nr_dirty = 0; /* a save drained it */
	}
	size_t n = 0, live = 0;
	for (uint64_t k = 0; k < KEYS; k++) {
		assert_int_equal(refs_get(&r, k * (k % 3 ? 1 : 4096)), model[k]);
		live += model[k] != 0;
	}
	refs_foreach(&r, count_entry, &n);
	assert_int_equal(n, live);
	assert_int_equal(r.nr, live);
	refs_destroy(&r);
}

/* ---- a power cut at every commit step ---- */

struct cut_shm {
	int points, crash_at, stage;
};
static struct cut_shm *shm;

static int cut_hook(void *arg, const char *point)
{
	struct fixture *f = arg;

	shm->points++;
	if (shm->crash_at && shm->points == shm->crash_at) {
		dio_test_lose_unflushed(pool_test_dio(f->p));
		_exit(0);
	}
	return 0;
}

/* The child: clone, sync; overwrite a (copy on write), sync; delete b. */
static void cut_child(struct fixture *f)
{
	struct volume *a, *b;
	uint64_t done;
	char buf[BS];

	if (pool_open(f->pool, 0, "clone cut", &f->p, f->msg, sizeof(f->msg)))
		_exit(3);
	dio_test_track_unflushed(pool_test_dio(f->p), true);
	pool_test_set_crash_hook(f->p, cut_hook, f);
	if (pool_volume_open(f->p, "a", &a) || pool_volume_open(f->p, "b", &b))
		_exit(4);
	if (pool_clone_range(a, 0, b, 0, NR * BS, &done) || pool_sync(f->p))
		_exit(5);
	shm->stage = 1;
	memset(buf, 'Z', sizeof(buf));
	if (pool_write(a, buf, BS, 0) != (ssize_t)BS || pool_sync(f->p))
		_exit(6);
	shm->stage = 2;
	pool_volume_close(b);
	if (pool_delete(f->p, "b", NULL, 0))
		_exit(7);
	shm->stage = 3;
	pool_volume_close(a);
	pool_close(f->p);
	_exit(0);
}

/* After the cut: check clean, and each device reads a state it had. */
static void cut_verify(struct fixture *f, int stage)
{
	struct pool_device_info info;
	unsigned char c0, cb;
	struct volume *v;

	fx_check_clean(f);
	assert_int_equal(pool_volume_open(f->p, "a", &v), 0);
	assert_int_equal(pool_read(v, &c0, 1, 0), 1);
	pool_volume_close(v);
	assert_true(c0 == 'a' || (c0 == 'Z' && stage >= 1));
	for (unsigned i = 1; i < NR; i++)
		fx_expect(f, "a", i * BS, BS, 'a' + (int)i);
	if (pool_device_info(f->p, "b", &info)) {
		assert_true(stage >= 2); /* the delete */
		return;
	}
	assert_int_equal(pool_volume_open(f->p, "b", &v), 0);
	assert_int_equal(pool_read(v, &cb, 1, 0), 1);
	pool_volume_close(v);
	if (cb == 'B') {
		fx_expect(f, "b", 0, NR * BS, 'B'); /* before the clone, all of it */
	} else {
		expect_a_pattern(f, "b"); /* after it, all of it */
	}
}

static void test_clone_power_cut_at_every_commit_step(void **state)
{
	int cuts = 0;

	shm = mmap(NULL, sizeof(*shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(shm != MAP_FAILED);
	for (int at = 1;; at++) {
		struct fixture *f = with_ab();
		int status;
		pid_t pid;

		assert_int_equal(pool_close(f->p), 0);
		f->p = NULL;
		memset(shm, 0, sizeof(*shm));
		shm->crash_at = at;
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			cut_child(f);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		bool finished = shm->stage == 3;
		int stage = shm->stage;
		if (pool_open(f->pool, 0, "unit test", &f->p, f->msg, sizeof(f->msg)))
			fail_msg("reopen after cut %d: %s", at, f->msg);
		cut_verify(f, stage);
		fx_free(f);
		if (finished)
			break;
		cuts++;
	}
	fprintf(stderr, "%d power cuts verified\n", cuts);
	assert_true(cuts >= 10);
	munmap(shm, sizeof(*shm));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_clone_shares_blocks_when_aligned),
	    cmocka_unit_test(test_clone_overwrite_source_keeps_clone),
	    cmocka_unit_test(test_clone_overwrite_clone_keeps_source),
	    cmocka_unit_test(test_clone_discard_source_then_clone),
	    cmocka_unit_test(test_clone_discard_clone_then_source),
	    cmocka_unit_test(test_clone_delete_source_then_clone),
	    cmocka_unit_test(test_clone_delete_clone_then_source),
	    cmocka_unit_test(test_clone_snapshot_of_clone),
	    cmocka_unit_test(test_clone_edges_holes_and_growth),
	    cmocka_unit_test(test_clone_refusals),
	    cmocka_unit_test(test_clone_list_counts_shared),
	    cmocka_unit_test(test_clone_reclaim_and_rollback),
	    cmocka_unit_test(test_clone_delta_send_receive_exact),
	    cmocka_unit_test(test_clone_races_with_writes),
	    cmocka_unit_test(test_clone_check_finds_wrong_count),
	    cmocka_unit_test(test_clone_dump_restore_keeps_sharing),
	    cmocka_unit_test(test_clone_restore_foreign_block_at_two_vblocks),
	    cmocka_unit_test(test_refs_table_matches_model),
	    cmocka_unit_test(test_clone_power_cut_at_every_commit_step),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
