/* SPDX-License-Identifier: MIT */
/*
 * test_layers.c - the lower layers one by one: space map (allocation, deferred
 * frees, persistence, growth), resolved views (vmap), data I/O (aligned and
 * misaligned direct I/O, punch, copy, the lost-write simulation) and the
 * metadata store (opening checks, map rows, moves and tombstones).
 */
#include <fcntl.h>
#include <sqlite3.h>

#include "unit_helpers.h"
#include "engine/dataio.h"
#include "engine/meta.h"
#include "engine/space.h"
#include "engine/vmap.h"

static char tmpdir[64];

static const char *tmp_path(const char *name)
{
	static char p[4][160];
	static int i;

	i = (i + 1) % 4;
	snprintf(p[i], sizeof(p[i]), "%s/%s", tmpdir, name);
	return p[i];
}

static int setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/thinfs-unit.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	fx_rmrf(tmpdir);
	return 0;
}

/* ---- space map ---- */

static void test_space_alloc_until_enospc(void **state)
{
	struct space sp;
	uint64_t b, seen = 0;

	assert_int_equal(space_init(&sp, 100), 0);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(space_alloc(&sp, &b), 0);
		assert_true(b < 100);
		seen += b;
	}
	assert_int_equal(seen, 99 * 100 / 2); /* each block exactly once */
	assert_int_equal(space_alloc(&sp, &b), -ENOSPC);
	assert_int_equal(sp.nr_used, 100);
	space_destroy(&sp);
}

static void test_space_alloc_run(void **state)
{
	struct space sp;
	uint64_t b, c;

	assert_int_equal(space_init(&sp, 100), 0);
	/* a free goal is taken, as much of the run as is free from there */
	assert_int_equal(space_alloc_run(&sp, 10, 4, &b), 4);
	assert_int_equal(b, 10);
	/* the run stops at a busy block */
	assert_int_equal(space_alloc_run(&sp, 8, 5, &b), 2);
	assert_int_equal(b, 8);
	/* a busy goal: a run of free blocks elsewhere */
	assert_int_equal(space_alloc_run(&sp, 11, 3, &b), 3);
	assert_true(b + 3 <= 8 || b >= 14);
	c = b;
	assert_int_equal(space_alloc_run(&sp, SPACE_NO_GOAL, 3, &b), 3);
	assert_true(b + 3 <= 8 || b >= 14);
	assert_true(b + 3 <= c || b >= c + 3);
	/* the end of the data stops a run */
	assert_int_equal(space_alloc_run(&sp, 98, 5, &b), 2);
	assert_int_equal(b, 98);
	assert_int_equal(space_alloc_run(&sp, 0, 0, &b), -EINVAL);
	assert_int_equal(sp.nr_used, 4 + 2 + 3 + 3 + 2);
	while (space_alloc_run(&sp, SPACE_NO_GOAL, 7, &b) > 0)
		;
	assert_int_equal(sp.nr_used, 100);
	assert_int_equal(space_alloc_run(&sp, 5, 2, &b), -ENOSPC);
	space_destroy(&sp);
}

static void test_space_free_is_deferred_until_release(void **state)
{
	struct space sp;
	uint64_t b, *list;

	assert_int_equal(space_init(&sp, 2), 0);
	assert_int_equal(space_alloc(&sp, &b), 0);
	assert_int_equal(space_alloc(&sp, &b), 0);
	space_free(&sp, 0);
	assert_false(space_is_used(&sp, 0));
	assert_int_equal(sp.nr_used, 1);
	/* freed but not released: not allocatable */
	assert_int_equal(space_alloc(&sp, &b), -ENOSPC);
	size_t n = space_take_freed(&sp, &list);
	assert_int_equal(n, 1);
	space_release(&sp, list, n);
	free(list);
	assert_int_equal(space_alloc(&sp, &b), 0);
	assert_int_equal(b, 0);
	space_destroy(&sp);
}

