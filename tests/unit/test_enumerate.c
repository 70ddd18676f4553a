/* SPDX-License-Identifier: MIT */
/*
 * test_enumerate.c - crash states enumerated, not sampled (TESTING.md S4),
 * as CrashMonkey and SQLite's crash-test VFS do it.  In-process, no root.
 *
 * Recording.  A seeded workload runs on a small pool (4 KiB blocks x 256,
 * 64 KiB blocks x 112; volumes v0 and v1) in /dev/shm while every change to
 * its files goes into one global log: the data file through dataio's
 * observer (writes, punches, size changes, flushes), meta.db and meta.db-wal
 * through an SQLite VFS shim over "unix" that is the default VFS (xWrite with
 * its bytes, xTruncate, xSync, xDelete).  The -shm file is not durable and
 * never part of a crash state.  Each operation puts a start and a return
 * marker in the log.  The workload: writes of self-describing 512 B sectors
 * aimed at fresh, own and shared blocks (whole blocks, runs, parts of a block,
 * across a boundary), discards, pool_sync, pool_commit, snapshot sets and
 * their deletes, create, delete (also of an open volume), resize (shrink to
 * any sector, grow back), volume open and close, pool close and reopen.  It
 * starts with a scripted part that makes what the controls break (fresh
 * blocks acknowledged; a set whose blocks only it sees, deleted; a block freed
 * in the commit of a pool_close).  Odd seeds checkpoint the WAL every 4 pages
 * (it restarts, and commits overwrite old frames); seeds 2, 3 (mod 4) run the
 * data file with O_DIRECT where the file system allows it.
 *
 * Crash states.  Before every flush in the log (each data fdatasync, each
 * xSync) and at its end, a file holds everything up to its own last flush;
 * of its writes since then any subset may have reached the disk, and the
 * last of them may be torn (only some of its 512 B or 4 KiB sectors, in
 * order or not).  Per crash point: all/none per file (8 combinations),
 * in-order prefixes ending in a torn write, and seeded random subsets with a
 * torn write; identical states (same applied events, same oracle) are
 * checked once.  Each is written into a fresh directory and checked:
 *   - opened read-only: its transaction id T (before recovery runs), which
 *     tells which commits are durable; pool_check (offline, as thinctl check
 *     before a restart) finds nothing;
 *   - opened read-write (recovery): the devices and sets are exactly those the
 *     model allows (I7: an admin op that returned is complete; the one in
 *     flight is complete iff T says its commit is durable, else absent),
 *     with their sizes; T is never below the id of the last commit that
 *     returned (A11), nor above any id ever committed;
 *   - I1/I2: every 512 B sector of a volume holds what it held at the last
 *     acknowledgement (pool_sync, an admin op) or at the last commit T shows
 *     durable, or a later write to that very sector (zeros for a discard);
 *     sectors are self-describing (device, sector, seq, checksum), so another
 *     device's data, stale data or garbage never pass;
 *   - I3: every member of a set reads exactly as its origin did at creation;
 *   - no free data block holds data after recovery (a fresh block's unwritten
 *     part reads zeros), and used_blocks = blocks mapped;
 *   - I4/I6: pool_check on the closed pool is CHECK_CLEAN with an empty report
 *     (no leak either: a block is freed in the same transaction), which runs
 *     PRAGMA integrity_check and foreign_key_check.
 * After recording, one checker process per CPU replays the log and the model
 * and checks the states whose identity hashes to it.
 *
 * Knobs (environment): THINFS_ENUM_SEEDS (workloads per block size, 5),
 * THINFS_ENUM_SEED (first seed, 1), THINFS_ENUM_OPS (operations per
 * workload, 300), THINFS_ENUM_STATES (random states per crash point, 12),
 * THINFS_ENUM_BS (only this block size), THINFS_ENUM_MAX_FAIL (stop after so
 * many failing states, 20; 0 = never), THINFS_ENUM_JOBS (checkers, one per
 * CPU), THINFS_ENUM_DIR (instead of /dev/shm), THINFS_ENUM_POINT (only this
 * crash point), THINFS_ENUM_KEEP (copy the first failing state into this
 * directory), THINFS_ENUM_DUMP=FIRST:LAST (print the log of those ops),
 * THINFS_ENUM_PRECHECK (0: skip the offline check before recovery),
 * THINFS_ENUM_VERBOSE (every failing state, the log's composition).  A
 * failure prints its seed, block size, crash point and plan: rerun with
 * THINFS_ENUM_SEED, THINFS_ENUM_SEEDS=1, THINFS_ENUM_BS and THINFS_ENUM_POINT
 * (and the same THINFS_ENUM_OPS and THINFS_ENUM_STATES).
 *
 * Built twice more as negative controls, which must FAIL: against the
 * library without the data flush before COMMIT (control_enum_noflush) and
 * with freed blocks punched before the COMMIT (control_enum_punch).
 */
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>

#include "unit_helpers.h"
#include "engine/dataio.h"
#include "thinfs/pool_test.h"

#define SECT 512u
#define PAGE 4096u
#define MAXDEV 64
#define MAXSETS 12
#define MAXOPS 2048
#define LIVE_SETS 3
#define LIVE_CVOLS 2
#define UUID_XATTR "user.thinfs.pool_uuid"

/* ------------------------------------------------------------------ */
/* knobs and randomness */

static long knob(const char *name, long def)
{
	const char *s = getenv(name);

	return s && *s ? strtol(s, NULL, 0) : def;
}

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rnd64(uint64_t *s)
{
	return mix64(*s += 0x9e3779b97f4a7c15ull);
}

static uint32_t rnd(uint64_t *s, uint32_t n)
{
	return n ? (uint32_t)(rnd64(s) % n) : 0;
}

/* ------------------------------------------------------------------ */
/* the log */

enum { F_DATA, F_DB, F_WAL, NR_FILES };
static const char *const file_name[NR_FILES] = {"data", "meta.db", "meta.db-wal"};
enum ev_kind { EV_WRITE, EV_PUNCH, EV_TRUNC, EV_SYNC, EV_DELETE, EV_MARK };
static const char *const ev_name[] = {"write", "punch", "truncate", "sync", "delete", "mark"};

struct ev {
	uint8_t kind, file, ret;
	int32_t op;
	uint64_t off, len; /* EV_TRUNC: off = new size */
	unsigned char *buf;
};

static struct {
	struct ev *ev;
	size_t n, cap;
	volatile bool on;
	char dir[PATH_MAX]; /* the live pool's directory, as SQLite names it */
	int cur_op;
	uint64_t bytes;
	pthread_mutex_t lock;
} rec = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void rec_add(int kind, int file, uint64_t off, uint64_t len, const void *buf)
{
	struct ev *e;

	if (!rec.on)
		return;
	pthread_mutex_lock(&rec.lock);
	if (rec.n == rec.cap) {
		rec.cap = rec.cap ? rec.cap * 2 : 4096;
		rec.ev = realloc(rec.ev, rec.cap * sizeof(*rec.ev));
		if (!rec.ev)
			abort();
	}
	e = &rec.ev[rec.n++];
	memset(e, 0, sizeof(*e));
	e->kind = (uint8_t)kind;
	e->file = (uint8_t)file;
	e->op = rec.cur_op;
	e->off = off;
	e->len = len;
	if (buf && len) {
		e->buf = malloc(len);
		if (!e->buf)
			abort();
		memcpy(e->buf, buf, len);
		rec.bytes += len;
	}
	pthread_mutex_unlock(&rec.lock);
}

static void rec_mark(int op, bool ret)
{
	size_t n = rec.n;

	rec.cur_op = op;
	rec_add(EV_MARK, 0, 0, 0, NULL);
	if (rec.n > n)
		rec.ev[rec.n - 1].ret = ret;
}

static void rec_clear(void)
{
	for (size_t i = 0; i < rec.n; i++)
		free(rec.ev[i].buf);
	rec.n = 0;
	rec.bytes = 0;
}

/* the data file, through dataio's observer */
static void data_observer(void *arg, enum dio_event ev, uint64_t offset, uint64_t len,
			  const void *buf)
{
	(void)arg;
	switch (ev) {
	case DIO_EV_WRITE:
		rec_add(EV_WRITE, F_DATA, offset, len, buf);
		break;
	case DIO_EV_PUNCH:
		rec_add(EV_PUNCH, F_DATA, offset, len, NULL);
		break;
	case DIO_EV_SIZE:
		rec_add(EV_TRUNC, F_DATA, offset, 0, NULL);
		break;
	case DIO_EV_FLUSH:
		rec_add(EV_SYNC, F_DATA, 0, 0, NULL);
		break;
	}
}

/* ------------------------------------------------------------------ */
/* the SQLite VFS shim: "unix" with meta.db and meta.db-wal recorded */

struct shim_file {
	sqlite3_file base;
	sqlite3_file *real;
	int which; /* F_DB, F_WAL or -1 */
	int pad;
};

static sqlite3_vfs *real_vfs;
static sqlite3_vfs shim_vfs;
static int g_autockpt;	 /* wal_autocheckpoint of recorded connections (0: SQLite's) */
static sqlite3 *live_db; /* the recorded pool's connection */

static int classify(const char *path)
{
	size_t dl = strlen(rec.dir);

	if (!rec.on || !path || !dl || strncmp(path, rec.dir, dl) || path[dl] != '/')
		return -1;
	if (!strcmp(path + dl + 1, "meta.db"))
		return F_DB;
	if (!strcmp(path + dl + 1, "meta.db-wal"))
		return F_WAL;
	return -1;
}

#define REAL(f) (((struct shim_file *)(f))->real)
#define WHICH(f) (((struct shim_file *)(f))->which)

