/* SPDX-License-Identifier: MIT */
/*
 * test_pool.c - the pool engine's behaviour: format and open checks, the data
 * path (provisioning, copy-on-write, discard, ENOSPC), snapshots and sets,
 * deletes, resize, and space accounting after every step (invariant 4:
 * pool_check must find nothing).
 */
#include <sys/wait.h>

#include "unit_helpers.h"
#include "engine/dataio.h"
#include "thinfs/pool_test.h"

#define BS 4096u
#define KB(x) ((x)*1024ull)

static void test_format_defaults(void **state)
{
	struct fixture *f = fx_new(0, 0);
	struct pool_status st;

	assert_int_equal(pool_status(f->p, &st), 0);
	assert_int_equal(st.block_size, 64 * 1024);
	assert_int_equal(st.nr_data_blocks, 16384); /* 1 GiB by default */
	assert_string_equal(st.mode, "rw");
	assert_string_equal(st.journal_mode, "wal");
	assert_int_equal(st.synchronous, 2);
	assert_int_equal(st.used_blocks, 0);
	fx_free(f);
}

static void test_format_rejects_bad_block_sizes(void **state)
{
	static const uint64_t bad[] = {1, 3000, 4095, 66048, 2048, 2ull << 30};
	char dir[] = "/tmp/thinfs-unit.XXXXXX", pool[64], msg[POOL_MSG_MAX];
	struct stat sb;

	assert_non_null(mkdtemp(dir));
	snprintf(pool, sizeof(pool), "%s/p", dir);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct pool_format_opts o = {.block_size = bad[i], .data_size = 1 << 20};
		assert_int_equal(pool_format(pool, &o, msg, sizeof(msg)), -EINVAL);
		assert_non_null(strstr(msg, "power of two from 4K to 1G"));
		assert_int_equal(stat(pool, &sb), -1);
	}
	fx_rmrf(dir);
}

static void test_format_refuses_existing_pool_without_force(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct pool_format_opts o = {.block_size = BS, .data_size = BS * 64};

	pool_close(f->p);
	f->p = NULL;
	assert_int_equal(pool_format(f->pool, &o, f->msg, sizeof(f->msg)), -EEXIST);
	assert_non_null(strstr(f->msg, "--force"));
	o.force = true;
	assert_int_equal(pool_format(f->pool, &o, f->msg, sizeof(f->msg)), 0);
	fx_free(f);
}

static void test_format_refuses_data_on_meta_db(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	char data[160], lnk[160];
	struct pool_format_opts o = {.block_size = BS, .data_size = BS * 64, .force = true};

	pool_close(f->p);
	f->p = NULL;
	snprintf(data, sizeof(data), "%s/meta.db", f->pool);
	o.data_path = data;
	assert_int_equal(pool_format(f->pool, &o, f->msg, sizeof(f->msg)), -EINVAL);
	assert_non_null(strstr(f->msg, "metadata database"));
	snprintf(lnk, sizeof(lnk), "%s/link", f->dir);
	assert_int_equal(symlink(data, lnk), 0);
	o.data_path = lnk;
	assert_int_equal(pool_format(f->pool, &o, f->msg, sizeof(f->msg)), -EINVAL);
	snprintf(lnk, sizeof(lnk), "%s/hard", f->dir);
	assert_int_equal(link(data, lnk), 0);
	o.data_path = lnk;
	assert_int_equal(pool_format(f->pool, &o, f->msg, sizeof(f->msg)), -EINVAL);
	fx_free(f);
}

static void test_open_refuses_second_writer(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct pool *p2;

	assert_int_equal(pool_open(f->pool, 0, "other", &p2, f->msg, sizeof(f->msg)), -EBUSY);
	assert_non_null(strstr(f->msg, "in use by unit test"));
	/* readers are welcome */
	assert_int_equal(pool_open(f->pool, POOL_OPEN_RDONLY, NULL, &p2, f->msg, sizeof(f->msg)),
			 0);
	pool_close(p2);
	fx_free(f);
}

static void test_names_are_validated(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	char long_name[300];

	memset(long_name, 'a', 256);
	long_name[256] = 0;
	assert_int_equal(pool_create(f->p, "", 0, f->msg, sizeof(f->msg)), -EINVAL);
	assert_int_equal(pool_create(f->p, ".", 0, f->msg, sizeof(f->msg)), -EINVAL);
	assert_int_equal(pool_create(f->p, "..", 0, f->msg, sizeof(f->msg)), -EINVAL);
	assert_int_equal(pool_create(f->p, ".x", 0, f->msg, sizeof(f->msg)), -EINVAL);
	assert_int_equal(pool_create(f->p, "a/b", 0, f->msg, sizeof(f->msg)), -EINVAL);
	assert_int_equal(pool_create(f->p, long_name, 0, f->msg, sizeof(f->msg)), -EINVAL);
	long_name[255] = 0;
	fx_create(f, long_name, 0);
	fx_create(f, "a'b; DROP TABLE map;--", BS);
	assert_int_equal(pool_create(f->p, "a'b; DROP TABLE map;--", 0, f->msg, sizeof(f->msg)),
			 -EEXIST);
	fx_reopen(f);
	assert_int_equal(fx_mapped(f, "a'b; DROP TABLE map;--"), 0);
	fx_check_clean(f);
	fx_free(f);
}

static void test_unmapped_reads_zero_and_write_reads_back(void **state)
{
	struct fixture *f = fx_new(BS, 64);

	fx_create(f, "v", 16 * BS);
	fx_expect(f, "v", 0, 16 * BS, 0);
	fx_fill(f, "v", BS + 100, 200, 0xab);
	fx_expect(f, "v", BS, 100, 0); /* the rest of a new block reads zero */
	fx_expect(f, "v", BS + 100, 200, 0xab);
	fx_expect(f, "v", BS + 300, BS - 300, 0);
	assert_int_equal(fx_mapped(f, "v"), 1);
	assert_int_equal(fx_used(f), 1);
	fx_reopen(f);
	fx_expect(f, "v", BS + 100, 200, 0xab);
	fx_check_clean(f);
	fx_free(f);
}

