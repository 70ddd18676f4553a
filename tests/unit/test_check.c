/* SPDX-License-Identifier: MIT */
/*
 * test_check.c - the corruption matrix of check and check --repair (issue
 * 12): every table of meta.db, and the data file, damaged one way at a time
 * behind the pool's back, each:
 *   - found by check, at its level (exit code) with its message;
 *   - remembered: a damaged pool opens read-only (or is refused) until
 *     repaired;
 *   - repaired by --repair, which says "repaired" for every finding and
 *     nothing "not repaired", and exits 0;
 *   - clean for a check after the repair, opened read-write again, and
 *     every device reads what it read before the damage (where the damage
 *     did not itself lose data, which the case then says).
 * And the refusals: fatal damage is never "repaired" and changes nothing.
 */
#include <fcntl.h>
#include <sqlite3.h>

#include "unit_helpers.h"

#define BS 4096ull
#define NBLK 64
#define VSIZE (8 * BS)

/* The pristine pool: v (vblocks 0-3 'a'..'d', then vblock 1 'X' after the
 * set), set s (s/v: 'a'..'d'), w a writable snapshot of v (vblock 2 'Y'). */
static char g_dir[64], g_pristine[96];

static void fill(struct pool *p, const char *dev, uint64_t vb, int c)
{
	struct volume *v;
	char buf[BS];

	memset(buf, c, sizeof(buf));
	assert_int_equal(pool_volume_open(p, dev, &v), 0);
	assert_int_equal(pool_write(v, buf, BS, vb * BS), (ssize_t)BS);
	pool_volume_close(v);
}

static int setup(void **state)
{
	struct pool_format_opts o = {.block_size = BS, .data_size = BS * NBLK};
	char msg[POOL_MSG_MAX];
	struct pool *p;

	snprintf(g_dir, sizeof(g_dir), "/tmp/thinfs-check.XXXXXX");
	assert_non_null(mkdtemp(g_dir));
	snprintf(g_pristine, sizeof(g_pristine), "%s/pristine", g_dir);
	assert_int_equal(pool_format(g_pristine, &o, msg, sizeof(msg)), 0);
	assert_int_equal(pool_open(g_pristine, 0, "test", &p, msg, sizeof(msg)), 0);
	assert_int_equal(pool_create(p, "v", VSIZE, msg, sizeof(msg)), 0);
	for (int i = 0; i < 4; i++)
		fill(p, "v", (uint64_t)i, 'a' + i);
	assert_int_equal(pool_snapshot_set(p, "s", msg, sizeof(msg)), 0);
	fill(p, "v", 1, 'X');
	assert_int_equal(pool_snapshot(p, "v", "w", msg, sizeof(msg)), 0);
	fill(p, "w", 2, 'Y');
	assert_int_equal(pool_close(p), 0);
	return 0;
}

static int teardown(void **state)
{
	fx_rmrf(g_dir);
	return 0;
}

static void copy_pristine(const char *to)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -a '%s' '%s'", to, g_pristine, to);
	assert_int_equal(system(cmd), 0);
}

/* pool_check's exit code, and its report in *out (free it). */
static int run_check(const char *pool, bool repair, char **out)
{
	char msg[POOL_MSG_MAX] = "";
	size_t len = 0;
	FILE *mf = open_memstream(out, &len);
	int rc = pool_check(pool, repair, mf, msg, sizeof(msg));

	fclose(mf);
	if (rc < 0)
		fprintf(stderr, "check: %s\n", msg);
	return rc;
}

/* What a device reads at vblock vb: its first byte, if the block is uniform;
 * -1 when it is not (or the device does not exist). */
static int block_byte(struct pool *p, const char *dev, uint64_t vb)
{
	unsigned char buf[BS];
	struct volume *v;
	ssize_t n;

	if (pool_volume_open(p, dev, &v))
		return -1;
	n = pool_read(v, buf, BS, vb * BS);
	pool_volume_close(v);
	if (n != (ssize_t)BS)
		return -1;
	for (size_t i = 1; i < BS; i++)
		if (buf[i] != buf[0])
			return -1;
	return buf[0];
}

/* What the pristine devices read, vblocks 0..4 (0 = zeros). */
static const char *const expect_dev[] = {"v", "s/v", "w"};
static const char expect_bytes[3][5] = {
    {'a', 'X', 'c', 'd', 0},
    {'a', 'b', 'c', 'd', 0},
    {'a', 'X', 'Y', 'd', 0},
};