static int sh_close(sqlite3_file *f)
{
	return REAL(f)->pMethods->xClose(REAL(f));
}
static int sh_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
	return REAL(f)->pMethods->xRead(REAL(f), b, n, o);
}
static int sh_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
	int rc = REAL(f)->pMethods->xWrite(REAL(f), b, n, o);

	if (rc == SQLITE_OK && WHICH(f) >= 0)
		rec_add(EV_WRITE, WHICH(f), (uint64_t)o, (uint64_t)n, b);
	return rc;
}
static int sh_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	int rc = REAL(f)->pMethods->xTruncate(REAL(f), size);

	if (rc == SQLITE_OK && WHICH(f) >= 0)
		rec_add(EV_TRUNC, WHICH(f), (uint64_t)size, 0, NULL);
	return rc;
}
static int sh_sync(sqlite3_file *f, int flags)
{
	int rc = REAL(f)->pMethods->xSync(REAL(f), flags);

	if (rc == SQLITE_OK && WHICH(f) >= 0)
		rec_add(EV_SYNC, WHICH(f), 0, 0, NULL);
	return rc;
}
static int sh_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int sh_lock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int sh_unlock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int sh_reserved(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int sh_fcntl(sqlite3_file *f, int op, void *arg)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int sh_sector(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int sh_devchar(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int sh_shmmap(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, ext, pp);
}
static int sh_shmlock(sqlite3_file *f, int off, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void sh_shmbarrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int sh_shmunmap(sqlite3_file *f, int del)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
static int sh_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **pp)
{
	return REAL(f)->pMethods->xFetch(REAL(f), o, n, pp);
}
static int sh_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p)
{
	return REAL(f)->pMethods->xUnfetch(REAL(f), o, p);
}

static const sqlite3_io_methods shim_io = {
    .iVersion = 3,
    .xClose = sh_close,
    .xRead = sh_read,
    .xWrite = sh_write,
    .xTruncate = sh_truncate,
    .xSync = sh_sync,
    .xFileSize = sh_size,
    .xLock = sh_lock,
    .xUnlock = sh_unlock,
    .xCheckReservedLock = sh_reserved,
    .xFileControl = sh_fcntl,
    .xSectorSize = sh_sector,
    .xDeviceCharacteristics = sh_devchar,
    .xShmMap = sh_shmmap,
    .xShmLock = sh_shmlock,
    .xShmBarrier = sh_shmbarrier,
    .xShmUnmap = sh_shmunmap,
    .xFetch = sh_fetch,
    .xUnfetch = sh_unfetch,
};

static int sv_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out)
{
	struct shim_file *sf = (struct shim_file *)f;
	int rc;

	(void)v;
	sf->real = (sqlite3_file *)(sf + 1);
	sf->which = classify(name);
	sf->base.pMethods = NULL;
	rc = real_vfs->xOpen(real_vfs, name, sf->real, flags, out);
	if (sf->real->pMethods)
		sf->base.pMethods = &shim_io;
	return rc;
}
static int sv_delete(sqlite3_vfs *v, const char *name, int syncdir)
{
	int which = classify(name);
	int rc = real_vfs->xDelete(real_vfs, name, syncdir);

	(void)v;
	if (which >= 0 && (rc == SQLITE_OK || rc == SQLITE_IOERR_DELETE_NOENT))
		rec_add(EV_DELETE, which, 0, 0, NULL);
	return rc;
}
static int sv_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
	return real_vfs->xAccess(real_vfs, name, flags, out);
}
static int sv_fullpath(sqlite3_vfs *v, const char *name, int n, char *out)
{
	return real_vfs->xFullPathname(real_vfs, name, n, out);
}
static int sv_random(sqlite3_vfs *v, int n, char *out)
{
	return real_vfs->xRandomness(real_vfs, n, out);
}
static int sv_sleep(sqlite3_vfs *v, int us)
{
	return real_vfs->xSleep(real_vfs, us);
}
static int sv_lasterr(sqlite3_vfs *v, int n, char *out)
{
	return real_vfs->xGetLastError(real_vfs, n, out);
}

static int ext_init(sqlite3 *db, char **err, const sqlite3_api_routines *api)
{
	const char *fn = sqlite3_db_filename(db, "main");

	(void)err;
	(void)api;
	/* SQLite sets its default autocheckpoint after this: open_live sets ours */
	if (classify(fn) == F_DB)
		live_db = db;
	return SQLITE_OK;
}

static void shim_register(void)
{
	real_vfs = sqlite3_vfs_find("unix");
	assert_non_null(real_vfs);
	shim_vfs = *real_vfs;
	shim_vfs.pNext = NULL;
	shim_vfs.zName = "thinfs-enum";
	shim_vfs.szOsFile = (int)sizeof(struct shim_file) + real_vfs->szOsFile;
	shim_vfs.xOpen = sv_open;
	shim_vfs.xDelete = sv_delete;
	shim_vfs.xAccess = sv_access;
	shim_vfs.xFullPathname = sv_fullpath;
	shim_vfs.xRandomness = sv_random;
	shim_vfs.xSleep = sv_sleep;
	shim_vfs.xGetLastError = sv_lasterr;
	assert_int_equal(sqlite3_vfs_register(&shim_vfs, 1), SQLITE_OK);
	sqlite3_auto_extension((void (*)(void))ext_init);
}

/* ------------------------------------------------------------------ */
/* file images */

struct img {
	unsigned char *b;
	uint64_t size, cap;
	bool exists;
	uint8_t *nz; /* data file: 4 KiB pages that may hold data (else holes) */
	uint64_t nz_pages;
};

static void img_reserve(struct img *im, uint64_t size)
{
	if (size <= im->cap)
		return;
	uint64_t cap = im->cap ? im->cap : 65536;
	while (cap < size)
		cap *= 2;
	im->b = realloc(im->b, cap);
	assert_non_null(im->b);
	memset(im->b + im->cap, 0, cap - im->cap);
	if (im->nz) {
		uint64_t np = cap / PAGE;
		im->nz = realloc(im->nz, np);
		assert_non_null(im->nz);
		memset(im->nz + im->nz_pages, 0, np - im->nz_pages);
		im->nz_pages = np;
	}
	im->cap = cap;
}

static void img_resize(struct img *im, uint64_t size)
{
	img_reserve(im, size);
	if (size < im->size)
		memset(im->b + size, 0, im->size - size);
	im->size = size;
}

static void img_copy(struct img *dst, const struct img *src)
{
	free(dst->b);
	free(dst->nz);
	*dst = *src;
	dst->b = malloc(src->cap ? src->cap : 1);
	assert_non_null(dst->b);
	memcpy(dst->b, src->b, src->cap);
	if (src->nz) {
		dst->nz = malloc(src->nz_pages ? src->nz_pages : 1);
		assert_non_null(dst->nz);
		memcpy(dst->nz, src->nz, src->nz_pages);
	}
}

static void img_free(struct img *im)
{
	free(im->b);
	free(im->nz);
	memset(im, 0, sizeof(*im));
}

static void img_load(struct img *im, const char *path, bool data)
{
	struct stat sb;
	int fd = open(path, O_RDONLY);

	memset(im, 0, sizeof(*im));
	if (data) {
		im->nz = calloc(1, 1);
		im->nz_pages = 0;
	}
	if (fd < 0) {
		img_reserve(im, 1);
		return;
	}
	assert_int_equal(fstat(fd, &sb), 0);
	im->exists = true;
	img_resize(im, (uint64_t)sb.st_size);
	if (data) {
		off_t off = 0, s, e;
		while ((s = lseek(fd, off, SEEK_DATA)) >= 0) {
			e = lseek(fd, s, SEEK_HOLE);
			assert_true(pread(fd, im->b + s, (size_t)(e - s), s) == e - s);
			for (uint64_t p = (uint64_t)s / PAGE; p < ((uint64_t)e + PAGE - 1) / PAGE;
			     p++)
				im->nz[p] = 1;
			off = e;
		}
	} else if (sb.st_size) {
		assert_true(pread(fd, im->b, (size_t)sb.st_size, 0) == sb.st_size);
	}
	close(fd);
}

/* An event, applied in full to an image (the durable base of a file). */
static void img_apply(struct img *im, const struct ev *e)
{
	switch (e->kind) {
	case EV_WRITE:
		if (e->off + e->len > im->size)
			img_resize(im, e->off + e->len);
		memcpy(im->b + e->off, e->buf, e->len);
		if (im->nz)
			for (uint64_t p = e->off / PAGE; p < (e->off + e->len + PAGE - 1) / PAGE;
			     p++)
				im->nz[p] = 1;
		im->exists = true;
		break;
	case EV_PUNCH: {
		uint64_t end = e->off + e->len < im->size ? e->off + e->len : im->size;
		if (e->off < end)
			memset(im->b + e->off, 0, end - e->off);
		if (im->nz)
			for (uint64_t p = (e->off + PAGE - 1) / PAGE; (p + 1) * PAGE <= end; p++)
				im->nz[p] = 0;
		break;
	}
	case EV_TRUNC:
		img_resize(im, e->off);
		im->exists = true;
		break;
	case EV_DELETE:
		img_resize(im, 0);
		im->exists = false;
		if (im->nz)
			memset(im->nz, 0, im->nz_pages);
		break;
	}
}

/* ------------------------------------------------------------------ */
/* self-describing sectors */

#define SECT_MAGIC 0x54534e45u /* "ENST" */

struct tag {
	uint32_t dev, sect, seq; /* dev 0: zeros */
};

static const struct tag ZERO_TAG = {0, 0, 0};

static bool tag_eq(struct tag a, struct tag b)
{
	return a.dev == b.dev && a.sect == b.sect && a.seq == b.seq;
}

/* A checksum of the sector's 64 words, its own field (bytes 16-19) as zeros. */
static uint32_t sector_sum(const unsigned char *p)
{
	uint64_t h = 0xcbf29ce484222325ull, w;

	for (unsigned i = 0; i < SECT / 8; i++) {
		memcpy(&w, p + i * 8, 8);
		if (i == 2)
			w &= ~0xffffffffull; /* little endian: bytes 16-19 */
		h = (h ^ w) * 0x100000001b3ull;
	}
	return (uint32_t)(h ^ (h >> 32));
}

static void fill_sector(unsigned char *p, struct tag t)
{
	uint32_t h[5] = {SECT_MAGIC, t.dev, t.sect, t.seq, 0};

	memcpy(p, h, sizeof(h));
	for (unsigned i = sizeof(h); i < SECT; i++)
		p[i] = (unsigned char)(t.dev * 131u + t.sect * 7u + t.seq * 13u + i);
	h[4] = sector_sum(p);
	memcpy(p + 16, &h[4], 4);
}

/* 0 and the tag (ZERO_TAG for a zero sector), or -1: garbage */
static int decode_sector(const unsigned char *p, struct tag *t)
{
	static const unsigned char zeros[SECT];
	uint32_t h[5];

	if (!memcmp(p, zeros, SECT)) {
		*t = ZERO_TAG;
		return 0;
	}
	memcpy(h, p, sizeof(h));
	if (h[0] != SECT_MAGIC || sector_sum(p) != h[4] || !h[1])
		return -1;
	t->dev = h[1];
	t->sect = h[2];
	t->seq = h[3];
	return 0;
}

/* ------------------------------------------------------------------ */
/* the workload and the model */

enum op_kind {
	K_WRITE,
	K_DISCARD,
	K_SYNC,
	K_COMMIT,
	K_SET,
	K_DELSET,
	K_CREATE,
	K_DELETE,
	K_RESIZE,
	K_VOPEN,
	K_VCLOSE,
	K_REOPEN,
	K_NR
};
static const char *const op_name[K_NR] = {"write",  "discard", "sync",	 "commit",
					  "set",    "delset",  "create", "delete",
					  "resize", "vopen",   "vclose", "reopen"};

struct op {
	enum op_kind kind;
	int dev;	       /* model slot (write, discard, create, delete, resize, v*) */
	int set;	       /* set number (set, delset) */
	uint32_t first, count; /* sectors (write, discard) */
	uint64_t size;	       /* create, resize: the new size in bytes */
	uint64_t old_size;     /* resize */
	char name[80];
	long rc;
	uint64_t tid_before, tid_after;
};

static bool op_is_admin(enum op_kind k)
{
	return k == K_SET || k == K_DELSET || k == K_CREATE || k == K_DELETE || k == K_RESIZE;
}

/* ops whose effects on the content come before their commit */
static bool op_is_data(enum op_kind k)
{
	return k == K_WRITE || k == K_DISCARD;
}

/* an acknowledgement: everything before its return is durable */
static bool op_acks(const struct op *o)
{
	return o->rc == 0 && (o->kind == K_SYNC || op_is_admin(o->kind));
}

struct cand {
	int32_t op;
	struct tag t;
};
struct clist {
	uint32_t n, cap;
	struct cand *c;
};

enum { VB_UNM, VB_OWN, VB_SHR };

struct mdev {
	bool used;   /* slot taken */
	bool exists; /* after the returned ops */
	int id;	     /* device id in the sector tags */
	int set;     /* -1: top level */
	char name[80];
	uint64_t size;
	struct tag *cur, *base; /* content now, and at the last acknowledgement */
	struct clist *cl;	/* per sector: writes since base */
	uint8_t *vb;		/* workload: block states, to aim writes */
	struct volume *h;	/* workload: an open handle */
};