static uint64_t vol_size(struct volume *v)
{
	struct pool_device_info info;

	pool_volume_info(v, &info);
	return info.size;
}

/* issue 17: a write past the end grows the volume as a regular file grows
 * (it was -EFBIG, and a write across the end was cut short) */
static void test_write_past_end_grows(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct pool_device_info info;
	struct volume *v;
	char buf[100];

	memset(buf, 0x5a, sizeof(buf));
	fx_create(f, "v", 2 * BS);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	/* across the end: all of it, the size follows */
	assert_int_equal(pool_write(v, buf, sizeof(buf), 2 * BS - 10), 100);
	assert_int_equal(vol_size(v), 2 * BS + 90);
	/* far past the end: the gap (a partial block and whole ones) reads zeros */
	assert_int_equal(pool_write(v, buf, sizeof(buf), 5 * BS + 7), 100);
	assert_int_equal(vol_size(v), 5 * BS + 107);
	pool_volume_close(v);
	fx_expect(f, "v", 2 * BS - 10, 100, 0x5a);
	fx_expect(f, "v", 2 * BS + 90, 3 * BS - 83, 0);
	fx_expect(f, "v", 5 * BS + 7, 100, 0x5a);
	assert_int_equal(fx_mapped(f, "v"), 3);
	/* the size is durable with the commit, like the mappings */
	assert_int_equal(pool_sync(f->p), 0);
	fx_reopen(f);
	assert_int_equal(pool_device_info(f->p, "v", &info), 0);
	assert_int_equal(info.size, 5 * BS + 107);
	fx_expect(f, "v", 5 * BS + 7, 100, 0x5a);
	fx_check_clean(f);
	fx_free(f);
}

/* a grown gap over a block the volume lost to a shrink reads zeros, also
 * where a snapshot still holds the old data */
static void test_write_past_end_after_shrink_reads_zeros(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct volume *v;
	char b = 9;

	fx_create(f, "v", 4 * BS);
	fx_fill(f, "v", 0, 4 * BS, 7);
	fx_snap(f, "v", "s");
	if (pool_resize(f->p, "v", BS + 100, f->msg, sizeof(f->msg)))
		fail_msg("%s", f->msg);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(pool_write(v, &b, 1, 4 * BS - 1), 1);
	pool_volume_close(v);
	fx_expect(f, "v", 0, BS + 100, 7);
	fx_expect(f, "v", BS + 100, 3 * BS - 101, 0);
	fx_expect(f, "v", 4 * BS - 1, 1, 9);
	fx_expect(f, "s", 0, 4 * BS, 7);
	fx_check_clean(f);
	fx_free(f);
}

/* a write that fails (ENOSPC) grows nothing; one cut short grows as far as
 * it got */
static void test_write_past_end_enospc_keeps_size(void **state)
{
	struct fixture *f = fx_new(BS, 4);
	char buf[6 * BS];
	struct volume *v;

	memset(buf, 3, sizeof(buf));
	fx_create(f, "v", 0);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(pool_write(v, buf, BS, 10 * BS), BS);
	fx_fill(f, "v", 0, 3 * BS, 1); /* the pool is full now */
	assert_int_equal(pool_write(v, buf, 100, 20 * BS), -ENOSPC);
	assert_int_equal(vol_size(v), 11 * BS);
	assert_int_equal(pool_write(v, buf, 100, 11 * BS - 100), 100); /* own block */
	assert_int_equal(vol_size(v), 11 * BS);
	pool_volume_close(v);
	fx_check_clean(f);
	fx_free(f);
}

/* the largest device: a write reaching it is cut short there, one at it is
 * -EFBIG; the view addresses it without allocating the space in between */
static void test_write_at_max_device_size(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	uint64_t max = pool_size_limit(f->p), found = 0;
	char buf[100], back[100];
	struct volume *v;

	memset(buf, 0x11, sizeof(buf));
	assert_int_equal(max % BS, 0);
	assert_int_equal(max, POOL_MAX_VBLOCKS * BS);
	fx_create(f, "v", BS);
	assert_int_equal(pool_create(f->p, "big", max + 1, f->msg, sizeof(f->msg)), -EFBIG);
	assert_non_null(strstr(f->msg, "beyond the limit"));
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(pool_write(v, buf, sizeof(buf), max - 10), 10);
	assert_int_equal(vol_size(v), max);
	assert_int_equal(pool_write(v, buf, sizeof(buf), max), -EFBIG);
	assert_int_equal(pool_volume_grow(v, max + 1), -EFBIG);
	assert_int_equal(pool_read(v, back, 10, max - 10), 10);
	assert_memory_equal(back, buf, 10);
	assert_int_equal(pool_seek(v, 0, SEEK_DATA, &found), 0);
	assert_int_equal(found, max - BS);
	assert_int_equal(pool_seek(v, 0, SEEK_HOLE, &found), 0);
	assert_int_equal(found, 0);
	pool_volume_close(v);
	assert_int_equal(pool_sync(f->p), 0);
	fx_check_clean(f);
	fx_free(f);
}

/* fallocate's growth: never shrinks, reads zeros, durable at the commit */
static void test_volume_grow_never_shrinks(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct pool_device_info info;
	struct volume *v;

	fx_create(f, "v", 2 * BS);
	fx_fill(f, "v", 0, 2 * BS, 4);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(pool_volume_grow(v, BS), 0);
	assert_int_equal(vol_size(v), 2 * BS);
	assert_int_equal(pool_volume_grow(v, 6 * BS + 1), 0);
	assert_int_equal(vol_size(v), 6 * BS + 1);
	pool_volume_close(v);
	fx_expect(f, "v", 0, 2 * BS, 4);
	fx_expect(f, "v", 2 * BS, 4 * BS + 1, 0);
	assert_int_equal(pool_sync(f->p), 0);
	fx_reopen(f);
	assert_int_equal(pool_device_info(f->p, "v", &info), 0);
	assert_int_equal(info.size, 6 * BS + 1);
	fx_check_clean(f);
	fx_free(f);
}

