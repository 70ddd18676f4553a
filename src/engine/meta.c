/* SPDX-License-Identifier: MIT */
/*
 * meta.c - the metadata store over SQLite.  The only file that speaks SQL.
 *
 * Schema (format 3; format 1 lacked devices.generation and devices.copy_of,
 * format 2 the refs and origins tables; the first read-write open migrates
 * an older pool in one transaction per step; a read-only open reads it as
 * it is: every generation 0, no clone counts, no external origins):
 *   pool(id=1, uuid, block_size, nr_data_blocks, transaction_id, pool_time,
 *        needs_check, clean, created, data_path, format_version)
 *   layers(id, parent)                 the mapping-layer tree (see layer.c)
 *   devices(id, set_name, name, size, layer, origin, ..., generation, copy_of)
				      one leaf layer each; generation moves with
				      every change of the content (pool_io.c),
				      copy_of is receive's opaque identity
 *   sets(name, ctime)                  snapshot sets; members are devices
 *   map(layer, vblock, dblock, time)   WITHOUT ROWID; dblock NULL = tombstone
 *   space(chunk, bits)                 allocation bitmap, 32768 blocks a row
 *   props(key, value)                  the pool's properties (pool_props.c)
 *   refs(dblock, count)                map rows naming dblock, for a block
 *                                      shared by copy_file_range clones: a
 *                                      row only where count >= 2 (a block
 *                                      named by one row, which snapshots
 *                                      share through the layer tree, has
 *                                      none); cached in memory (refs.c),
 *                                      written at every commit (space_save)
 *   origins(device, path, size, st_dev, st_ino, mtime_ns)
 *                                      a volume's external, read-only origin
 *
 * The database runs in WAL mode with synchronous=FULL, both set explicitly on
 * every connection: NORMAL could lose the last commits on power loss.  All
 * statements are prepared once and reset after every use.  Values bound, never
 * pasted: names are data.
 */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "meta.h"
#include "util.h"

enum stmt_id {
	S_BEGIN,
	S_BEGIN_READ,
	S_COMMIT,
	S_ROLLBACK,
	S_POOL_GET,
	S_POOL_PUT,
	S_DEV_ALL,
	S_DEV_ALL_V1,
	S_DEV_INSERT,
	S_DEV_UPDATE,
	S_DEV_DELETE,
	S_SET_ALL,
	S_SET_INSERT,
	S_SET_DELETE,
	S_SET_RENAME,
	S_LAYER_ALL,
	S_LAYER_INSERT,
	S_LAYER_UPDATE,
	S_LAYER_DELETE,
	S_LAYER_INSERT_ID,
	S_MAP_GET,
	S_MAP_PUT,
	S_MAP_DEL,
	S_MAP_RANGE,
	S_MAP_DEL_FROM,
	S_MAP_DEL_UPTO,
	S_MAP_MOVE_KEEP,
	S_MAP_MOVE_REPLACE,
	S_MAP_DEL_LAYER,
	S_MAP_DROP_TOMBS,
	S_MAP_COUNT,
	S_MAP_ORPHANS,
	S_MAP_DEL_ORPHANS,
	S_SPACE_ALL,
	S_SPACE_PUT,
	S_SPACE_DEL_FROM,
	S_REFS_ALL,
	S_REFS_PUT,
	S_REFS_DEL,
	S_ORIGIN_ALL,
	S_ORIGIN_INSERT,
	S_NR
};