enum { KEEP_ALL = 0, KEEP_NOT_W = 1, KEEP_V_HEAD = 2 };

struct corruption {
	const char *name;
	const char *sql;  /* NULL: the data file is truncated instead */
	int level;	  /* what check says */
	const char *text; /* a piece of its report */
	int keep;	  /* which reads survive */
};

#define LEAF(dev) "(SELECT layer FROM devices WHERE set_name = '' AND name = '" dev "')"
#define ROOT "(SELECT id FROM layers WHERE parent IS NULL)"
#define ROOT_ROW_DB(vb) "(SELECT dblock FROM map WHERE layer = " ROOT " AND vblock = " #vb ")"

static const struct corruption matrix[] = {
    {"map: a block mapped twice",
     "INSERT INTO map(layer, vblock, dblock, time) SELECT " LEAF("w") ", 0, " ROOT_ROW_DB(0) ", 0",
     CHECK_DAMAGED, "is mapped twice", KEEP_ALL},
    {"map: a mapping past the end of the data",
     "INSERT INTO map(layer, vblock, dblock, time) SELECT " LEAF("v") ", 4, 999999, 0",
     CHECK_DAMAGED, "past the end of the data", KEEP_ALL},
    {"map: a mapping past the device's size",
     "UPDATE devices SET size = 8192 WHERE name = 'v' "
     "AND set_name = ''",
     CHECK_DAMAGED, "past its size", KEEP_V_HEAD},
    {"map: rows of a layer nothing names",
     "INSERT INTO map(layer, vblock, dblock, time) VALUES(999, 0, 60, 0), (999, 1, 61, 0)",
     CHECK_DAMAGED, "name layer 999, which nothing else names", KEEP_ALL},
    {"space: a mapped block marked free", "UPDATE space SET bits = zeroblob(4096)", CHECK_DAMAGED,
     "but marked free", KEEP_ALL},
    {"space: a leaked block",
     "UPDATE space SET bits = substr(bits, 1, 6) || x'80' || "
     "substr(bits, 8)",
     CHECK_CLEAN, "leak: data block 55 is marked used but mapped nowhere", KEEP_ALL},
    {"space: a damaged row", "UPDATE space SET bits = x'00'", CHECK_DAMAGED,
     "space row 0 is damaged (1 bytes)", KEEP_ALL},
    {"space: bits past the end of the data",
     "UPDATE space SET bits = substr(bits, 1, 12) || x'ff' || substr(bits, 14)", CHECK_DAMAGED,
     "past the end of the data used", KEEP_ALL},
    {"layers: a wrong row count", "UPDATE layers SET nr_rows = nr_rows + 5 WHERE id = " ROOT,
     CHECK_DAMAGED, "rows but holds", KEEP_ALL},
    {"layers: a missing interior row", "DELETE FROM layers WHERE id = " ROOT, CHECK_DAMAGED,
     "which is missing", KEEP_ALL},
    {"layers: a device's missing leaf row", "DELETE FROM layers WHERE id = " LEAF("w"),
     CHECK_DAMAGED, "names layer", KEEP_NOT_W},
    {"layers: a cycle of parents", "UPDATE layers SET parent = " LEAF("v") " WHERE id = " ROOT,
     CHECK_DAMAGED, "closes a cycle", KEEP_NOT_W | KEEP_V_HEAD},
    {"layers: a device leaf with children",
     "UPDATE layers SET parent = " LEAF("w") " WHERE id = " LEAF("v"), CHECK_DAMAGED,
     "child layer(s)", KEEP_NOT_W | KEEP_V_HEAD},
    {"layers: an unused layer holding a block",
     "INSERT INTO layers(id, parent, nr_rows) VALUES(500, NULL, 1); "
     "INSERT INTO map(layer, vblock, dblock, time) VALUES(500, 0, 50, 0); "
     "UPDATE space SET bits = substr(bits, 1, 6) || x'04' || substr(bits, 8)",
     CHECK_CLEAN, "leak: layer 500 has no device and no children", KEEP_ALL},
    {"devices: a wrong mapped count", "UPDATE devices SET mapped = 77 WHERE name = 'w'",
     CHECK_DAMAGED, "records 77 mapped blocks", KEEP_ALL},
    {"devices: an invalid name", "UPDATE devices SET name = '.hidden' WHERE name = 'w'",
     CHECK_DAMAGED, "has an invalid name", KEEP_NOT_W},
    {"devices: a writable set member", "UPDATE devices SET read_only = 0 WHERE set_name = 's'",
     CHECK_DAMAGED, "is not read-only", KEEP_ALL},
    {"sets: a missing set row", "DELETE FROM sets WHERE name = 's'", CHECK_DAMAGED,
     "which has no row", KEEP_ALL},
    {"pool: pool time behind a device", "UPDATE pool SET pool_time = 0", CHECK_DAMAGED,
     "is behind a device's time", KEEP_ALL},
    {"pool: needs_check set", "UPDATE pool SET needs_check = 1", CHECK_DAMAGED,
     "needs_check is set", KEEP_ALL},
    {"sqlite: a stale index",
     "PRAGMA writable_schema = ON; UPDATE sqlite_master SET sql = 'CREATE INDEX layers_parent "
     "ON layers(nr_rows)' WHERE name = 'layers_parent'",
     CHECK_DAMAGED, "missing from index", KEEP_ALL},
    {"data: a truncated data file", NULL, CHECK_DAMAGED, "the data file is 32768 bytes", KEEP_ALL},
};