struct mset {
	bool exists;
	char name[16];
};

struct model {
	struct mdev dev[MAXDEV];
	struct mset set[MAXSETS];
	int nr_sets, nr_cvols, next_id;
	int last_ack;
	uint32_t vsect, spb;
	uint64_t bs;
};

struct wl {
	uint64_t seed, bs, nr_blocks;
	uint32_t volb, spb, vsect;
	int nops;
	struct op ops[MAXOPS];
	uint64_t tid0;
	struct img init[NR_FILES];
	char xattr[128];
	ssize_t xattr_len;
	char live[512], pooldir[1024];
	/* handles of devices deleted while open */
	struct volume *zombie[MAXDEV];
	int nzombie;
	/* what the workload did that the controls need */
	int fresh_acked, delset_punched;
	bool direct; /* the workload's data file moved with O_DIRECT */
};

static void mdev_init(struct model *m, int slot, const char *name, int set, uint64_t size)
{
	struct mdev *d = &m->dev[slot];

	if (!d->cur) {
		d->cur = calloc(m->vsect, sizeof(*d->cur));
		d->base = calloc(m->vsect, sizeof(*d->base));
		d->cl = calloc(m->vsect, sizeof(*d->cl));
		d->vb = calloc(m->vsect / m->spb + 1, 1);
		assert_true(d->cur && d->base && d->cl && d->vb);
	}
	memset(d->cur, 0, m->vsect * sizeof(*d->cur));
	memset(d->base, 0, m->vsect * sizeof(*d->base));
	for (uint32_t s = 0; s < m->vsect; s++)
		d->cl[s].n = 0;
	memset(d->vb, 0, m->vsect / m->spb + 1);
	d->used = d->exists = true;
	d->id = ++m->next_id;
	d->set = set;
	d->h = NULL;
	d->size = size;
	snprintf(d->name, sizeof(d->name), "%s", name);
}

static struct model *model_new(const struct wl *w)
{
	struct model *m = calloc(1, sizeof(*m));

	assert_non_null(m);
	m->vsect = w->vsect;
	m->spb = w->spb;
	m->bs = w->bs;
	m->last_ack = -1;
	mdev_init(m, 0, "v0", -1, (uint64_t)w->vsect * SECT);
	mdev_init(m, 1, "v1", -1, (uint64_t)w->vsect * SECT);
	return m;
}

static void model_free(struct model *m)
{
	for (int i = 0; i < MAXDEV; i++) {
		struct mdev *d = &m->dev[i];
		if (d->cl)
			for (uint32_t s = 0; s < m->vsect; s++)
				free(d->cl[s].c);
		free(d->cur);
		free(d->base);
		free(d->cl);
		free(d->vb);
	}
	free(m);
}

static int free_slot(const struct model *m)
{
	for (int i = 0; i < MAXDEV; i++)
		if (!m->dev[i].used)
			return i;
	return -1;
}

static void put_sector(struct mdev *d, uint32_t s, int op, struct tag t)
{
	struct clist *cl = &d->cl[s];

	d->cur[s] = t;
	if (cl->n == cl->cap) {
		cl->cap = cl->cap ? cl->cap * 2 : 4;
		cl->c = realloc(cl->c, cl->cap * sizeof(*cl->c));
		assert_non_null(cl->c);
	}
	cl->c[cl->n++] = (struct cand){op, t};
}

static void model_ack(struct model *m, int op)
{
	for (int i = 0; i < MAXDEV; i++) {
		struct mdev *d = &m->dev[i];
		if (!d->used)
			continue;
		memcpy(d->base, d->cur, m->vsect * sizeof(*d->cur));
		for (uint32_t s = 0; s < m->vsect; s++)
			d->cl[s].n = 0;
	}
	m->last_ack = op;
}

static struct tag op_tag(const struct op *o, int opi, const struct mdev *d, uint32_t s)
{
	if (o->kind == K_WRITE)
		return (struct tag){(uint32_t)d->id, s, (uint32_t)opi + 1};
	return ZERO_TAG;
}

/* Sectors an op (in flight or returned) may change on device d: [*a, *b). */
static bool op_range(const struct model *m, const struct op *o, int dslot, uint32_t *a, uint32_t *b)
{
	const struct mdev *d = &m->dev[dslot];
	uint32_t size_s = (uint32_t)(d->size / SECT);

	if (o->dev != dslot)
		return false;
	if (o->kind == K_WRITE || o->kind == K_DISCARD) {
		*a = o->first;
		*b = o->first + o->count < size_s ? o->first + o->count : size_s;
		return *a < *b;
	}
	if (o->kind == K_RESIZE && o->size < o->old_size) {
		*a = (uint32_t)(o->size / SECT);
		*b = (uint32_t)(o->old_size / SECT);
		return *a < *b;
	}
	return false;
}

/* The effect of a returned op on the model. */
static void model_apply(struct model *m, const struct op *o, int opi)
{
	struct mdev *d = o->dev >= 0 ? &m->dev[o->dev] : NULL;
	uint32_t a, b;

	switch (o->kind) {
	case K_WRITE:
		if (o->rc <= 0)
			break;
		a = o->first;
		b = o->first + (uint32_t)((uint64_t)o->rc / SECT);
		for (uint32_t s = a; s < b; s++)
			put_sector(d, s, opi, op_tag(o, opi, d, s));
		for (uint32_t v = a / m->spb; v <= (b - 1) / m->spb; v++)
			d->vb[v] = VB_OWN;
		break;
	case K_DISCARD:
		if (o->rc || !op_range(m, o, o->dev, &a, &b))
			break;
		for (uint32_t s = a; s < b; s++)
			put_sector(d, s, opi, ZERO_TAG);
		for (uint32_t v = a / m->spb; v <= (b - 1) / m->spb; v++) {
			bool whole = v * m->spb >= a && (v + 1) * m->spb <= b;
			if (whole)
				d->vb[v] = VB_UNM;
			else if (d->vb[v] == VB_SHR)
				d->vb[v] = VB_OWN;
		}
		break;
	case K_SET:
		if (o->rc)
			break;
		snprintf(m->set[o->set].name, sizeof(m->set[o->set].name), "s%d", o->set);
		m->set[o->set].exists = true;
		for (int i = 0; i < MAXDEV; i++) {
			struct mdev *org = &m->dev[i];
			char name[96];
			if (!org->used || !org->exists || org->set >= 0)
				continue;
			int slot = free_slot(m);
			assert_true(slot >= 0);
			snprintf(name, sizeof(name), "s%d/%s", o->set, org->name);
			mdev_init(m, slot, name, o->set, org->size);
			m->dev[slot].id = org->id; /* the member reads its origin's tags */
			m->next_id--;
			memcpy(m->dev[slot].cur, org->cur, m->vsect * sizeof(*org->cur));
			for (uint32_t v = 0; v <= m->vsect / m->spb; v++)
				if (org->vb[v] == VB_OWN)
					org->vb[v] = VB_SHR;
		}
		break;
	case K_DELSET:
		if (o->rc)
			break;
		m->set[o->set].exists = false;
		for (int i = 0; i < MAXDEV; i++)
			if (m->dev[i].used && m->dev[i].set == o->set) {
				m->dev[i].exists = false;
				m->dev[i].used = false;
			}
		break;
	case K_CREATE:
		if (o->rc)
			break;
		mdev_init(m, o->dev, o->name, -1, o->size);
		break;
	case K_DELETE:
		if (o->rc)
			break;
		d->exists = false;
		d->used = false; /* an open handle lives on in the workload's zombies */
		break;
	case K_RESIZE:
		if (o->rc)
			break;
		if (op_range(m, o, o->dev, &a, &b))
			for (uint32_t s = a; s < b; s++)
				put_sector(d, s, opi, ZERO_TAG);
		if (o->size < o->old_size)
			for (uint32_t v = (uint32_t)((o->size + m->bs - 1) / m->bs);
			     v <= m->vsect / m->spb; v++)
				d->vb[v] = VB_UNM;
		d->size = o->size;
		break;
	default:
		break;
	}
	if (op_acks(o))
		model_ack(m, opi);
}

/* ------------------------------------------------------------------ */
/* running the workload (recorded) */

static void fail_run(const struct wl *w, int i, const char *what, long rc)
{
	fail_msg("seed %llu bs %llu: op %d (%s) failed: %ld (%s)", (unsigned long long)w->seed,
		 (unsigned long long)w->bs, i, what, rc, rc < 0 ? strerror((int)-rc) : "");
}

static void open_live(struct wl *w, struct pool **pp)
{
	char msg[POOL_MSG_MAX];

	live_db = NULL;
	if (pool_open(w->pooldir, 0, "enum workload", pp, msg, sizeof(msg)))
		fail_msg("open %s: %s", w->pooldir, msg);
	dio_test_set_observer(pool_test_dio(*pp), data_observer, NULL);
	w->direct = dio_is_direct(pool_test_dio(*pp));
	assert_non_null(live_db);
	if (g_autockpt)
		sqlite3_wal_autocheckpoint(live_db, g_autockpt);
}

static long exec_op(struct wl *w, struct model *m, struct op *o, struct pool **pp)
{
	struct mdev *d = o->dev >= 0 ? &m->dev[o->dev] : NULL;
	char msg[POOL_MSG_MAX], name[32];
	unsigned char *buf;
	long rc = 0;
	int opi = (int)(o - w->ops);

	switch (o->kind) {
	case K_WRITE:
		buf = malloc((size_t)o->count * SECT);
		assert_non_null(buf);
		for (uint32_t s = 0; s < o->count; s++)
			fill_sector(buf + (size_t)s * SECT, op_tag(o, opi, d, o->first + s));
		rc = pool_write(d->h, buf, (size_t)o->count * SECT, (uint64_t)o->first * SECT);
		free(buf);
		break;
	case K_DISCARD:
		rc = pool_discard(d->h, (uint64_t)o->first * SECT, (uint64_t)o->count * SECT);
		break;
	case K_SYNC:
		rc = pool_sync(*pp);
		break;
	case K_COMMIT:
		rc = pool_commit(*pp);
		break;
	case K_SET:
		snprintf(name, sizeof(name), "s%d", o->set);
		rc = pool_snapshot_set(*pp, name, msg, sizeof(msg));
		break;
	case K_DELSET:
		snprintf(name, sizeof(name), "s%d", o->set);
		rc = pool_delete_set(*pp, name, msg, sizeof(msg));
		break;
	case K_CREATE:
		rc = pool_create(*pp, o->name, o->size, msg, sizeof(msg));
		break;
	case K_DELETE:
		rc = pool_delete(*pp, o->name, msg, sizeof(msg));
		if (!rc && d->h) {
			/* deleted while open: released at its last close */
			w->zombie[w->nzombie++] = d->h;
			d->h = NULL;
		}
		break;
	case K_RESIZE:
		rc = pool_resize(*pp, o->name, o->size, msg, sizeof(msg));
		break;
	case K_VOPEN:
		rc = pool_volume_open(*pp, o->name, &d->h);
		break;
	case K_VCLOSE:
		if (d) {
			pool_volume_close(d->h);
			d->h = NULL;
		} else {
			pool_volume_close(w->zombie[o->first]);
			w->zombie[o->first] = w->zombie[--w->nzombie];
		}
		break;
	case K_REOPEN:
		for (int i = 0; i < MAXDEV; i++)
			if (m->dev[i].h) {
				pool_volume_close(m->dev[i].h);
				m->dev[i].h = NULL;
			}
		while (w->nzombie)
			pool_volume_close(w->zombie[--w->nzombie]);
		rc = pool_close(*pp);
		*pp = NULL;
		if (!rc)
			open_live(w, pp);
		break;
	default:
		break;
	}
	return rc;
}