static const char *const stmt_sql[S_NR] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_BEGIN_READ] = "BEGIN DEFERRED",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_POOL_GET] = "SELECT uuid, block_size, nr_data_blocks, transaction_id, pool_time, "
		   "next_layer_hint, needs_check, clean, created, data_path FROM pool WHERE id = 1",
    [S_POOL_PUT] = "UPDATE pool SET uuid = ?1, block_size = ?2, nr_data_blocks = ?3, "
		   "transaction_id = ?4, pool_time = ?5, next_layer_hint = ?6, needs_check = ?7, "
		   "clean = ?8, created = ?9, data_path = ?10 WHERE id = 1",
    [S_DEV_ALL] = "SELECT id, set_name, name, size, layer, origin, creation_time, snap_time, "
		  "ctime, mtime, read_only, uid, gid, mode, mapped, generation, copy_of "
		  "FROM devices ORDER BY set_name, name",
    [S_DEV_ALL_V1] = "SELECT id, set_name, name, size, layer, origin, creation_time, snap_time, "
		     "ctime, mtime, read_only, uid, gid, mode, mapped, 0, '' FROM devices "
		     "ORDER BY set_name, name",
    [S_DEV_INSERT] =
	"INSERT INTO devices(set_name, name, size, layer, origin, creation_time, "
	"snap_time, ctime, mtime, read_only, uid, gid, mode, mapped, generation, "
	"copy_of) "
	"VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    [S_DEV_UPDATE] = "UPDATE devices SET set_name = ?1, name = ?2, size = ?3, layer = ?4, "
		     "origin = ?5, creation_time = ?6, snap_time = ?7, ctime = ?8, mtime = ?9, "
		     "read_only = ?10, uid = ?11, gid = ?12, mode = ?13, mapped = ?14, "
		     "generation = ?15, copy_of = ?16 WHERE id = ?17",
    [S_DEV_DELETE] = "DELETE FROM devices WHERE id = ?1",
    [S_SET_ALL] = "SELECT name, ctime FROM sets ORDER BY name",
    [S_SET_INSERT] = "INSERT INTO sets(name, ctime) VALUES(?1, ?2)",
    [S_SET_DELETE] = "DELETE FROM sets WHERE name = ?1",
    [S_SET_RENAME] = "UPDATE sets SET name = ?2 WHERE name = ?1",
    [S_LAYER_ALL] = "SELECT id, parent, nr_rows FROM layers ORDER BY id",
    [S_LAYER_INSERT] = "INSERT INTO layers(parent, nr_rows) VALUES(?1, 0)",
    [S_LAYER_UPDATE] = "UPDATE layers SET parent = ?2, nr_rows = ?3 WHERE id = ?1",
    [S_LAYER_DELETE] = "DELETE FROM layers WHERE id = ?1",
    [S_LAYER_INSERT_ID] = "INSERT INTO layers(id, parent, nr_rows) VALUES(?1, ?2, ?3)",
    [S_MAP_GET] = "SELECT dblock FROM map WHERE layer = ?1 AND vblock = ?2",
    [S_MAP_PUT] = "INSERT OR REPLACE INTO map(layer, vblock, dblock, time) VALUES(?1, ?2, ?3, ?4)",
    [S_MAP_DEL] = "DELETE FROM map WHERE layer = ?1 AND vblock = ?2",
    [S_MAP_RANGE] = "SELECT vblock, dblock, time FROM map WHERE layer = ?1 AND vblock >= ?2 "
		    "ORDER BY vblock",
    [S_MAP_DEL_FROM] = "DELETE FROM map WHERE layer = ?1 AND vblock >= ?2",
    [S_MAP_DEL_UPTO] = "DELETE FROM map WHERE layer = ?1 AND vblock <= ?2",
    [S_MAP_MOVE_KEEP] = "INSERT OR IGNORE INTO map(layer, vblock, dblock, time) "
			"SELECT ?2, vblock, dblock, time FROM map WHERE layer = ?1",
    [S_MAP_MOVE_REPLACE] = "INSERT OR REPLACE INTO map(layer, vblock, dblock, time) "
			   "SELECT ?2, vblock, dblock, time FROM map WHERE layer = ?1",
    [S_MAP_DEL_LAYER] = "DELETE FROM map WHERE layer = ?1",
    [S_MAP_DROP_TOMBS] = "DELETE FROM map WHERE layer = ?1 AND dblock IS NULL",
    [S_MAP_COUNT] = "SELECT count(*) FROM map WHERE layer = ?1",
    [S_MAP_ORPHANS] = "SELECT layer, vblock, dblock FROM map "
		      "WHERE layer NOT IN (SELECT id FROM layers)",
    [S_MAP_DEL_ORPHANS] = "DELETE FROM map WHERE layer NOT IN (SELECT id FROM layers)",
    [S_SPACE_ALL] = "SELECT chunk, bits FROM space ORDER BY chunk",
    [S_SPACE_PUT] = "INSERT OR REPLACE INTO space(chunk, bits) VALUES(?1, ?2)",
    [S_SPACE_DEL_FROM] = "DELETE FROM space WHERE chunk >= ?1",
    [S_REFS_ALL] = "SELECT dblock, count FROM refs",
    [S_REFS_PUT] = "INSERT OR REPLACE INTO refs(dblock, count) VALUES(?1, ?2)",
    [S_REFS_DEL] = "DELETE FROM refs WHERE dblock = ?1",
    [S_ORIGIN_ALL] = "SELECT device, path, size, st_dev, st_ino, mtime_ns FROM origins "
		     "ORDER BY device",
    [S_ORIGIN_INSERT] = "INSERT INTO origins(device, path, size, st_dev, st_ino, mtime_ns) "
			"VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
};

/* What format 3 added (schema_sql and migrate_2_3_sql). */
#define FORMAT_3_TABLES                                                                            \
	"CREATE TABLE refs(dblock INTEGER PRIMARY KEY, count INTEGER NOT NULL);"                   \
	"CREATE TABLE origins(device INTEGER PRIMARY KEY REFERENCES devices(id) ON DELETE "        \
	"CASCADE, path TEXT NOT NULL, size INTEGER NOT NULL, st_dev INTEGER NOT NULL, "            \
	"st_ino INTEGER NOT NULL, mtime_ns INTEGER NOT NULL);"