/* issue 17: owner changes through a handle reach the handle's device, not
 * the one holding its name now; creation records the owner atomically */
static void test_owner_follows_the_handle(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct pool_device_info a, b;
	struct volume *v;

	if (pool_create_owned(f->p, "a", BS, 1000, 1001, 0640, f->msg, sizeof(f->msg)))
		fail_msg("%s", f->msg);
	assert_int_equal(pool_device_info(f->p, "a", &a), 0);
	assert_int_equal(a.uid, 1000);
	assert_int_equal(a.gid, 1001);
	assert_int_equal(a.mode, 0640);
	assert_int_equal(pool_volume_open(f->p, "a", &v), 0);
	fx_delete(f, "a");
	fx_create(f, "a", BS);
	assert_int_equal(pool_volume_set_owner(v, 7, 8, 0604), 0);
	assert_int_equal(pool_volume_grow(v, 3 * BS), 0);
	pool_volume_info(v, &a);
	assert_int_equal(pool_device_info(f->p, "a", &b), 0);
	assert_int_equal(a.uid, 7);
	assert_int_equal(a.mode, 0604);
	assert_int_equal(a.size, 3 * BS);
	assert_int_equal(b.uid, 0);
	assert_int_equal(b.mode, 0600);
	assert_int_equal(b.size, BS);
	pool_volume_close(v);
	fx_check_clean(f);
	fx_free(f);
}

static void test_cow_partial_write_keeps_rest_and_snapshot(void **state)
{
	struct fixture *f = fx_new(KB(64), 64);

	fx_create(f, "v", KB(64) * 4);
	fx_fill(f, "v", 0, KB(64), 0x11);
	fx_snap(f, "v", "s");
	assert_int_equal(fx_used(f), 1);
	fx_fill(f, "v", 4096, 512, 0x22); /* dm-thin 694cfe7f31db */
	fx_expect(f, "v", 0, 4096, 0x11);
	fx_expect(f, "v", 4096, 512, 0x22);
	fx_expect(f, "v", 4608, KB(64) - 4608, 0x11);
	fx_expect(f, "s", 0, KB(64), 0x11);
	assert_int_equal(fx_used(f), 2);
	fx_check_clean(f);
	fx_reopen(f);
	fx_expect(f, "s", 0, KB(64), 0x11);
	fx_expect(f, "v", 4096, 512, 0x22);
	fx_free(f);
}

/* What a write costs in data I/O (issue 5): a 4 KiB write into a shared
 * 64 KiB block is one read and one write of the block; into the device's own
 * block, or into a fresh one, one write of the 4 KiB and no read; fresh
 * whole blocks of one request, one write for the run. */
static void io_delta(struct dio *d, struct dio_stats *last, uint64_t reads, uint64_t read_bytes,
		     uint64_t writes, uint64_t write_bytes)
{
	struct dio_stats now;

	dio_stats(d, &now);
	assert_int_equal(now.reads - last->reads, reads);
	assert_int_equal(now.read_bytes - last->read_bytes, read_bytes);
	assert_int_equal(now.writes - last->writes, writes);
	assert_int_equal(now.write_bytes - last->write_bytes, write_bytes);
	*last = now;
}

static void test_io_cost_of_cow_and_first_writes(void **state)
{
	struct fixture *f = fx_new(KB(64), 64);
	struct dio *d = pool_test_dio(f->p);
	struct dio_stats last;

	fx_create(f, "v", KB(64) * 4);
	fx_fill(f, "v", 0, KB(64), 0x11);
	fx_snap(f, "v", "s");
	dio_stats(d, &last);
	fx_fill(f, "v", 4096, 4096, 0x22); /* shared: copy-on-write */
	io_delta(d, &last, 1, KB(64), 1, KB(64));
	fx_fill(f, "v", 8192, 4096, 0x33); /* the copy is the device's own now */
	io_delta(d, &last, 0, 0, 1, 4096);
	fx_fill(f, "v", KB(64) + 4096, 4096, 0x44); /* fresh: nothing to copy */
	io_delta(d, &last, 0, 0, 1, 4096);
	fx_fill(f, "v", KB(128), KB(128), 0x55); /* two fresh blocks, one run */
	io_delta(d, &last, 0, 0, 1, KB(128));
	fx_expect(f, "v", 0, 4096, 0x11);
	fx_expect(f, "v", 4096, 4096, 0x22);
	fx_expect(f, "v", 8192, 4096, 0x33);
	fx_expect(f, "v", 12288, KB(64) - 12288, 0x11);
	fx_expect(f, "v", KB(64), 4096, 0);
	fx_expect(f, "v", KB(64) + 4096, 4096, 0x44);
	fx_expect(f, "v", KB(128), KB(128), 0x55);
	fx_expect(f, "s", 0, KB(64), 0x11);
	fx_check_clean(f);
	fx_free(f);
}

static void test_space_accounting_snapshot_wipe_delete(void **state)
{
	/* TESTING B3 */
	struct fixture *f = fx_new(BS, 256);
	const uint64_t n = 32;

	fx_create(f, "v1", n * BS);
	fx_fill(f, "v1", 0, n * BS, 1);
	assert_int_equal(fx_used(f), n);
	fx_snap(f, "v1", "s");
	assert_int_equal(fx_used(f), n);
	fx_fill(f, "s", 0, n * BS, 2);
	assert_int_equal(fx_used(f), 2 * n);
	fx_check_clean(f);
	fx_delete(f, "s");
	assert_int_equal(fx_used(f), n);
	fx_expect(f, "v1", 0, n * BS, 1);
	fx_check_clean(f);
	fx_free(f);
}

static void test_ref_count_tree(void **state)
{
	/* TESTING B4: origin and 5 wiped snapshots, deleted one at a time */
	struct fixture *f = fx_new(BS, 512);
	const uint64_t n = 16;
	char name[16];

	fx_create(f, "v1", n * BS);
	fx_fill(f, "v1", 0, n * BS, 1);
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		fx_snap(f, "v1", name);
		fx_fill(f, name, 0, n * BS, 10 + i);
	}
	assert_int_equal(fx_used(f), 6 * n);
	fx_check_clean(f);
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		fx_delete(f, name);
		assert_int_equal(fx_used(f), (5 - i) * n);
		fx_check_clean(f);
	}
	fx_expect(f, "v1", 0, n * BS, 1);
	fx_free(f);
}