/* A write aimed at a block of the given state (fresh, own or shared). */
static bool gen_write(struct wl *w, struct model *m, uint64_t *rs, struct op *o, int slot)
{
	struct mdev *d = &m->dev[slot];
	uint32_t nvb = (uint32_t)(d->size / SECT) / m->spb, cand[1024], n = 0;
	uint32_t want = rnd(rs, 3), size_s = (uint32_t)(d->size / SECT), v, shape;

	if (!size_s)
		return false;
	for (int tries = 0; tries < 3 && !n; tries++, want = (want + 1) % 3)
		for (v = 0; v < nvb && n < 1024; v++)
			if (d->vb[v] == want)
				cand[n++] = v;
	v = n ? cand[rnd(rs, n)] : rnd(rs, nvb ? nvb : 1);
	o->kind = K_WRITE;
	o->dev = slot;
	shape = rnd(rs, 10);
	if (shape < 4) {
		/* whole blocks: one, or a run (provisioned together) */
		o->first = v * m->spb;
		o->count = (1 + rnd(rs, 3)) * m->spb;
	} else if (shape < 8) {
		/* part of one block: 512 B sectors, or 4 KiB pages */
		uint32_t unit = rnd(rs, 2) ? 1 : PAGE / SECT;
		uint32_t units = m->spb / unit;
		uint32_t a = rnd(rs, units), len = 1 + rnd(rs, units - a < 4 ? units - a : 4);
		if (len == units)
			len--;
		if (!len)
			len = 1;
		o->first = v * m->spb + a * unit;
		o->count = len * unit;
	} else {
		/* across a block boundary */
		o->first = v * m->spb + m->spb - 1 - rnd(rs, m->spb / 2);
		o->count = 2 + rnd(rs, m->spb);
	}
	if (o->first >= size_s)
		o->first = size_s - 1;
	if (o->first + o->count > size_s)
		o->count = size_s - o->first;
	snprintf(o->name, sizeof(o->name), "%s", d->name);
	return true;
}

static int pick_dev(struct model *m, uint64_t *rs, bool cvol_only, bool need_handle,
		    bool want_handle)
{
	int cand[MAXDEV], n = 0;

	for (int i = 0; i < MAXDEV; i++) {
		struct mdev *d = &m->dev[i];
		if (!d->used || !d->exists || d->set >= 0)
			continue;
		if (cvol_only && d->name[0] != 'c')
			continue;
		if (need_handle && !d->h)
			continue;
		if (want_handle && d->h)
			continue;
		cand[n++] = i;
	}
	return n ? cand[rnd(rs, (uint32_t)n)] : -1;
}

/* The next op, from the model of what the pool holds now. */
static void gen_op(struct wl *w, struct model *m, uint64_t *rs, struct op *o)
{
	memset(o, 0, sizeof(*o));
	o->dev = -1;
	o->set = -1;
	for (;;) {
		uint32_t r = rnd(rs, 100);
		int i;

		if (r < 46) {
			i = pick_dev(m, rs, false, false, false);
			if (i < 0)
				continue;
			if (!m->dev[i].h) {
				o->kind = K_VOPEN;
				o->dev = i;
				snprintf(o->name, sizeof(o->name), "%s", m->dev[i].name);
				return;
			}
			if (gen_write(w, m, rs, o, i))
				return;
		} else if (r < 54) {
			i = pick_dev(m, rs, false, true, false);
			if (i < 0 || !m->dev[i].size)
				continue;
			uint32_t size_s = (uint32_t)(m->dev[i].size / SECT);
			o->kind = K_DISCARD;
			o->dev = i;
			if (rnd(rs, 2)) {
				o->first = rnd(rs, size_s / m->spb + 1) * m->spb;
				o->count = (1 + rnd(rs, 2)) * m->spb;
			} else {
				o->first = rnd(rs, size_s);
				o->count = 1 + rnd(rs, 2 * m->spb);
			}
			if (o->first >= size_s)
				o->first = size_s - 1;
			snprintf(o->name, sizeof(o->name), "%s", m->dev[i].name);
			return;
		} else if (r < 66) {
			o->kind = K_SYNC;
			return;
		} else if (r < 71) {
			o->kind = K_COMMIT;
			return;
		} else if (r < 76) {
			int live = 0, top = 0;
			for (int s = 0; s < m->nr_sets; s++)
				live += m->set[s].exists;
			for (i = 0; i < MAXDEV; i++)
				top += m->dev[i].used && m->dev[i].exists && m->dev[i].set < 0;
			int nfree = 0;
			for (i = 0; i < MAXDEV; i++)
				nfree += !m->dev[i].used;
			if (live >= LIVE_SETS || m->nr_sets >= MAXSETS || nfree < top + 2)
				continue;
			o->kind = K_SET;
			o->set = m->nr_sets++;
			return;
		} else if (r < 80) {
			int s, first = -1;
			for (s = 0; s < m->nr_sets; s++)
				if (m->set[s].exists && (first < 0 || rnd(rs, 3) == 0))
					first = s;
			if (first < 0)
				continue;
			o->kind = K_DELSET;
			o->set = first;
			return;
		} else if (r < 83) {
			int live = 0;
			for (i = 0; i < MAXDEV; i++)
				live +=
				    m->dev[i].used && m->dev[i].exists && m->dev[i].name[0] == 'c';
			if (live >= LIVE_CVOLS || (i = free_slot(m)) < 0)
				continue;
			o->kind = K_CREATE;
			o->dev = i;
			snprintf(o->name, sizeof(o->name), "c%d", m->nr_cvols++);
			o->size = (uint64_t)(1 + rnd(rs, w->volb)) * w->bs;
			if (rnd(rs, 2))
				o->size -= (uint64_t)rnd(rs, m->spb) * SECT;
			return;
		} else if (r < 85) {
			i = pick_dev(m, rs, true, false, false);
			if (i < 0)
				continue;
			o->kind = K_DELETE;
			o->dev = i;
			snprintf(o->name, sizeof(o->name), "%s", m->dev[i].name);
			return;
		} else if (r < 88) {
			i = pick_dev(m, rs, false, false, false);
			if (i < 0 || i == 0)
				continue; /* v0 keeps its size */
			o->kind = K_RESIZE;
			o->dev = i;
			o->old_size = m->dev[i].size;
			o->size = (uint64_t)rnd(rs, w->volb + 1) * w->bs;
			if (rnd(rs, 2) && o->size)
				o->size -= (uint64_t)(1 + rnd(rs, m->spb - 1)) * SECT;
			snprintf(o->name, sizeof(o->name), "%s", m->dev[i].name);
			return;
		} else if (r < 93) {
			/* close a handle (also of a device deleted while open) */
			int cand[MAXDEV], n = 0;
			for (i = 0; i < MAXDEV; i++)
				if (m->dev[i].used && m->dev[i].h)
					cand[n++] = i;
			if (!n && !w->nzombie)
				continue;
			o->kind = K_VCLOSE;
			if (w->nzombie && (!n || rnd(rs, 2))) {
				o->first = rnd(rs, (uint32_t)w->nzombie);
				snprintf(o->name, sizeof(o->name), "(deleted)");
				return;
			}
			i = cand[rnd(rs, (uint32_t)n)];
			o->dev = i;
			snprintf(o->name, sizeof(o->name), "%s", m->dev[i].name);
			return;
		} else if (r < 97) {
			i = pick_dev(m, rs, false, false, true);
			if (i < 0)
				continue;
			o->kind = K_VOPEN;
			o->dev = i;
			snprintf(o->name, sizeof(o->name), "%s", m->dev[i].name);
			return;
		} else {
			o->kind = K_REOPEN;
			return;
		}
	}
}

/*
 * The scripted start of every workload: the situations the controls break.
 * Fresh blocks written and acknowledged by pool_sync (no data flush: lost);
 * a set whose blocks then hold data only it sees, deleted (a punch before
 * the delete's commit is durable destroys the set).
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"
static int script_ops(struct wl *w, struct op *ops)
{
	uint32_t spb = w->spb;
	int n = 0;
#define OP(...) (ops[n++] = (struct op){.dev = -1, .set = -1, __VA_ARGS__})
	OP(.kind = K_VOPEN, .dev = 0, .name = "v0");
	OP(.kind = K_VOPEN, .dev = 1, .name = "v1");
	OP(.kind = K_WRITE, .dev = 0, .first = 0, .count = 2 * spb, .name = "v0");
	OP(.kind = K_WRITE, .dev = 0, .first = 2 * spb + 1, .count = 3, .name = "v0");
	OP(.kind = K_WRITE, .dev = 1, .first = 0, .count = spb, .name = "v1");
	OP(.kind = K_WRITE, .dev = 1, .first = 3 * spb + 2, .count = 2, .name = "v1");
	OP(.kind = K_SYNC);
	OP(.kind = K_WRITE, .dev = 0, .first = 4, .count = 2, .name = "v0");
	OP(.kind = K_SYNC);
	OP(.kind = K_SET, .set = 0);
	OP(.kind = K_WRITE, .dev = 0, .first = spb + 3, .count = 2, .name = "v0");
	OP(.kind = K_WRITE, .dev = 0, .first = 2 * spb, .count = spb, .name = "v0");
	OP(.kind = K_WRITE, .dev = 1, .first = 1, .count = 2, .name = "v1");
	OP(.kind = K_SYNC);
	OP(.kind = K_DELSET, .set = 0);
	OP(.kind = K_WRITE, .dev = 0, .first = 5 * spb, .count = spb, .name = "v0");
	OP(.kind = K_COMMIT);
	OP(.kind = K_DISCARD, .dev = 1, .first = 3 * spb, .count = spb, .name = "v1");
	OP(.kind = K_SYNC);
	/* a block freed in the transaction pool_close commits */
	OP(.kind = K_DISCARD, .dev = 0, .first = 5 * spb, .count = spb, .name = "v0");
	OP(.kind = K_REOPEN);
	OP(.kind = K_VOPEN, .dev = 0, .name = "v0");
	OP(.kind = K_VOPEN, .dev = 1, .name = "v1");
#undef OP
	return n;
}
#pragma GCC diagnostic pop