static const char schema_sql[] =
    "CREATE TABLE pool(id INTEGER PRIMARY KEY CHECK (id = 1), uuid TEXT NOT NULL, "
    "  block_size INTEGER NOT NULL, nr_data_blocks INTEGER NOT NULL, "
    "  transaction_id INTEGER NOT NULL, pool_time INTEGER NOT NULL, "
    "  next_layer_hint INTEGER NOT NULL DEFAULT 0, needs_check INTEGER NOT NULL DEFAULT 0, "
    "  clean INTEGER NOT NULL DEFAULT 1, created INTEGER NOT NULL, data_path TEXT NOT NULL);"
    "CREATE TABLE layers(id INTEGER PRIMARY KEY, parent INTEGER REFERENCES layers(id), "
    "  nr_rows INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX layers_parent ON layers(parent);"
    "CREATE TABLE sets(name TEXT PRIMARY KEY, ctime INTEGER NOT NULL);"
    "CREATE TABLE devices(id INTEGER PRIMARY KEY AUTOINCREMENT, set_name TEXT NOT NULL DEFAULT '', "
    "  name TEXT NOT NULL, size INTEGER NOT NULL, "
    "  layer INTEGER NOT NULL UNIQUE REFERENCES layers(id), origin INTEGER NOT NULL DEFAULT 0, "
    "  creation_time INTEGER NOT NULL, snap_time INTEGER NOT NULL, ctime INTEGER NOT NULL, "
    "  mtime INTEGER NOT NULL, read_only INTEGER NOT NULL DEFAULT 0, uid INTEGER NOT NULL, "
    "  gid INTEGER NOT NULL, mode INTEGER NOT NULL, mapped INTEGER NOT NULL DEFAULT 0, "
    "  generation INTEGER NOT NULL DEFAULT 0, copy_of TEXT NOT NULL DEFAULT '', "
    "  UNIQUE(set_name, name));"
    "CREATE TABLE map(layer INTEGER NOT NULL, vblock INTEGER NOT NULL, dblock INTEGER, "
    "  time INTEGER NOT NULL, PRIMARY KEY(layer, vblock)) WITHOUT ROWID;"
    "CREATE TABLE space(chunk INTEGER PRIMARY KEY, bits BLOB NOT NULL);"
    "CREATE TABLE props(key TEXT PRIMARY KEY, value TEXT NOT NULL);" FORMAT_3_TABLES;

/* The pool's properties (the user's transaction id, ...): made by a
 * read-write open where missing (format 1, or early format 2 pools). */
static const char props_sql[] =
    "CREATE TABLE IF NOT EXISTS props(key TEXT PRIMARY KEY, value TEXT NOT NULL)";

struct meta {
	sqlite3 *db;
	sqlite3_stmt *stmt[S_NR];
	bool rdonly;
	int version; /* the format of the database (1 only on a read-only open) */
};

/* Format 1 -> 2: the columns a device's identity needs, in one transaction. */
static const char migrate_1_2_sql[] =
    "BEGIN IMMEDIATE;"
    "ALTER TABLE devices ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE devices ADD COLUMN copy_of TEXT NOT NULL DEFAULT '';"
    "PRAGMA user_version=2;"
    "COMMIT;";

/* Format 2 -> 3: the clone counts and the external origins. */
static const char migrate_2_3_sql[] = "BEGIN IMMEDIATE;" FORMAT_3_TABLES "PRAGMA user_version=3;"
				      "COMMIT;";

int meta_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EUCLEAN;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CANTOPEN:
		return -ENOENT;
	default:
		return -EIO;
	}
}

static sqlite3_stmt *st(struct meta *m, enum stmt_id id)
{
	if (!m->stmt[id] && sqlite3_prepare_v3(m->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
					       &m->stmt[id], NULL) != SQLITE_OK)
		return NULL;
	return m->stmt[id];
}

/* Run a statement that returns no rows; reset it. */
static int run(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : meta_errno(rc);
}

static void bind_u64(sqlite3_stmt *s, int i, uint64_t v)
{
	sqlite3_bind_int64(s, i, (sqlite3_int64)v);
}

static uint64_t col_u64(sqlite3_stmt *s, int i)
{
	return (uint64_t)sqlite3_column_int64(s, i);
}

static void col_text(sqlite3_stmt *s, int i, char *out, size_t len)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	snprintf(out, len, "%s", t ? (const char *)t : "");
}

static int exec(sqlite3 *db, const char *sql)
{
	return meta_errno(sqlite3_exec(db, sql, NULL, NULL, NULL));
}

/* journal_mode=WAL and synchronous=FULL, explicitly, on every connection. */
static int configure(sqlite3 *db, bool rdonly)
{
	int rc;

	sqlite3_busy_timeout(db, 5000);
	sqlite3_extended_result_codes(db, 1);
	if (!rdonly) {
		rc = exec(db, "PRAGMA journal_mode=WAL");
		if (rc)
			return rc;
	}
	rc = exec(db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; "
		      "PRAGMA cache_size=-16384; PRAGMA temp_store=MEMORY");
	return rc;
}