static void expect_reads(const char *pool, int keep, const char *what)
{
	char msg[POOL_MSG_MAX];
	struct pool *p;

	if (pool_open(pool, POOL_OPEN_RDONLY, "test", &p, msg, sizeof(msg)))
		fail_msg("%s: open after repair: %s", what, msg);
	for (int d = 0; d < 3; d++) {
		if ((keep & KEEP_NOT_W) && d == 2)
			continue;
		for (int vb = 0; vb < 5; vb++) {
			if ((keep & KEEP_V_HEAD) && d == 0 && vb >= 2)
				continue;
			int got = block_byte(p, expect_dev[d], (uint64_t)vb);
			if (got != expect_bytes[d][vb])
				fail_msg("%s: %s vblock %d reads %d, wanted %d", what,
					 expect_dev[d], vb, got, expect_bytes[d][vb]);
		}
	}
	pool_close(p);
}

/* A damaged pool is never opened for writing before the repair. */
static void expect_not_writable(const char *pool, const char *what)
{
	char msg[POOL_MSG_MAX];
	struct pool_status st;
	struct pool *p;

	if (pool_open(pool, 0, "test", &p, msg, sizeof(msg)))
		return; /* refused, with the command to run */
	assert_int_equal(pool_status(p, &st), 0);
	if (!st.read_only)
		fail_msg("%s: a damaged pool opened read-write (mode %s)", what, st.mode);
	pool_close(p);
}

static void expect_writable(const char *pool, const char *what)
{
	char msg[POOL_MSG_MAX];
	struct pool_status st;
	struct pool *p;

	if (pool_open(pool, 0, "test", &p, msg, sizeof(msg)))
		fail_msg("%s: open after the repair: %s", what, msg);
	assert_int_equal(pool_status(p, &st), 0);
	if (st.read_only || st.needs_check)
		fail_msg("%s: still read-only after the repair", what);
	pool_close(p);
}

static void run_case(const struct corruption *k, const char *pool)
{
	char *out = NULL, path[160];
	int rc;

	copy_pristine(pool);
	if (k->sql) {
		fx_sql(pool, k->sql);
	} else {
		snprintf(path, sizeof(path), "%s/data", pool);
		assert_int_equal(truncate(path, 8 * BS), 0);
	}
	rc = run_check(pool, false, &out);
	if (rc != k->level || !strstr(out, k->text))
		fail_msg("%s: check gave %d, wanted %d with '%s':\n%s", k->name, rc, k->level,
			 k->text, out);
	free(out);
	if (k->level >= CHECK_DAMAGED)
		expect_not_writable(pool, k->name);
	rc = run_check(pool, true, &out);
	if (rc != CHECK_CLEAN || strstr(out, "not repaired") || !strstr(out, ": repaired ("))
		fail_msg("%s: repair gave %d:\n%s", k->name, rc, out);
	free(out);
	rc = run_check(pool, false, &out);
	if (rc != CHECK_CLEAN || out[0])
		fail_msg("%s: check after the repair gave %d:\n%s", k->name, rc, out);
	free(out);
	expect_writable(pool, k->name);
	expect_reads(pool, k->keep, k->name);
}