static void rmrf(const char *dir)
{
	char cmd[PATH_MAX + 32];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static void run_workload(struct wl *w, const char top[static 256])
{
	struct pool_format_opts fo = {.block_size = w->bs, .data_size = w->bs * w->nr_blocks};
	struct model *m = model_new(w);
	struct pool *p = NULL;
	struct pool_status st;
	char msg[POOL_MSG_MAX], path[PATH_MAX + 32];
	uint64_t rs = mix64(mix64(w->seed) + w->bs);
	int nscript;

	snprintf(w->live, sizeof(w->live), "%s/live", top);
	snprintf(w->pooldir, sizeof(w->pooldir), "%s/pool", w->live);
	assert_int_equal(mkdir(w->live, 0700), 0);
	if (pool_format(w->pooldir, &fo, msg, sizeof(msg)))
		fail_msg("format: %s", msg);
	if (pool_open(w->pooldir, 0, "enum setup", &p, msg, sizeof(msg)))
		fail_msg("open: %s", msg);
	if (pool_create(p, "v0", (uint64_t)w->vsect * SECT, msg, sizeof(msg)) ||
	    pool_create(p, "v1", (uint64_t)w->vsect * SECT, msg, sizeof(msg)))
		fail_msg("create: %s", msg);
	assert_int_equal(pool_close(p), 0);

	/* the images the log starts from: the pool as a clean close left it */
	for (int f = 0; f < NR_FILES; f++) {
		snprintf(path, sizeof(path), "%s/%s", w->pooldir, file_name[f]);
		img_load(&w->init[f], path, f == F_DATA);
	}
	snprintf(path, sizeof(path), "%s/data", w->pooldir);
	w->xattr_len = getxattr(path, UUID_XATTR, w->xattr, sizeof(w->xattr));
	assert_non_null(realpath(w->pooldir, rec.dir));
	rec_clear();
	rec.on = true;
	rec.cur_op = -1;
	open_live(w, &p);
	assert_int_equal(pool_status(p, &st), 0);
	w->tid0 = st.commit_id;

	nscript = script_ops(w, w->ops);
	for (int i = 0; i < w->nops; i++) {
		struct op *o = &w->ops[i];
		uint64_t punches = 0;

		if (i >= nscript)
			gen_op(w, m, &rs, o);
		o->tid_before = i ? w->ops[i - 1].tid_after : w->tid0;
		size_t ev0 = rec.n;
		rec_mark(i, false);
		o->rc = exec_op(w, m, o, &p);
		rec_mark(i, true);
		if (o->kind == K_WRITE ? o->rc < 0 && o->rc != -ENOSPC : o->rc != 0)
			fail_run(w, i, op_name[o->kind], o->rc);
		assert_int_equal(pool_status(p, &st), 0);
		o->tid_after = st.commit_id;
		for (size_t e = ev0; e < rec.n; e++)
			punches += rec.ev[e].kind == EV_PUNCH;
		if (o->kind == K_DELSET && punches)
			w->delset_punched++;
		if (o->kind == K_SYNC && o->tid_after > o->tid_before)
			w->fresh_acked++;
		model_apply(m, o, i);
	}
	rec.on = false;
	for (int i = 0; i < MAXDEV; i++)
		if (m->dev[i].h)
			pool_volume_close(m->dev[i].h);
	while (w->nzombie)
		pool_volume_close(w->zombie[--w->nzombie]);
	pool_close(p);
	model_free(m);
	rmrf(w->live);
}

/* ------------------------------------------------------------------ */
/* crash states */

struct tear {
	int32_t ev;   /* event index, -1: none */
	uint8_t gran; /* sector size: 512 or 4096 (as a shift) */
	uint8_t mode; /* 0: the first m sectors (in order), 1: a random subset */
	uint32_t m;
	uint64_t seed;
};

struct plan {
	uint8_t *chosen[NR_FILES];
	struct tear tear[NR_FILES];
	char desc[96];
};

struct pending {
	uint32_t *ev[NR_FILES];
	uint32_t n[NR_FILES], cap[NR_FILES];
	uint64_t prefix[NR_FILES]; /* events of the file in the base image */
};

struct stats {
	uint64_t states, dups, failed, points, workloads, planned;
	uint64_t fail_by_inv[8];
	double seconds;
};

/* the invariants, for the tally */
enum { INV_OPEN, INV_TID, INV_I1, INV_I3, INV_I7, INV_FREE, INV_I4, INV_NR };
static const char *const inv_name[INV_NR] = {"open", "tid",	   "I1/I2", "I3",
					     "I7",   "free-block", "I4/I6"};

static bool tear_bit(const struct tear *t, uint32_t i)
{
	if (t->mode == 0)
		return i < t->m;
	return mix64(t->seed + i) & 1;
}

/* After the choice: an unapplied delete hides every later event of its file
 * (the name still holds the old file, none of the new one). */
static void plan_fix(struct plan *pl, const struct pending *pd)
{
	for (int f = 0; f < NR_FILES; f++) {
		bool cut = false;
		for (uint32_t j = 0; j < pd->n[f]; j++) {
			if (cut)
				pl->chosen[f][j] = 0;
			else if (rec.ev[pd->ev[f][j]].kind == EV_DELETE && !pl->chosen[f][j])
				cut = true;
		}
		if (pl->tear[f].ev >= 0) {
			bool ok = false;
			for (uint32_t j = 0; j < pd->n[f]; j++)
				if ((int32_t)pd->ev[f][j] == pl->tear[f].ev && pl->chosen[f][j])
					ok = rec.ev[pl->tear[f].ev].kind == EV_WRITE ||
					     rec.ev[pl->tear[f].ev].kind == EV_PUNCH;
			if (!ok)
				pl->tear[f].ev = -1;
		}
	}
}

/* The identity of a state: the applied events of each file, canonically,
 * and the oracle's context. */
static uint64_t plan_key(const struct plan *pl, const struct pending *pd, int r, int k)
{
	uint64_t h = mix64(0x1234 + (uint64_t)(r + 2) * 1000003u + (uint64_t)(k + 2));

	for (int f = 0; f < NR_FILES; f++) {
		uint64_t prefix = pd->prefix[f];
		uint32_t j = 0;
		/* applied events that continue the base's prefix, untorn, count in it */
		while (j < pd->n[f] && pl->chosen[f][j] && pl->tear[f].ev != (int32_t)pd->ev[f][j])
			prefix++, j++;
		h = mix64(h ^ (prefix * 31 + (uint64_t)f));
		for (; j < pd->n[f]; j++) {
			if (!pl->chosen[f][j])
				continue;
			uint64_t x = pd->ev[f][j];
			if (pl->tear[f].ev == (int32_t)pd->ev[f][j])
				x ^= mix64(((uint64_t)pl->tear[f].gran << 40) ^
					   ((uint64_t)pl->tear[f].mode << 48) ^ pl->tear[f].m ^
					   (pl->tear[f].seed << 8)) |
				     1ull << 63;
			h = mix64(h ^ x);
		}
	}
	return h;
}

/* a set of 64-bit keys */
static struct {
	uint64_t *k;
	size_t cap, n;
} seen;

static bool seen_add(uint64_t key)
{
	if (!key)
		key = 1;
	if (seen.n * 2 >= seen.cap) {
		uint64_t *old = seen.k;
		size_t oc = seen.cap;
		seen.cap = oc ? oc * 2 : 1 << 16;
		seen.k = calloc(seen.cap, sizeof(*seen.k));
		assert_non_null(seen.k);
		seen.n = 0;
		for (size_t i = 0; i < oc; i++)
			if (old[i])
				seen_add(old[i]);
		free(old);
	}
	for (size_t i = key & (seen.cap - 1);; i = (i + 1) & (seen.cap - 1)) {
		if (seen.k[i] == key)
			return false;
		if (!seen.k[i]) {
			seen.k[i] = key;
			seen.n++;
			return true;
		}
	}
}

static void seen_reset(void)
{
	free(seen.k);
	memset(&seen, 0, sizeof(seen));
}

static void xwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	assert_true(pwrite(fd, buf, len, (off_t)off) == (ssize_t)len);
}

/* Write one file of a crash state: its base, then the chosen events. */
static void write_file(const char *path, const struct img *base, const struct pending *pd, int f,
		       const struct plan *pl)
{
	bool exists = base->exists;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	if (f == F_DATA) {
		assert_int_equal(ftruncate(fd, (off_t)base->size), 0);
		uint64_t np = (base->size + PAGE - 1) / PAGE;
		for (uint64_t p = 0; p < np;) {
			if (!base->nz[p]) {
				p++;
				continue;
			}
			uint64_t q = p;
			while (q < np && base->nz[q])
				q++;
			uint64_t end = q * PAGE < base->size ? q * PAGE : base->size;
			xwrite(fd, base->b + p * PAGE, end - p * PAGE, p * PAGE);
			p = q;
		}
	} else if (base->size) {
		xwrite(fd, base->b, base->size, 0);
	}
	for (uint32_t j = 0; j < pd->n[f]; j++) {
		const struct ev *e;
		const struct tear *t = &pl->tear[f];
		if (!pl->chosen[f][j])
			continue;
		e = &rec.ev[pd->ev[f][j]];
		bool torn = t->ev == (int32_t)pd->ev[f][j];
		uint32_t g = torn ? 1u << t->gran : 0;
		switch (e->kind) {
		case EV_WRITE:
			exists = true;
			if (!torn) {
				xwrite(fd, e->buf, e->len, e->off);
				break;
			}
			for (uint32_t i = 0; (uint64_t)i * g < e->len; i++) {
				uint64_t a = (uint64_t)i * g, n = e->len - a < g ? e->len - a : g;
				if (tear_bit(t, i))
					xwrite(fd, e->buf + a, n, e->off + a);
			}
			break;
		case EV_PUNCH:
			if (!torn) {
				assert_int_equal(
				    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					      (off_t)e->off, (off_t)e->len),
				    0);
				break;
			}
			for (uint32_t i = 0; (uint64_t)i * g < e->len; i++) {
				uint64_t a = (uint64_t)i * g, n = e->len - a < g ? e->len - a : g;
				if (tear_bit(t, i))
					assert_int_equal(
					    fallocate(fd,
						      FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
						      (off_t)(e->off + a), (off_t)n),
					    0);
			}
			break;
		case EV_TRUNC:
			exists = true;
			assert_int_equal(ftruncate(fd, (off_t)e->off), 0);
			break;
		case EV_DELETE:
			exists = false;
			assert_int_equal(ftruncate(fd, 0), 0);
			break;
		}
	}
	close(fd);
	if (!exists)
		unlink(path);
}

static void clear_dir(const char *dir)
{
	static const char *const names[] = {"data", "meta.db", "meta.db-wal", "meta.db-shm",
					    "lock"};
	char path[PATH_MAX + 32];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
}

static void write_state(const struct wl *w, const char *dir, const struct img *base,
			const struct pending *pd, const struct plan *pl)
{
	char path[PATH_MAX + 32];

	clear_dir(dir);
	for (int f = 0; f < NR_FILES; f++) {
		snprintf(path, sizeof(path), "%s/%s", dir, file_name[f]);
		write_file(path, &base[f], pd, f, pl);
	}
	if (w->xattr_len > 0) {
		snprintf(path, sizeof(path), "%s/data", dir);
		setxattr(path, UUID_XATTR, w->xattr, (size_t)w->xattr_len, 0);
	}
}

/* ------------------------------------------------------------------ */
/* the oracle */

struct vctx {
	const struct wl *w;
	const struct model *m;
	int r, k;   /* last returned op, op in flight (-1: none) */
	uint64_t T; /* transaction id of the state, before recovery */
	int a;	    /* the latest op whose content is durable */
	bool after; /* ... with its own effects (else as it started) */
	int eff;    /* the op in flight: 0 absent, 1 complete, 2 either */
	FILE *out;  /* violations */
	int bad;
	unsigned inv_mask;
};