int meta_create(const char *path, const struct meta_pool_row *pool, char *msg, size_t msglen)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	char sql[128];
	int fd, rc;

	/* O_EXCL|O_NOFOLLOW: never follow a planted symlink, never reuse a file */
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return set_msg(msg, msglen, -errno, "cannot create %s: %s", path, strerror(errno));
	close(fd);
	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL);
	if (rc != SQLITE_OK) {
		rc = meta_errno(rc);
		set_msg(msg, msglen, rc, "cannot open %s: %s", path, sqlite3_errmsg(db));
		goto out_close;
	}
	snprintf(sql, sizeof(sql), "PRAGMA application_id=%d; PRAGMA user_version=%d",
		 META_APPLICATION_ID, META_FORMAT_VERSION);
	rc = configure(db, false);
	if (!rc)
		rc = exec(db, sql);
	if (!rc)
		rc = exec(db, "BEGIN");
	if (!rc)
		rc = exec(db, schema_sql);
	if (rc) {
		set_msg(msg, msglen, rc, "cannot create the schema in %s: %s", path,
			sqlite3_errmsg(db));
		goto out_close;
	}
	rc = meta_errno(sqlite3_prepare_v2(
	    db,
	    "INSERT INTO pool(id, uuid, block_size, nr_data_blocks, transaction_id, pool_time, "
	    "needs_check, clean, created, data_path) VALUES(1, ?1, ?2, ?3, ?4, ?5, 0, 1, ?6, ?7)",
	    -1, &s, NULL));
	if (!rc) {
		sqlite3_bind_text(s, 1, pool->uuid, -1, SQLITE_TRANSIENT);
		bind_u64(s, 2, pool->block_size);
		bind_u64(s, 3, pool->nr_data_blocks);
		bind_u64(s, 4, pool->transaction_id);
		bind_u64(s, 5, pool->pool_time);
		sqlite3_bind_int64(s, 6, pool->created);
		sqlite3_bind_text(s, 7, pool->data_path, -1, SQLITE_TRANSIENT);
		rc = run(s);
	}
	if (!rc)
		rc = exec(db, "COMMIT");
	if (rc)
		set_msg(msg, msglen, rc, "cannot initialise %s: %s", path, sqlite3_errmsg(db));
out_close:
	sqlite3_finalize(s);
	sqlite3_close(db);
	return rc;
}

/* Bring an older format up to date, a transaction a step (read-write). */
static int migrate(struct meta *m, int *version, const char *path, char *msg, size_t msglen)
{
	static const char *const steps[] = {NULL, migrate_1_2_sql, migrate_2_3_sql};
	_Static_assert(sizeof(steps) / sizeof(steps[0]) == META_FORMAT_VERSION, "a step a format");

	for (; *version < META_FORMAT_VERSION; (*version)++) {
		int rc = exec(m->db, steps[*version]);
		if (rc) {
			set_msg(msg, msglen, rc, "%s: cannot migrate format %d to %d: %s", path,
				*version, *version + 1, sqlite3_errmsg(m->db));
			exec(m->db, "ROLLBACK");
			return rc;
		}
	}
	return 0;
}

