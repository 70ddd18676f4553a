/* SPDX-License-Identifier: MIT */
/*
 * test_origin.c - volumes over an external origin (pool_create_origin,
 * issue 14): unmapped blocks read the origin (zeros past its end, a partial
 * last block zero-padded); whole and partial writes (a partial one keeps
 * the rest of the origin's block); the origin is never written; snapshots
 * keep it; it survives a commit and a reopen; an origin changed or removed
 * behind the pool's back refuses the volume with a message naming it; the
 * discard and zero-range semantics; resize; SEEK_HOLE; send carries the
 * origin's data; a format-2 pool; the caller check of admin_exec; clones
 * across an origin copy.  No root needed.
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/time.h>

#include "unit_helpers.h"

#include "thinfs/control.h"
#include "thinfs/interop.h"

#define BS 4096u
#define ORIGIN_LEN (5 * BS + 1000) /* five blocks and a partial one */

static struct {
	char line[64][1024];
	int n;
} logged;

static void capture(void *arg, int level, const char *line)
{
	(void)arg;
	(void)level;
	if (logged.n < 64)
		snprintf(logged.line[logged.n], sizeof(logged.line[0]), "%s", line);
	logged.n++;
}

static bool log_has(const char *a, const char *b)
{
	for (int i = 0; i < logged.n && i < 64; i++)
		if (strstr(logged.line[i], a) && strstr(logged.line[i], b))
			return true;
	return false;
}

/* The byte the origin holds at offset. */
static unsigned char obyte(uint64_t off)
{
	return (unsigned char)(off * 7 + off / BS + 1) | 1; /* never zero */
}

struct ofx {
	struct fixture *f;
	char path[160];
	struct stat st; /* as made */
};

static void write_origin(struct ofx *o)
{
	unsigned char buf[ORIGIN_LEN];
	int fd = open(o->path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	for (uint64_t i = 0; i < ORIGIN_LEN; i++)
		buf[i] = obyte(i);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(fd);
	assert_int_equal(stat(o->path, &o->st), 0);
}

static struct ofx *ofx_new(void)
{
	struct ofx *o = calloc(1, sizeof(*o));

	assert_non_null(o);
	o->f = fx_new(BS, 256);
	snprintf(o->path, sizeof(o->path), "%s/origin.img", o->f->dir);
	write_origin(o);
	memset(&logged, 0, sizeof(logged));
	pool_set_logger(capture, NULL);
	return o;
}

static void ofx_free(struct ofx *o)
{
	pool_set_logger(NULL, NULL);
	fx_free(o->f);
	free(o);
}

static void ocreate(struct ofx *o, const char *name, uint64_t size)
{
	if (pool_create_origin(o->f->p, name, size, o->path, 0, 0, 0600, o->f->msg,
			       sizeof(o->f->msg)))
		fail_msg("create %s over %s: %s", name, o->path, o->f->msg);
}

/* The origin file is exactly as made: content and identity. */
static void origin_untouched(struct ofx *o)
{
	unsigned char buf[ORIGIN_LEN + 1];
	struct stat sb;
	int fd = open(o->path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf)), ORIGIN_LEN);
	close(fd);
	for (uint64_t i = 0; i < ORIGIN_LEN; i++)
		if (buf[i] != obyte(i))
			fail_msg("origin byte %llu was written", (unsigned long long)i);
	assert_int_equal(stat(o->path, &sb), 0);
	assert_int_equal(sb.st_mtim.tv_sec, o->st.st_mtim.tv_sec);
	assert_int_equal(sb.st_mtim.tv_nsec, o->st.st_mtim.tv_nsec);
}

/* Read [off, off+len) of name and compare with what it should hold:
 * the origin's bytes (zeros past its end), except where over[] says. */
static void expect_origin(struct ofx *o, const char *name, uint64_t off, size_t len)
{
	struct volume *v;
	unsigned char *buf = malloc(len);

	assert_non_null(buf);
	assert_int_equal(pool_volume_open(o->f->p, name, &v), 0);
	assert_int_equal(pool_read(v, buf, len, off), (ssize_t)len);
	pool_volume_close(v);
	for (size_t i = 0; i < len; i++) {
		unsigned char want = off + i < ORIGIN_LEN ? obyte(off + i) : 0;
		if (buf[i] != want)
			fail_msg("%s: byte %llu is %#x, the origin's is %#x", name,
				 (unsigned long long)(off + i), buf[i], want);
	}
	free(buf);
}