static void viol(struct vctx *c, int inv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void viol(struct vctx *c, int inv, const char *fmt, ...)
{
	va_list ap;

	c->inv_mask |= 1u << inv;
	if (c->bad++ < 8) {
		fprintf(c->out, "    [%s] ", inv_name[inv]);
		va_start(ap, fmt);
		vfprintf(c->out, fmt, ap);
		va_end(ap);
		fputc('\n', c->out);
	}
}

static const struct op *kop(const struct vctx *c)
{
	return c->k >= 0 ? &c->w->ops[c->k] : NULL;
}

/* Is tag t allowed in sector s of top-level device slot i? */
static bool sector_ok(const struct vctx *c, int i, uint32_t s, struct tag t, struct tag *asof_out)
{
	const struct mdev *d = &c->m->dev[i];
	const struct clist *cl = &d->cl[s];
	int cut = c->after ? c->a + 1 : c->a;
	struct tag asof = d->base[s];
	bool ok = false;
	uint32_t a, b;

	for (uint32_t j = 0; j < cl->n; j++) {
		if (cl->c[j].op < cut)
			asof = cl->c[j].t;
		else if (tag_eq(cl->c[j].t, t))
			ok = true;
	}
	*asof_out = asof;
	if (ok || tag_eq(asof, t))
		return true;
	const struct op *o = kop(c);
	if (o && c->k >= cut && op_range(c->m, o, i, &a, &b) && s >= a && s < b &&
	    tag_eq(op_tag(o, c->k, d, s), t))
		return true;
	return false;
}

static void tag_str(char *buf, size_t len, struct tag t)
{
	if (!t.dev)
		snprintf(buf, len, "zeros");
	else if (t.dev == UINT32_MAX)
		snprintf(buf, len, "garbage");
	else
		snprintf(buf, len, "dev %u sect %u seq %u", t.dev, t.sect, t.seq);
}

/* Read a device and check every sector; collect its data blocks in used[]. */
static void check_device(struct vctx *c, struct pool *p, const char *name, uint64_t size, int slot,
			 const struct tag *image, uint8_t *used, uint64_t nr_blocks)
{
	struct volume *v;
	unsigned char *buf;
	uint32_t nsect = (uint32_t)(size / SECT), nbad = 0;
	uint64_t bs = c->w->bs;

	if (pool_volume_open(p, name, &v)) {
		viol(c, INV_I7, "%s is listed but does not open", name);
		return;
	}
	buf = malloc(size ? size : 1);
	assert_non_null(buf);
	if (pool_read(v, buf, size, 0) != (ssize_t)size) {
		viol(c, INV_I1, "%s: read failed", name);
		nsect = 0;
	}
	for (uint32_t s = 0; s < nsect; s++) {
		struct tag t, want;
		char got[64], exp[64];
		bool ok;
		if (decode_sector(buf + (size_t)s * SECT, &t))
			t.dev = UINT32_MAX;
		if (image) {
			want = image[s];
			ok = tag_eq(t, want);
		} else if (slot >= 0) {
			ok = sector_ok(c, slot, s, t, &want);
		} else {
			want = ZERO_TAG;
			ok = tag_eq(t, want);
		}
		if (!ok && nbad++ < 3) {
			tag_str(got, sizeof(got), t);
			tag_str(exp, sizeof(exp), want);
			viol(c, image ? INV_I3 : INV_I1, "%s sector %u: %s, durable content %s%s",
			     name, s, got, exp,
			     image ? " (snapshot image)" : " (or a later write to it)");
		}
	}
	for (uint64_t vb = 0; vb < (size + bs - 1) / bs; vb++) {
		uint64_t db;
		if (pool_test_dblock(v, vb, &db) == 0 && db < nr_blocks)
			used[db] = 1;
	}
	pool_volume_close(v);
	free(buf);
}

/*
 * Shown a free block holding data: does it reach a reader?  A new volume as
 * big as the free space, 512 B written at the start of each of its blocks
 * (each a fresh block, written partially), must read zeros elsewhere.
 */
static void probe_exposure(struct vctx *c, struct pool *p, uint64_t nfree)
{
	uint64_t bs = c->w->bs, stale = 0;
	unsigned char sect[SECT], *blk = malloc(bs);
	struct volume *v;
	char msg[POOL_MSG_MAX];

	assert_non_null(blk);
	memset(sect, 0xa5, sizeof(sect));
	if (!nfree || pool_create(p, "probe", nfree * bs, msg, sizeof(msg)) ||
	    pool_volume_open(p, "probe", &v)) {
		free(blk);
		return;
	}
	for (uint64_t b = 0; b < nfree; b++) {
		if (pool_write(v, sect, SECT, b * bs) != SECT ||
		    pool_read(v, blk, bs, b * bs) != (ssize_t)bs)
			break;
		if (blk[SECT] || memcmp(blk + SECT, blk + SECT + 1, bs - SECT - 1))
			stale++;
	}
	pool_volume_close(v);
	pool_delete(p, "probe", msg, sizeof(msg));
	free(blk);
	if (stale)
		viol(c, INV_FREE,
		     "exposed: a new volume's freshly written blocks read stale data in %llu of "
		     "%llu",
		     (unsigned long long)stale, (unsigned long long)nfree);
}

struct expect {
	char name[96];
	int exist; /* 0 must not, 1 must, 2 either */
	uint64_t size_a, size_b;
	int slot;		 /* model device for the content, or -1 */
	const struct tag *image; /* exact content (set members), or NULL */
	int set;		 /* member of set number, or -1 */
	bool seen;
};

static int effect(const struct vctx *c, const struct op *o)
{
	if (o->rc || o->tid_after == o->tid_before)
		return 0;
	if (c->T >= o->tid_after)
		return 1;
	if (c->T <= o->tid_before)
		return 0;
	return 2;
}

static int add_expect(struct expect *ex, int n, const char *name, int exist, uint64_t sa,
		      uint64_t sb, int slot, const struct tag *image, int set)
{
	assert_true(n < 2 * MAXDEV);
	memset(&ex[n], 0, sizeof(ex[n]));
	snprintf(ex[n].name, sizeof(ex[n].name), "%s", name);
	ex[n].exist = exist;
	ex[n].size_a = sa;
	ex[n].size_b = sb;
	ex[n].slot = slot;
	ex[n].image = image;
	ex[n].set = set;
	return n + 1;
}

static int verify_state(struct vctx *c, const char *dir)
{
	const struct wl *w = c->w;
	const struct model *m = c->m;
	const struct op *o = kop(c);
	struct pool *p;
	struct pool_status st;
	struct pool_device_info *devs = NULL;
	struct pool_set_info *sets = NULL;
	size_t ndev = 0, nsets = 0;
	char msg[POOL_MSG_MAX], path[PATH_MAX + 32];
	static struct expect ex[2 * MAXDEV];
	int nex = 0;
	uint64_t floor = c->r >= 0 ? w->ops[c->r].tid_after : w->tid0;
	uint64_t ceil = o ? o->tid_after : floor;
	char *rep = NULL;
	size_t replen = 0;
	FILE *mf;
	int rc;

	/* the state as the crash left it: its transaction id, an offline check */
	if (pool_open(dir, POOL_OPEN_RDONLY, "enum check", &p, msg, sizeof(msg))) {
		viol(c, INV_OPEN, "read-only open: %s", msg);
		return c->bad;
	}
	pool_status(p, &st);
	c->T = st.commit_id;
	pool_close(p);
	if (knob("THINFS_ENUM_PRECHECK", 1)) {
		mf = open_memstream(&rep, &replen);
		rc = pool_check(dir, false, mf, msg, sizeof(msg));
		fclose(mf);
		if (rc || replen)
			viol(c, INV_I4, "offline check before recovery: %d %s%s", rc,
			     rep ? rep : "", rc < 0 ? msg : "");
		free(rep);
		rep = NULL;
	}
	snprintf(path, sizeof(path), "%s/meta.db-shm", dir);
	unlink(path);
	if (c->T < floor)
		viol(c, INV_TID, "transaction id %llu below %llu, the last commit that returned",
		     (unsigned long long)c->T, (unsigned long long)floor);
	if (c->T > ceil)
		viol(c, INV_TID, "transaction id %llu above %llu, the highest ever committed",
		     (unsigned long long)c->T, (unsigned long long)ceil);

	/* the latest content the state must hold */
	c->a = m->last_ack;
	c->after = true;
	for (int i = m->last_ack + 1; i <= c->r; i++)
		if (w->ops[i].tid_after > w->ops[i].tid_before) {
			c->a = i;
			c->after = !op_is_data(w->ops[i].kind);
		}
	c->eff = o ? effect(c, o) : 0;
	if (o && o->tid_after > o->tid_before && c->T > o->tid_before) {
		c->a = c->k;
		c->after = !op_is_data(o->kind) && c->T >= o->tid_after;
	}

	/* recovery */
	if (pool_open(dir, 0, "enum check", &p, msg, sizeof(msg))) {
		viol(c, INV_OPEN, "recovery open: %s", msg);
		return c->bad;
	}
	pool_status(p, &st);
	if (st.commit_id < c->T)
		viol(c, INV_TID, "transaction id %llu after recovery, %llu before",
		     (unsigned long long)st.commit_id, (unsigned long long)c->T);
	if (st.needs_check || st.read_only)
		viol(c, INV_OPEN, "pool is %s after recovery", st.mode);

	/* what must, may and must not exist */
	for (int i = 0; i < MAXDEV; i++) {
		const struct mdev *d = &m->dev[i];
		int exist = d->exists;
		uint64_t sa = d->size, sb = d->size;
		if (!d->used && !d->exists)
			continue;
		if (d->set < 0) {
			if (o && o->kind == K_DELETE && o->dev == i && d->exists)
				exist = c->eff == 1 ? 0 : c->eff == 0 ? 1 : 2;
			if (o && o->kind == K_RESIZE && o->dev == i) {
				sb = o->size;
				if (c->eff == 1)
					sa = o->size;
				else if (c->eff == 0)
					sb = d->size;
			}
			nex = add_expect(ex, nex, d->name, exist, sa, sb, i, NULL, -1);
		} else {
			if (o && o->kind == K_DELSET && o->set == d->set && d->exists)
				exist = c->eff == 1 ? 0 : c->eff == 0 ? 1 : 2;
			nex = add_expect(ex, nex, d->name, exist, sa, sb, -1, d->cur, d->set);
		}
	}
	if (o && o->kind == K_CREATE && o->rc == 0)
		nex = add_expect(ex, nex, o->name,
				 c->eff == 1   ? 1
				 : c->eff == 0 ? 0
					       : 2,
				 o->size, o->size, -1, NULL, -1);
	if (o && o->kind == K_SET && o->rc == 0) {
		for (int i = 0; i < MAXDEV; i++) {
			const struct mdev *d = &m->dev[i];
			char name[96];
			if (!d->used || !d->exists || d->set >= 0)
				continue;
			snprintf(name, sizeof(name), "s%d/%s", o->set, d->name);
			nex = add_expect(ex, nex, name,
					 c->eff == 1   ? 1
					 : c->eff == 0 ? 0
						       : 2,
					 d->size, d->size, -1, d->cur, o->set);
		}
	}

	uint8_t *used = calloc(w->nr_blocks, 1);
	assert_non_null(used);
	assert_int_equal(pool_list(p, false, &devs, &ndev), 0);
	for (size_t j = 0; j < ndev; j++) {
		char full[600];
		struct expect *e = NULL;
		snprintf(full, sizeof(full), "%s%s%s", devs[j].set, devs[j].set[0] ? "/" : "",
			 devs[j].name);
		for (int i = 0; i < nex && !e; i++)
			if (!strcmp(ex[i].name, full) && ex[i].exist)
				e = &ex[i];
		if (!e) {
			viol(c, INV_I7, "device %s exists, and must not", full);
			continue;
		}
		e->seen = true;
		if (devs[j].size != e->size_a && devs[j].size != e->size_b) {
			viol(c, INV_I7, "%s has size %llu, expected %llu%s%llu", full,
			     (unsigned long long)devs[j].size, (unsigned long long)e->size_a,
			     e->size_a != e->size_b ? " or " : "",
			     e->size_a != e->size_b ? (unsigned long long)e->size_b : 0ull);
			continue;
		}
		check_device(c, p, full, devs[j].size, e->slot, e->image, used, w->nr_blocks);
	}
	for (int i = 0; i < nex; i++)
		if (ex[i].exist == 1 && !ex[i].seen)
			viol(c, ex[i].set >= 0 ? INV_I3 : INV_I7, "device %s is missing",
			     ex[i].name);
	/* sets: whole or absent */
	assert_int_equal(pool_list_sets(p, &sets, &nsets), 0);
	for (size_t j = 0; j < nsets; j++) {
		int num = -1, members = 0, present = 0;
		if (sscanf(sets[j].name, "s%d", &num) != 1 || num < 0 || num >= MAXSETS) {
			viol(c, INV_I7, "unknown set %s", sets[j].name);
			continue;
		}
		for (int i = 0; i < nex; i++)
			if (ex[i].set == num) {
				members += ex[i].exist != 0;
				present += ex[i].seen;
			}
		if (!members)
			viol(c, INV_I7, "set %s exists, and must not", sets[j].name);
		else if (sets[j].nr_devices != (uint64_t)members || present != members)
			viol(c, INV_I7, "set %s holds %llu of its %d devices", sets[j].name,
			     (unsigned long long)sets[j].nr_devices, members);
	}
	for (int i = 0; i < nex; i++) {
		bool listed = false;
		if (ex[i].set < 0 || !ex[i].seen)
			continue;
		for (size_t j = 0; j < nsets; j++)
			listed |= sets[j].name[0] == 's' && atoi(sets[j].name + 1) == ex[i].set;
		if (!listed)
			viol(c, INV_I7, "%s exists without its set", ex[i].name);
	}
	free(devs);
	free(sets);

	/* free blocks hold no data after recovery; used = mapped */
	uint64_t nused = 0;
	for (uint64_t b = 0; b < w->nr_blocks; b++)
		nused += used[b];
	pool_status(p, &st);
	if (st.used_blocks != nused)
		viol(c, INV_I4, "used_blocks %llu, but %llu blocks are mapped",
		     (unsigned long long)st.used_blocks, (unsigned long long)nused);
	snprintf(path, sizeof(path), "%s/data", dir);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	unsigned char *blk = malloc(w->bs);
	uint64_t next = 0, nstale = 0;
	assert_non_null(blk);
	for (off_t off = 0, s, e; (s = lseek(fd, off, SEEK_DATA)) >= 0; off = e) {
		e = lseek(fd, s, SEEK_HOLE);
		for (uint64_t b = (uint64_t)s / w->bs; b * w->bs < (uint64_t)e && b < w->nr_blocks;
		     b++) {
			if (used[b] || b < next)
				continue;
			next = b + 1;
			assert_true(pread(fd, blk, w->bs, (off_t)(b * w->bs)) == (ssize_t)w->bs);
			if (blk[0] || memcmp(blk, blk + 1, w->bs - 1)) {
				viol(c, INV_FREE, "free data block %llu holds data after recovery",
				     (unsigned long long)b);
				nstale++;
			}
		}
	}
	free(blk);
	close(fd);
	free(used);
	if (nstale)
		probe_exposure(c, p, st.nr_data_blocks - st.used_blocks);
	if (pool_close(p))
		viol(c, INV_OPEN, "close after recovery failed");

	/* I4, I6: the recovered pool checks clean, leaks included */
	mf = open_memstream(&rep, &replen);
	rc = pool_check(dir, false, mf, msg, sizeof(msg));
	fclose(mf);
	if (rc || replen)
		viol(c, INV_I4, "check after recovery: %d %s%s", rc, rep ? rep : "",
		     rc < 0 ? msg : "");
	free(rep);
	return c->bad;
}

/* ------------------------------------------------------------------ */
/* enumeration */

struct enum_ctx {
	struct wl *w;
	struct model *m;
	struct img base[NR_FILES];
	struct pending pd;
	struct stats *st;
	char dir[PATH_MAX];
	uint64_t prs, prs_base; /* plan randomness: from seed, block size and crash point */
	long nrand, max_fail, only_point;
	const char *keep;
	bool kept;
	int r, k;
	int job, jobs;		/* this checker checks the states whose key % jobs == job */
	uint64_t failed_before; /* in earlier workloads */
};

static void plan_alloc(struct plan *pl, const struct pending *pd)
{
	for (int f = 0; f < NR_FILES; f++) {
		pl->chosen[f] = calloc(pd->n[f] + 1, 1);
		assert_non_null(pl->chosen[f]);
		pl->tear[f].ev = -1;
	}
	pl->desc[0] = 0;
}

static void plan_free(struct plan *pl)
{
	for (int f = 0; f < NR_FILES; f++)
		free(pl->chosen[f]);
}

static void random_tear(struct enum_ctx *x, struct tear *t, uint32_t ev)
{
	const struct ev *e = &rec.ev[ev];
	t->ev = (int32_t)ev;
	t->gran = rnd(&x->prs, 2) ? 9 : 12;
	uint32_t n = (uint32_t)((e->len + (1u << t->gran) - 1) >> t->gran);
	t->mode = (uint8_t)rnd(&x->prs, 2);
	t->m = rnd(&x->prs, n ? n : 1);
	t->seed = rnd64(&x->prs);
	if (n <= 1 && t->gran == 12 && e->len > SECT) {
		t->gran = 9;
		t->m = rnd(&x->prs, (uint32_t)(e->len / SECT));
	}
}

static void copy_state(const char *from, const char *to)
{
	char cmd[2 * PATH_MAX + 64];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -a '%s' '%s'", to, from, to);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot copy the state to %s\n", to);
}

