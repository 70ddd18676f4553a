/* SPDX-License-Identifier: MIT */
/*
 * test_interop.c - dump, restore, delta, send and receive: the XML's format,
 * dump -> restore -> dump byte for byte on pools with snapshots of snapshots,
 * discards and sets, hand-written XML (also <def>/<ref>), every malformed
 * input refused with nothing left behind, delta exactly the blocks written,
 * and a chain of snapshots sent and received byte for byte, incremental
 * streams small, corrupt streams and wrong bases refused.
 */
#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>

#include "unit_helpers.h"
#include "thinfs/interop.h"
#include "interop/interop_internal.h"
#include "thinfs/pool_test.h"

#define BS 4096u

/* ---- helpers ---- */

static void put_block(struct fixture *f, const char *name, uint64_t vb, int c)
{
	fx_fill(f, name, vb * BS, BS, c);
}

static void discard_block(struct fixture *f, const char *name, uint64_t vb)
{
	struct volume *v;

	assert_int_equal(pool_volume_open(f->p, name, &v), 0);
	assert_int_equal(pool_discard(v, vb * BS, BS), 0);
	pool_volume_close(v);
}

static char *dump_of(struct pool *p)
{
	char *buf = NULL, msg[POOL_MSG_MAX];
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	if (pool_dump(p, f, msg, sizeof(msg)))
		fail_msg("dump: %s", msg);
	fclose(f);
	return buf;
}

static int restore_str(const char *dir, const char *xml, const char *data, char *msg)
{
	FILE *f = fmemopen((void *)xml, strlen(xml), "r");
	int rc;

	assert_non_null(f);
	rc = pool_restore(dir, f, data, msg, POOL_MSG_MAX);
	fclose(f);
	return rc;
}

static void check_clean(const char *dir)
{
	char *out = NULL, msg[POOL_MSG_MAX];
	size_t len = 0;
	FILE *mf = open_memstream(&out, &len);
	int rc = pool_check(dir, false, mf, msg, sizeof(msg));

	fclose(mf);
	if (rc != 0 || len)
		fail_msg("check %s returned %d: %s", dir, rc, out ? out : "");
	free(out);
}

static struct pool *open_pool(const char *dir, unsigned flags)
{
	struct pool *p;
	char msg[POOL_MSG_MAX];

	if (pool_open(dir, flags, "unit test", &p, msg, sizeof(msg)))
		fail_msg("open %s: %s", dir, msg);
	return p;
}

/* The whole content of a device. */
static unsigned char *read_all(struct pool *p, const char *name, uint64_t *size)
{
	struct pool_device_info info;
	struct volume *v;
	unsigned char *buf;

	assert_int_equal(pool_device_info(p, name, &info), 0);
	*size = info.size;
	buf = malloc(info.size ? info.size : 1);
	assert_non_null(buf);
	assert_int_equal(pool_volume_open(p, name, &v), 0);
	assert_int_equal(pool_read(v, buf, info.size, 0), (ssize_t)info.size);
	pool_volume_close(v);
	return buf;
}

static void expect_same_content(struct pool *a, const char *na, struct pool *b, const char *nb)
{
	uint64_t sa, sb;
	unsigned char *x = read_all(a, na, &sa), *y = read_all(b, nb, &sb);

	assert_int_equal(sa, sb);
	for (uint64_t i = 0; i < sa; i++)
		if (x[i] != y[i])
			fail_msg("%s vs %s: byte %llu differs (%#x, %#x)", na, nb,
				 (unsigned long long)i, x[i], y[i]);
	free(x);
	free(y);
}

static bool path_exists(const char *p)
{
	struct stat sb;

	return lstat(p, &sb) == 0;
}

static size_t dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

static void copy_file(const char *from, const char *to)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s' '%s'", from, to);
	assert_int_equal(system(cmd), 0);
}

/* A pool with most shapes the layer tree can take. */
static void build_busy_pool(struct fixture *f)
{
	fx_create(f, "vol1", 64 * BS);
	fx_create(f, "gone", 8 * BS);
	fx_create(f, "vol-2--x&<\"q\">\xc3\xa9", 10 * BS + 100);
	for (int i = 0; i < 12; i++)
		put_block(f, "vol1", (uint64_t)i, 'a' + i);
	put_block(f, "vol1", 40, 'z');
	put_block(f, "gone", 0, 'g');
	fx_fill(f, "vol-2--x&<\"q\">\xc3\xa9", 10 * BS, 100, 'p');
	put_block(f, "vol-2--x&<\"q\">\xc3\xa9", 3, 'q');
	fx_delete(f, "gone"); /* a gap in the device ids */
	/* O, S1, S2 of O, S2 overwrites an old block: overlapping sharing sets */
	fx_snap(f, "vol1", "s1");
	put_block(f, "vol1", 20, 'c');
	fx_snap(f, "vol1", "s2");
	put_block(f, "s2", 1, 'B');
	put_block(f, "s2", 5, 'C');
	/* S3 of S2 after S2 wrote vblock 5; then S3 and vol1 diverge */
	fx_snap(f, "s2", "s3");
	put_block(f, "s3", 2, 'D');
	put_block(f, "vol1", 2, 'E');
	discard_block(f, "s1", 7);
	discard_block(f, "vol1", 8);
	/* snapshots of snapshots, a set, more writes after it */
	fx_snap(f, "s3", "s4");
	put_block(f, "s4", 30, 'F');
	if (pool_snapshot_set(f->p, "monday", f->msg, sizeof(f->msg)))
		fail_msg("set: %s", f->msg);
	put_block(f, "vol1", 0, 'G');
	discard_block(f, "s4", 0);
	put_block(f, "s1", 63, 'H');
	assert_int_equal(pool_commit(f->p), 0);
}

/* ---- tests ---- */

static void test_crc32c_known_value(void **state)
{
	assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283u);
	/* in pieces, unaligned */
	uint32_t c = crc32c(0, "12", 2);
	assert_int_equal(crc32c(c, "3456789", 7), 0xe3069283u);
}

static void test_dump_format(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	char *x;

	fx_create(f, "vol1", 16 * BS);
	put_block(f, "vol1", 0, 'a');
	put_block(f, "vol1", 1, 'b');
	put_block(f, "vol1", 2, 'c');
	put_block(f, "vol1", 9, 'd');
	x = dump_of(f->p);
	assert_non_null(strstr(x, "<superblock uuid=\""));
	assert_non_null(strstr(x, "\" flags=\"0\" version=\"2\" data_block_size=\"8\" "
				  "nr_data_blocks=\"64\">\n"));
	assert_non_null(strstr(x, "  <device dev_id=\"1\" mapped_blocks=\"4\" transaction=\""));
	assert_non_null(strstr(x, "    <range_mapping origin_begin=\"0\" data_begin=\"0\" "
				  "length=\"3\" time=\"0\"/>\n"));
	assert_non_null(strstr(x, "    <single_mapping origin_block=\"9\" data_block=\"3\" "
				  "time=\"0\"/>\n"));
	assert_non_null(strstr(x, "<!-- thinfs device dev_id=\"1\" set=\"\" name=\"vol1\" "
				  "size=\"65536\" read_only=\"0\""));
	assert_non_null(strstr(x, "  </device>\n</superblock>\n"));
	free(x);
	fx_free(f);
}