static void test_delete_origin_keeps_snapshot(void **state)
{
	struct fixture *f = fx_new(BS, 64);

	fx_create(f, "v", 8 * BS);
	fx_fill(f, "v", 0, 8 * BS, 7);
	fx_snap(f, "v", "s");
	fx_fill(f, "v", 0, BS, 8);
	assert_int_equal(fx_used(f), 9);
	fx_delete(f, "v");
	assert_int_equal(fx_used(f), 8);
	fx_expect(f, "s", 0, 8 * BS, 7);
	fx_fill(f, "s", 0, BS, 9); /* the snapshot now owns its blocks: in place */
	assert_int_equal(fx_used(f), 8);
	fx_check_clean(f);
	fx_free(f);
}

static void test_block_hidden_everywhere_is_freed(void **state)
{
	/* both sides of a writable snapshot overwrite a block: the original goes */
	struct fixture *f = fx_new(BS, 64);

	fx_create(f, "v", 4 * BS);
	fx_fill(f, "v", 0, BS, 1);
	fx_snap(f, "v", "w");
	fx_fill(f, "v", 0, BS, 2);
	fx_fill(f, "w", 0, BS, 3);
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(fx_used(f), 2);
	fx_check_clean(f);
	fx_free(f);
}

static void test_snapshot_chain_and_middle_delete(void **state)
{
	struct fixture *f = fx_new(BS, 256);
	char name[16], prev[16] = "v";

	fx_create(f, "v", 32 * BS);
	for (int i = 0; i < 20; i++) {
		fx_fill(f, prev, (uint64_t)i * BS, BS, i + 1);
		snprintf(name, sizeof(name), "c%d", i);
		fx_snap(f, prev, name);
		snprintf(prev, sizeof(prev), "%s", name);
	}
	/* c19 sees every block written along the chain */
	for (int i = 0; i < 20; i++)
		fx_expect(f, "c19", (uint64_t)i * BS, BS, i + 1);
	fx_delete(f, "c10");
	fx_delete(f, "c3");
	for (int i = 0; i < 20; i++)
		fx_expect(f, "c19", (uint64_t)i * BS, BS, i + 1);
	fx_expect(f, "c2", 2 * BS, BS, 3);
	fx_check_clean(f);
	fx_free(f);
}

static void test_snapshot_is_constant_in_rows(void **state)
{
	struct fixture *f = fx_new(BS, 4096);
	uint64_t layers0, rows0, layers1, rows1;

	fx_create(f, "v", 2048 * BS);
	fx_fill(f, "v", 0, 2048 * BS, 5);
	assert_int_equal(pool_commit(f->p), 0);
	pool_test_counts(f->p, &layers0, &rows0);
	assert_int_equal(rows0, 2048);
	if (pool_snapshot_set(f->p, "set1", f->msg, sizeof(f->msg)))
		fail_msg("%s", f->msg);
	pool_test_counts(f->p, &layers1, &rows1);
	assert_int_equal(rows1, rows0); /* no row copied */
	assert_true(layers1 <= layers0 + 2);
	fx_free(f);
}

static void test_discard_frees_own_block_after_commit(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct volume *v;

	fx_create(f, "v", 8 * BS);
	fx_fill(f, "v", 0, 8 * BS, 1);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(pool_discard(v, 0, 2 * BS), 0);
	pool_volume_close(v);
	assert_int_equal(fx_mapped(f, "v"), 6);
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(fx_used(f), 6);
	fx_expect(f, "v", 0, 2 * BS, 0);
	fx_expect(f, "v", 2 * BS, 6 * BS, 1);
	fx_check_clean(f);
	fx_free(f);
}

static void test_discard_partial_zeroes_and_keeps_neighbours(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct volume *v;

	fx_create(f, "v", 4 * BS);
	fx_fill(f, "v", 0, 4 * BS, 3);
	fx_snap(f, "v", "s");
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(pool_discard(v, 100, 2 * BS), 0);
	pool_volume_close(v);
	fx_expect(f, "v", 0, 100, 3);
	fx_expect(f, "v", 100, 2 * BS, 0);
	fx_expect(f, "v", 2 * BS + 100, 2 * BS - 100, 3);
	fx_expect(f, "s", 0, 4 * BS, 3); /* the snapshot is untouched */
	fx_check_clean(f);
	fx_free(f);
}

static void test_discard_shared_keeps_block(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct volume *v;

	fx_create(f, "v", 4 * BS);
	fx_fill(f, "v", 0, 4 * BS, 3);
	fx_snap(f, "v", "s");
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(pool_discard(v, 0, 4 * BS), 0);
	pool_volume_close(v);
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(fx_used(f), 4);
	fx_expect(f, "s", 0, 4 * BS, 3);
	fx_expect(f, "v", 0, 4 * BS, 0);
	fx_delete(f, "s");
	assert_int_equal(fx_used(f), 0);
	fx_check_clean(f);
	fx_free(f);
}

static void test_freed_block_not_reused_before_commit(void **state)
{
	struct fixture *f = fx_new(BS, 2);
	struct volume *v;
	char buf[BS];

	fx_create(f, "v", 4 * BS);
	fx_fill(f, "v", 0, 2 * BS, 1);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(pool_discard(v, 0, BS), 0);
	/* the pool is full but for a block freed in the open transaction: the
	 * write must commit first, then reuse it */
	uint64_t tid = fx_tid(f);
	memset(buf, 2, sizeof(buf));
	assert_int_equal(pool_write(v, buf, BS, 2 * BS), BS);
	assert_true(fx_tid(f) > tid);
	pool_volume_close(v);
	fx_expect(f, "v", 2 * BS, BS, 2);
	fx_expect(f, "v", 0, BS, 0);
	fx_check_clean(f);
	fx_free(f);
}