static void check_plan(struct enum_ctx *x, struct plan *pl, size_t point)
{
	struct vctx c = {.w = x->w, .m = x->m, .r = x->r, .k = x->k, .a = -1};
	char *out = NULL;
	size_t outlen = 0;

	uint64_t key;

	plan_fix(pl, &x->pd);
	key = plan_key(pl, &x->pd, x->r, x->k);
	if (key % (uint64_t)x->jobs != (uint64_t)x->job)
		return;
	x->st->planned++;
	if (!seen_add(key)) {
		x->st->dups++;
		return;
	}
	write_state(x->w, x->dir, x->base, &x->pd, pl);
	c.out = open_memstream(&out, &outlen);
	verify_state(&c, x->dir);
	fclose(c.out);
	x->st->states++;
	if (c.bad) {
		const struct op *o = c.k >= 0 ? &x->w->ops[c.k] : NULL;
		x->st->failed++;
		for (int i = 0; i < INV_NR; i++)
			if (c.inv_mask & (1u << i))
				x->st->fail_by_inv[i]++;
		if (x->st->failed <= 5 || knob("THINFS_ENUM_VERBOSE", 0)) {
			fprintf(
			    stderr,
			    "FAIL seed %llu bs %llu crash point %zu (before %s of %s), plan %s: "
			    "after op %d (%s), op in flight %d (%s), T=%llu: %d violations\n%s",
			    (unsigned long long)x->w->seed, (unsigned long long)x->w->bs, point,
			    point < rec.n ? ev_name[rec.ev[point].kind] : "end",
			    point < rec.n ? file_name[rec.ev[point].file] : "log", pl->desc, c.r,
			    c.r >= 0 ? op_name[x->w->ops[c.r].kind] : "-", c.k,
			    o ? op_name[o->kind] : "-", (unsigned long long)c.T, c.bad,
			    out ? out : "");
		}
		if (x->keep && !x->kept) {
			copy_state(x->dir, x->keep);
			x->kept = true;
			fprintf(stderr, "  state kept in %s\n", x->keep);
		}
	}
	free(out);
}

static void crash_point(struct enum_ctx *x, size_t point)
{
	struct pending *pd = &x->pd;
	struct plan pl;
	bool any = pd->n[F_DATA] || pd->n[F_DB] || pd->n[F_WAL];

	if (x->only_point >= 0 && (size_t)x->only_point != point)
		return;
	if (x->max_fail && x->failed_before + x->st->failed >= (uint64_t)x->max_fail)
		return;
	if (!x->job)
		x->st->points++;
	x->prs = mix64(x->prs_base + point);
	/* all or none of each file's unflushed writes: 8 combinations */
	for (int combo = 0; combo < (any ? 8 : 1); combo++) {
		plan_alloc(&pl, pd);
		for (int f = 0; f < NR_FILES; f++)
			memset(pl.chosen[f], (combo >> f) & 1, pd->n[f]);
		snprintf(pl.desc, sizeof(pl.desc), "data %s, db %s, wal %s",
			 combo & 1 ? "all" : "none", combo & 2 ? "all" : "none",
			 combo & 4 ? "all" : "none");
		check_plan(x, &pl, point);
		plan_free(&pl);
	}
	if (!any)
		return;
	/* in order, cut inside a write: each file a prefix, its edge torn */
	for (int f = 0; f < NR_FILES; f++) {
		if (!pd->n[f])
			continue;
		for (int rep = 0; rep < 2; rep++) {
			uint32_t cut = rnd(&x->prs, pd->n[f]);
			plan_alloc(&pl, pd);
			for (int g = 0; g < NR_FILES; g++)
				memset(pl.chosen[g], g == f ? 0 : rnd(&x->prs, 2), pd->n[g]);
			memset(pl.chosen[f], 1, cut + 1);
			random_tear(x, &pl.tear[f], pd->ev[f][cut]);
			pl.tear[f].mode = 0;
			snprintf(pl.desc, sizeof(pl.desc),
				 "%s: first %u of %u, the last torn (%u of %u B sectors)",
				 file_name[f], cut + 1, pd->n[f], pl.tear[f].m,
				 1u << pl.tear[f].gran);
			check_plan(x, &pl, point);
			plan_free(&pl);
		}
	}
	/* random subsets, one write torn */
	for (long i = 0; i < x->nrand; i++) {
		static const uint32_t pct[] = {20, 50, 80};
		plan_alloc(&pl, pd);
		for (int f = 0; f < NR_FILES; f++) {
			uint32_t pc = pct[rnd(&x->prs, 3)], last = UINT32_MAX;
			for (uint32_t j = 0; j < pd->n[f]; j++)
				if ((pl.chosen[f][j] = rnd(&x->prs, 100) < pc))
					last = j;
			if (last != UINT32_MAX && rnd(&x->prs, 2))
				random_tear(
				    x, &pl.tear[f],
				    pd->ev[f][rnd(&x->prs, 2) ? last : rnd(&x->prs, last + 1)]);
		}
		snprintf(pl.desc, sizeof(pl.desc), "random subset %ld", i);
		check_plan(x, &pl, point);
		plan_free(&pl);
	}
}

static void pend_push(struct pending *pd, int f, uint32_t ev)
{
	if (pd->n[f] == pd->cap[f]) {
		pd->cap[f] = pd->cap[f] ? pd->cap[f] * 2 : 64;
		pd->ev[f] = realloc(pd->ev[f], pd->cap[f] * sizeof(uint32_t));
		assert_non_null(pd->ev[f]);
	}
	pd->ev[f][pd->n[f]++] = ev;
}