int meta_open(const char *path, bool rdonly, struct meta **out, char *msg, size_t msglen)
{
	struct meta *m;
	sqlite3_stmt *s = NULL;
	int rc, appid = 0, version = 0, flags;
	struct stat sb;

	if (lstat(path, &sb) < 0)
		return set_msg(msg, msglen, -errno, "%s: %s", path, strerror(errno));
	if (!S_ISREG(sb.st_mode))
		return set_msg(msg, msglen, -EINVAL, "%s is not a regular file", path);
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->rdonly = rdonly;
	flags = (rdonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOFOLLOW;
	rc = sqlite3_open_v2(path, &m->db, flags, NULL);
	if (rc != SQLITE_OK) {
		rc = set_msg(msg, msglen, meta_errno(rc), "cannot open %s: %s", path,
			     sqlite3_errmsg(m->db));
		goto out_free;
	}
	rc = configure(m->db, rdonly);
	if (rc) {
		if (rc == -EUCLEAN)
			set_msg(msg, msglen, rc, "%s is not a thinfs pool (not a database)", path);
		else
			set_msg(msg, msglen, rc, "cannot use %s: %s", path, sqlite3_errmsg(m->db));
		goto out_free;
	}
	rc = meta_errno(sqlite3_prepare_v2(m->db, "PRAGMA application_id", -1, &s, NULL));
	if (!rc && sqlite3_step(s) == SQLITE_ROW)
		appid = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	s = NULL;
	if (!rc)
		rc = meta_errno(sqlite3_prepare_v2(m->db, "PRAGMA user_version", -1, &s, NULL));
	if (!rc && sqlite3_step(s) == SQLITE_ROW)
		version = sqlite3_column_int(s, 0);
	else if (!rc)
		rc = meta_errno(sqlite3_errcode(m->db));
	sqlite3_finalize(s);
	if (rc) {
		set_msg(msg, msglen, rc == -EUCLEAN ? -EINVAL : rc, "%s is not a thinfs pool: %s",
			path, sqlite3_errmsg(m->db));
		rc = rc == -EUCLEAN ? -EINVAL : rc;
		goto out_free;
	}
	if (appid != META_APPLICATION_ID) {
		rc = set_msg(msg, msglen, -EINVAL, "%s is not a thinfs pool (application_id %#x)",
			     path, appid);
		goto out_free;
	}
	if (version > META_FORMAT_VERSION) {
		rc = set_msg(msg, msglen, -EPROTONOSUPPORT,
			     "%s: format %d newer than %d, which this thinfs reads", path, version,
			     META_FORMAT_VERSION);
		goto out_free;
	}
	if (version < 1) {
		rc = set_msg(msg, msglen, -EINVAL, "%s is not a thinfs pool (format %d)", path,
			     version);
		goto out_free;
	}
	if (!rdonly && (rc = migrate(m, &version, path, msg, msglen)))
		goto out_free;
	if (!rdonly && (rc = exec(m->db, props_sql))) {
		set_msg(msg, msglen, rc, "%s: cannot add the properties table: %s", path,
			sqlite3_errmsg(m->db));
		goto out_free;
	}
	m->version = version;
	*out = m;
	return 0;
out_free:
	meta_close(m);
	return rc;
}

void meta_close(struct meta *m)
{
	if (!m)
		return;
	for (int i = 0; i < S_NR; i++)
		sqlite3_finalize(m->stmt[i]);
	sqlite3_close(m->db);
	free(m);
}

static int run_id(struct meta *m, enum stmt_id id)
{
	sqlite3_stmt *s = st(m, id);

	return s ? run(s) : meta_errno(sqlite3_errcode(m->db));
}

int meta_begin(struct meta *m)
{
	return run_id(m, S_BEGIN);
}

int meta_begin_read(struct meta *m)
{
	int rc = run_id(m, S_BEGIN_READ);
	struct meta_pool_row row;

	/* a deferred transaction takes its snapshot at the first read */
	return rc ? rc : meta_pool_get(m, &row);
}

int meta_commit(struct meta *m)
{
	return run_id(m, S_COMMIT);
}

void meta_rollback(struct meta *m)
{
	if (!sqlite3_get_autocommit(m->db))
		run_id(m, S_ROLLBACK);
}

const char *meta_errmsg(struct meta *m)
{
	return sqlite3_errmsg(m->db);
}

int meta_settings(struct meta *m, char *journal_mode, size_t len, int *synchronous)
{
	sqlite3_stmt *s;
	int rc = meta_errno(sqlite3_prepare_v2(m->db, "PRAGMA journal_mode", -1, &s, NULL));

	if (rc)
		return rc;
	if (sqlite3_step(s) == SQLITE_ROW)
		col_text(s, 0, journal_mode, len);
	sqlite3_finalize(s);
	rc = meta_errno(sqlite3_prepare_v2(m->db, "PRAGMA synchronous", -1, &s, NULL));
	if (rc)
		return rc;
	if (sqlite3_step(s) == SQLITE_ROW)
		*synchronous = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return 0;
}

#define PREP(m, id)                                                                                \
	sqlite3_stmt *s = st(m, id);                                                               \
	if (!s)                                                                                    \
		return meta_errno(sqlite3_errcode((m)->db));

int meta_pool_get(struct meta *m, struct meta_pool_row *row)
{
	int rc;
	PREP(m, S_POOL_GET);

	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		col_text(s, 0, row->uuid, sizeof(row->uuid));
		row->block_size = col_u64(s, 1);
		row->nr_data_blocks = col_u64(s, 2);
		row->transaction_id = col_u64(s, 3);
		row->pool_time = col_u64(s, 4);
		row->next_layer_hint = col_u64(s, 5);
		row->needs_check = sqlite3_column_int(s, 6);
		row->clean = sqlite3_column_int(s, 7);
		row->created = sqlite3_column_int64(s, 8);
		col_text(s, 9, row->data_path, sizeof(row->data_path));
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? -EUCLEAN : meta_errno(rc);
	}
	sqlite3_reset(s);
	return rc;
}

int meta_pool_put(struct meta *m, const struct meta_pool_row *row)
{
	PREP(m, S_POOL_PUT);
	sqlite3_bind_text(s, 1, row->uuid, -1, SQLITE_STATIC);
	bind_u64(s, 2, row->block_size);
	bind_u64(s, 3, row->nr_data_blocks);
	bind_u64(s, 4, row->transaction_id);
	bind_u64(s, 5, row->pool_time);
	bind_u64(s, 6, row->next_layer_hint);
	sqlite3_bind_int(s, 7, row->needs_check);
	sqlite3_bind_int(s, 8, row->clean);
	sqlite3_bind_int64(s, 9, row->created);
	sqlite3_bind_text(s, 10, row->data_path, -1, SQLITE_STATIC);
	return run(s);
}

int meta_device_foreach(struct meta *m, meta_device_cb cb, void *arg)
{
	struct meta_device_row r;
	int rc = 0, step;
	PREP(m, m->version == 1 ? S_DEV_ALL_V1 : S_DEV_ALL);

	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&r, 0, sizeof(r));
		r.id = col_u64(s, 0);
		col_text(s, 1, r.set, sizeof(r.set));
		col_text(s, 2, r.name, sizeof(r.name));
		r.size = col_u64(s, 3);
		r.layer = col_u64(s, 4);
		r.origin = col_u64(s, 5);
		r.creation_time = col_u64(s, 6);
		r.snap_time = col_u64(s, 7);
		r.ctime = sqlite3_column_int64(s, 8);
		r.mtime = sqlite3_column_int64(s, 9);
		r.read_only = sqlite3_column_int(s, 10);
		r.uid = (uint32_t)sqlite3_column_int64(s, 11);
		r.gid = (uint32_t)sqlite3_column_int64(s, 12);
		r.mode = (uint32_t)sqlite3_column_int64(s, 13);
		r.mapped = col_u64(s, 14);
		r.generation = col_u64(s, 15);
		col_text(s, 16, r.copy_of, sizeof(r.copy_of));
		rc = cb(arg, &r);
		if (rc)
			break;
	}
	if (!rc && step != SQLITE_DONE)
		rc = meta_errno(step);
	sqlite3_reset(s);
	return rc;
}

