/* SPDX-License-Identifier: MIT */
/*
 * restore_write.c - step 5 of restore: the new pool on disk (pool_format, or an
 * adopted image), one metadata transaction, the check, the punch of an
 * adopted image's free blocks, and the restore marker and crash points that
 * keep a half-made pool from looking complete.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "engine/space.h"
#include "engine/util.h"
#include "restore.h"
#include "thinfs/pool_test.h"

/* ---- writing the pool ---- */

void rs_remove_made(struct made *mk)
{
	char *side;

	if (mk->pool_made) {
		unlink(mk->meta_path);
		if (asprintf(&side, "%s-wal", mk->meta_path) >= 0) {
			unlink(side);
			free(side);
		}
		if (asprintf(&side, "%s-shm", mk->meta_path) >= 0) {
			unlink(side);
			free(side);
		}
	}
	if (!mk->lock_existed && mk->lock_path)
		unlink(mk->lock_path);
	if (mk->marker_made) {
		if (asprintf(&side, "%s/" POOL_NEEDS_CHECK_MARKER, mk->dir_path) >= 0) {
			unlink(side);
			free(side);
		}
	}
	if (mk->data_created)
		unlink(mk->data_path);
	if (mk->adopted)
		removexattr(mk->adopted, META_UUID_XATTR);
	if (mk->dir_created)
		rmdir(mk->dir_path);
}

/* Create the pool's files (empty metadata): format, or adopt an image. */
int rs_make_pool(struct restore *r, const char *dir, const char *adopt, struct made *mk)
{
	struct pool_format_opts o = {.block_size = r->block_size,
				     .data_size = r->nr_data_blocks * r->block_size,
				     .data_path = adopt,
				     .uuid = r->uuid[0] ? r->uuid : NULL,
				     .keep_data = adopt != NULL};
	struct stat sb;
	int rc;

	if (asprintf(&mk->meta_path, "%s/meta.db", dir) < 0 ||
	    asprintf(&mk->lock_path, "%s/lock", dir) < 0 ||
	    asprintf(&mk->data_path, "%s/data", dir) < 0 || !(mk->dir_path = strdup(dir)))
		return rs_fail(r, -ENOMEM, "out of memory");
	mk->lock_existed = lstat(mk->lock_path, &sb) == 0;
	if (lstat(mk->meta_path, &sb) == 0)
		return rs_fail(r, -EEXIST, "%s already holds a pool (restore makes a new one)",
			       dir);
	mk->dir_created = stat(dir, &sb) < 0;
	if (!adopt && lstat(mk->data_path, &sb) == 0)
		return rs_fail(r, -EEXIST, "%s exists (to keep a data image, restore with --data)",
			       mk->data_path);
	/* the same checks and steps as thinctl format; an adopted image keeps
	 * its content (the first open after the metadata punches its free
	 * blocks) */
	rc = pool_format(dir, &o, r->msg, r->msglen);
	if (rc) {
		r->err = rc;
		return rc;
	}
	mk->pool_made = true;
	mk->data_created = !adopt;
	mk->adopted = adopt;
	return 0;
}

static int write_rows(struct restore *r, struct meta *m, struct space *sp)
{
	int rc = 0;

	for (size_t i = 0; i < r->nr_rr && !rc; i++) {
		const struct rowrun *x = &r->rr[i];
		struct tnode *t = &r->nodes[r->set_node[x->set]];
		for (uint64_t k = 0; k < x->len && !rc; k++) {
			rc = meta_map_put(m, t->layer_id, x->vb + k, x->db + k, x->time);
			space_set_used(sp, x->db + k);
		}
		t->nr_rows += x->len;
	}
	/* a block in several row runs (side by side, of equal range) is a clone:
	 * its count is the number of rows naming it */
	for (size_t i = 0, j; i < r->nr_rr && !rc; i = j) {
		for (j = i + 1; j < r->nr_rr && r->rr[j].db == r->rr[i].db; j++)
			;
		for (uint64_t k = 0; j - i >= 2 && k < r->rr[i].len && !rc; k++)
			rc = space_set_refs(sp, r->rr[i].db + k,
					    j - i > UINT32_MAX ? UINT32_MAX : (uint32_t)(j - i));
	}
	for (size_t i = 0; i < r->nr_tombs && !rc; i++) {
		struct tnode *t = &r->nodes[rs_leaf_of(r, r->tombs[i].dev)];
		rc = meta_map_put(m, t->layer_id, r->tombs[i].vb, META_TOMBSTONE, r->time);
		t->nr_rows++;
	}
	return rc;
}