static void enumerate_part(struct wl *w, struct stats *st, const char top[static 256], int job,
			   int jobs, uint64_t failed_before)
{
	struct enum_ctx x = {.w = w,
			     .st = st,
			     .r = -1,
			     .k = -1,
			     .job = job,
			     .jobs = jobs,
			     .failed_before = failed_before};

	x.m = model_new(w);
	x.prs_base = mix64(mix64(w->seed ^ 0x2545F4914F6CDD1Dull) + w->bs);
	x.nrand = knob("THINFS_ENUM_STATES", 12);
	x.max_fail = knob("THINFS_ENUM_MAX_FAIL", 20);
	x.only_point = knob("THINFS_ENUM_POINT", -1);
	x.keep = getenv("THINFS_ENUM_KEEP");
	snprintf(x.dir, sizeof(x.dir), "%s/state.%d", top, job);
	assert_int_equal(mkdir(x.dir, 0700), 0);
	for (int f = 0; f < NR_FILES; f++)
		img_copy(&x.base[f], &w->init[f]);
	seen_reset();
	for (size_t i = 0; i <= rec.n; i++) {
		const struct ev *e = i < rec.n ? &rec.ev[i] : NULL;
		if (!e || e->kind == EV_SYNC)
			crash_point(&x, i);
		if (!e)
			break;
		switch (e->kind) {
		case EV_MARK:
			if (!e->ret) {
				x.k = e->op;
			} else {
				model_apply(x.m, &w->ops[e->op], e->op);
				x.r = e->op;
				x.k = -1;
			}
			break;
		case EV_SYNC:
			for (uint32_t j = 0; j < x.pd.n[e->file]; j++)
				img_apply(&x.base[e->file], &rec.ev[x.pd.ev[e->file][j]]);
			x.pd.prefix[e->file] += x.pd.n[e->file];
			x.pd.n[e->file] = 0;
			break;
		default:
			pend_push(&x.pd, e->file, (uint32_t)i);
			break;
		}
	}
	for (int f = 0; f < NR_FILES; f++) {
		img_free(&x.base[f]);
		free(x.pd.ev[f]);
	}
	model_free(x.m);
	rmrf(x.dir);
}

/* The checkers: forked after the recording, each in a thread of its own (a
 * new io_uring ring, never the one the parent's thread left mapped). */
struct job_arg {
	struct wl *w;
	struct stats st;
	const char *top;
	int job, jobs;
	uint64_t failed_before;
};

static void *job_thread(void *p)
{
	struct job_arg *a = p;

	enumerate_part(a->w, &a->st, a->top, a->job, a->jobs, a->failed_before);
	return NULL;
}

static void enumerate(struct wl *w, struct stats *st, const char top[static 256])
{
	int jobs = (int)knob("THINFS_ENUM_JOBS", sysconf(_SC_NPROCESSORS_ONLN));
	pid_t pid[16];
	int fds[16];

	if (jobs < 1)
		jobs = 1;
	if (jobs > 16)
		jobs = 16;
	fflush(stderr);
	for (int j = 0; j < jobs; j++) {
		int pfd[2];
		assert_int_equal(pipe(pfd), 0);
		pid[j] = fork();
		assert_true(pid[j] >= 0);
		if (!pid[j]) {
			struct job_arg a = {.w = w,
					    .top = top,
					    .job = j,
					    .jobs = jobs,
					    .failed_before = st->failed};
			pthread_t t;
			close(pfd[0]);
			if (pthread_create(&t, NULL, job_thread, &a) || pthread_join(t, NULL))
				_exit(3);
			if (write(pfd[1], &a.st, sizeof(a.st)) != (ssize_t)sizeof(a.st))
				_exit(4);
			fflush(stderr);
			_exit(0);
		}
		close(pfd[1]);
		fds[j] = pfd[0];
	}
	for (int j = 0; j < jobs; j++) {
		struct stats cs;
		int status;
		ssize_t n = read(fds[j], &cs, sizeof(cs));
		close(fds[j]);
		waitpid(pid[j], &status, 0);
		if (n != (ssize_t)sizeof(cs) || !WIFEXITED(status) || WEXITSTATUS(status)) {
			fprintf(stderr, "FAIL seed %llu bs %llu: checker %d died (status %#x)\n",
				(unsigned long long)w->seed, (unsigned long long)w->bs, j, status);
			st->failed++;
			continue;
		}
		st->states += cs.states;
		st->dups += cs.dups;
		st->failed += cs.failed;
		st->points += cs.points;
		st->planned += cs.planned;
		for (int i = 0; i < INV_NR; i++)
			st->fail_by_inv[i] += cs.fail_by_inv[i];
	}
}

/* ------------------------------------------------------------------ */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static bool user_buffered; /* THINFS_DATA_BUFFERED was set by the caller */

/* /dev/shm for speed, else /tmp; THINFS_ENUM_DIR overrides. */
static const char *enum_base_dir(void)
{
	const char *d = getenv("THINFS_ENUM_DIR");

	if (d && *d)
		return d;
	return access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : "/tmp";
}

static void run_one(uint64_t bs, uint64_t seed, struct stats *st)
{
	static struct wl w;
	char top[256];
	uint64_t before = st->states, fails = st->failed, points = st->points;
	size_t nsync = 0;
	double t0 = now_s();

	memset(&w, 0, sizeof(w));
	w.seed = seed;
	w.bs = bs;
	w.spb = (uint32_t)(bs / SECT);
	if (bs == 4096) {
		w.nr_blocks = 256;
		w.volb = 24;
	} else {
		w.nr_blocks = 112;
		w.volb = 8;
	}
	w.vsect = w.volb * w.spb;
	w.nops = (int)knob("THINFS_ENUM_OPS", 300);
	if (w.nops > MAXOPS)
		w.nops = MAXOPS;
	if (w.nops < 20)
		w.nops = 20;
	/* odd seeds checkpoint the WAL every few pages: it restarts, and its
	 * commits overwrite frames of earlier ones */
	g_autockpt = seed & 1 ? 4 : 0;
	snprintf(top, sizeof(top), "%s/thinfs-enum.%d", enum_base_dir(), (int)getpid());
	rmrf(top);
	assert_int_equal(mkdir(top, 0700), 0);
	/* seeds 2, 3 mod 4 run the workload on the O_DIRECT path where the file
	 * system takes it (4 KiB read-modify-writes); the checks run buffered */
	if (!user_buffered && (seed & 2))
		unsetenv("THINFS_DATA_BUFFERED");
	run_workload(&w, top);
	setenv("THINFS_DATA_BUFFERED", "1", 1);
	for (size_t i = 0; i < rec.n; i++)
		nsync += rec.ev[i].kind == EV_SYNC;
	if (knob("THINFS_ENUM_VERBOSE", 0)) {
		unsigned cnt[NR_FILES][EV_MARK] = {{0}};
		for (size_t i = 0; i < rec.n; i++)
			if (rec.ev[i].kind != EV_MARK)
				cnt[rec.ev[i].file][rec.ev[i].kind]++;
		for (int f = 0; f < NR_FILES; f++)
			fprintf(stderr,
				"    %-12s writes %u punches %u truncates %u syncs %u deletes %u\n",
				file_name[f], cnt[f][EV_WRITE], cnt[f][EV_PUNCH], cnt[f][EV_TRUNC],
				cnt[f][EV_SYNC], cnt[f][EV_DELETE]);
	}
	if (getenv("THINFS_ENUM_DUMP")) {
		/* THINFS_ENUM_DUMP=FIRST:LAST prints the log of those ops */
		int lo = -1, hi = -1;
		sscanf(getenv("THINFS_ENUM_DUMP"), "%d:%d", &lo, &hi);
		for (size_t i = 0; i < rec.n; i++) {
			const struct ev *e = &rec.ev[i];
			if (e->op < lo || e->op > (hi < 0 ? lo : hi))
				continue;
			if (e->kind == EV_MARK)
				fprintf(stderr, "    %6zu op %d %s %s %s rc %ld tid %llu\n", i,
					e->op, op_name[w.ops[e->op].kind], w.ops[e->op].name,
					e->ret ? "returns" : "starts", w.ops[e->op].rc,
					(unsigned long long)(e->ret ? w.ops[e->op].tid_after
								    : w.ops[e->op].tid_before));
			else
				fprintf(stderr, "    %6zu   %-11s %-8s off %llu len %llu\n", i,
					file_name[e->file], ev_name[e->kind],
					(unsigned long long)e->off, (unsigned long long)e->len);
		}
	}
	enumerate(&w, st, top);
	st->workloads++;
	fprintf(stderr,
		"  seed %llu bs %llu %s: %d ops, %zu events (%llu KiB), %zu flushes, %llu crash "
		"points, %llu states, %llu failed, %.1fs (sets deleted with punches: %d, commits "
		"acknowledged: %d)\n",
		(unsigned long long)seed, (unsigned long long)bs, w.direct ? "direct" : "buffered",
		w.nops, rec.n, (unsigned long long)(rec.bytes >> 10), nsync,
		(unsigned long long)(st->points - points),
		(unsigned long long)(st->states - before), (unsigned long long)(st->failed - fails),
		now_s() - t0, w.delset_punched, w.fresh_acked);
	for (int f = 0; f < NR_FILES; f++)
		img_free(&w.init[f]);
	rec_clear();
	rmrf(top);
	/* the situations the controls break must have happened */
	assert_true(w.delset_punched > 0);
	assert_true(w.fresh_acked > 0);
}

static void test_crash_states_enumerated(void **state)
{
	struct stats st = {0};
	long nseeds = knob("THINFS_ENUM_SEEDS", 5), seed0 = knob("THINFS_ENUM_SEED", 1);
	long only_bs = knob("THINFS_ENUM_BS", 0);
	static const uint64_t sizes[] = {4096, 65536};
	double t0 = now_s();

	long max_fail = knob("THINFS_ENUM_MAX_FAIL", 20);
	(void)state;
	user_buffered = getenv("THINFS_DATA_BUFFERED") != NULL;
	setenv("THINFS_DATA_BUFFERED", "1", 1);
	for (size_t b = 0; b < sizeof(sizes) / sizeof(sizes[0]); b++) {
		if (only_bs && (uint64_t)only_bs != sizes[b])
			continue;
		for (long s = seed0; s < seed0 + nseeds; s++)
			if (!max_fail || st.failed < (uint64_t)max_fail)
				run_one(sizes[b], (uint64_t)s, &st);
	}
	st.seconds = now_s() - t0;
	fprintf(
	    stderr,
	    "enumerate: %llu crash states checked (%llu duplicates skipped), %llu flush points, "
	    "%llu workloads, %llu states failed, %.1f s\n",
	    (unsigned long long)st.states, (unsigned long long)st.dups,
	    (unsigned long long)st.points, (unsigned long long)st.workloads,
	    (unsigned long long)st.failed, st.seconds);
	if (st.failed) {
		fprintf(stderr, "  failing states by invariant:");
		for (int i = 0; i < INV_NR; i++)
			if (st.fail_by_inv[i])
				fprintf(stderr, " %s %llu", inv_name[i],
					(unsigned long long)st.fail_by_inv[i]);
		fprintf(stderr, "\n");
	}
	assert_true(st.states > 0);
	assert_int_equal(st.failed, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crash_states_enumerated),
	};

	shim_register();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