static void test_enospc_and_overwrites_when_full(void **state)
{
	struct fixture *f = fx_new(BS, 8);
	struct volume *v;
	char buf[BS];
	ssize_t n;
	struct pool_status st;

	fx_create(f, "v", 16 * BS);
	memset(buf, 9, sizeof(buf));
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(pool_write(v, buf, BS, (uint64_t)i * BS), BS);
	n = pool_write(v, buf, BS, 8 * BS);
	assert_int_equal(n, -ENOSPC);
	pool_status(f->p, &st);
	assert_string_equal(st.mode, "out_of_data_space");
	/* mapped, unshared blocks still take writes */
	memset(buf, 10, sizeof(buf));
	assert_int_equal(pool_write(v, buf, BS, 3 * BS), BS);
	pool_volume_close(v);
	fx_expect(f, "v", 3 * BS, BS, 10);
	/* a shared block needs a new one: ENOSPC, both sides intact */
	fx_snap(f, "v", "s");
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(pool_write(v, buf, 10, 0), -ENOSPC);
	pool_volume_close(v);
	fx_expect(f, "v", 0, BS, 9);
	fx_expect(f, "s", 0, BS, 9);
	fx_check_clean(f);
	/* space comes back (TESTING C9): the mode is rw again */
	fx_delete(f, "s");
	fx_delete(f, "v");
	pool_status(f->p, &st);
	assert_string_equal(st.mode, "rw");
	assert_int_equal(st.used_blocks, 0);
	fx_free(f);
}

static void test_resize_shrink_unmaps_tail(void **state)
{
	struct fixture *f = fx_new(BS, 64);

	fx_create(f, "v", 8 * BS);
	fx_fill(f, "v", 0, 8 * BS, 4);
	fx_snap(f, "v", "s");
	if (pool_resize(f->p, "v", 3 * BS + 100, f->msg, sizeof(f->msg)))
		fail_msg("%s", f->msg);
	assert_int_equal(fx_mapped(f, "v"), 4);
	if (pool_resize(f->p, "v", 8 * BS, f->msg, sizeof(f->msg)))
		fail_msg("%s", f->msg);
	fx_expect(f, "v", 0, 3 * BS + 100, 4);
	fx_expect(f, "v", 3 * BS + 100, 5 * BS - 100, 0);
	fx_expect(f, "s", 0, 8 * BS, 4);
	fx_delete(f, "s");
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(fx_used(f), 4);
	fx_check_clean(f);
	fx_free(f);
}

/* issue 17: a size beyond what a device's view can address (100000T was
 * accepted) is refused by create, resize and an open handle's resize alike,
 * with the limit in the message, and changes nothing. */
static void test_size_beyond_limit_is_efbig(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	uint64_t limit = pool_size_limit(f->p), tid;
	struct pool_device_info info;
	struct volume *v;
	char want[64];

	assert_int_equal(limit, POOL_MAX_VBLOCKS * BS);
	snprintf(want, sizeof(want), "(%llu bytes", (unsigned long long)limit);
	assert_int_equal(pool_size_check(f->p, limit, NULL, 0), 0);
	assert_int_equal(pool_size_check(f->p, limit + 1, f->msg, sizeof(f->msg)), -EFBIG);
	assert_non_null(strstr(f->msg, want));
	fx_create(f, "v", 8 * BS);
	tid = fx_tid(f);
	assert_int_equal(pool_create(f->p, "w", 100000ull << 40, f->msg, sizeof(f->msg)), -EFBIG);
	assert_non_null(strstr(f->msg, "beyond the limit"));
	assert_int_equal(pool_device_info(f->p, "w", &info), -ENOENT);
	assert_int_equal(pool_resize(f->p, "v", limit + BS, f->msg, sizeof(f->msg)), -EFBIG);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(pool_volume_resize(v, UINT64_MAX / 2, f->msg, sizeof(f->msg)), -EFBIG);
	pool_volume_close(v);
	assert_int_equal(pool_device_info(f->p, "v", &info), 0);
	assert_int_equal(info.size, 8 * BS);
	assert_int_equal(fx_tid(f), tid);
	/* exactly the limit is a valid (thin) size */
	if (pool_resize(f->p, "v", limit, f->msg, sizeof(f->msg)))
		fail_msg("%s", f->msg);
	fx_free(f);
}

static void test_snapshot_set_is_read_only_and_atomic(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct volume *v;
	char b = 1;

	fx_create(f, "a", 4 * BS);
	fx_create(f, "b", 4 * BS);
	fx_fill(f, "a", 0, BS, 1);
	fx_fill(f, "b", 0, BS, 2);
	if (pool_snapshot_set(f->p, "monday", f->msg, sizeof(f->msg)))
		fail_msg("%s", f->msg);
	assert_int_equal(pool_snapshot_set(f->p, "monday", f->msg, sizeof(f->msg)), -EEXIST);
	fx_fill(f, "a", 0, BS, 3);
	fx_expect(f, "monday/a", 0, BS, 1);
	fx_expect(f, "monday/b", 0, BS, 2);
	assert_int_equal(pool_volume_open(f->p, "monday/a", &v), 0);
	assert_int_equal(pool_write(v, &b, 1, 0), -EROFS);
	assert_int_equal(pool_discard(v, 0, BS), -EROFS);
	pool_volume_close(v);
	/* a writable snapshot of a set member */
	fx_snap(f, "monday/a", "restored");
	fx_expect(f, "restored", 0, BS, 1);
	fx_reopen(f);
	fx_expect(f, "monday/a", 0, BS, 1);
	if (pool_delete_set(f->p, "monday", f->msg, sizeof(f->msg)))
		fail_msg("%s", f->msg);
	assert_int_equal(pool_device_info(f->p, "monday/a", &(struct pool_device_info){0}),
			 -ENOENT);
	fx_expect(f, "restored", 0, BS, 1);
	fx_check_clean(f);
	fx_free(f);
}