static void test_unmapped_blocks_read_the_origin_zeros_past_its_end(void **state)
{
	struct ofx *o = ofx_new();
	struct pool_device_info info;

	ocreate(o, "v", 0); /* the origin's size */
	assert_int_equal(pool_device_info(o->f->p, "v", &info), 0);
	assert_int_equal(info.size, ORIGIN_LEN);
	assert_string_equal(info.origin_path, o->path);
	assert_int_equal(info.origin_size, ORIGIN_LEN);
	expect_origin(o, "v", 0, ORIGIN_LEN);
	expect_origin(o, "v", 3 * BS - 17, BS + 100); /* unaligned, across blocks */

	ocreate(o, "big", 10 * BS); /* past the origin: zeros, last block padded */
	expect_origin(o, "big", 0, 10 * BS);
	expect_origin(o, "big", ORIGIN_LEN - 10, 20);
	assert_int_equal(fx_mapped(o->f, "big"), 0);
	fx_expect(o->f, "big", 6 * BS, 4 * BS, 0);
	origin_untouched(o);
	ofx_free(o);
}

static void test_whole_and_partial_writes_keep_the_origin_block(void **state)
{
	struct ofx *o = ofx_new();
	unsigned char *b = malloc(BS);
	struct volume *v;

	ocreate(o, "v", 8 * BS);
	fx_fill(o->f, "v", BS, BS, 'A');	    /* a whole block */
	fx_fill(o->f, "v", 2 * BS + 50, 100, 'B');  /* a partial one */
	fx_fill(o->f, "v", 5 * BS + 900, 200, 'C'); /* across the origin's end */
	fx_fill(o->f, "v", 7 * BS + 10, 10, 'D');   /* past the origin */
	assert_int_equal(fx_mapped(o->f, "v"), 4);
	fx_expect(o->f, "v", BS, BS, 'A');
	expect_origin(o, "v", 0, BS);
	expect_origin(o, "v", 2 * BS, 50);
	fx_expect(o->f, "v", 2 * BS + 50, 100, 'B');
	expect_origin(o, "v", 2 * BS + 150, BS - 150);
	expect_origin(o, "v", 5 * BS, 900);
	fx_expect(o->f, "v", 5 * BS + 900, 200, 'C');
	fx_expect(o->f, "v", 5 * BS + 1100, BS - 1100, 0);
	fx_expect(o->f, "v", 7 * BS, 10, 0);
	fx_expect(o->f, "v", 7 * BS + 10, 10, 'D');
	expect_origin(o, "v", 3 * BS, 2 * BS); /* untouched blocks */
	/* an in-place overwrite of a provisioned block stays ours */
	assert_int_equal(pool_volume_open(o->f->p, "v", &v), 0);
	memset(b, 'E', 10);
	assert_int_equal(pool_write(v, b, 10, 2 * BS), 10);
	pool_volume_close(v);
	fx_expect(o->f, "v", 2 * BS, 10, 'E');
	expect_origin(o, "v", 2 * BS + 10, 40);
	assert_int_equal(pool_sync(o->f->p), 0);
	origin_untouched(o);
	fx_check_clean(o->f);
	free(b);
	ofx_free(o);
}

static void test_snapshot_keeps_the_origin(void **state)
{
	struct ofx *o = ofx_new();
	struct pool_device_info info;

	ocreate(o, "v", 0);
	fx_fill(o->f, "v", 0, BS, 'A');
	fx_snap(o->f, "v", "s");
	assert_int_equal(pool_snapshot_set(o->f->p, "mon", o->f->msg, sizeof(o->f->msg)), 0);
	fx_fill(o->f, "v", BS, BS, 'B');
	fx_fill(o->f, "v", 0, BS, 'Z');
	assert_int_equal(pool_device_info(o->f->p, "s", &info), 0);
	assert_string_equal(info.origin_path, o->path);
	for (int i = 0; i < 2; i++) {
		const char *name = i ? "mon/v" : "s";
		fx_expect(o->f, name, 0, BS, 'A');
		expect_origin(o, name, BS, ORIGIN_LEN - BS);
	}
	/* the volume gone, its snapshots still read the origin */
	fx_delete(o->f, "v");
	fx_reopen(o->f);
	expect_origin(o, "s", BS, ORIGIN_LEN - BS);
	expect_origin(o, "mon/v", BS, ORIGIN_LEN - BS);
	fx_check_clean(o->f);
	ofx_free(o);
}