static void bind_device(sqlite3_stmt *s, const struct meta_device_row *r)
{
	sqlite3_bind_text(s, 1, r->set, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, r->name, -1, SQLITE_STATIC);
	bind_u64(s, 3, r->size);
	bind_u64(s, 4, r->layer);
	bind_u64(s, 5, r->origin);
	bind_u64(s, 6, r->creation_time);
	bind_u64(s, 7, r->snap_time);
	sqlite3_bind_int64(s, 8, r->ctime);
	sqlite3_bind_int64(s, 9, r->mtime);
	sqlite3_bind_int(s, 10, r->read_only);
	sqlite3_bind_int64(s, 11, r->uid);
	sqlite3_bind_int64(s, 12, r->gid);
	sqlite3_bind_int64(s, 13, r->mode);
	bind_u64(s, 14, r->mapped);
	bind_u64(s, 15, r->generation);
	sqlite3_bind_text(s, 16, r->copy_of, -1, SQLITE_STATIC);
}

int meta_device_insert(struct meta *m, struct meta_device_row *row)
{
	int rc;
	PREP(m, S_DEV_INSERT);

	bind_device(s, row);
	rc = run(s);
	if (!rc)
		row->id = (uint64_t)sqlite3_last_insert_rowid(m->db);
	return rc;
}

int meta_device_update(struct meta *m, const struct meta_device_row *row)
{
	PREP(m, S_DEV_UPDATE);
	bind_device(s, row);
	bind_u64(s, 17, row->id);
	return run(s);
}

int meta_device_renumber(struct meta *m, const uint64_t *from, const uint64_t *to, size_t n)
{
	sqlite3_stmt *s = NULL;
	int rc = meta_errno(
	    sqlite3_prepare_v2(m->db, "UPDATE devices SET id = ?1 WHERE id = ?2", -1, &s, NULL));

	/* through negative ids, so no step collides with an id still in use */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n && !rc; i++) {
			int64_t tmp = -(int64_t)to[i] - 1;
			sqlite3_bind_int64(s, 1, pass ? (int64_t)to[i] : tmp);
			sqlite3_bind_int64(s, 2, pass ? tmp : (int64_t)from[i]);
			rc = run(s);
		}
	}
	sqlite3_finalize(s);
	return rc;
}

int meta_device_delete(struct meta *m, uint64_t id)
{
	PREP(m, S_DEV_DELETE);
	bind_u64(s, 1, id);
	return run(s);
}

/* The end of a walk over a statement's rows: its error (a callback's, or the
 * last step's), the statement reset. */
static int rows_done(sqlite3_stmt *s, int rc, int step)
{
	if (!rc && step != SQLITE_DONE)
		rc = meta_errno(step);
	sqlite3_reset(s);
	return rc;
}

int meta_set_foreach(struct meta *m, meta_set_cb cb, void *arg)
{
	struct meta_set_row r;
	int rc = 0, step;
	PREP(m, S_SET_ALL);

	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		col_text(s, 0, r.name, sizeof(r.name));
		r.ctime = sqlite3_column_int64(s, 1);
		rc = cb(arg, &r);
		if (rc)
			break;
	}
	return rows_done(s, rc, step);
}

int meta_set_insert(struct meta *m, const struct meta_set_row *row)
{
	PREP(m, S_SET_INSERT);
	sqlite3_bind_text(s, 1, row->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, row->ctime);
	return run(s);
}

int meta_set_delete(struct meta *m, const char *name)
{
	PREP(m, S_SET_DELETE);
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	return run(s);
}

int meta_set_rename(struct meta *m, const char *oldname, const char *newname)
{
	PREP(m, S_SET_RENAME);
	sqlite3_bind_text(s, 1, oldname, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, newname, -1, SQLITE_STATIC);
	return run(s);
}

int meta_layer_foreach(struct meta *m, meta_layer_cb cb, void *arg)
{
	struct meta_layer_row r;
	int rc = 0, step;
	PREP(m, S_LAYER_ALL);

	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		r.id = col_u64(s, 0);
		r.parent = col_u64(s, 1);
		r.nr_rows = col_u64(s, 2);
		rc = cb(arg, &r);
		if (rc)
			break;
	}
	if (!rc && step != SQLITE_DONE)
		rc = meta_errno(step);
	sqlite3_reset(s);
	return rc;
}

int meta_layer_insert(struct meta *m, uint64_t parent, uint64_t *id)
{
	int rc;
	PREP(m, S_LAYER_INSERT);

	if (parent)
		bind_u64(s, 1, parent);
	else
		sqlite3_bind_null(s, 1);
	rc = run(s);
	if (!rc)
		*id = (uint64_t)sqlite3_last_insert_rowid(m->db);
	return rc;
}

/* (id, parent or NULL, nr_rows) as ?1 ?2 ?3 */
static void bind_layer_row(sqlite3_stmt *s, const struct meta_layer_row *row)
{
	bind_u64(s, 1, row->id);
	if (row->parent)
		bind_u64(s, 2, row->parent);
	else
		sqlite3_bind_null(s, 2);
	bind_u64(s, 3, row->nr_rows);
}