static void test_delete_while_open_is_deferred(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct volume *v;
	char buf[BS];

	fx_create(f, "v", 4 * BS);
	fx_fill(f, "v", 0, 4 * BS, 6);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	fx_delete(f, "v");
	/* gone from the namespace, the name is free, the handle still works */
	assert_int_equal(pool_device_info(f->p, "v", &(struct pool_device_info){0}), -ENOENT);
	fx_create(f, "v", BS);
	assert_int_equal(pool_read(v, buf, BS, BS), BS);
	assert_int_equal(buf[0], 6);
	assert_int_equal(fx_used(f), 4);
	pool_volume_close(v);
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(fx_used(f), 0);
	fx_check_clean(f);
	fx_free(f);
}

static void test_rename_and_errors(void **state)
{
	struct fixture *f = fx_new(BS, 64);

	fx_create(f, "a", BS);
	fx_create(f, "b", BS);
	assert_int_equal(pool_rename(f->p, "a", "b", f->msg, sizeof(f->msg)), -EEXIST);
	assert_int_equal(pool_rename(f->p, "x", "y", f->msg, sizeof(f->msg)), -ENOENT);
	assert_int_equal(pool_snapshot(f->p, "x", "y", f->msg, sizeof(f->msg)), -ENOENT);
	assert_int_equal(pool_snapshot(f->p, "a", "b", f->msg, sizeof(f->msg)), -EEXIST);
	assert_int_equal(pool_rename(f->p, "a", "c", f->msg, sizeof(f->msg)), 0);
	/* rename(2) semantics: the target goes, in the same transaction */
	fx_fill(f, "b", 0, BS, 7);
	fx_fill(f, "c", 0, BS, 8);
	assert_int_equal(pool_rename_replace(f->p, "c", "b", f->msg, sizeof(f->msg)), 0);
	fx_expect(f, "b", 0, BS, 8);
	assert_int_equal(pool_device_info(f->p, "c", &(struct pool_device_info){0}), -ENOENT);
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(fx_used(f), 1);
	fx_create(f, "c", BS);
	fx_reopen(f);
	assert_int_equal(pool_device_info(f->p, "c", &(struct pool_device_info){0}), 0);
	fx_free(f);
}

static void test_device_ids_are_never_reused(void **state)
{
	/* dm-thin dev_ids name devices over time (dumps, send/receive bases) */
	struct fixture *f = fx_new(BS, 16);
	struct pool_device_info b, c;

	fx_create(f, "a", BS);
	fx_create(f, "b", BS);
	assert_int_equal(pool_device_info(f->p, "b", &b), 0);
	fx_delete(f, "b");
	fx_reopen(f);
	fx_create(f, "c", BS);
	assert_int_equal(pool_device_info(f->p, "c", &c), 0);
	assert_true(c.id > b.id);
	fx_free(f);
}

static void test_seek_data_hole(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct volume *v;
	uint64_t r;

	fx_create(f, "v", 10 * BS);
	fx_fill(f, "v", 2 * BS, BS, 1);
	fx_fill(f, "v", 5 * BS, 2 * BS, 1);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(pool_seek(v, 0, SEEK_DATA, &r), 0);
	assert_int_equal(r, 2 * BS);
	assert_int_equal(pool_seek(v, 2 * BS + 10, SEEK_HOLE, &r), 0);
	assert_int_equal(r, 3 * BS);
	assert_int_equal(pool_seek(v, 3 * BS, SEEK_DATA, &r), 0);
	assert_int_equal(r, 5 * BS);
	assert_int_equal(pool_seek(v, 8 * BS, SEEK_DATA, &r), -ENXIO);
	assert_int_equal(pool_seek(v, 8 * BS, SEEK_HOLE, &r), 0);
	assert_int_equal(r, 8 * BS);
	assert_int_equal(pool_seek(v, 10 * BS, SEEK_HOLE, &r), -ENXIO);
	pool_volume_close(v);
	fx_free(f);
}

static void test_commit_only_when_changed(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	uint64_t tid;

	fx_create(f, "v", 4 * BS);
	tid = fx_tid(f);
	assert_int_equal(pool_commit(f->p), 0);
	assert_int_equal(pool_sync(f->p), 0);
	assert_int_equal(fx_tid(f), tid);
	fx_fill(f, "v", 0, BS, 1); /* the close commits a new mapping */
	assert_true(fx_tid(f) > tid);
	/* an opening's first write commits its odd generation, the last close
	 * the even one (pool_device.c); in between, an overwrite changes no
	 * mapping and its sync commits nothing */
	struct volume *v;
	char buf[BS];
	memset(buf, 2, sizeof(buf));
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(pool_write(v, buf, BS, 0), BS);
	tid = fx_tid(f);
	assert_int_equal(pool_write(v, buf, BS, 0), BS);
	assert_int_equal(pool_sync(f->p), 0);
	assert_int_equal(fx_tid(f), tid);
	pool_volume_close(v);
	assert_int_equal(fx_tid(f), tid + 1);
	fx_free(f);
}

static void test_grow_pool(void **state)
{
	struct fixture *f = fx_new(BS, 4);
	struct volume *v;
	char buf[BS] = {1};

	fx_create(f, "v", 8 * BS);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pool_write(v, buf, BS, (uint64_t)i * BS), BS);
	assert_int_equal(pool_write(v, buf, BS, 4 * BS), -ENOSPC);
	assert_int_equal(pool_grow(f->p, 2 * BS, f->msg, sizeof(f->msg)), -EINVAL);
	if (pool_grow(f->p, 8 * BS, f->msg, sizeof(f->msg)))
		fail_msg("%s", f->msg);
	assert_int_equal(pool_write(v, buf, BS, 4 * BS), BS);
	pool_volume_close(v);
	fx_reopen(f);
	struct pool_status st;
	pool_status(f->p, &st);
	assert_int_equal(st.nr_data_blocks, 8);
	fx_check_clean(f);
	fx_free(f);
}