static void test_origin_survives_commit_and_reopen(void **state)
{
	struct ofx *o = ofx_new();
	struct pool_device_info info;

	ocreate(o, "v", 6 * BS);
	fx_fill(o->f, "v", 3 * BS + 7, 9, 'W');
	assert_int_equal(pool_sync(o->f->p), 0);
	fx_reopen(o->f);
	assert_int_equal(pool_device_info(o->f->p, "v", &info), 0);
	assert_string_equal(info.origin_path, o->path);
	expect_origin(o, "v", 0, 3 * BS + 7);
	fx_expect(o->f, "v", 3 * BS + 7, 9, 'W');
	expect_origin(o, "v", 3 * BS + 16, 2 * BS + 1000 - 16);
	/* renamed, it keeps it; a read-only open reads it too */
	assert_int_equal(pool_rename(o->f->p, "v", "w", o->f->msg, sizeof(o->f->msg)), 0);
	assert_int_equal(pool_close(o->f->p), 0);
	assert_int_equal(
	    pool_open(o->f->pool, POOL_OPEN_RDONLY, NULL, &o->f->p, o->f->msg, sizeof(o->f->msg)),
	    0);
	expect_origin(o, "w", 0, 3 * BS);
	origin_untouched(o);
	ofx_free(o);
}

/* Open name: expect -ESTALE and a log line naming the origin and `what`. */
static void expect_refused(struct ofx *o, const char *name, const char *what)
{
	struct volume *v;

	logged.n = 0;
	assert_int_equal(pool_volume_open(o->f->p, name, &v), -ESTALE);
	if (!log_has(o->path, what))
		fail_msg("no log line names %s and '%s' (%d lines; first: %s)", o->path, what,
			 logged.n, logged.n ? logged.line[0] : "");
	assert_int_equal(pool_origin_verify(o->f->p, name, o->f->msg, sizeof(o->f->msg)), -ESTALE);
	assert_non_null(strstr(o->f->msg, o->path));
}

/* check reports the origin as a warning and exits clean. */
static void expect_check_warns(struct ofx *o)
{
	char *out = NULL;
	size_t len = 0;
	FILE *mf = open_memstream(&out, &len);

	assert_int_equal(pool_check(o->f->pool, false, mf, o->f->msg, sizeof(o->f->msg)), 0);
	fclose(mf);
	if (!out || !strstr(out, "warning: origin") || !strstr(out, o->path))
		fail_msg("check says: %s", out ? out : "");
	free(out);
}