static void test_check_corruption_matrix(void **state)
{
	char pool[128];

	for (size_t i = 0; i < sizeof(matrix) / sizeof(matrix[0]); i++) {
		snprintf(pool, sizeof(pool), "%s/case%zu", g_dir, i);
		run_case(&matrix[i], pool);
		fx_rmrf(pool);
	}
}

static void test_check_pristine_is_clean(void **state)
{
	char *out = NULL;

	assert_int_equal(run_check(g_pristine, false, &out), CHECK_CLEAN);
	assert_string_equal(out, "");
	free(out);
	expect_reads(g_pristine, KEEP_ALL, "pristine");
}

/* A block mapped twice in a full pool: no block to copy into: said, not
 * claimed, and the pool stays read-only. */
static void test_repair_without_space_says_so(void **state)
{
	char pool[128], msg[POOL_MSG_MAX], *out = NULL;
	struct pool *p;
	int rc;

	snprintf(pool, sizeof(pool), "%s/full", g_dir);
	copy_pristine(pool);
	assert_int_equal(pool_open(pool, 0, "test", &p, msg, sizeof(msg)), 0);
	assert_int_equal(pool_create(p, "f", NBLK * BS, msg, sizeof(msg)), 0);
	for (uint64_t vb = 0; vb < NBLK; vb++) {
		struct volume *v;
		char buf[BS];
		memset(buf, 'F', sizeof(buf));
		assert_int_equal(pool_volume_open(p, "f", &v), 0);
		ssize_t n = pool_write(v, buf, BS, vb * BS);
		pool_volume_close(v);
		if (n == -ENOSPC)
			break;
		assert_int_equal(n, (ssize_t)BS);
	}
	assert_int_equal(pool_close(p), 0);
	fx_sql(pool, "INSERT INTO map(layer, vblock, dblock, time) SELECT " LEAF(
			 "w") ", 0, " ROOT_ROW_DB(0) ", 0");
	rc = run_check(pool, true, &out);
	if (rc != CHECK_DAMAGED || !strstr(out, "not repaired (no free data block") ||
	    !strstr(out, "still there after the repair"))
		fail_msg("repair with no space gave %d:\n%s", rc, out);
	free(out);
	expect_not_writable(pool, "mapped twice, no space");
	fx_rmrf(pool);
}

/* Fatal damage (a page of garbage in meta.db): --repair changes nothing and
 * claims nothing. */
static void test_fatal_damage_is_left_alone(void **state)
{
	char pool[128], path[160], *out = NULL, garbage[65536];
	struct stat before, after;
	sqlite3 *db;
	sqlite3_stmt *s;
	int rc, root = 0, psize = 0, fd;

	snprintf(pool, sizeof(pool), "%s/fatal", g_dir);
	copy_pristine(pool);
	snprintf(path, sizeof(path), "%s/meta.db", pool);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL), 0);
	assert_int_equal(
	    sqlite3_prepare_v2(db,
			       "SELECT rootpage, (SELECT page_size FROM "
			       "pragma_page_size) FROM sqlite_master WHERE name = 'map'",
			       -1, &s, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	root = sqlite3_column_int(s, 0);
	psize = sqlite3_column_int(s, 1);
	sqlite3_finalize(s);
	sqlite3_close(db);
	assert_true(root > 1 && psize > 0 && psize <= (int)sizeof(garbage));
	for (int i = 0; i < psize; i++)
		garbage[i] = (char)(i * 131 + 7);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, garbage, (size_t)psize, (off_t)(root - 1) * psize), psize);
	close(fd);
	assert_int_equal(stat(path, &before), 0);
	rc = run_check(pool, false, &out);
	if (rc != CHECK_FATAL && rc >= 0)
		fail_msg("check gave %d:\n%s", rc, out);
	free(out);
	rc = run_check(pool, true, &out);
	if ((rc != CHECK_FATAL && rc >= 0) || strstr(out, ": repaired ("))
		fail_msg("repair of fatal damage gave %d:\n%s", rc, out);
	free(out);
	assert_int_equal(stat(path, &after), 0);
	assert_int_equal(before.st_mtime, after.st_mtime);
	assert_int_equal(before.st_size, after.st_size);
	expect_not_writable(pool, "fatal");
	fx_rmrf(pool);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_check_pristine_is_clean),
	    cmocka_unit_test(test_check_corruption_matrix),
	    cmocka_unit_test(test_repair_without_space_says_so),
	    cmocka_unit_test(test_fatal_damage_is_left_alone),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