static void test_check_finds_and_repairs_leak(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	char cmd[512];
	int rc;

	fx_create(f, "v", 4 * BS);
	fx_fill(f, "v", 0, BS, 1);
	pool_close(f->p);
	f->p = NULL;
	/* mark block 40 used behind the pool's back: a leak */
	snprintf(cmd, sizeof(cmd),
		 "sqlite3 %s/meta.db \"UPDATE space SET bits = "
		 "substr(bits, 1, 5) || x'01' || substr(bits, 7) WHERE chunk = 0\"",
		 f->pool);
	if (system(cmd) != 0)
		skip();
	rc = pool_check(f->pool, false, NULL, f->msg, sizeof(f->msg));
	assert_int_equal(rc, 0); /* a leak is a warning */
	char *out = NULL;
	size_t len = 0;
	FILE *mf = open_memstream(&out, &len);
	assert_int_equal(pool_check(f->pool, false, mf, f->msg, sizeof(f->msg)), 0);
	fclose(mf);
	assert_non_null(strstr(out, "leak: data block 40"));
	free(out);
	assert_int_equal(pool_check(f->pool, true, NULL, f->msg, sizeof(f->msg)), 0);
	if (pool_open(f->pool, 0, "unit test", &f->p, f->msg, sizeof(f->msg)))
		fail_msg("%s", f->msg);
	fx_check_clean(f);
	/* a mapped block marked free is damage */
	pool_close(f->p);
	f->p = NULL;
	snprintf(cmd, sizeof(cmd), "sqlite3 %s/meta.db \"UPDATE space SET bits = zeroblob(4096)\"",
		 f->pool);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(pool_check(f->pool, false, NULL, f->msg, sizeof(f->msg)), CHECK_DAMAGED);
	assert_int_equal(pool_check(f->pool, true, NULL, f->msg, sizeof(f->msg)), 0);
	assert_int_equal(pool_check(f->pool, false, NULL, f->msg, sizeof(f->msg)), 0);
	fx_free(f);
}

/* Every byte of every fresh block of "b" must be ours or zero. */
static void expect_no_secret(struct fixture *f, uint64_t nr_blocks)
{
	struct volume *v;
	unsigned char buf[BS], mine[512];

	memset(mine, 0x42, sizeof(mine));
	assert_int_equal(pool_volume_open(f->p, "b", &v), 0);
	for (uint64_t b = 0; b < nr_blocks; b++)
		assert_int_equal(pool_write(v, mine, sizeof(mine), b * BS + 1024), 512);
	for (uint64_t b = 0; b < nr_blocks; b++) {
		assert_int_equal(pool_read(v, buf, BS, b * BS), BS);
		for (unsigned i = 0; i < BS; i++) {
			unsigned char want = i >= 1024 && i < 1536 ? 0x42 : 0;
			if (buf[i] != want)
				fail_msg("block %llu byte %u: %#x (stale data)",
					 (unsigned long long)b, i, buf[i]);
		}
	}
	pool_volume_close(v);
}

static void test_no_stale_data_after_delete(void **state)
{
	/* TESTING J6 */
	struct fixture *f = fx_new(BS, 16);

	fx_create(f, "a", 16 * BS);
	fx_fill(f, "a", 0, 16 * BS, 'S');
	assert_int_equal(pool_sync(f->p), 0);
	fx_delete(f, "a");
	fx_create(f, "b", 16 * BS);
	expect_no_secret(f, 16);
	fx_free(f);
}

static void test_no_stale_data_after_unclean_stop(void **state)
{
	/* a block written in a transaction that never committed, and blocks
	 * whose free committed but whose punch may not have: the next open
	 * scrubs them */
	struct fixture *f = fx_new(BS, 16);
	pid_t pid;
	int status;

	fx_create(f, "a", 16 * BS);
	fx_fill(f, "a", 0, 8 * BS, 'S');
	pool_close(f->p);
	f->p = NULL;
	pid = fork();
	if (pid == 0) {
		struct pool *p;
		struct volume *v;
		char buf[BS];
		memset(buf, 'S', sizeof(buf));
		if (pool_open(f->pool, 0, "child", &p, NULL, 0) || pool_volume_open(p, "a", &v))
			_exit(1);
		for (int b = 8; b < 16; b++)
			if (pool_write(v, buf, BS, (uint64_t)b * BS) != BS)
				_exit(2);
		_exit(0); /* no commit, no close: the 8 new blocks are free on disk */
	}
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	if (pool_open(f->pool, 0, "unit test", &f->p, f->msg, sizeof(f->msg)))
		fail_msg("%s", f->msg);
	assert_int_equal(fx_used(f), 8);
	fx_delete(f, "a");
	fx_create(f, "b", 16 * BS);
	expect_no_secret(f, 16);
	fx_check_clean(f);
	fx_free(f);
}

static uint64_t dblock_of(struct volume *v, uint64_t vb)
{
	uint64_t b = 0;

	assert_int_equal(pool_test_dblock(v, vb, &b), 0);
	return b;
}