static void test_dump_escapes_names_in_comments(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	char *x;

	fx_create(f, "a--b-&<\"x\">-", BS);
	x = dump_of(f->p);
	assert_non_null(strstr(x, "name=\"a-&#45;b-&amp;&lt;&quot;x&quot;&gt;-\""));
	/* nothing a comment may not hold: no "--" inside any comment */
	for (char *c = strstr(x, "<!--"); c; c = strstr(c + 4, "<!--")) {
		char *e = strstr(c + 4, "-->");
		assert_non_null(e);
		for (char *p = c + 4; p < e; p++)
			assert_false(p[0] == '-' && p[1] == '-');
	}
	free(x);
	fx_free(f);
}

static void test_dump_restore_dump_identical(void **state)
{
	struct fixture *f = fx_new(BS, 256);
	char dir2[160], msg[POOL_MSG_MAX];
	char *x0, *x1;
	struct pool *p2;

	build_busy_pool(f);
	fx_check_clean(f);
	/* the pool's properties travel too (the ones set, not the defaults) */
	char *props[] = {"low_water=33", "discard=nopassdown"};
	assert_int_equal(pool_prop_set(f->p, props, 2, msg, sizeof(msg)), 0);
	x0 = dump_of(f->p);
	assert_non_null(strstr(x0, "<!-- thinfs property key=\"low_water\" value=\"33\" -->"));
	assert_null(strstr(x0, "key=\"queue_timeout\""));
	snprintf(dir2, sizeof(dir2), "%s/restored", f->dir);
	if (restore_str(dir2, x0, NULL, msg))
		fail_msg("restore: %s\n%s", msg, x0);
	check_clean(dir2);
	p2 = open_pool(dir2, 0);
	x1 = dump_of(p2);
	if (strcmp(x0, x1))
		fail_msg("dumps differ:\n%s\n----\n%s", x0, x1);
	struct pool_prop pr;
	assert_int_equal(pool_prop_get(p2, (size_t)pool_prop_index("discard"), &pr), 0);
	assert_string_equal(pr.value, "nopassdown");
	assert_false(pr.is_default);
	/* the same sharing, device by device */
	struct pool_device_info *a, *b;
	size_t na, nb;
	assert_int_equal(pool_list(f->p, true, &a, &na), 0);
	assert_int_equal(pool_list(p2, true, &b, &nb), 0);
	assert_int_equal(na, nb);
	for (size_t i = 0; i < na; i++) {
		assert_string_equal(a[i].name, b[i].name);
		assert_string_equal(a[i].set, b[i].set);
		assert_int_equal(a[i].id, b[i].id);
		assert_int_equal(a[i].size, b[i].size);
		assert_int_equal(a[i].read_only, b[i].read_only);
		assert_int_equal(a[i].mapped_blocks, b[i].mapped_blocks);
		assert_int_equal(a[i].exclusive_blocks, b[i].exclusive_blocks);
		assert_int_equal(a[i].shared_blocks, b[i].shared_blocks);
	}
	free(a);
	free(b);
	/* the restored pool works: write, snapshot, delete, check */
	struct volume *v;
	char buf[BS];
	memset(buf, 'w', sizeof(buf));
	assert_int_equal(pool_volume_open(p2, "s2", &v), 0);
	assert_int_equal(pool_write(v, buf, BS, 1 * BS), BS);
	pool_volume_close(v);
	assert_int_equal(pool_delete(p2, "vol1", msg, sizeof(msg)), 0);
	assert_int_equal(pool_close(p2), 0);
	check_clean(dir2);
	free(x0);
	free(x1);
	fx_free(f);
}

static void test_restore_adopts_data(void **state)
{
	struct fixture *f = fx_new(BS, 256);
	char dir2[160], data2[160], src[160], msg[POOL_MSG_MAX], *x0, *x1;
	struct pool_device_info *devs;
	struct pool *p2;
	size_t n;

	build_busy_pool(f);
	x0 = dump_of(f->p);
	assert_int_equal(pool_close(f->p), 0);
	f->p = NULL;
	snprintf(src, sizeof(src), "%s/data", f->pool);
	snprintf(data2, sizeof(data2), "%s/image", f->dir);
	copy_file(src, data2);
	snprintf(dir2, sizeof(dir2), "%s/adopted", f->dir);
	if (restore_str(dir2, x0, data2, msg))
		fail_msg("restore: %s", msg);
	check_clean(dir2);
	f->p = open_pool(f->pool, POOL_OPEN_RDONLY);
	p2 = open_pool(dir2, 0);
	x1 = dump_of(p2);
	assert_string_equal(x0, x1);
	assert_int_equal(pool_list(f->p, false, &devs, &n), 0);
	for (size_t i = 0; i < n; i++) {
		char name[600];
		snprintf(name, sizeof(name), "%s%s%s", devs[i].set, devs[i].set[0] ? "/" : "",
			 devs[i].name);
		expect_same_content(f->p, name, p2, name);
	}
	free(devs);
	/* a new block in the adopted pool reads zeros outside what was written */
	struct volume *v;
	char buf[BS];
	assert_int_equal(pool_volume_open(p2, "vol1", &v), 0);
	assert_int_equal(pool_write(v, "x", 1, 50 * BS), 1);
	assert_int_equal(pool_read(v, buf, BS, 50 * BS), BS);
	assert_int_equal(buf[0], 'x');
	for (int i = 1; i < (int)BS; i++)
		assert_int_equal(buf[i], 0);
	pool_volume_close(v);
	pool_close(p2);
	free(x0);
	free(x1);
	fx_free(f);
}

static const char *restore_crash_at;

static int restore_crash(void *arg, const char *point)
{
	if (!strcmp(point, restore_crash_at))
		_exit(0); /* the power goes here */
	return 0;
}