static void test_changed_or_removed_origin_refuses_the_volume(void **state)
{
	struct ofx *o = ofx_new();
	struct timespec ts[2];
	struct volume *v;
	char moved[200];
	int fd;

	ocreate(o, "v", 0);
	fx_create(o->f, "plain", BS);
	assert_int_equal(pool_sync(o->f->p), 0);
	/* the mtime moved (same bytes) */
	ts[0] = o->st.st_atim;
	ts[1] = (struct timespec){o->st.st_mtim.tv_sec + 5, o->st.st_mtim.tv_nsec};
	assert_int_equal(utimensat(AT_FDCWD, o->path, ts, 0), 0);
	expect_refused(o, "v", "mtime");
	fx_fill(o->f, "plain", 0, 10, 'p'); /* other volumes keep working */
	expect_check_warns(o);
	/* back as it was: served again */
	ts[1] = o->st.st_mtim;
	assert_int_equal(utimensat(AT_FDCWD, o->path, ts, 0), 0);
	expect_origin(o, "v", 0, BS);
	/* the size changed */
	fd = open(o->path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
	expect_refused(o, "v", "size");
	/* gone: removed, or replaced by another file */
	snprintf(moved, sizeof(moved), "%s.moved", o->path);
	assert_int_equal(rename(o->path, moved), 0);
	expect_refused(o, "v", "gone");
	write_origin(o); /* same name and bytes, another inode */
	expect_refused(o, "v", "changed");
	/* also after a reopen of the pool */
	fx_reopen(o->f);
	expect_refused(o, "v", "changed");
	assert_int_equal(pool_volume_open(o->f->p, "plain", &v), 0);
	pool_volume_close(v);
	ofx_free(o);
}

static void test_discard_reads_the_origin_zero_range_reads_zeros(void **state)
{
	struct ofx *o = ofx_new();
	struct volume *v;

	ocreate(o, "v", 8 * BS);
	fx_fill(o->f, "v", 0, 4 * BS, 'A');
	assert_int_equal(fx_mapped(o->f, "v"), 4);
	assert_int_equal(pool_volume_open(o->f->p, "v", &v), 0);
	/* discard: whole blocks unmapped, and they read the origin again */
	assert_int_equal(pool_discard(v, BS, BS), 0);
	/* a partial discard zeroes its bytes, over the origin's block too */
	assert_int_equal(pool_discard(v, 4 * BS + 100, 50), 0);
	/* zero-range: zeros, whatever the origin holds */
	assert_int_equal(pool_zero_range(v, 2 * BS, BS), 0);
	assert_int_equal(pool_zero_range(v, 3 * BS + 10, 2 * BS), 0);
	pool_volume_close(v);
	fx_expect(o->f, "v", 0, BS, 'A');
	expect_origin(o, "v", BS, BS);
	fx_expect(o->f, "v", 2 * BS, BS, 0);
	fx_expect(o->f, "v", 3 * BS, 10, 'A');
	fx_expect(o->f, "v", 3 * BS + 10, 2 * BS, 0);
	expect_origin(o, "v", 5 * BS + 10, 3 * BS - 10);
	fx_reopen(o->f);
	expect_origin(o, "v", BS, BS);
	fx_expect(o->f, "v", 2 * BS, BS, 0);
	fx_check_clean(o->f);
	origin_untouched(o);
	ofx_free(o);
}

/* Shrinking zeroes the new last block's tail (provisioned over the origin);
 * growing again reads the origin where blocks are unmapped, zeros past it. */
static void test_resize_over_the_origin(void **state)
{
	struct ofx *o = ofx_new();
	char *m = o->f->msg;
	size_t ml = sizeof(o->f->msg);

	ocreate(o, "v", 0);
	assert_int_equal(pool_resize(o->f->p, "v", BS + 100, m, ml), 0);
	assert_int_equal(fx_mapped(o->f, "v"), 1);
	assert_int_equal(pool_resize(o->f->p, "v", 8 * BS, m, ml), 0);
	expect_origin(o, "v", 0, BS + 100);
	fx_expect(o->f, "v", BS + 100, BS - 100, 0);
	expect_origin(o, "v", 2 * BS, 6 * BS);
	/* a shrink into the origin's partial last block, past its end */
	assert_int_equal(pool_resize(o->f->p, "v", 5 * BS + 2000, m, ml), 0);
	expect_origin(o, "v", 5 * BS, 2000);
	fx_reopen(o->f);
	expect_origin(o, "v", 2 * BS, 3 * BS + 2000);
	fx_check_clean(o->f);
	origin_untouched(o);
	/* a changed origin refuses a shrink that needs its bytes */
	assert_int_equal(truncate(o->path, ORIGIN_LEN - 1), 0);
	assert_int_equal(pool_resize(o->f->p, "v", 3 * BS + 5, m, ml), -ESTALE);
	ofx_free(o);
}

static void test_seek_reports_the_origin_as_data(void **state)
{
	struct ofx *o = ofx_new();
	struct volume *v;
	uint64_t r;

	ocreate(o, "v", 16 * BS);
	fx_fill(o->f, "v", 10 * BS, BS, 'A');
	assert_int_equal(pool_volume_open(o->f->p, "v", &v), 0);
	assert_int_equal(pool_seek(v, 0, SEEK_DATA, &r), 0);
	assert_int_equal(r, 0);
	assert_int_equal(pool_seek(v, 100, SEEK_HOLE, &r), 0);
	assert_int_equal(r, 6 * BS); /* the origin's blocks, its partial one too */
	assert_int_equal(pool_seek(v, 7 * BS, SEEK_DATA, &r), 0);
	assert_int_equal(r, 10 * BS);
	assert_int_equal(pool_seek(v, 10 * BS, SEEK_HOLE, &r), 0);
	assert_int_equal(r, 11 * BS);
	pool_volume_close(v);
	ofx_free(o);
}

static void test_refused_origins(void **state)
{
	struct ofx *o = ofx_new();
	char p[200], *m = o->f->msg;
	size_t ml = sizeof(o->f->msg);

	snprintf(p, sizeof(p), "%s/missing", o->f->dir);
	assert_int_equal(pool_create_origin(o->f->p, "v", 0, p, 0, 0, 0600, m, ml), -ENOENT);
	assert_non_null(strstr(m, p));
	assert_int_equal(pool_create_origin(o->f->p, "v", 0, o->f->dir, 0, 0, 0600, m, ml),
			 -EINVAL);
	assert_non_null(strstr(m, "not a regular file"));
	snprintf(p, sizeof(p), "%s/data", o->f->pool);
	assert_int_equal(pool_create_origin(o->f->p, "v", 0, p, 0, 0, 0600, m, ml), -EINVAL);
	assert_non_null(strstr(m, "the pool's own data file"));
	fx_create(o->f, "taken", BS);
	assert_int_equal(pool_create_origin(o->f->p, "taken", 0, o->path, 0, 0, 0600, m, ml),
			 -EEXIST);
	assert_int_equal(pool_create_origin(o->f->p, ".bad", 0, o->path, 0, 0, 0600, m, ml),
			 -EINVAL);
	ocreate(o, "v", 0);
	fx_create(o->f, "other", BS);
	/* a rollback may not swap what unmapped blocks read */
	assert_int_equal(pool_rollback(o->f->p, "other", "v", m, ml), -EINVAL);
	assert_non_null(strstr(m, "external origins"));
	fx_check_clean(o->f);
	ofx_free(o);
}

static void test_send_carries_the_origin(void **state)
{
	struct ofx *o = ofx_new();
	struct pool_device_info info;
	char *stream = NULL;
	size_t len = 0;
	FILE *mf;

	ocreate(o, "v", 8 * BS);
	fx_fill(o->f, "v", BS + 5, 5, 'A');
	fx_fill(o->f, "v", 7 * BS, BS, 'B');
	fx_snap(o->f, "v", "s");
	mf = open_memstream(&stream, &len);
	assert_int_equal(pool_send(o->f->p, "s", NULL, mf, o->f->msg, sizeof(o->f->msg)), 0);
	fclose(mf);
	mf = fmemopen(stream, len, "r");
	if (pool_receive(o->f->p, "copy", mf, o->f->msg, sizeof(o->f->msg)))
		fail_msg("receive: %s", o->f->msg);
	fclose(mf);
	assert_int_equal(pool_device_info(o->f->p, "copy", &info), 0);
	assert_string_equal(info.origin_path, ""); /* self-contained */
	expect_origin(o, "copy", 0, BS + 5);
	fx_expect(o->f, "copy", BS + 5, 5, 'A');
	expect_origin(o, "copy", BS + 10, 6 * BS - 10);
	fx_expect(o->f, "copy", 7 * BS, BS, 'B');
	/* an incremental stream would miss the origin: refused */
	free(stream);
	stream = NULL;
	mf = open_memstream(&stream, &len);
	assert_int_equal(pool_send(o->f->p, "s", "copy", mf, o->f->msg, sizeof(o->f->msg)),
			 -EOPNOTSUPP);
	fclose(mf);
	free(stream);
	fx_check_clean(o->f);
	ofx_free(o);
}

/* A format-2 pool (no origins table) opens read-only with no origins; the
 * first read-write open migrates it and takes origin volumes. */
static void test_format_2_pool_has_no_origins(void **state)
{
	struct ofx *o = ofx_new();
	struct pool_device_info *devs;
	char db_path[200];
	size_t nr;
	sqlite3 *db;

	fx_create(o->f, "plain", BS);
	assert_int_equal(pool_close(o->f->p), 0);
	o->f->p = NULL;
	snprintf(db_path, sizeof(db_path), "%s/meta.db", o->f->pool);
	assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "DROP TABLE refs; DROP TABLE origins; "
				      "PRAGMA user_version=2",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	if (pool_open(o->f->pool, POOL_OPEN_RDONLY, NULL, &o->f->p, o->f->msg, sizeof(o->f->msg)))
		fail_msg("read-only open of a format-2 pool: %s", o->f->msg);
	assert_int_equal(pool_list(o->f->p, false, &devs, &nr), 0);
	assert_int_equal(nr, 1);
	assert_string_equal(devs[0].origin_path, "");
	free(devs);
	fx_reopen(o->f); /* read-write: migrated */
	ocreate(o, "v", 0);
	expect_origin(o, "v", 0, BS);
	ofx_free(o);
}

/* Through admin_exec (thinctl's and the daemon's one path): a caller other
 * than root only over an origin it may read. */
static void test_admin_create_origin_checks_the_caller(void **state)
{
	struct ofx *o = ofx_new();
	struct admin_req req = {.op = ADMIN_CREATE_ORIGIN, .uid = 65534, .gid = 65534};
	struct pool_device_info info;

	snprintf(req.a, sizeof(req.a), "%s", "theirs");
	snprintf(req.b, sizeof(req.b), "%s", o->path);
	assert_int_equal(chmod(o->path, 0600), 0);
	assert_int_equal(admin_exec(o->f->p, &req, NULL, o->f->msg, sizeof(o->f->msg)), -EACCES);
	assert_non_null(strstr(o->f->msg, "not readable by uid 65534"));
	assert_int_equal(pool_device_info(o->f->p, "theirs", &info), -ENOENT);
	assert_int_equal(chmod(o->path, 0644), 0);
	req.size = 2 * BS;
	assert_int_equal(admin_exec(o->f->p, &req, NULL, o->f->msg, sizeof(o->f->msg)), 0);
	assert_int_equal(pool_device_info(o->f->p, "theirs", &info), 0);
	assert_int_equal(info.uid, 65534);
	assert_int_equal(info.size, 2 * BS);
	assert_string_equal(info.origin_path, o->path);
	ofx_free(o);
}

/* copy_file_range (pool_clone_range) over an origin copies what each side
 * reads: the origin's bytes out of it, zeros (not the origin) into it. */
static void test_clone_copies_across_an_origin(void **state)
{
	struct ofx *o = ofx_new();
	struct volume *v, *p;
	uint64_t done;

	ocreate(o, "v", 8 * BS);
	fx_fill(o->f, "v", 2 * BS, BS, 'A');
	fx_create(o->f, "plain", 8 * BS);
	assert_int_equal(pool_volume_open(o->f->p, "v", &v), 0);
	assert_int_equal(pool_volume_open(o->f->p, "plain", &p), 0);
	assert_int_equal(pool_clone_range(v, 0, p, 0, 8 * BS, &done), 0);
	assert_int_equal(done, 8 * BS);
	pool_volume_close(p);
	expect_origin(o, "plain", 0, 2 * BS);
	fx_expect(o->f, "plain", 2 * BS, BS, 'A');
	expect_origin(o, "plain", 3 * BS, 5 * BS);
	/* into the origin volume: a plain volume's holes read zeros there too */
	fx_create(o->f, "holes", 8 * BS);
	assert_int_equal(pool_volume_open(o->f->p, "holes", &p), 0);
	assert_int_equal(pool_clone_range(p, 0, v, 0, 4 * BS, &done), 0);
	assert_int_equal(done, 4 * BS);
	pool_volume_close(p);
	pool_volume_close(v);
	fx_expect(o->f, "v", 0, 4 * BS, 0);
	expect_origin(o, "v", 4 * BS, 4 * BS);
	fx_check_clean(o->f);
	origin_untouched(o);
	ofx_free(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_unmapped_blocks_read_the_origin_zeros_past_its_end),
	    cmocka_unit_test(test_whole_and_partial_writes_keep_the_origin_block),
	    cmocka_unit_test(test_snapshot_keeps_the_origin),
	    cmocka_unit_test(test_origin_survives_commit_and_reopen),
	    cmocka_unit_test(test_changed_or_removed_origin_refuses_the_volume),
	    cmocka_unit_test(test_discard_reads_the_origin_zero_range_reads_zeros),
	    cmocka_unit_test(test_resize_over_the_origin),
	    cmocka_unit_test(test_seek_reports_the_origin_as_data),
	    cmocka_unit_test(test_refused_origins),
	    cmocka_unit_test(test_send_carries_the_origin),
	    cmocka_unit_test(test_format_2_pool_has_no_origins),
	    cmocka_unit_test(test_admin_create_origin_checks_the_caller),
	    cmocka_unit_test(test_clone_copies_across_an_origin),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