static int cmp_depth(const void *a, const void *b, void *arg)
{
	struct restore *r = arg;
	uint32_t x = r->nodes[*(const uint32_t *)a].depth, y = r->nodes[*(const uint32_t *)b].depth;

	return x < y ? -1 : x > y;
}

static pool_crash_hook restore_hook;
static void *restore_hook_arg;

void pool_test_set_restore_hook(pool_crash_hook hook, void *arg)
{
	restore_hook = hook;
	restore_hook_arg = arg;
}

int rs_restore_point(const char *point)
{
	return restore_hook ? restore_hook(restore_hook_arg, point) : 0;
}

/*
 * While a restore runs, POOL/needs_check says so: a crash before the end
 * leaves a pool that opens read-only with the reason, never one that looks
 * complete (meta_create's first row is a clean, empty pool).
 */
int rs_restore_marker(struct made *mk, bool on)
{
	char *path = NULL;
	int rc = 0;

	if (asprintf(&path, "%s/" POOL_NEEDS_CHECK_MARKER, mk->dir_path) < 0)
		return -ENOMEM;
	if (on) {
		static const char why[] = "restore did not finish: restore again\n";
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 || write(fd, why, sizeof(why) - 1) != (ssize_t)(sizeof(why) - 1) ||
		    fsync(fd) < 0)
			rc = -errno;
		if (fd >= 0)
			close(fd);
		mk->marker_made = !rc;
	} else if (unlink(path) < 0 && errno != ENOENT) {
		rc = -errno;
	}
	if (!rc)
		rc = util_fsync_dir(mk->dir_path);
	free(path);
	return rc;
}

/* The layers, parents first (each gets its id), then their rows. */
static int write_layers(struct restore *r, struct meta *m, struct space *sp)
{
	uint32_t *order = malloc((r->nr_nodes ? r->nr_nodes : 1) * sizeof(*order));
	int rc = order ? 0 : -ENOMEM;

	for (uint32_t i = 0; i < r->nr_nodes && !rc; i++)
		order[i] = i;
	if (!rc)
		qsort_r(order, r->nr_nodes, sizeof(*order), cmp_depth, r);
	for (size_t i = 0; i < r->nr_nodes && !rc; i++) {
		struct tnode *t = &r->nodes[order[i]];
		rc = meta_layer_insert(m, t->parent == NO_NODE ? 0 : r->nodes[t->parent].layer_id,
				       &t->layer_id);
	}
	free(order);
	if (!rc)
		rc = write_rows(r, m, sp);
	for (size_t i = 0; i < r->nr_nodes && !rc; i++) {
		struct tnode *t = &r->nodes[i];
		struct meta_layer_row lr = {
		    .id = t->layer_id,
		    .parent = t->parent == NO_NODE ? 0 : r->nodes[t->parent].layer_id,
		    .nr_rows = t->nr_rows,
		};
		rc = meta_layer_update(m, &lr);
	}
	return rc;
}

/* The devices in id order, then the ids the dump gave them (meta numbers
 * devices itself), in the same transaction: a crash never leaves wrong ids. */
static int write_devices(struct restore *r, struct meta *m)
{
	uint64_t *from = malloc((r->nr_devs ? r->nr_devs : 1) * sizeof(*from));
	uint64_t *to = malloc((r->nr_devs ? r->nr_devs : 1) * sizeof(*to));
	size_t nr_renum = 0;
	int rc = from && to ? 0 : -ENOMEM;

	for (size_t i = 0; i < r->nr_devs && !rc; i++) {
		struct rdev *d = &r->devs[i];
		struct meta_device_row dr = {
		    .size = d->size,
		    .layer = r->nodes[rs_leaf_of(r, (uint32_t)i)].layer_id,
		    .origin = d->origin,
		    .creation_time = d->creation_time,
		    .snap_time = d->snap_time,
		    .ctime = d->ctime,
		    .mtime = d->mtime,
		    .read_only = d->read_only,
		    .uid = d->uid,
		    .gid = d->gid,
		    .mode = d->mode,
		    .mapped = d->nr_mapped,
		    .generation = d->generation,
		};
		snprintf(dr.copy_of, sizeof(dr.copy_of), "%s", d->copy_of);
		snprintf(dr.set, sizeof(dr.set), "%s", d->set);
		snprintf(dr.name, sizeof(dr.name), "%s", d->name);
		rc = meta_device_insert(m, &dr);
		if (!rc && dr.id != d->id) {
			from[nr_renum] = dr.id;
			to[nr_renum++] = d->id;
		}
	}
	if (!rc && nr_renum)
		rc = meta_device_renumber(m, from, to, nr_renum);
	free(from);
	free(to);
	return rc;
}