/* A restore that dies at `point`, adopting an image with junk in free block 255. */
static void crashed_restore(const char *point, char *dir2, char *data2, size_t len)
{
	struct fixture *f = fx_new(BS, 256);
	char src[160], msg[POOL_MSG_MAX], junk[BS];
	char *x0;
	pid_t pid;
	int st, fd;

	build_busy_pool(f);
	x0 = dump_of(f->p);
	assert_int_equal(pool_close(f->p), 0);
	f->p = NULL;
	snprintf(src, sizeof(src), "%s/data", f->pool);
	snprintf(data2, len, "%s.image", f->dir);
	copy_file(src, data2);
	fd = open(data2, O_WRONLY);
	memset(junk, 'J', sizeof(junk));
	assert_int_equal(pwrite(fd, junk, BS, 255 * BS), BS);
	close(fd);
	snprintf(dir2, len, "%s.restored", f->dir);
	pid = fork();
	if (pid == 0) {
		restore_crash_at = point;
		pool_test_set_restore_hook(restore_crash, NULL);
		restore_str(dir2, x0, data2, msg);
		_exit(1); /* never got to the point */
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(WEXITSTATUS(st), 0);
	free(x0);
	fx_free(f);
}

/* Killed after its metadata: the pool must not look complete. */
static void test_restore_crash_after_meta_needs_check(void **state)
{
	char dir2[160], data2[160], msg[POOL_MSG_MAX];
	struct pool_status st;
	struct pool *p;

	crashed_restore("restore/after_meta", dir2, data2, sizeof(dir2));
	assert_int_equal(pool_open(dir2, 0, "unit", &p, msg, sizeof(msg)), 0);
	pool_status(p, &st);
	assert_true(st.needs_check);
	assert_string_equal(st.mode, "ro");
	pool_close(p);
	fx_rmrf(dir2);
	unlink(data2);
}

/* Killed before the image's free blocks were punched: the next open does it. */
static void test_restore_crash_before_punch_scrubbed(void **state)
{
	char dir2[160], data2[160], msg[POOL_MSG_MAX], buf[BS];
	struct pool_status st;
	struct pool *p;
	int fd;

	crashed_restore("restore/before_finish", dir2, data2, sizeof(dir2));
	assert_int_equal(pool_open(dir2, 0, "unit", &p, msg, sizeof(msg)), 0);
	pool_status(p, &st);
	assert_string_equal(st.mode, "rw");
	pool_close(p);
	fd = open(data2, O_RDONLY);
	assert_int_equal(pread(fd, buf, BS, 255 * BS), BS);
	close(fd);
	for (size_t i = 0; i < BS; i++)
		if (buf[i])
			fail_msg("free block 255 of the adopted image still holds old data");
	check_clean(dir2);
	fx_rmrf(dir2);
	unlink(data2);
}

static void test_dump_read_only_pool(void **state)
{
	struct fixture *f = fx_new(BS, 128);
	struct pool *ro;
	char *a, *b;

	build_busy_pool(f);
	a = dump_of(f->p);
	ro = open_pool(f->pool, POOL_OPEN_RDONLY);
	b = dump_of(ro);
	assert_string_equal(a, b);
	pool_close(ro);
	free(a);
	free(b);
	fx_free(f);
}

static const char handwritten[] =
    "<superblock uuid=\"\" time=\"2\" transaction=\"7\" flags=\"0\" version=\"2\" "
    "data_block_size=\"128\" nr_data_blocks=\"100\">\n"
    "  <def name=\"base\">\n"
    "    <range_mapping origin_begin=\"0\" data_begin=\"10\" length=\"4\" time=\"0\"/>\n"
    "  </def>\n"
    "  <device dev_id=\"0\" mapped_blocks=\"5\" transaction=\"1\" creation_time=\"0\" "
    "snap_time=\"1\">\n"
    "    <ref name=\"base\"/>\n"
    "    <single_mapping origin_block=\"9\" data_block=\"50\" time=\"1\"/>\n"
    "  </device>\n"
    "  <device dev_id=\"5\" mapped_blocks=\"4\" transaction=\"1\" creation_time=\"1\" "
    "snap_time=\"1\">\n"
    "    <range_mapping origin_begin=\"0\" data_begin=\"10\" length=\"2\" time=\"0\"/>\n"
    "    <ref name=\"base\"/>\n"
    "  </device>\n"
    "</superblock>\n";

static void test_restore_handwritten_def_ref(void **state)
{
	char dir[] = "/tmp/thinfs-unit.XXXXXX", pool[64], msg[POOL_MSG_MAX];
	struct pool_device_info *d;
	struct pool_status st;
	struct pool *p;
	size_t n;

	assert_non_null(mkdtemp(dir));
	snprintf(pool, sizeof(pool), "%s/p", dir);
	/* dev 5 maps 0-1 twice (its own run and the ref): refused */
	assert_int_equal(restore_str(pool, handwritten, NULL, msg), -EINVAL);
	assert_non_null(strstr(msg, "device 5 maps vblock 0 twice"));
	assert_false(path_exists(pool));
	/* without the overlap */
	char *x = strdup(handwritten);
	char *cut =
	    strstr(x, "    <range_mapping origin_begin=\"0\" data_begin=\"10\" length=\"2\"");
	char *end = strchr(cut, '\n') + 1;
	memmove(cut, end, strlen(end) + 1);
	if (restore_str(pool, x, NULL, msg))
		fail_msg("restore: %s", msg);
	check_clean(pool);
	p = open_pool(pool, 0);
	assert_int_equal(pool_status(p, &st), 0);
	assert_int_equal(st.block_size, 65536);
	assert_int_equal(st.nr_data_blocks, 100);
	assert_int_equal(st.transaction_id, 7);
	assert_int_equal(st.pool_time, 2);
	assert_int_equal(st.used_blocks, 5);
	assert_int_equal(pool_list(p, true, &d, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(d[0].name, "dev0");
	assert_int_equal(d[0].id, 0);
	assert_int_equal(d[0].size, 10 * 65536);
	assert_int_equal(d[0].mapped_blocks, 5);
	assert_int_equal(d[0].shared_blocks, 4);
	assert_int_equal(d[0].exclusive_blocks, 1);
	assert_string_equal(d[1].name, "dev5");
	assert_int_equal(d[1].id, 5);
	assert_int_equal(d[1].size, 4 * 65536);
	assert_int_equal(d[1].exclusive_blocks, 0);
	free(d);
	/* and it dumps back the same mappings, in thin_dump's shape */
	char *y = dump_of(p);
	assert_non_null(strstr(y, "  <device dev_id=\"5\" mapped_blocks=\"4\" transaction=\"7\" "
				  "creation_time=\"1\" snap_time=\"1\">\n    <range_mapping "
				  "origin_begin=\"0\" data_begin=\"10\" length=\"4\" time=\"0\"/>\n"
				  "  </device>\n"));
	pool_close(p);
	free(x);
	free(y);
	fx_rmrf(dir);
}

/* Sharing that is not laminar, with no thinfs comments: the tree is derived. */
static void test_restore_derives_tree_for_overlapping_sets(void **state)
{
	/* O=1 S1=2 S2=3 S3=4: {1,2} and {3,4} at vblock 0, {2,3} at vblock 1,
	 * {1,2,3,4} at vblock 2, own blocks elsewhere */
	static const char xml[] =
	    "<superblock uuid=\"\" time=\"3\" transaction=\"1\" data_block_size=\"8\" "
	    "nr_data_blocks=\"20\">\n"
	    "<device dev_id=\"1\" mapped_blocks=\"3\" transaction=\"0\" creation_time=\"0\" "
	    "snap_time=\"2\">\n"
	    "<single_mapping origin_block=\"0\" data_block=\"0\" time=\"0\"/>\n"
	    "<single_mapping origin_block=\"1\" data_block=\"5\" time=\"2\"/>\n"
	    "<single_mapping origin_block=\"2\" data_block=\"9\" time=\"0\"/>\n"
	    "</device>\n"
	    "<device dev_id=\"2\" mapped_blocks=\"3\" transaction=\"0\" creation_time=\"1\" "
	    "snap_time=\"1\">\n"
	    "<single_mapping origin_block=\"0\" data_block=\"0\" time=\"0\"/>\n"
	    "<single_mapping origin_block=\"1\" data_block=\"1\" time=\"0\"/>\n"
	    "<single_mapping origin_block=\"2\" data_block=\"9\" time=\"0\"/>\n"
	    "</device>\n"
	    "<device dev_id=\"3\" mapped_blocks=\"3\" transaction=\"0\" creation_time=\"1\" "
	    "snap_time=\"2\">\n"
	    "<single_mapping origin_block=\"0\" data_block=\"2\" time=\"1\"/>\n"
	    "<single_mapping origin_block=\"1\" data_block=\"1\" time=\"0\"/>\n"
	    "<single_mapping origin_block=\"2\" data_block=\"9\" time=\"0\"/>\n"
	    "</device>\n"
	    "<device dev_id=\"4\" mapped_blocks=\"2\" transaction=\"0\" creation_time=\"2\" "
	    "snap_time=\"2\">\n"
	    "<single_mapping origin_block=\"0\" data_block=\"2\" time=\"1\"/>\n"
	    "<single_mapping origin_block=\"2\" data_block=\"9\" time=\"0\"/>\n"
	    "</device>\n"
	    "</superblock>\n";
	char dir[] = "/tmp/thinfs-unit.XXXXXX", pool[64], pool2[64], msg[POOL_MSG_MAX];
	struct pool_device_info *d;
	struct pool *p;
	size_t n;

	assert_non_null(mkdtemp(dir));
	snprintf(pool, sizeof(pool), "%s/p", dir);
	if (restore_str(pool, xml, NULL, msg))
		fail_msg("restore: %s", msg);
	check_clean(pool);
	p = open_pool(pool, 0);
	assert_int_equal(pool_list(p, true, &d, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(d[0].mapped_blocks, 3);
	assert_int_equal(d[0].exclusive_blocks, 1);
	assert_int_equal(d[3].mapped_blocks, 2);
	assert_int_equal(d[3].exclusive_blocks, 0);
	free(d);
	char *x0 = dump_of(p);
	snprintf(pool2, sizeof(pool2), "%s/q", dir);
	if (restore_str(pool2, x0, NULL, msg))
		fail_msg("restore 2: %s", msg);
	struct pool *q = open_pool(pool2, POOL_OPEN_RDONLY);
	char *x1 = dump_of(q);
	assert_string_equal(x0, x1);
	pool_close(q);
	pool_close(p);
	free(x0);
	free(x1);
	fx_rmrf(dir);
}

static const struct bad_xml {
	const char *what, *xml, *expect;
} bad_inputs[] = {
    {"empty input", "", "malformed XML"},
    {"not XML", "hello", "malformed XML"},
    {"unclosed",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\">",
     "malformed XML"},
    {"wrong root", "<device/>", "where <superblock> was expected"},
    {"unknown element",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\"><volume/></superblock>",
     "unknown element <volume>"},
    {"unknown attribute",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\" colour=\"red\"></superblock>",
     "unknown attribute 'colour'"},
    {"missing attribute",
     "<superblock uuid=\"\" time=\"0\" data_block_size=\"8\" nr_data_blocks=\"10\">"
     "</superblock>",
     "lacks attribute 'transaction'"},
    {"bad number",
     "<superblock uuid=\"\" time=\"-1\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\"></superblock>",
     "not a number"},
    {"bad block size",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"7\" "
     "nr_data_blocks=\"10\"></superblock>",
     "power of two"},
    {"text",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\">words</superblock>",
     "unexpected text"},
    {"doctype",
     "<!DOCTYPE superblock><superblock uuid=\"\" time=\"0\" transaction=\"0\" "
     "data_block_size=\"8\" nr_data_blocks=\"10\"></superblock>",
     "DOCTYPE"},
    {"overlap",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\"><device dev_id=\"1\" mapped_blocks=\"3\" transaction=\"0\" "
     "creation_time=\"0\" snap_time=\"0\"><range_mapping origin_begin=\"0\" data_begin=\"0\" "
     "length=\"2\" time=\"0\"/><single_mapping origin_block=\"1\" data_block=\"5\" "
     "time=\"0\"/></device></superblock>",
     "maps vblock 1 twice"},
    {"beyond nr_data_blocks",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\"><device dev_id=\"1\" mapped_blocks=\"2\" transaction=\"0\" "
     "creation_time=\"0\" snap_time=\"0\"><range_mapping origin_begin=\"0\" data_begin=\"9\" "
     "length=\"2\" time=\"0\"/></device></superblock>",
     "beyond nr_data_blocks"},
    {"mapped_blocks lies",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\"><device dev_id=\"1\" mapped_blocks=\"5\" transaction=\"0\" "
     "creation_time=\"0\" snap_time=\"0\"><single_mapping origin_block=\"0\" data_block=\"3\" "
     "time=\"0\"/></device></superblock>",
     "mapped_blocks says 5"},
    {"duplicate device",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\"><device dev_id=\"1\" mapped_blocks=\"0\" transaction=\"0\" "
     "creation_time=\"0\" snap_time=\"0\"/><device dev_id=\"1\" mapped_blocks=\"0\" "
     "transaction=\"0\" creation_time=\"0\" snap_time=\"0\"/></superblock>",
     "appears twice"},
    {"ref without def",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\"><device dev_id=\"1\" mapped_blocks=\"0\" transaction=\"0\" "
     "creation_time=\"0\" snap_time=\"0\"><ref name=\"x\"/></device></superblock>",
     "names no <def>"},
    {"mapping with children",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\"><device dev_id=\"1\" mapped_blocks=\"1\" transaction=\"0\" "
     "creation_time=\"0\" snap_time=\"0\"><single_mapping origin_block=\"0\" "
     "data_block=\"3\" time=\"0\"><device/></single_mapping></device></superblock>",
     "inside a mapping"},
    {"zero length",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\"><device dev_id=\"1\" mapped_blocks=\"0\" transaction=\"0\" "
     "creation_time=\"0\" snap_time=\"0\"><range_mapping origin_begin=\"0\" data_begin=\"0\" "
     "length=\"0\" time=\"0\"/></device></superblock>",
     "length 0"},
    {"bad thinfs comment",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\"><!-- thinfs device dev_id=\"1\" name=\"a/b\" parent_layer=\"0\" -->"
     "<device dev_id=\"1\" mapped_blocks=\"0\" transaction=\"0\" creation_time=\"0\" "
     "snap_time=\"0\"/></superblock>",
     "invalid name"},
    {"comment for no device",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\"><!-- thinfs device dev_id=\"2\" name=\"a\" parent_layer=\"0\" -->"
     "<device dev_id=\"1\" mapped_blocks=\"0\" transaction=\"0\" creation_time=\"0\" "
     "snap_time=\"0\"/></superblock>",
     "has no <device>"},
    {"layer with one child",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\"><!-- thinfs layer id=\"1\" parent=\"0\" -->"
     "<!-- thinfs device dev_id=\"1\" name=\"a\" parent_layer=\"1\" -->"
     "<device dev_id=\"1\" mapped_blocks=\"0\" transaction=\"0\" creation_time=\"0\" "
     "snap_time=\"0\"/></superblock>",
     "fewer than two children"},
    {"mapping past the size",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\"><!-- thinfs device dev_id=\"1\" name=\"a\" size=\"4096\" "
     "parent_layer=\"0\" --><device dev_id=\"1\" mapped_blocks=\"1\" transaction=\"0\" "
     "creation_time=\"0\" snap_time=\"0\"><single_mapping origin_block=\"1\" data_block=\"3\" "
     "time=\"0\"/></device></superblock>",
     "beyond its size"},
    {"same names",
     "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"8\" "
     "nr_data_blocks=\"10\"><!-- thinfs device dev_id=\"1\" name=\"dev2\" parent_layer=\"0\" -->"
     "<device dev_id=\"1\" mapped_blocks=\"0\" transaction=\"0\" creation_time=\"0\" "
     "snap_time=\"0\"/><device dev_id=\"2\" mapped_blocks=\"0\" transaction=\"0\" "
     "creation_time=\"0\" snap_time=\"0\"/></superblock>",
     "both named 'dev2'"},
};

static void test_restore_refuses_malformed_input(void **state)
{
	char dir[] = "/tmp/thinfs-unit.XXXXXX", pool[64], empty[64], msg[POOL_MSG_MAX];

	assert_non_null(mkdtemp(dir));
	snprintf(pool, sizeof(pool), "%s/p", dir);
	snprintf(empty, sizeof(empty), "%s/empty", dir);
	assert_int_equal(mkdir(empty, 0700), 0);
	for (size_t i = 0; i < sizeof(bad_inputs) / sizeof(bad_inputs[0]); i++) {
		const struct bad_xml *b = &bad_inputs[i];
		msg[0] = 0;
		if (restore_str(pool, b->xml, NULL, msg) >= 0)
			fail_msg("%s: accepted", b->what);
		if (!strstr(msg, b->expect))
			fail_msg("%s: message '%s' lacks '%s'", b->what, msg, b->expect);
		assert_false(path_exists(pool));
		/* into an existing directory: it stays as it was */
		assert_true(restore_str(empty, b->xml, NULL, msg) < 0);
		assert_int_equal(dir_entries(empty), 0);
	}
	fx_rmrf(dir);
}

static void test_restore_refuses_existing_pool(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	char *x;

	fx_create(f, "vol1", BS);
	put_block(f, "vol1", 0, 'a');
	x = dump_of(f->p);
	pool_close(f->p);
	f->p = NULL;
	assert_int_equal(restore_str(f->pool, x, NULL, f->msg), -EEXIST);
	assert_non_null(strstr(f->msg, "already holds a pool"));
	f->p = open_pool(f->pool, 0);
	fx_expect(f, "vol1", 0, BS, 'a');
	fx_check_clean(f);
	free(x);
	fx_free(f);
}

static char *delta_of(struct pool *p, const char *a, const char *b, int format)
{
	char *buf = NULL, msg[POOL_MSG_MAX];
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	if (pool_delta(p, a, b, format, f, msg, sizeof(msg)))
		fail_msg("delta: %s", msg);
	fclose(f);
	return buf;
}

static void test_delta_exact_after_single_block_writes(void **state)
{
	struct fixture *f = fx_new(BS, 256);
	char *r, *x, expect[512];

	fx_create(f, "vol", 32 * BS);
	for (int i = 0; i < 32; i++)
		put_block(f, "vol", (uint64_t)i, 'a');
	fx_snap(f, "vol", "snap");
	r = delta_of(f->p, "snap", "vol", POOL_DELTA_RANGES);
	assert_string_equal(r, "");
	free(r);
	/* first, last, two adjacent */
	put_block(f, "vol", 0, 'b');
	put_block(f, "vol", 31, 'b');
	put_block(f, "vol", 10, 'b');
	put_block(f, "vol", 11, 'b');
	r = delta_of(f->p, "snap", "vol", POOL_DELTA_RANGES);
	snprintf(expect, sizeof(expect), "0 %u\n%u %u\n%u %u\n", BS, 10 * BS, 2 * BS, 31 * BS, BS);
	assert_string_equal(r, expect);
	free(r);
	x = delta_of(f->p, "snap", "vol", POOL_DELTA_XML);
	assert_non_null(strstr(x, "  <diff left=\"2\" right=\"1\">\n"
				  "    <different begin=\"0\" length=\"1\"/>\n"
				  "    <same begin=\"1\" length=\"9\"/>\n"
				  "    <different begin=\"10\" length=\"2\"/>\n"
				  "    <same begin=\"12\" length=\"19\"/>\n"
				  "    <different begin=\"31\" length=\"1\"/>\n"
				  "  </diff>\n</superblock>\n"));
	free(x);
	/* a discard and a write to a hole: left_only / right_only */
	discard_block(f, "vol", 5);
	fx_create(f, "other", 4 * BS);
	put_block(f, "other", 2, 'o');
	x = delta_of(f->p, "snap", "vol", POOL_DELTA_XML);
	assert_non_null(strstr(x, "    <same begin=\"1\" length=\"4\"/>\n"
				  "    <left_only begin=\"5\" length=\"1\"/>\n"
				  "    <same begin=\"6\" length=\"4\"/>\n"));
	free(x);
	r = delta_of(f->p, "vol", "other", POOL_DELTA_RANGES);
	snprintf(expect, sizeof(expect), "0 %u\n%u %u\n", 5 * BS, 6 * BS, 26 * BS);
	assert_string_equal(r, expect);
	free(r);
	assert_int_equal(
	    pool_delta(f->p, "vol", "nope", POOL_DELTA_XML, stdout, f->msg, sizeof(f->msg)),
	    -ENOENT);
	fx_free(f);
}

/* ---- send / receive ---- */

static size_t send_to(struct pool *p, const char *snap, const char *from, char **buf)
{
	char msg[POOL_MSG_MAX];
	size_t len = 0;
	FILE *f = open_memstream(buf, &len);

	assert_non_null(f);
	if (pool_send(p, snap, from, f, msg, sizeof(msg)))
		fail_msg("send %s: %s", snap, msg);
	fclose(f);
	return len;
}

static int receive_from(struct pool *p, const char *name, const char *buf, size_t len, char *msg)
{
	FILE *f = fmemopen((void *)buf, len, "r");
	int rc;

	assert_non_null(f);
	rc = pool_receive(p, name, f, msg, POOL_MSG_MAX);
	fclose(f);
	return rc;
}

struct two_pools {
	struct fixture *a, *b;
	char *s[3];
	size_t len[3];
};

/* A: vol with snapshots s1, s2, s3 (k blocks changed between each);
 * streams: s1 full, s2 from s1, s3 from s2. */
static void make_chain(struct two_pools *t)
{
	struct fixture *a = fx_new(BS, 512);

	t->a = a;
	t->b = fx_new(BS, 512);
	fx_create(a, "vol", 100 * BS + 123);
	for (int i = 0; i < 60; i++)
		put_block(a, "vol", (uint64_t)i, 'A' + i % 26);
	put_block(a, "vol", 70, 0); /* mapped, all zeros */
	fx_fill(a, "vol", 100 * BS, 123, 't');
	fx_snap(a, "vol", "s1");
	put_block(a, "vol", 0, '1');
	put_block(a, "vol", 33, '1');
	discard_block(a, "vol", 50);
	fx_snap(a, "vol", "s2");
	put_block(a, "vol", 99, '2');
	put_block(a, "vol", 34, '2');
	put_block(a, "vol", 35, '2');
	fx_snap(a, "vol", "s3");
	t->len[0] = send_to(a->p, "s1", NULL, &t->s[0]);
	t->len[1] = send_to(a->p, "s2", "s1", &t->s[1]);
	t->len[2] = send_to(a->p, "s3", "s2", &t->s[2]);
}

static void free_chain(struct two_pools *t)
{
	for (int i = 0; i < 3; i++)
		free(t->s[i]);
	fx_free(t->a);
	fx_free(t->b);
}

static void test_send_receive_chain(void **state)
{
	struct two_pools t;
	static const char *const names[] = {"s1", "s2", "s3"};
	const size_t overhead = 17 + 4; /* per record */
	const size_t header = 512;

	make_chain(&t);
	/* incremental streams: 3 changed blocks, then 3 */
	assert_true(t.len[1] <= header + 3 * (BS + overhead) + 64);
	assert_true(t.len[2] <= header + 3 * (BS + overhead) + 64);
	assert_true(t.len[0] >= 60 * BS + 123); /* 60 data blocks, the tail, a zero run */
	for (int i = 0; i < 3; i++) {
		if (receive_from(t.b->p, names[i], t.s[i], t.len[i], t.b->msg))
			fail_msg("receive %s: %s", names[i], t.b->msg);
	}
	for (int i = 0; i < 3; i++)
		expect_same_content(t.a->p, names[i], t.b->p, names[i]);
	assert_int_equal(fx_mapped(t.b, "s1"), fx_mapped(t.a, "s1"));
	assert_int_equal(fx_mapped(t.b, "s3"), fx_mapped(t.a, "s3"));
	fx_check_clean(t.b);
	/* received devices are bases in turn: B -> C by identity */
	struct fixture *c = fx_new(BS, 512);
	char *s;
	size_t len = send_to(t.b->p, "s1", NULL, &s);
	assert_int_equal(receive_from(c->p, "copy1", s, len, c->msg), 0);
	free(s);
	/* A's incremental s2-from-s1 applies on C's copy of s1 */
	if (receive_from(c->p, "copy2", t.s[1], t.len[1], c->msg))
		fail_msg("receive on C: %s", c->msg);
	expect_same_content(t.a->p, "s2", c->p, "copy2");
	fx_check_clean(c);
	fx_free(c);
	free_chain(&t);
}

static void expect_nothing_received(struct fixture *f, const char *name)
{
	struct pool_device_info info;
	char tmp[300];

	snprintf(tmp, sizeof(tmp), "%s.partial", name);
	assert_int_equal(pool_device_info(f->p, name, &info), -ENOENT);
	assert_int_equal(pool_device_info(f->p, tmp, &info), -ENOENT);
}

static void test_receive_refuses_corrupt_stream(void **state)
{
	struct two_pools t;
	uint64_t used;

	make_chain(&t);
	used = fx_used(t.b);
	/* a flipped byte: in a block's data, in the header, in the end record */
	size_t spots[] = {t.len[0] / 2, 20, t.len[0] - 10, t.len[0] - 1};
	for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
		t.s[0][spots[i]] ^= 0x40;
		assert_true(receive_from(t.b->p, "x", t.s[0], t.len[0], t.b->msg) < 0);
		t.s[0][spots[i]] ^= 0x40;
		expect_nothing_received(t.b, "x");
	}
	/* truncated */
	assert_int_equal(receive_from(t.b->p, "x", t.s[0], t.len[0] - 40, t.b->msg), -EPIPE);
	expect_nothing_received(t.b, "x");
	assert_int_equal(receive_from(t.b->p, "x", t.s[0], 10, t.b->msg), -EINVAL);
	/* nothing leaked, and the intact stream still goes in */
	assert_int_equal(pool_commit(t.b->p), 0);
	assert_int_equal(fx_used(t.b), used);
	assert_int_equal(receive_from(t.b->p, "x", t.s[0], t.len[0], t.b->msg), 0);
	expect_same_content(t.a->p, "s1", t.b->p, "x");
	/* an existing name is refused */
	assert_int_equal(receive_from(t.b->p, "x", t.s[0], t.len[0], t.b->msg), -EEXIST);
	fx_check_clean(t.b);
	free_chain(&t);
}

static void test_receive_refuses_wrong_base(void **state)
{
	struct two_pools t;

	make_chain(&t);
	/* no base at all */
	assert_int_equal(receive_from(t.b->p, "s2", t.s[1], t.len[1], t.b->msg), -ENOENT);
	assert_non_null(strstr(t.b->msg, "base 's1'"));
	expect_nothing_received(t.b, "s2");
	/* s3's stream needs s2, not s1 */
	assert_int_equal(receive_from(t.b->p, "s1", t.s[0], t.len[0], t.b->msg), 0);
	assert_int_equal(receive_from(t.b->p, "s3", t.s[2], t.len[2], t.b->msg), -ENOENT);
	/* a look-alike made locally is not the base */
	fx_create(t.b, "fake", 100 * BS + 123);
	assert_int_equal(receive_from(t.b->p, "s3", t.s[2], t.len[2], t.b->msg), -ENOENT);
	/* a base changed after it was received is refused */
	discard_block(t.b, "s1", 3);
	assert_int_equal(receive_from(t.b->p, "s2", t.s[1], t.len[1], t.b->msg), -ESTALE);
	expect_nothing_received(t.b, "s2");
	fx_check_clean(t.b);
	free_chain(&t);
}

static void test_send_receive_same_pool_and_set_member(void **state)
{
	struct fixture *f = fx_new(BS, 256);
	char *s;
	size_t len;

	fx_create(f, "vol", 8 * BS);
	put_block(f, "vol", 1, 'x');
	if (pool_snapshot_set(f->p, "mon", f->msg, sizeof(f->msg)))
		fail_msg("set: %s", f->msg);
	put_block(f, "vol", 2, 'y');
	discard_block(f, "vol", 1);
	len = send_to(f->p, "vol", "mon/vol", &s);
	/* the base is mon/vol itself, by identity */
	if (receive_from(f->p, "vol-copy", s, len, f->msg))
		fail_msg("receive: %s", f->msg);
	expect_same_content(f->p, "vol", f->p, "vol-copy");
	fx_check_clean(f);
	free(s);
	fx_free(f);
}

/* Drop every thinfs comment: what a dump from dm-thin looks like. */
static char *strip_comments(const char *x)
{
	char *out = malloc(strlen(x) + 1), *o = out;

	assert_non_null(out);
	while (*x) {
		const char *c = strstr(x, "  <!--");
		if (!c) {
			strcpy(o, x);
			return out;
		}
		memcpy(o, x, (size_t)(c - x));
		o += c - x;
		x = strstr(c, "-->\n") + 4;
	}
	*o = 0;
	return out;
}

/* The devices' mappings of a dump (every line from the first <device> on). */
static const char *mappings_of(const char *x)
{
	const char *d = strstr(x, "  <device ");

	return d ? d : "";
}

/* Random histories of creates, snapshots, writes, discards, deletes and sets:
 * dump -> restore -> dump is identical and checks clean; without the thinfs
 * comments the derived tree gives the same mappings, or a clean refusal. */
static void test_random_histories_round_trip(void **state)
{
	unsigned seed = 12345;
	int derived_ok = 0, derived_refused = 0;

	for (int round = 0; round < 25; round++) {
		struct fixture *f = fx_new(BS, 1024);
		char names[16][32], dir2[160], dir3[160], msg[POOL_MSG_MAX];
		int nr = 0, sets = 0;

		for (int step = 0; step < 40; step++) {
			int op = rand_r(&seed) % 10;
			if (nr == 0 || op == 0) {
				if (nr == 16)
					continue;
				snprintf(names[nr], sizeof(names[nr]), "v%d", step);
				fx_create(f, names[nr++], 24 * BS);
			} else if (op <= 2 && nr < 16) {
				int o = rand_r(&seed) % nr;
				snprintf(names[nr], sizeof(names[nr]), "s%d", step);
				fx_snap(f, names[o], names[nr++]);
			} else if (op <= 6) {
				int v = rand_r(&seed) % nr;
				put_block(f, names[v], (uint64_t)(rand_r(&seed) % 24),
					  'a' + step % 26);
			} else if (op == 7) {
				int v = rand_r(&seed) % nr;
				discard_block(f, names[v], (uint64_t)(rand_r(&seed) % 24));
			} else if (op == 8 && nr > 1) {
				int v = rand_r(&seed) % nr;
				fx_delete(f, names[v]);
				memmove(names[v], names[v + 1],
					(size_t)(nr - v - 1) * sizeof(names[0]));
				nr--;
			} else if (op == 9 && sets < 2) {
				char set[16];
				snprintf(set, sizeof(set), "set%d", sets++);
				if (pool_snapshot_set(f->p, set, msg, sizeof(msg)))
					fail_msg("set: %s", msg);
			}
		}
		fx_check_clean(f);
		char *x0 = dump_of(f->p);
		snprintf(dir2, sizeof(dir2), "%s/r", f->dir);
		if (restore_str(dir2, x0, NULL, msg))
			fail_msg("round %d: restore: %s\n%s", round, msg, x0);
		check_clean(dir2);
		struct pool *p2 = open_pool(dir2, POOL_OPEN_RDONLY);
		char *x1 = dump_of(p2);
		if (strcmp(x0, x1))
			fail_msg("round %d: dumps differ:\n%s\n----\n%s", round, x0, x1);
		pool_close(p2);
		/* the derived tree */
		char *bare = strip_comments(x0);
		snprintf(dir3, sizeof(dir3), "%s/d", f->dir);
		if (restore_str(dir3, bare, NULL, msg)) {
			if (!strstr(msg, "cannot represent the sharing"))
				fail_msg("round %d: derived restore: %s", round, msg);
			assert_false(path_exists(dir3));
			derived_refused++;
		} else {
			check_clean(dir3);
			struct pool *p3 = open_pool(dir3, POOL_OPEN_RDONLY);
			char *x2 = dump_of(p3);
			/* the same mappings; the devices' names are dev<ID> there */
			const char *a = mappings_of(x0), *b = mappings_of(x2);
			char *a2 = strip_comments(a), *b2 = strip_comments(b);
			assert_string_equal(a2, b2);
			free(a2);
			free(b2);
			free(x2);
			pool_close(p3);
			derived_ok++;
		}
		free(bare);
		free(x0);
		free(x1);
		fx_free(f);
	}
	print_message("derived trees: %d restored, %d refused\n", derived_ok, derived_refused);
}

/* ---- replication with identity (issue 12) ---- */

static uint64_t gen_of(struct fixture *f, const char *name)
{
	struct pool_device_info info;

	assert_int_equal(pool_device_info(f->p, name, &info), 0);
	return info.generation;
}

/* Everything a receive could have changed: the dump (transaction id, pool
 * time, every device's row and mapping) and the blocks in use. */
struct pool_state {
	char *dump;
	uint64_t used;
};

static struct pool_state state_of(struct fixture *f)
{
	struct pool_state s = {dump_of(f->p), fx_used(f)};

	return s;
}

static void expect_state(struct fixture *f, struct pool_state *before)
{
	char *now = dump_of(f->p);

	assert_string_equal(now, before->dump);
	assert_int_equal(fx_used(f), before->used);
	free(now);
	free(before->dump);
}

/* A write-opening makes the generation odd before the first change, the
 * last close even again, resize adds 2, a crash moves it on at the next
 * open; reads and set members never move it. */
static void test_generation_moves_with_every_change(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct volume *v;
	char buf[512] = "x";

	fx_create(f, "v", 8 * BS);
	assert_int_equal(gen_of(f, "v"), 0);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(pool_read(v, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_int_equal(gen_of(f, "v"), 0); /* reading is no change */
	assert_int_equal(pool_write(v, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_int_equal(gen_of(f, "v"), 1);
	assert_int_equal(pool_write(v, buf, sizeof(buf), BS), (ssize_t)sizeof(buf));
	assert_int_equal(gen_of(f, "v"), 1); /* one odd generation per opening */
	pool_volume_close(v);
	assert_int_equal(gen_of(f, "v"), 2);
	/* an in-place write moves it too: no mapping changes there */
	put_block(f, "v", 0, 'y');
	assert_int_equal(gen_of(f, "v"), 4);
	discard_block(f, "v", 1);
	assert_int_equal(gen_of(f, "v"), 6);
	assert_int_equal(pool_resize(f->p, "v", 16 * BS, f->msg, sizeof(f->msg)), 0);
	assert_int_equal(gen_of(f, "v"), 8);
	if (pool_snapshot_set(f->p, "s", f->msg, sizeof(f->msg)))
		fail_msg("set: %s", f->msg);
	put_block(f, "v", 2, 'z');
	assert_int_equal(gen_of(f, "s/v"), 0);
	fx_reopen(f);
	assert_int_equal(gen_of(f, "v"), 10);
	assert_int_equal(gen_of(f, "s/v"), 0);
	/* durable: a writer killed mid-way leaves an odd generation, which the
	 * next open moves on */
	assert_int_equal(pool_close(f->p), 0);
	f->p = NULL;
	pid_t pid = fork();
	if (pid == 0) {
		struct pool *p;
		if (pool_open(f->pool, 0, "child", &p, NULL, 0) || pool_volume_open(p, "v", &v) ||
		    pool_write(v, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
			_exit(1);
		_exit(0); /* no close: a crash */
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(pool_open(f->pool, 0, "unit test", &f->p, NULL, 0), 0);
	assert_int_equal(gen_of(f, "v"), 12);
	fx_check_clean(f);
	fx_free(f);
}

/* The hardware CRC32C is the tables' at every length and alignment. */
static void test_crc32c_hw_matches_tables(void **state)
{
	unsigned char *buf = malloc(1 << 20);

	assert_non_null(buf);
	for (size_t i = 0; i < 1 << 20; i++)
		buf[i] = (unsigned char)(i * 2654435761u >> 13);
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len < 300; len++)
			assert_int_equal(crc32c(7, buf + off, len), crc32c_sw(7, buf + off, len));
	assert_int_equal(crc32c(0, buf, 1 << 20), crc32c_sw(0, buf, 1 << 20));
	assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283u);
	free(buf);
}

/* A: vol written, set s1, more written, set pre; with a full stream of
 * s1/vol and an incremental one of pre/vol from s1/vol. */
static void make_sets(struct two_pools *t)
{
	t->a = fx_new(BS, 512);
	t->b = fx_new(BS, 512);
	fx_create(t->a, "vol", 10 * BS);
	for (int i = 0; i < 6; i++)
		put_block(t->a, "vol", (uint64_t)i, 'a' + i);
	if (pool_snapshot_set(t->a->p, "s1", t->a->msg, sizeof(t->a->msg)))
		fail_msg("set: %s", t->a->msg);
	put_block(t->a, "vol", 1, 'P');
	put_block(t->a, "vol", 7, 'Q');
	if (pool_snapshot_set(t->a->p, "pre", t->a->msg, sizeof(t->a->msg)))
		fail_msg("set: %s", t->a->msg);
	t->len[0] = send_to(t->a->p, "s1/vol", NULL, &t->s[0]);
	t->len[1] = send_to(t->a->p, "pre/vol", "s1/vol", &t->s[1]);
	t->s[2] = NULL;
}

/* The reproduction: a received copy written in place (no mapping
 * changes) is no base any more; the refusal names it and changes nothing. */
static void test_receive_refuses_written_copy(void **state)
{
	struct two_pools t;
	struct pool_state before;

	make_sets(&t);
	assert_int_equal(receive_from(t.b->p, "vol", t.s[0], t.len[0], t.b->msg), 0);
	fx_fill(t.b, "vol", 20480, 4096, 'w');
	before = state_of(t.b);
	assert_int_equal(receive_from(t.b->p, "vol2", t.s[1], t.len[1], t.b->msg), -ESTALE);
	assert_non_null(strstr(t.b->msg, "base 'vol' was written since it was received"));
	expect_state(t.b, &before);
	/* an unwritten copy takes it, and reads as the sender's */
	assert_int_equal(receive_from(t.b->p, "s1copy", t.s[0], t.len[0], t.b->msg), 0);
	if (receive_from(t.b->p, "vol2", t.s[1], t.len[1], t.b->msg))
		fail_msg("receive: %s", t.b->msg);
	expect_same_content(t.a->p, "pre/vol", t.b->p, "vol2");
	fx_check_clean(t.b);
	free_chain(&t);
}

/* A writable base that changed after its own full send: the copy here is of
 * an older generation, so the incremental is refused, nothing changed. */
static void test_receive_refuses_changed_sender_base(void **state)
{
	struct two_pools t;
	struct pool_state before;

	make_sets(&t);
	t.len[2] = send_to(t.a->p, "vol", NULL, &t.s[2]);
	assert_int_equal(receive_from(t.b->p, "vol", t.s[2], t.len[2], t.b->msg), 0);
	put_block(t.a, "vol", 3, 'C'); /* after its full send */
	fx_snap(t.a, "vol", "later");
	char *inc;
	size_t len = send_to(t.a->p, "later", "vol", &inc);
	before = state_of(t.b);
	assert_int_equal(receive_from(t.b->p, "later", inc, len, t.b->msg), -ESTALE);
	assert_non_null(strstr(t.b->msg, "the sender's base changed"));
	assert_non_null(strstr(t.b->msg, "'vol'"));
	expect_state(t.b, &before);
	free(inc);
	free_chain(&t);
}

/* An incremental stream against an unrelated device of the pool is exact:
 * the delta compares mappings, whatever the two devices' history. */
static void test_send_from_unrelated_base_is_exact(void **state)
{
	struct two_pools t;
	char *inc;
	size_t len;

	make_sets(&t);
	fx_create(t.a, "other", 13 * BS + 100);
	put_block(t.a, "other", 0, 'o');
	put_block(t.a, "other", 12, 'p');
	fx_snap(t.a, "other", "t1");
	t.len[2] = send_to(t.a->p, "vol", NULL, &t.s[2]);
	assert_int_equal(receive_from(t.b->p, "v", t.s[2], t.len[2], t.b->msg), 0);
	len = send_to(t.a->p, "t1", "vol", &inc);
	if (receive_from(t.b->p, "t1", inc, len, t.b->msg))
		fail_msg("receive: %s", t.b->msg);
	expect_same_content(t.a->p, "t1", t.b->p, "t1");
	assert_int_equal(fx_mapped(t.b, "t1"), fx_mapped(t.a, "t1"));
	fx_check_clean(t.b);
	free(inc);
	free_chain(&t);
}

/* A corrupt or short stream fails at its first bad record, named by its
 * vblock, and leaves the pool exactly as it was. */
static void test_failed_receive_leaves_pool_identical(void **state)
{
	struct two_pools t;
	struct pool_state before;
	size_t hdr;

	make_sets(&t);
	assert_int_equal(receive_from(t.b->p, "base", t.s[0], t.len[0], t.b->msg), 0);
	hdr = 56 + 72 + 2 + strlen("s1/vol") + 4; /* send_receive.c's header */
	for (int round = 0; round < 4; round++) {
		before = state_of(t.b);
		if (round == 0) {
			t.s[0][hdr + 17 + 10] ^= 1; /* data of the first record */
			assert_int_equal(receive_from(t.b->p, "x", t.s[0], t.len[0], t.b->msg),
					 -EBADMSG);
			assert_non_null(strstr(t.b->msg, "record of vblock 0"));
			t.s[0][hdr + 17 + 10] ^= 1;
		} else if (round == 1) {
			assert_int_equal(receive_from(t.b->p, "x", t.s[0], t.len[0] / 2, t.b->msg),
					 -EPIPE);
		} else if (round == 2) {
			t.s[0][t.len[0] - 10] ^= 1; /* the end record */
			assert_int_equal(receive_from(t.b->p, "x", t.s[0], t.len[0], t.b->msg),
					 -EBADMSG);
			t.s[0][t.len[0] - 10] ^= 1;
		} else {
			t.s[1][t.len[1] - 60] ^= 1; /* an incremental's last data */
			assert_true(receive_from(t.b->p, "x", t.s[1], t.len[1], t.b->msg) < 0);
			t.s[1][t.len[1] - 60] ^= 1;
		}
		expect_state(t.b, &before);
	}
	fx_reopen(t.b);
	fx_check_clean(t.b);
	free_chain(&t);
}

/* A device being written is no snapshot: send refuses it, by name. */
static void test_send_refuses_device_being_written(void **state)
{
	struct fixture *f = fx_new(BS, 64);
	struct volume *v;
	char *s = NULL, buf[4096] = "w";
	size_t len = 0;
	FILE *out = open_memstream(&s, &len);

	fx_create(f, "v", 4 * BS);
	assert_int_equal(pool_volume_open(f->p, "v", &v), 0);
	assert_int_equal(pool_write(v, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_int_equal(pool_send(f->p, "v", NULL, out, f->msg, sizeof(f->msg)), -EBUSY);
	assert_non_null(strstr(f->msg, "'v' is being written"));
	pool_volume_close(v);
	assert_int_equal(pool_send(f->p, "v", NULL, out, f->msg, sizeof(f->msg)), 0);
	fclose(out);
	free(s);
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crc32c_known_value),
	    cmocka_unit_test(test_dump_format),
	    cmocka_unit_test(test_dump_escapes_names_in_comments),
	    cmocka_unit_test(test_dump_restore_dump_identical),
	    cmocka_unit_test(test_restore_adopts_data),
	    cmocka_unit_test(test_restore_crash_after_meta_needs_check),
	    cmocka_unit_test(test_restore_crash_before_punch_scrubbed),
	    cmocka_unit_test(test_dump_read_only_pool),
	    cmocka_unit_test(test_restore_handwritten_def_ref),
	    cmocka_unit_test(test_restore_derives_tree_for_overlapping_sets),
	    cmocka_unit_test(test_restore_refuses_malformed_input),
	    cmocka_unit_test(test_restore_refuses_existing_pool),
	    cmocka_unit_test(test_delta_exact_after_single_block_writes),
	    cmocka_unit_test(test_random_histories_round_trip),
	    cmocka_unit_test(test_send_receive_chain),
	    cmocka_unit_test(test_receive_refuses_corrupt_stream),
	    cmocka_unit_test(test_receive_refuses_wrong_base),
	    cmocka_unit_test(test_send_receive_same_pool_and_set_member),
	    cmocka_unit_test(test_generation_moves_with_every_change),
	    cmocka_unit_test(test_crc32c_hw_matches_tables),
	    cmocka_unit_test(test_receive_refuses_written_copy),
	    cmocka_unit_test(test_receive_refuses_changed_sender_base),
	    cmocka_unit_test(test_send_from_unrelated_base_is_exact),
	    cmocka_unit_test(test_failed_receive_leaves_pool_identical),
	    cmocka_unit_test(test_send_refuses_device_being_written),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