static void test_multi_block_writes_land_in_order(void **state)
{
	/* a write of several fresh blocks takes consecutive data blocks, after
	 * the previous vblock's block when that is free, so later reads and
	 * overwrites of the range move with one I/O */
	struct fixture *f = fx_new(BS, 256);
	struct volume *a, *b;
	char buf[8 * BS];

	fx_create(f, "a", 32 * BS);
	fx_create(f, "b", 32 * BS);
	fx_create(f, "c", 96 * BS);
	assert_int_equal(pool_volume_open(f->p, "a", &a), 0);
	assert_int_equal(pool_volume_open(f->p, "b", &b), 0);
	memset(buf, 1, sizeof(buf));
	assert_int_equal(pool_write(a, buf, BS, 0), BS);
	assert_int_equal(pool_write(b, buf, BS, 0), BS); /* takes a's next block */
	memset(buf, 2, sizeof(buf));
	assert_int_equal(pool_write(a, buf, 4 * BS, BS), 4 * BS);
	assert_int_not_equal(dblock_of(a, 1), dblock_of(b, 0));
	for (uint64_t vb = 2; vb <= 4; vb++)
		assert_int_equal(dblock_of(a, vb), dblock_of(a, 1) + vb - 1);
	/* the stream goes on after its last block */
	memset(buf, 3, sizeof(buf));
	assert_int_equal(pool_write(a, buf, 3 * BS, 5 * BS), 3 * BS);
	for (uint64_t vb = 5; vb <= 7; vb++)
		assert_int_equal(dblock_of(a, vb), dblock_of(a, 4) + vb - 4);
	/* a stream goes on right after its last block even when the allocator's
	 * cursor has moved on: blocks freed behind it are taken */
	memset(buf, 6, sizeof(buf));
	assert_int_equal(pool_write(b, buf, BS, 8 * BS), BS);
	assert_int_equal(pool_write(b, buf, 4 * BS, 16 * BS), 4 * BS);
	uint64_t x = dblock_of(b, 8);
	assert_int_equal(dblock_of(b, 16), x + 1);
	fx_fill(f, "c", 0, 80 * BS, 6); /* the cursor goes 80 blocks on */
	assert_int_equal(pool_discard(b, 16 * BS, 4 * BS), 0);
	assert_int_equal(pool_commit(f->p), 0); /* the freed blocks come back */
	assert_int_equal(pool_write(b, buf, 2 * BS, 9 * BS), 2 * BS);
	assert_int_equal(dblock_of(b, 9), x + 1);
	assert_int_equal(dblock_of(b, 10), x + 2);
	/* a run stops at a mapped block, which is written in place */
	uint64_t mid = dblock_of(a, 6);
	memset(buf, 4, sizeof(buf));
	assert_int_equal(pool_write(a, buf, 8 * BS, 9 * BS), 8 * BS);
	assert_int_equal(pool_write(a, buf, BS + 100, 6 * BS - 50), BS + 100);
	assert_int_equal(dblock_of(a, 6), mid);
	for (uint64_t vb = 10; vb <= 16; vb++)
		assert_int_equal(dblock_of(a, vb), dblock_of(a, 9) + vb - 9);
	/* not whole blocks at the ends: the partial ones go block by block */
	memset(buf, 5, sizeof(buf));
	assert_int_equal(pool_write(a, buf, 6 * BS, 20 * BS + 512), 6 * BS);
	pool_volume_close(a);
	pool_volume_close(b);
	assert_int_equal(fx_mapped(f, "a"), 1 + 4 + 3 + 8 + 7);
	fx_expect(f, "a", 0, BS, 1);
	fx_expect(f, "a", BS, 4 * BS, 2);
	fx_expect(f, "a", 5 * BS, BS - 50, 3);
	fx_expect(f, "a", 6 * BS - 50, BS + 100, 4);
	fx_expect(f, "a", 7 * BS + 50, BS - 50, 3);
	fx_expect(f, "a", 8 * BS, BS, 0);
	fx_expect(f, "a", 9 * BS, 8 * BS, 4);
	fx_expect(f, "a", 17 * BS, 3 * BS + 512, 0);
	fx_expect(f, "a", 20 * BS + 512, 6 * BS, 5);
	fx_expect(f, "a", 26 * BS + 512, BS - 512, 0);
	fx_expect(f, "b", 0, BS, 1);
	fx_expect(f, "b", 8 * BS, 3 * BS, 6);
	fx_expect(f, "b", 16 * BS, 4 * BS, 0);
	fx_reopen(f);
	fx_expect(f, "a", 9 * BS, 8 * BS, 4);
	fx_check_clean(f);
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_format_defaults),
	    cmocka_unit_test(test_format_rejects_bad_block_sizes),
	    cmocka_unit_test(test_format_refuses_existing_pool_without_force),
	    cmocka_unit_test(test_format_refuses_data_on_meta_db),
	    cmocka_unit_test(test_open_refuses_second_writer),
	    cmocka_unit_test(test_names_are_validated),
	    cmocka_unit_test(test_unmapped_reads_zero_and_write_reads_back),
	    cmocka_unit_test(test_write_past_end_grows),
	    cmocka_unit_test(test_write_past_end_after_shrink_reads_zeros),
	    cmocka_unit_test(test_write_past_end_enospc_keeps_size),
	    cmocka_unit_test(test_write_at_max_device_size),
	    cmocka_unit_test(test_volume_grow_never_shrinks),
	    cmocka_unit_test(test_owner_follows_the_handle),
	    cmocka_unit_test(test_cow_partial_write_keeps_rest_and_snapshot),
	    cmocka_unit_test(test_io_cost_of_cow_and_first_writes),
	    cmocka_unit_test(test_space_accounting_snapshot_wipe_delete),
	    cmocka_unit_test(test_ref_count_tree),
	    cmocka_unit_test(test_delete_origin_keeps_snapshot),
	    cmocka_unit_test(test_block_hidden_everywhere_is_freed),
	    cmocka_unit_test(test_snapshot_chain_and_middle_delete),
	    cmocka_unit_test(test_snapshot_is_constant_in_rows),
	    cmocka_unit_test(test_discard_frees_own_block_after_commit),
	    cmocka_unit_test(test_discard_partial_zeroes_and_keeps_neighbours),
	    cmocka_unit_test(test_discard_shared_keeps_block),
	    cmocka_unit_test(test_freed_block_not_reused_before_commit),
	    cmocka_unit_test(test_enospc_and_overwrites_when_full),
	    cmocka_unit_test(test_resize_shrink_unmaps_tail),
	    cmocka_unit_test(test_size_beyond_limit_is_efbig),
	    cmocka_unit_test(test_snapshot_set_is_read_only_and_atomic),
	    cmocka_unit_test(test_delete_while_open_is_deferred),
	    cmocka_unit_test(test_rename_and_errors),
	    cmocka_unit_test(test_device_ids_are_never_reused),
	    cmocka_unit_test(test_seek_data_hole),
	    cmocka_unit_test(test_commit_only_when_changed),
	    cmocka_unit_test(test_grow_pool),
	    cmocka_unit_test(test_check_finds_and_repairs_leak),
	    cmocka_unit_test(test_no_stale_data_after_delete),
	    cmocka_unit_test(test_no_stale_data_after_unclean_stop),
	    cmocka_unit_test(test_multi_block_writes_land_in_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