int meta_layer_update(struct meta *m, const struct meta_layer_row *row)
{
	PREP(m, S_LAYER_UPDATE);
	bind_layer_row(s, row);
	return run(s);
}

int meta_layer_insert_id(struct meta *m, const struct meta_layer_row *row)
{
	PREP(m, S_LAYER_INSERT_ID);
	bind_layer_row(s, row);
	return run(s);
}

int meta_layer_delete(struct meta *m, uint64_t id)
{
	PREP(m, S_LAYER_DELETE);
	bind_u64(s, 1, id);
	return run(s);
}

int meta_map_get(struct meta *m, uint64_t layer, uint64_t vblock, uint64_t *dblock)
{
	int rc;
	PREP(m, S_MAP_GET);

	bind_u64(s, 1, layer);
	bind_u64(s, 2, vblock);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*dblock = sqlite3_column_type(s, 0) == SQLITE_NULL ? META_TOMBSTONE : col_u64(s, 0);
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? -ENOENT : meta_errno(rc);
	}
	sqlite3_reset(s);
	return rc;
}

int meta_map_put(struct meta *m, uint64_t layer, uint64_t vblock, uint64_t dblock, uint64_t time)
{
	PREP(m, S_MAP_PUT);
	bind_u64(s, 1, layer);
	bind_u64(s, 2, vblock);
	if (dblock == META_TOMBSTONE)
		sqlite3_bind_null(s, 3);
	else
		bind_u64(s, 3, dblock);
	bind_u64(s, 4, time);
	return run(s);
}

int meta_map_del(struct meta *m, uint64_t layer, uint64_t vblock)
{
	PREP(m, S_MAP_DEL);
	bind_u64(s, 1, layer);
	bind_u64(s, 2, vblock);
	return run(s);
}

int meta_map_foreach(struct meta *m, uint64_t layer, uint64_t from, meta_map_cb cb, void *arg)
{
	int rc = 0, step;
	PREP(m, S_MAP_RANGE);

	/* the walk may be nested (a callback reading another layer), so use a
	 * private statement when the shared one is busy */
	if (sqlite3_stmt_busy(s)) {
		if (sqlite3_prepare_v2(m->db, stmt_sql[S_MAP_RANGE], -1, &s, NULL) != SQLITE_OK)
			return meta_errno(sqlite3_errcode(m->db));
	}
	bind_u64(s, 1, layer);
	bind_u64(s, 2, from);
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		uint64_t d =
		    sqlite3_column_type(s, 1) == SQLITE_NULL ? META_TOMBSTONE : col_u64(s, 1);
		rc = cb(arg, col_u64(s, 0), d, col_u64(s, 2));
		if (rc)
			break;
	}
	if (!rc && step != SQLITE_DONE && step != SQLITE_ROW)
		rc = meta_errno(step);
	if (s != m->stmt[S_MAP_RANGE])
		sqlite3_finalize(s);
	else
		sqlite3_reset(s);
	return rc;
}

int meta_map_delete_from(struct meta *m, uint64_t layer, uint64_t from)
{
	PREP(m, S_MAP_DEL_FROM);
	bind_u64(s, 1, layer);
	bind_u64(s, 2, from);
	return run(s);
}

int meta_map_delete_upto(struct meta *m, uint64_t layer, uint64_t last)
{
	PREP(m, S_MAP_DEL_UPTO);
	bind_u64(s, 1, layer);
	bind_u64(s, 2, last);
	return run(s);
}

int meta_map_move(struct meta *m, uint64_t from, uint64_t to, bool keep_to)
{
	int rc;
	{
		PREP(m, keep_to ? S_MAP_MOVE_KEEP : S_MAP_MOVE_REPLACE);
		bind_u64(s, 1, from);
		bind_u64(s, 2, to);
		rc = run(s);
	}
	if (rc)
		return rc;
	PREP(m, S_MAP_DEL_LAYER);
	bind_u64(s, 1, from);
	return run(s);
}

int meta_map_drop_tombstones(struct meta *m, uint64_t layer)
{
	PREP(m, S_MAP_DROP_TOMBS);
	bind_u64(s, 1, layer);
	return run(s);
}

int meta_map_count(struct meta *m, uint64_t layer, uint64_t *nr)
{
	int rc;
	PREP(m, S_MAP_COUNT);

	bind_u64(s, 1, layer);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*nr = col_u64(s, 0);
		rc = 0;
	} else {
		rc = meta_errno(rc);
	}
	sqlite3_reset(s);
	return rc;
}

int meta_map_foreach_orphan(struct meta *m,
			    void (*cb)(void *arg, uint64_t layer, uint64_t vblock, uint64_t dblock),
			    void *arg)
{
	int step;
	PREP(m, S_MAP_ORPHANS);

	while ((step = sqlite3_step(s)) == SQLITE_ROW)
		cb(arg, col_u64(s, 0), col_u64(s, 1),
		   sqlite3_column_type(s, 2) == SQLITE_NULL ? META_TOMBSTONE : col_u64(s, 2));
	sqlite3_reset(s);
	return step == SQLITE_DONE ? 0 : meta_errno(step);
}

int meta_map_delete_orphans(struct meta *m)
{
	return run_id(m, S_MAP_DEL_ORPHANS);
}