/* The pool row: the dump's uuid, transaction id and time, and unclean until
 * rs_finish_pool (after a crash before that, the first open scrubs). */
static int write_pool_row(struct restore *r, struct meta *m)
{
	struct meta_pool_row prow;
	char v[32];
	int rc = meta_pool_get(m, &prow);

	if (rc)
		return rc;
	if (r->uuid[0])
		snprintf(prow.uuid, sizeof(prow.uuid), "%s", r->uuid);
	else
		snprintf(r->uuid, sizeof(r->uuid), "%s", prow.uuid);
	prow.transaction_id = r->transaction;
	prow.pool_time = r->time;
	prow.clean = 0;
	snprintf(v, sizeof(v), "%llu", (unsigned long long)r->transaction);
	rc = meta_prop_put(m, META_PROP_TRANSACTION_ID, v); /* the user's id */
	for (size_t i = 0; i < r->nr_cprops && !rc; i++)    /* the pool's properties */
		rc = meta_prop_put(m, r->cprops[i].key, r->cprops[i].value);
	return rc ? rc : meta_pool_put(m, &prow);
}

/* Everything the dump describes, in one metadata transaction. */
int rs_write_meta(struct restore *r, struct made *mk)
{
	struct meta *m = NULL;
	struct space sp = {0};
	int rc;

	rc = meta_open(mk->meta_path, false, &m, r->msg, r->msglen);
	if (rc)
		return r->err = rc;
	rc = space_init(&sp, r->nr_data_blocks);
	if (!rc && !(rc = meta_begin(m))) {
		rc = write_layers(r, m, &sp);
		for (size_t i = 0; i < r->nr_csets && !rc; i++) {
			struct meta_set_row sr = {.ctime = r->csets[i].ctime};
			snprintf(sr.name, sizeof(sr.name), "%s", r->csets[i].name);
			rc = meta_set_insert(m, &sr);
		}
		if (!rc)
			rc = write_devices(r, m);
		if (!rc)
			rc = space_save(&sp, m);
		if (!rc)
			rc = write_pool_row(r, m);
		if (!rc)
			rc = meta_commit(m);
		if (rc) {
			set_msg(r->msg, r->msglen, rc, "cannot write the metadata: %s",
				meta_errmsg(m));
			r->err = rc;
			meta_rollback(m);
		}
	}
	meta_close(m);
	space_destroy(&sp);
	if (rc && !r->err)
		rs_fail(r, rc, "cannot write the metadata: %s", strerror(-rc));
	return rc;
}

/* The new pool must check clean; then an adopted image loses its free blocks. */
int rs_finish_pool(struct restore *r, struct made *mk)
{
	const char *data = mk->adopted ? mk->adopted : mk->data_path;
	char *report = NULL;
	size_t len = 0;
	FILE *f;
	int rc;

	/* as pool_format: where user xattrs are not supported, no label */
	setxattr(data, META_UUID_XATTR, r->uuid, strlen(r->uuid), 0);
	f = open_memstream(&report, &len);
	if (!f)
		return rs_fail(r, -ENOMEM, "out of memory");
	rc = pool_check(mk->dir_path, false, f, r->msg, r->msglen);
	fclose(f);
	if (rc < 0) {
		r->err = rc;
	} else if (rc != CHECK_CLEAN || len) {
		report[strcspn(report, "\n")] = 0;
		rc = rs_fail(r, -EUCLEAN, "the restored pool fails its check: %s", report);
	}
	free(report);
	if (rc)
		return rc;
	/* the last step, as after any unclean stop: the first read-write open
	 * punches every data extent in a free block (an adopted image's old
	 * data), and the close marks the pool clean */
	struct pool *pool;
	rc = pool_open(mk->dir_path, 0, "thinctl restore", &pool, r->msg, r->msglen);
	if (rc)
		return r->err = rc;
	rc = pool_close(pool);
	if (rc)
		return rs_fail(r, rc, "cannot finish the pool: %s", strerror(-rc));
	return 0;
}