static void test_space_unfree_restores(void **state)
{
	struct space sp;
	uint64_t b;

	assert_int_equal(space_init(&sp, 8), 0);
	assert_int_equal(space_alloc(&sp, &b), 0);
	space_free(&sp, b);
	space_unfree(&sp);
	assert_true(space_is_used(&sp, b));
	assert_int_equal(sp.nr_used, 1);
	space_destroy(&sp);
}

static void test_space_grow_keeps_allocations(void **state)
{
	struct space sp;
	uint64_t b;

	assert_int_equal(space_init(&sp, 10), 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(space_alloc(&sp, &b), 0);
	assert_int_equal(space_grow(&sp, 5), -EINVAL);
	assert_int_equal(space_grow(&sp, 70000), 0); /* crosses a chunk boundary */
	for (int i = 0; i < 10; i++)
		assert_true(space_is_used(&sp, (uint64_t)i));
	assert_int_equal(space_alloc(&sp, &b), 0);
	assert_true(b >= 10);
	space_destroy(&sp);
}

static void test_space_persists_through_meta(void **state)
{
	struct meta_pool_row row = {.block_size = 4096, .nr_data_blocks = 70000};
	struct meta *m;
	struct space sp, sp2;
	uint64_t b;
	const char *db = tmp_path("space.db");

	unlink(db);
	snprintf(row.uuid, sizeof(row.uuid), "u");
	snprintf(row.data_path, sizeof(row.data_path), "data");
	assert_int_equal(meta_create(db, &row, NULL, 0), 0);
	assert_int_equal(meta_open(db, false, &m, NULL, 0), 0);
	assert_int_equal(space_init(&sp, 70000), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(space_alloc(&sp, &b), 0);
	space_set_used(&sp, 69999);
	assert_int_equal(meta_begin(m), 0);
	assert_int_equal(space_save(&sp, m), 0);
	assert_int_equal(meta_commit(m), 0);
	assert_int_equal(space_init(&sp2, 70000), 0);
	assert_int_equal(space_load(&sp2, m, NULL, NULL), 0);
	assert_int_equal(sp2.nr_used, 6);
	assert_true(space_is_used(&sp2, 69999));
	assert_true(space_is_used(&sp2, 4));
	assert_false(space_is_used(&sp2, 5));
	space_destroy(&sp);
	space_destroy(&sp2);
	meta_close(m);
}

/* ---- resolved views ---- */

static void test_vmap_sparse_set_get_find(void **state)
{
	struct vmap vm;

	vmap_init(&vm);
	assert_int_equal(vmap_get(&vm, 123456789), 0);
	assert_int_equal(vmap_set(&vm, 0, vm_make(5) | VM_OWN), 0);
	assert_int_equal(vmap_set(&vm, 10000000, vm_make(0)), 0);
	assert_true(vm_mapped(vmap_get(&vm, 10000000)));
	assert_int_equal(vm_dblock(vmap_get(&vm, 10000000)), 0);
	assert_int_equal(vm_dblock(vmap_get(&vm, 0)), 5);
	assert_true(vmap_get(&vm, 0) & VM_OWN);
	assert_int_equal(vm.nr_entries, 2);
	assert_int_equal(vmap_find(&vm, 1, 20000000, true), 10000000);
	assert_int_equal(vmap_find(&vm, 0, 20000000, false), 1);
	assert_int_equal(vmap_find(&vm, 10000000, 10000001, false), 10000001);
	/* a tombstone-only entry is not mapped */
	assert_int_equal(vmap_set(&vm, 7, VM_ROW), 0);
	assert_false(vm_mapped(vmap_get(&vm, 7)));
	assert_int_equal(vmap_set(&vm, 0, 0), 0);
	assert_int_equal(vm.nr_entries, 2);
	vmap_destroy(&vm);
}

static void count_entry(void *arg, uint64_t vblock, uint64_t *entry)
{
	uint64_t *seen = arg;

	seen[seen[0] + 1] = vblock;
	seen[0]++;
}

/* issue 17: any vblock of the largest device (2^51 - 1 with 4 KiB blocks)
 * is addressable with a few small arrays, and find/foreach skip what lies
 * between without walking it */
static void test_vmap_far_vblocks(void **state)
{
	const uint64_t far = (1ull << 51) - 1, mid = 1ull << 40;
	uint64_t seen[8] = {0};
	struct vmap vm;

	vmap_init(&vm);
	assert_int_equal(vmap_set(&vm, far, vm_make(3)), 0);
	assert_int_equal(vmap_reserve(&vm, mid), 0);
	assert_int_equal(vmap_set(&vm, 5, vm_make(4)), 0);
	assert_int_equal(vm_dblock(vmap_get(&vm, far)), 3);
	assert_int_equal(vmap_get(&vm, far - 1), 0);
	assert_int_equal(vmap_get(&vm, mid), 0);
	assert_int_equal(vmap_find(&vm, 6, far + 1, true), far);
	assert_int_equal(vmap_find(&vm, far, far + 1, false), far + 1);
	assert_int_equal(vmap_find(&vm, 6, far, true), far);
	vmap_foreach(&vm, 0, count_entry, seen);
	assert_int_equal(seen[0], 2);
	assert_int_equal(seen[1], 5);
	assert_int_equal(seen[2], far);
	assert_int_equal(vm.nr_entries, 2);
	vmap_destroy(&vm);
}

/* ---- data I/O ---- */

static struct dio *open_data(const char *name, uint64_t size)
{
	struct dio *d;

	unlink(tmp_path(name));
	assert_int_equal(dio_create(tmp_path(name), size, NULL, 0), 0);
	assert_int_equal(dio_open(tmp_path(name), false, &d, NULL, 0), 0);
	return d;
}

static void test_dio_misaligned_writes_and_reads(void **state)
{
	struct dio *d = open_data("d1", 1 << 20);
	unsigned char buf[10000], back[10000];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 7 + 1);
	/* odd offset, odd length, unaligned buffer: read-modify-write at both edges */
	assert_int_equal(dio_write(d, buf + 1, 9000, 4096 * 3 + 77), 0);
	assert_int_equal(dio_read(d, back, 9000, 4096 * 3 + 77), 0);
	assert_memory_equal(back, buf + 1, 9000);
	/* the bytes around it stay zero */
	assert_int_equal(dio_read(d, back, 77, 4096 * 3), 0);
	for (int i = 0; i < 77; i++)
		assert_int_equal(back[i], 0);
	/* a few bytes inside one sector */
	assert_int_equal(dio_write(d, "abc", 3, 4096 * 3 + 100), 0);
	assert_int_equal(dio_read(d, back, 5, 4096 * 3 + 99), 0);
	assert_int_equal(back[0], buf[1 + 22]);
	assert_memory_equal(back + 1, "abc", 3);
	dio_close(d);
}

static void test_dio_batches(void **state)
{
	/* 100 pieces, some misaligned, scattered backwards over the file: more
	 * than one batch of DIO_BATCH_MAX, every byte where it belongs */
	struct dio *d = open_data("db", 8 << 20);
	enum { N = 100, LEN = 8192 };
	unsigned char *src = dio_buffer(N * LEN), *back = dio_buffer(N * LEN);
	struct dio_seg w[N], r[N];

	assert_non_null(src);
	assert_non_null(back);
	for (size_t i = 0; i < N * LEN; i++)
		src[i] = (unsigned char)(i * 13 + i / 4096);
	for (int i = 0; i < N; i++) {
		size_t len = i % 10 == 3 ? LEN - 100 : LEN; /* a misaligned one now and then */
		uint64_t off = (uint64_t)(N - 1 - i) * 3 * LEN + (i % 10 == 3 ? 50 : 0);
		w[i] = (struct dio_seg){src + i * LEN, len, off};
		r[i] = (struct dio_seg){back + i * LEN, len, off};
	}
	memset(back, 0xee, N * LEN);
	assert_int_equal(dio_write_batch(d, w, N), 0);
	assert_int_equal(dio_read_batch(d, r, N), 0);
	for (int i = 0; i < N; i++) {
		assert_memory_equal(back + i * LEN, src + i * LEN, w[i].len);
		unsigned char one[LEN];
		assert_int_equal(dio_read(d, one, w[i].len, w[i].offset), 0);
		assert_memory_equal(one, src + i * LEN, w[i].len);
	}
	/* the gaps between the pieces stay zero */
	assert_int_equal(dio_read(d, back, LEN, LEN), 0);
	for (int i = 0; i < LEN; i++)
		assert_int_equal(back[i], 0);
	/* each piece of an aligned batch is one transfer, counted once */
	struct dio_stats a, b;
	dio_stats(d, &a);
	assert_int_equal(dio_write_batch(d, w, 3), 0);
	assert_int_equal(dio_read_batch(d, r, 3), 0);
	dio_stats(d, &b);
	assert_int_equal(b.writes - a.writes, 3);
	assert_int_equal(b.write_bytes - a.write_bytes, 3 * LEN);
	assert_int_equal(b.reads - a.reads, 3);
	assert_int_equal(b.read_bytes - a.read_bytes, 3 * LEN);
	/* an error in a batch is reported */
	dio_test_fail_write(d, 2, -EIO);
	assert_int_equal(dio_write_batch(d, w, 4), -EIO);
	free(src);
	free(back);
	dio_close(d);
}

static void test_dio_punch_copy_size(void **state)
{
	struct dio *d = open_data("d2", 1 << 20);
	char *buf = dio_buffer(65536), *back = dio_buffer(65536);
	uint64_t size, start, end;

	memset(buf, 0x33, 65536);
	assert_int_equal(dio_write(d, buf, 65536, 0), 0);
	assert_int_equal(dio_copy(d, 0, 131072, 65536), 0);
	assert_int_equal(dio_read(d, back, 65536, 131072), 0);
	assert_memory_equal(back, buf, 65536);
	assert_int_equal(dio_flush(d), 0);
	assert_int_equal(dio_punch(d, 0, 65536), 0);
	assert_int_equal(dio_read(d, back, 65536, 0), 0);
	for (int i = 0; i < 65536; i++)
		assert_int_equal(back[i], 0);
	assert_int_equal(dio_size(d, &size), 0);
	assert_int_equal(size, 1 << 20);
	assert_int_equal(dio_grow(d, 2 << 20), 0);
	assert_int_equal(dio_size(d, &size), 0);
	assert_int_equal(size, 2 << 20);
	/* the copy is the only data left */
	assert_int_equal(dio_next_data(d, 0, &start, &end), 0);
	assert_int_equal(start, 131072);
	free(buf);
	free(back);
	dio_close(d);
}

static void test_dio_lost_unflushed_writes(void **state)
{
	struct dio *d = open_data("d3", 1 << 20);
	char a[4096], b[4096];

	memset(a, 1, sizeof(a));
	assert_int_equal(dio_write(d, a, 4096, 0), 0);
	dio_test_track_unflushed(d, true);
	assert_int_equal(dio_flush(d), 0);
	memset(a, 2, sizeof(a));
	assert_int_equal(dio_write(d, a, 4096, 0), 0);
	assert_int_equal(dio_write(d, a, 4096, 8192), 0);
	assert_int_equal(dio_test_lose_unflushed(d), 2);
	assert_int_equal(dio_read(d, b, 4096, 0), 0);
	assert_int_equal(b[0], 1); /* back to what was flushed */
	assert_int_equal(dio_read(d, b, 4096, 8192), 0);
	assert_int_equal(b[0], 0);
	dio_close(d);
}

static void test_dio_refuses_symlink_and_directory(void **state)
{
	struct dio *d;
	char msg[POOL_MSG_MAX];

	assert_int_equal(symlink(tmp_path("d3"), tmp_path("link")), 0);
	assert_int_equal(dio_open(tmp_path("link"), false, &d, msg, sizeof(msg)), -ELOOP);
	assert_non_null(strstr(msg, "symlink"));
	assert_int_equal(dio_open(tmpdir, false, &d, msg, sizeof(msg)) < 0, 1);
	assert_int_equal(dio_create(tmp_path("d3"), 4096, msg, sizeof(msg)), -EEXIST);
}

/* ---- metadata store ---- */

static void test_meta_refuses_foreign_and_newer(void **state)
{
	struct meta *m;
	char msg[POOL_MSG_MAX];
	sqlite3 *db;
	const char *foreign = tmp_path("foreign.db"), *junk = tmp_path("junk.db");
	int fd;

	unlink(foreign);
	assert_int_equal(sqlite3_open(foreign, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(meta_open(foreign, true, &m, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "not a thinfs pool"));

	fd = open(junk, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	assert_true(write(fd, "this is not a database at all, not even close......", 50) == 50);
	close(fd);
	assert_true(meta_open(junk, true, &m, msg, sizeof(msg)) < 0);
	assert_non_null(strstr(msg, "not a thinfs pool"));

	struct meta_pool_row row = {.block_size = 4096, .nr_data_blocks = 8};
	const char *newer = tmp_path("newer.db");
	unlink(newer);
	assert_int_equal(meta_create(newer, &row, NULL, 0), 0);
	assert_int_equal(sqlite3_open(newer, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=7", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(meta_open(newer, true, &m, msg, sizeof(msg)), -EPROTONOSUPPORT);
	assert_non_null(strstr(msg, "format 7 newer than 3"));
}

static int first_device(void *arg, const struct meta_device_row *r)
{
	*(struct meta_device_row *)arg = *r;
	return 0;
}

/* A format-1 database (no generation, no copy_of, no refs or origins tables)
 * opens read-only as it is and is migrated to the current format by a
 * read-write open, keeping its rows. */
static void test_meta_migrates_format_1(void **state)
{
	struct meta_pool_row row = {.block_size = 4096, .nr_data_blocks = 8};
	struct meta_device_row dev = {.name = "v", .size = 4096, .generation = 5};
	const char *path = tmp_path("v1.db");
	struct meta *m;
	sqlite3 *db;
	uint64_t l;
	int version = 0;

	unlink(path);
	assert_int_equal(meta_create(path, &row, NULL, 0), 0);
	assert_int_equal(meta_open(path, false, &m, NULL, 0), 0);
	assert_int_equal(meta_begin(m), 0);
	assert_int_equal(meta_layer_insert(m, 0, &l), 0);
	dev.layer = l;
	assert_int_equal(meta_device_insert(m, &dev), 0);
	assert_int_equal(meta_commit(m), 0);
	meta_close(m);
	/* back to what format 1 was */
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "ALTER TABLE devices DROP COLUMN generation; ALTER TABLE "
				      "devices DROP COLUMN copy_of; DROP TABLE refs; DROP TABLE "
				      "origins; PRAGMA user_version=1",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);

	memset(&dev, 0, sizeof(dev));
	assert_int_equal(meta_open(path, true, &m, NULL, 0), 0);
	assert_int_equal(meta_device_foreach(m, first_device, &dev), 0);
	assert_string_equal(dev.name, "v");
	assert_int_equal(dev.generation, 0);
	meta_close(m);

	assert_int_equal(meta_open(path, false, &m, NULL, 0), 0);
	dev.generation = 3;
	snprintf(dev.copy_of, sizeof(dev.copy_of), "%s", "elsewhere");
	assert_int_equal(meta_begin(m), 0);
	assert_int_equal(meta_device_update(m, &dev), 0);
	assert_int_equal(meta_commit(m), 0);
	memset(&dev, 0, sizeof(dev));
	assert_int_equal(meta_device_foreach(m, first_device, &dev), 0);
	assert_int_equal(dev.generation, 3);
	assert_string_equal(dev.copy_of, "elsewhere");
	meta_close(m);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	version = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	/* the tables format 3 added are there */
	assert_int_equal(sqlite3_exec(db, "SELECT count(*) FROM refs; SELECT count(*) FROM origins",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(version, META_FORMAT_VERSION);
}

static int count_rows(void *arg, uint64_t vblock, uint64_t dblock, uint64_t time)
{
	(*(int *)arg)++;
	return 0;
}

static void test_meta_map_rows_move_and_tombstones(void **state)
{
	struct meta_pool_row row = {.block_size = 4096, .nr_data_blocks = 8};
	const char *db = tmp_path("map.db");
	struct meta *m;
	uint64_t l1, l2, d, n;
	int rows = 0;

	unlink(db);
	assert_int_equal(meta_create(db, &row, NULL, 0), 0);
	assert_int_equal(meta_open(db, false, &m, NULL, 0), 0);
	assert_int_equal(meta_begin(m), 0);
	assert_int_equal(meta_layer_insert(m, 0, &l1), 0);
	assert_int_equal(meta_layer_insert(m, l1, &l2), 0);
	assert_int_equal(meta_map_put(m, l1, 0, 10, 0), 0);
	assert_int_equal(meta_map_put(m, l1, 1, 11, 0), 0);
	assert_int_equal(meta_map_put(m, l2, 1, META_TOMBSTONE, 1), 0);
	assert_int_equal(meta_map_put(m, l2, 2, 12, 1), 0);
	assert_int_equal(meta_map_get(m, l2, 1, &d), 0);
	assert_int_equal(d, META_TOMBSTONE);
	assert_int_equal(meta_map_get(m, l2, 0, &d), -ENOENT);
	/* move l2 into l1, l2's rows winning */
	assert_int_equal(meta_map_move(m, l2, l1, false), 0);
	assert_int_equal(meta_map_count(m, l2, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(meta_map_get(m, l1, 1, &d), 0);
	assert_int_equal(d, META_TOMBSTONE);
	assert_int_equal(meta_map_drop_tombstones(m, l1), 0);
	assert_int_equal(meta_map_foreach(m, l1, 0, count_rows, &rows), 0);
	assert_int_equal(rows, 2);
	assert_int_equal(meta_map_delete_from(m, l1, 2), 0);
	assert_int_equal(meta_map_count(m, l1, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(meta_commit(m), 0);
	char jm[16];
	int sync;
	assert_int_equal(meta_settings(m, jm, sizeof(jm), &sync), 0);
	assert_string_equal(jm, "wal");
	assert_int_equal(sync, 2);
	meta_close(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_space_alloc_until_enospc),
	    cmocka_unit_test(test_space_alloc_run),
	    cmocka_unit_test(test_space_free_is_deferred_until_release),
	    cmocka_unit_test(test_space_unfree_restores),
	    cmocka_unit_test(test_space_grow_keeps_allocations),
	    cmocka_unit_test(test_space_persists_through_meta),
	    cmocka_unit_test(test_vmap_sparse_set_get_find),
	    cmocka_unit_test(test_vmap_far_vblocks),
	    cmocka_unit_test(test_dio_misaligned_writes_and_reads),
	    cmocka_unit_test(test_dio_batches),
	    cmocka_unit_test(test_dio_punch_copy_size),
	    cmocka_unit_test(test_dio_lost_unflushed_writes),
	    cmocka_unit_test(test_dio_refuses_symlink_and_directory),
	    cmocka_unit_test(test_meta_refuses_foreign_and_newer),
	    cmocka_unit_test(test_meta_migrates_format_1),
	    cmocka_unit_test(test_meta_map_rows_move_and_tombstones),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