int meta_space_foreach(struct meta *m, meta_space_cb cb, void *arg)
{
	int rc = 0, step;
	PREP(m, S_SPACE_ALL);

	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		rc = cb(arg, col_u64(s, 0), sqlite3_column_blob(s, 1),
			(size_t)sqlite3_column_bytes(s, 1));
		if (rc)
			break;
	}
	if (!rc && step != SQLITE_DONE)
		rc = meta_errno(step);
	sqlite3_reset(s);
	return rc;
}

int meta_space_put(struct meta *m, uint64_t chunk, const void *bits, size_t len)
{
	PREP(m, S_SPACE_PUT);
	bind_u64(s, 1, chunk);
	sqlite3_bind_blob(s, 2, bits, (int)len, SQLITE_STATIC);
	return run(s);
}

int meta_space_delete_from(struct meta *m, uint64_t chunk)
{
	PREP(m, S_SPACE_DEL_FROM);
	bind_u64(s, 1, chunk);
	return run(s);
}

int meta_integrity(struct meta *m, void (*cb)(void *arg, const char *line), void *arg)
{
	sqlite3_stmt *s;
	int problems = 0, step;
	char line[512];

	if (sqlite3_prepare_v2(m->db, "PRAGMA integrity_check", -1, &s, NULL) != SQLITE_OK)
		return meta_errno(sqlite3_errcode(m->db));
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		col_text(s, 0, line, sizeof(line));
		if (!strcmp(line, "ok"))
			continue;
		problems++;
		cb(arg, line);
	}
	sqlite3_finalize(s);
	if (step != SQLITE_DONE) {
		snprintf(line, sizeof(line), "sqlite: %s", sqlite3_errmsg(m->db));
		cb(arg, line);
		problems++;
	}
	return problems;
}

int meta_reindex(struct meta *m)
{
	return exec(m->db, "REINDEX");
}

int meta_prop_get(struct meta *m, const char *key, char *value, size_t len)
{
	sqlite3_stmt *s;
	int rc;

	/* (not kept prepared: a read-only open of an old pool has no table) */
	if (sqlite3_prepare_v2(m->db, "SELECT value FROM props WHERE key = ?1", -1, &s, NULL) !=
	    SQLITE_OK)
		return -ENOENT;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		col_text(s, 0, value, len);
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? -ENOENT : meta_errno(rc);
	}
	sqlite3_finalize(s);
	return rc;
}

int meta_prop_put(struct meta *m, const char *key, const char *value)
{
	sqlite3_stmt *s;
	int rc;

	rc = meta_errno(sqlite3_prepare_v2(
	    m->db, "INSERT OR REPLACE INTO props(key, value) VALUES(?1, ?2)", -1, &s, NULL));
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
	rc = run(s);
	sqlite3_finalize(s);
	return rc;
}

int meta_refs_foreach(struct meta *m, meta_refs_cb cb, void *arg)
{
	int rc = 0, step;

	if (m->version < 3)
		return 0; /* a read-only open of an older pool: no clone was ever made */
	PREP(m, S_REFS_ALL);
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		rc = cb(arg, col_u64(s, 0), col_u64(s, 1));
		if (rc)
			break;
	}
	if (!rc && step != SQLITE_DONE)
		rc = meta_errno(step);
	sqlite3_reset(s);
	return rc;
}

/* Run statement id with nr (1 or 2) integer parameters. */
static int run_u64s(struct meta *m, enum stmt_id id, int nr, uint64_t a, uint64_t b)
{
	PREP(m, id);
	bind_u64(s, 1, a);
	if (nr > 1)
		bind_u64(s, 2, b);
	return run(s);
}

int meta_refs_put(struct meta *m, uint64_t dblock, uint64_t count)
{
	return run_u64s(m, S_REFS_PUT, 2, dblock, count);
}

int meta_refs_del(struct meta *m, uint64_t dblock)
{
	return run_u64s(m, S_REFS_DEL, 1, dblock, 0);
}

/* ---- external origins (format 3) ---- */

int meta_origin_foreach(struct meta *m, meta_origin_cb cb, void *arg)
{
	struct meta_origin_row r;
	int rc = 0, step;

	if (m->version < 3)
		return 0; /* a read-only open of an older pool: no origins */
	PREP(m, S_ORIGIN_ALL);
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&r, 0, sizeof(r));
		r.device = col_u64(s, 0);
		col_text(s, 1, r.path, sizeof(r.path));
		r.size = col_u64(s, 2);
		r.st_dev = col_u64(s, 3);
		r.st_ino = col_u64(s, 4);
		r.mtime_ns = sqlite3_column_int64(s, 5);
		if ((rc = cb(arg, &r)))
			break;
	}
	return rows_done(s, rc, step);
}

int meta_origin_insert(struct meta *m, const struct meta_origin_row *r)
{
	PREP(m, S_ORIGIN_INSERT);
	bind_u64(s, 1, r->device);
	sqlite3_bind_text(s, 2, r->path, -1, SQLITE_STATIC);
	bind_u64(s, 3, r->size);
	bind_u64(s, 4, r->st_dev);
	bind_u64(s, 5, r->st_ino);
	sqlite3_bind_int64(s, 6, r->mtime_ns);
	return run(s);
}
