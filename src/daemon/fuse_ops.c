/* SPDX-License-Identifier: MIT */
/*
 * fuse_ops.c - the FUSE front end: a mounted pool as a directory of sparse
 * files (DESIGN.md 1.3), on libfuse3's low-level API.
 *
 * It owns the names <-> devices translation and nothing else: each handler
 * decodes one request, makes one (rarely two) pool_* calls and replies exactly
 * once.  No pool logic, no SQL.
 *
 *   MNT/                 root: top-level devices (set "") and .snapshots
 *   MNT/NAME             a volume or writable snapshot, a regular file
 *   MNT/.snapshots/      one directory per snapshot set; mkdir/rmdir/rename
 *   MNT/.snapshots/S/N   set members: read-only regular files
 *
 * Inode numbers.  The node id the kernel uses is also the st_ino it shows:
 *   1 (FUSE_ROOT_ID)     the root
 *   2                    .snapshots
 *   DEV_INO_BASE + id    a device, by its pool id: stable across mounts
 *   SET_INO_BASE + n     a snapshot set's directory; sets have no id, so they
 *                        are numbered per mount (a renamed set keeps its number)
 * The node table remembers every node the kernel holds (nlookup, dropped by
 * FORGET) or has open (nopen): a device's current name, so a renamed node
 * still finds its device, and while open, one struct volume shared by all
 * openers, so an unlinked open file keeps working until its last release
 * (the pool deletes it then).  A node whose name no longer leads to its
 * device id finds it again by id (pool_list); a deleted one is "dead".
 *
 * Caching.  Names may be cached for entry_timeout.  The attributes of
 * writable devices change under I/O (st_blocks), so they are never cached;
 * directories and snapshot members are cached for dir_attr_timeout.  No
 * writeback cache: every write reaches the daemon before write(2) returns, so
 * an fsync finds it.  Files opened O_DIRECT bypass the page cache (direct_io),
 * and an O_DSYNC/O_SYNC write on such a file syncs before it is answered,
 * because the kernel sends no FSYNC for it.
 *
 * Cloning.  copy_file_range between two files of the mount shares whole
 * blocks (pool_clone_range): `cp MNT/a MNT/b` takes no new data blocks.
 *
 * Locking: fs->lock protects the node table and every node field.  It is
 * never held across a pool call: a commit inside one must not stall lookups.
 * The kernel serialises namespace changes within a directory (its i_rwsem),
 * so a name checked before a pool call is still the one the call sees.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fuse_nodes.h"

/* An administrative request the pool refused: in the log once per device
 * and reason, unless it was an ordinary one (a name taken, not there). */
static void log_admin(struct fsops *fs, const char *what, const char *name, int rc, const char *msg)
{
	if (rc)
		fsops_refused(fs, what, name, rc, msg);
}

/* The device name of a file handle, for the log. */
static void file_devname(struct fsops *fs, struct fsops_file *f, char *dev)
{
	pthread_mutex_lock(&fs->lock);
	devname(f->node, dev);
	pthread_mutex_unlock(&fs->lock);
}

/* ---- lifecycle ---- */

static void fsops_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* write-through: a write is in the daemon before write(2) returns */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/* every change passes through this mount: no need to drop the page cache
	 * whenever mtime moves (and no GETATTR before every read) */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	conn->max_write = FSOPS_MAX_WRITE;
	if (conn->max_readahead > FSOPS_MAX_READAHEAD || conn->max_readahead == 0)
		conn->max_readahead = FSOPS_MAX_READAHEAD;
	if (conn->max_background < 64)
		conn->max_background = 64;
}

/* ---- names ---- */

static void fsops_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fsops *fs = fs_of(req);
	struct fsops_node *dir = node_get(fs, parent);
	struct pool_device_info info;
	char dev[DEVNAME_MAX];
	struct stat st;
	time_t ctime = 0;
	int rc;

	if (!dir)
		return (void)fuse_reply_err(req, ESTALE);
	switch (dir->kind) {
	case NODE_ROOT:
		if (!strcmp(name, SNAPDIR_NAME)) {
			dir_stat(fs, SNAPDIR_INO, 0755, 2, fs->mount_time, &st);
			return reply_entry(req, fs, &fs->snapdir, &st, 0.0);
		}
		/* fall through */
	case NODE_SET:
		rc = child_devname(fs, dir, name, dev);
		if (rc == -ENOENT)
			return reply_negative(req, fs);
		if (!rc)
			rc = pool_device_info(fs->pool, dev, &info);
		if (rc == -ENOENT)
			return reply_negative(req, fs);
		if (rc)
			return (void)fuse_reply_err(req, -rc);
		return reply_dev_entry(req, fs, &info);
	case NODE_SNAPDIR:
		if (strlen(name) > POOL_NAME_MAX)
			return (void)fuse_reply_err(req, ENAMETOOLONG);
		if (pool_name_valid(name, NULL, 0))
			return reply_negative(req, fs);
		rc = set_lookup(fs, name, &ctime, NULL);
		if (rc == -ENOENT)
			return reply_negative(req, fs);
		if (rc)
			return (void)fuse_reply_err(req, -rc);
		return reply_set_entry(req, fs, name, ctime);
	case NODE_DEV:
		break;
	}
	fuse_reply_err(req, ENOTDIR);
}

static void forget_one(struct fsops *fs, fuse_ino_t ino, uint64_t nlookup)
{
	struct fsops_node *n;

	pthread_mutex_lock(&fs->lock);
	n = node_find(fs, ino);
	if (n && n->kind != NODE_ROOT && n->kind != NODE_SNAPDIR) {
		n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
		node_maybe_free(fs, n);
	}
	pthread_mutex_unlock(&fs->lock);
}

static void fsops_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	forget_one(fs_of(req), ino, nlookup);
	fuse_reply_none(req);
}

static void fsops_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		forget_one(fs_of(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void fsops_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fsops *fs = fs_of(req);
	struct fsops_node *n = node_get(fs, ino); /* fi may be a directory's */
	struct stat st;
	double timeout;
	int rc;

	if (!n)
		return (void)fuse_reply_err(req, ESTALE);
	rc = node_stat(fs, n, &st, &timeout);
	if (rc)
		return (void)fuse_reply_err(req, -rc);
	fuse_reply_attr(req, &st, timeout);
}

/*
 * Size, owner and mode of a device node.  They act on the device the node is
 * (nodes are devices by id, not names): through the request's handle when
 * the kernel sends one (ftruncate), else through the volume the node's
 * openers share (fchmod and fchown come without a handle), also after an
 * unlink, a rename onto its name or a new volume of that name; by name only
 * when nobody has it open, and then node_dev_info() just checked that the
 * name still leads to this node's id.
 */
static int set_dev_attr(struct fsops *fs, struct fsops_node *n, const struct stat *attr, int to_set,
			struct fuse_file_info *fi)
{
	const int owner = FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID;
	struct volume *vol = fi && fi->fh ? file_of(fi)->vol : NULL, *pinned = NULL;
	struct pool_device_info info;
	char dev[DEVNAME_MAX], msg[POOL_MSG_MAX] = "";
	uint32_t uid, gid, mode;
	int rc = node_dev_info(fs, n, &info);

	if (rc)
		return rc;
	if (info.set[0] || info.read_only)
		return -EROFS;
	if ((to_set & FUSE_SET_ATTR_SIZE) && attr->st_size < 0)
		return -EINVAL;
	if (!vol)
		vol = pinned = vol_pin(fs, n);
	pthread_mutex_lock(&fs->lock);
	devname(n, dev);
	pthread_mutex_unlock(&fs->lock);
	if (vol)
		pool_volume_info(vol, &info);
	if (to_set & FUSE_SET_ATTR_SIZE) {
		uint64_t size = (uint64_t)attr->st_size;
		rc = vol ? pool_volume_resize(vol, size, msg, sizeof(msg))
			 : pool_resize(fs->pool, dev, size, msg, sizeof(msg));
		log_admin(fs, "a resize", dev, rc, msg);
	}
	if (!rc && (to_set & owner)) {
		uid = to_set & FUSE_SET_ATTR_UID ? (uint32_t)attr->st_uid : info.uid;
		gid = to_set & FUSE_SET_ATTR_GID ? (uint32_t)attr->st_gid : info.gid;
		mode = to_set & FUSE_SET_ATTR_MODE ? (uint32_t)attr->st_mode & 07777 : info.mode;
		rc = vol ? pool_volume_set_owner(vol, uid, gid, mode)
			 : pool_set_owner(fs->pool, dev, uid, gid, mode);
		log_admin(fs, "a chown/chmod", dev, rc, "");
	}
	if (pinned)
		vol_unpin(fs, n, false);
	return rc;
}

static void fsops_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			  struct fuse_file_info *fi)
{
	struct fsops *fs = fs_of(req);
	struct fsops_node *n = node_get(fs, ino); /* fi may be a directory's */
	const int kept =
	    FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | FUSE_SET_ATTR_SIZE;
	struct stat st;
	double timeout;
	int rc = 0;

	if (!n)
		return (void)fuse_reply_err(req, ESTALE);
	if (n->kind != NODE_DEV)
		rc = to_set & kept ? -EPERM : 0; /* directories are the pool's own */
	else if (to_set & kept) /* atime/mtime alone: the pool keeps its own times */
		rc = set_dev_attr(fs, n, attr, to_set, fi);
	if (!rc)
		rc = node_stat(fs, n, &st, &timeout);
	if (rc)
		return (void)fuse_reply_err(req, -rc);
	fuse_reply_attr(req, &st, timeout);
}

/* Create top-level volume `name` (size 0) owned by the caller. */
static int create_volume(fuse_req_t req, struct fsops *fs, fuse_ino_t parent, const char *name,
			 mode_t mode, struct pool_device_info *info)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct fsops_node *dir = node_get(fs, parent);
	char msg[POOL_MSG_MAX] = "";
	int rc;

	if (!dir)
		return -ESTALE;
	if (dir->kind == NODE_SET)
		return -EROFS;
	if (dir->kind != NODE_ROOT)
		return -EPERM; /* .snapshots holds only sets: mkdir */
	if (strlen(name) > POOL_NAME_MAX)
		return -ENAMETOOLONG;
	/* the caller's, in the same transaction; the kernel applied the umask */
	rc = pool_create_owned(fs->pool, name, 0, ctx->uid, ctx->gid, mode & 07777, msg,
			       sizeof(msg));
	log_admin(fs, "a create", name, rc, msg);
	if (rc)
		return rc;
	return pool_device_info(fs->pool, name, info);
}

static void fsops_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			dev_t rdev)
{
	struct fsops *fs = fs_of(req);
	struct pool_device_info info;
	int rc;

	if (!S_ISREG(mode))
		return (void)fuse_reply_err(req, EPERM);
	rc = create_volume(req, fs, parent, name, mode, &info);
	if (rc)
		return (void)fuse_reply_err(req, -rc);
	reply_dev_entry(req, fs, &info);
}

static void fsops_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fsops *fs = fs_of(req);
	struct fsops_node *dir = node_get(fs, parent);
	char msg[POOL_MSG_MAX] = "";
	time_t ctime = 0;
	int rc;

	if (!dir)
		return (void)fuse_reply_err(req, ESTALE);
	if (dir->kind != NODE_SNAPDIR)
		return (void)fuse_reply_err(req, dir->kind == NODE_SET ? EROFS : EPERM);
	if (strlen(name) > POOL_NAME_MAX)
		return (void)fuse_reply_err(req, ENAMETOOLONG);
	rc = pool_snapshot_set(fs->pool, name, msg, sizeof(msg));
	log_admin(fs, "a snapshot set", name, rc, msg);
	if (!rc)
		rc = set_lookup(fs, name, &ctime, NULL);
	if (rc)
		return (void)fuse_reply_err(req, -rc);
	reply_set_entry(req, fs, name, ctime);
}

/* A device or set left the namespace: its node (if any) is dead. */
static void mark_dead_dev(struct fsops *fs, uint64_t id)
{
	struct fsops_node *n;

	pthread_mutex_lock(&fs->lock);
	n = node_find(fs, DEV_INO_BASE + id);
	if (n && n->id == id)
		n->dead = true;
	pthread_mutex_unlock(&fs->lock);
}

static void fsops_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fsops *fs = fs_of(req);
	struct fsops_node *dir = node_get(fs, parent);
	struct pool_device_info info = {0};
	char dev[DEVNAME_MAX], msg[POOL_MSG_MAX] = "";
	int rc;

	if (!dir)
		return (void)fuse_reply_err(req, ESTALE);
	if (dir->kind == NODE_SET)
		return (void)fuse_reply_err(req, EROFS);
	if (dir->kind != NODE_ROOT)
		return (void)fuse_reply_err(req, EPERM);
	rc = child_devname(fs, dir, name, dev);
	if (!rc)
		rc = pool_device_info(fs->pool, dev, &info);
	if (!rc)
		rc = pool_delete(fs->pool, dev, msg, sizeof(msg));
	log_admin(fs, "a delete", dev, rc, msg);
	if (!rc)
		mark_dead_dev(fs, info.id);
	fuse_reply_err(req, -rc);
}

static void fsops_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fsops *fs = fs_of(req);
	struct fsops_node *dir = node_get(fs, parent);
	char msg[POOL_MSG_MAX] = "";
	int rc;

	if (!dir)
		return (void)fuse_reply_err(req, ESTALE);
	if (dir->kind == NODE_ROOT && !strcmp(name, SNAPDIR_NAME))
		return (void)fuse_reply_err(req, EBUSY);
	if (dir->kind != NODE_SNAPDIR)
		return (void)fuse_reply_err(req, ENOTDIR);
	if (strlen(name) > POOL_NAME_MAX)
		return (void)fuse_reply_err(req, ENAMETOOLONG);
	/* a set goes with its members, also when they are open: the pool
	 * releases those at their last close */
	rc = pool_delete_set(fs->pool, name, msg, sizeof(msg));
	log_admin(fs, "a delete set", name, rc, msg);
	if (!rc) {
		pthread_mutex_lock(&fs->lock);
		for (size_t b = 0; b < NR_BUCKETS; b++)
			for (struct fsops_node *n = fs->buckets[b]; n; n = n->hnext)
				if (n->kind == NODE_DEV && !strcmp(n->set, name))
					n->dead = true;
		for (struct fsops_node *n = fs->sets; n; n = n->snext) {
			if (!strcmp(n->name, name)) {
				set_unlist(fs, n);
				n->dead = true;
				node_maybe_free(fs, n);
				break;
			}
		}
		pthread_mutex_unlock(&fs->lock);
	}
	fuse_reply_err(req, -rc);
}

static int rename_device(struct fsops *fs, const char *name, const char *newname, bool replace)
{
	struct pool_device_info info;
	char msg[POOL_MSG_MAX] = "";
	uint64_t old_id;
	int rc;

	if (!strcmp(name, SNAPDIR_NAME) || !strcmp(newname, SNAPDIR_NAME))
		return -EPERM;
	if (strlen(name) > POOL_NAME_MAX || strlen(newname) > POOL_NAME_MAX)
		return -ENAMETOOLONG;
	/* the device a replacing rename pushes out of the namespace: its node
	 * (and handles) must not follow the name to the device taking it */
	if (replace && pool_device_info(fs->pool, newname, &info))
		info.id = 0;
	old_id = replace ? info.id : 0;
	/* rename(2) replaces an existing target atomically; RENAME_NOREPLACE does not */
	rc = replace ? pool_rename_replace(fs->pool, name, newname, msg, sizeof(msg))
		     : pool_rename(fs->pool, name, newname, msg, sizeof(msg));
	log_admin(fs, "a rename", name, rc, msg);
	if (!rc && old_id)
		mark_dead_dev(fs, old_id);
	if (!rc && !pool_device_info(fs->pool, newname, &info)) {
		pthread_mutex_lock(&fs->lock);
		if (node_find(fs, DEV_INO_BASE + info.id))
			node_dev(fs, &info);
		pthread_mutex_unlock(&fs->lock);
	}
	return rc;
}

static int rename_set(struct fsops *fs, const char *name, const char *newname)
{
	char msg[POOL_MSG_MAX] = "";
	int rc;

	if (strlen(name) > POOL_NAME_MAX || strlen(newname) > POOL_NAME_MAX)
		return -ENAMETOOLONG;
	rc = pool_rename_set(fs->pool, name, newname, msg, sizeof(msg));
	log_admin(fs, "a rename set", name, rc, msg);
	if (rc)
		return rc;
	pthread_mutex_lock(&fs->lock);
	for (struct fsops_node *n = fs->sets; n; n = n->snext) {
		if (!strcmp(n->name, name)) {
			snprintf(n->name, sizeof(n->name), "%s", newname);
			break;
		}
	}
	for (size_t b = 0; b < NR_BUCKETS; b++)
		for (struct fsops_node *n = fs->buckets[b]; n; n = n->hnext)
			if (n->kind == NODE_DEV && !strcmp(n->set, name))
				snprintf(n->set, sizeof(n->set), "%s", newname);
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

/* The pool never replaces a name: renaming onto an existing volume or set
 * fails with EEXIST (delete the target first), so no volume is ever lost
 * to a rename. */
static void fsops_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
			 const char *newname, unsigned int flags)
{
	struct fsops *fs = fs_of(req);
	struct fsops_node *from = node_get(fs, parent), *to = node_get(fs, newparent);
	int rc;

	if (!from || !to)
		return (void)fuse_reply_err(req, ESTALE);
	if (flags & ~(unsigned)RENAME_NOREPLACE)
		return (void)fuse_reply_err(req, EINVAL);
	if (from->kind == NODE_SET || to->kind == NODE_SET)
		rc = -EROFS;
	else if (from->kind == NODE_ROOT && to->kind == NODE_ROOT)
		rc = rename_device(fs, name, newname, !(flags & RENAME_NOREPLACE));
	else if (from->kind == NODE_SNAPDIR && to->kind == NODE_SNAPDIR)
		rc = rename_set(fs, name, newname);
	else
		rc = -EPERM;
	fuse_reply_err(req, -rc);
}

static void fsops_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	fuse_reply_err(req, EPERM);
}

static void fsops_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EPERM);
}

/* ---- files ---- */

static void file_close(struct fsops *fs, struct fsops_file *f)
{
	pthread_mutex_lock(&fs->lock);
	if (f->prev)
		f->prev->next = f->next;
	else
		fs->files = f->next;
	if (f->next)
		f->next->prev = f->prev;
	pthread_mutex_unlock(&fs->lock);
	vol_unpin(fs, f->node, true);
	free(f);
}

/* Open node n for a request with open(2) flags; fills fi. */
static int file_open(struct fsops *fs, struct fsops_node *n, struct fuse_file_info *fi)
{
	struct fsops_file *f;
	bool member;
	int rc;

	if (n->kind != NODE_DEV)
		return -EISDIR;
	pthread_mutex_lock(&fs->lock);
	member = n->set[0] != 0;
	pthread_mutex_unlock(&fs->lock);
	if (member && ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)))
		return -EROFS; /* losetup then falls back to read-only */
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	rc = vol_get(fs, n, &f->vol);
	if (rc) {
		free(f);
		return rc;
	}
	f->node = n;
	f->flags = fi->flags;
	pthread_mutex_lock(&fs->lock);
	f->next = fs->files;
	if (f->next)
		f->next->prev = f;
	fs->files = f;
	pthread_mutex_unlock(&fs->lock);
	fi->fh = (uintptr_t)f;
	fi->direct_io = !!(fi->flags & O_DIRECT);
	fi->keep_cache = member; /* set members never change */
	return 0;
}

static void fsops_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fsops *fs = fs_of(req);
	struct fsops_node *n = node_get(fs, ino);
	int rc;

	if (!n)
		return (void)fuse_reply_err(req, ESTALE);
	rc = file_open(fs, n, fi);
	if (rc)
		return (void)fuse_reply_err(req, -rc);
	if (fuse_reply_open(req, fi) == -ENOENT) /* interrupted: no RELEASE */
		file_close(fs, file_of(fi));
}

static void fsops_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			 struct fuse_file_info *fi)
{
	struct fsops *fs = fs_of(req);
	struct pool_device_info info;
	struct fsops_node *n;
	struct fuse_entry_param e;
	int rc;

	rc = create_volume(req, fs, parent, name, mode, &info);
	if (rc)
		return (void)fuse_reply_err(req, -rc);
	pthread_mutex_lock(&fs->lock);
	n = node_dev(fs, &info);
	if (n)
		n->nlookup++;
	pthread_mutex_unlock(&fs->lock);
	if (!n)
		return (void)fuse_reply_err(req, ENOMEM);
	rc = file_open(fs, n, fi);
	if (rc) {
		forget_one(fs, DEV_INO_BASE + info.id, 1);
		return (void)fuse_reply_err(req, -rc);
	}
	memset(&e, 0, sizeof(e));
	e.ino = DEV_INO_BASE + info.id;
	e.generation = 1;
	dev_stat(fs, &info, &e.attr);
	e.attr_timeout = dev_attr_timeout(fs, &info);
	e.entry_timeout = fs->cfg.entry_timeout;
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		file_close(fs, file_of(fi));
		forget_one(fs, e.ino, 1);
	}
}

static void free_rbuf(void *p)
{
	struct rbuf *b = p;

	free(b->p);
	free(b);
}

/* A page-aligned buffer of at least len bytes, kept per thread. */
static void *read_buffer(struct fsops *fs, size_t len)
{
	struct rbuf *b = pthread_getspecific(fs->rbuf_key);

	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b)
			return NULL;
		if (pthread_setspecific(fs->rbuf_key, b)) {
			free(b);
			return NULL;
		}
	}
	if (b->len < len) {
		void *p = NULL;
		if (posix_memalign(&p, 4096, len))
			return NULL;
		free(b->p);
		b->p = p;
		b->len = len;
	}
	return b->p;
}

static void fsops_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fsops *fs = fs_of(req);
	void *buf = read_buffer(fs, size ? size : 1);
	ssize_t n;

	if (!buf)
		return (void)fuse_reply_err(req, ENOMEM);
	if (off < 0)
		return (void)fuse_reply_err(req, EINVAL);
	n = pool_read(file_of(fi)->vol, buf, size, (uint64_t)off);
	if (n < 0)
		return (void)fuse_reply_err(req, (int)-n);
	fuse_reply_buf(req, buf, (size_t)n);
}

static void fsops_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	struct fsops *fs = fs_of(req);
	struct fsops_file *f = file_of(fi);
	ssize_t n;
	int rc;

	if (off < 0)
		return (void)fuse_reply_err(req, EINVAL);
	n = pool_write(f->vol, buf, size, (uint64_t)off);
	if (n < 0) {
		char dev[DEVNAME_MAX];
		file_devname(fs, f, dev);
		fsops_refused(fs, "a write", dev, (int)n, NULL);
		return (void)fuse_reply_err(req, (int)-n);
	}
	/* fi->flags carries O_DSYNC for O_SYNC/O_DSYNC files and RWF_DSYNC
	 * writes; the kernel follows those with FSYNC except on direct_io files */
	if (n > 0 && (fi->flags & O_DSYNC) && (f->flags & O_DIRECT)) {
		rc = pool_sync(fs->pool);
		if (rc) {
			char dev[DEVNAME_MAX];
			file_devname(fs, f, dev);
			fsops_refused(fs, "a synchronous write", dev, rc, NULL);
			return (void)fuse_reply_err(req, -rc);
		}
	}
	fuse_reply_write(req, (size_t)n);
}

static void fsops_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fsops *fs = fs_of(req);
	int rc = 0;

	if (file_of(fi)->flags & O_DSYNC)
		rc = pool_sync(fs->pool);
	fuse_reply_err(req, -rc);
}

static void fsops_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	file_close(fs_of(req), file_of(fi));
	fuse_reply_err(req, 0);
}

/* fsync and fdatasync alike: the data file flushed and the mappings committed.
 * Never ENOSYS: the kernel would stop sending fsyncs at all. */
static void fsops_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fsops *fs = fs_of(req);
	int rc = pool_sync(fs->pool);

	if (rc) {
		char dev[DEVNAME_MAX];
		file_devname(fs, file_of(fi), dev);
		fsops_refused(fs, "an fsync", dev, rc, NULL);
	}
	fuse_reply_err(req, -rc);
}

/*
 * PUNCH_HOLE (always with KEEP_SIZE) unmaps, ZERO_RANGE zeroes, both clipped
 * to the device's size.  A plain allocation (mode 0) only grows the size, as
 * a write past the end does: thin volumes reserve nothing, so a later write
 * may still get ENOSPC.  All act on the handle's device (pool_volume_*),
 * whatever its name leads to now.
 */
static void fsops_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			    struct fuse_file_info *fi)
{
	struct fsops *fs = fs_of(req);
	struct fsops_file *f = file_of(fi);
	struct pool_device_info info;
	uint64_t off = (uint64_t)offset, end, clip;
	int rc = 0;

	if (offset < 0 || length <= 0 || (uint64_t)length > UINT64_MAX - off ||
	    off + (uint64_t)length > INT64_MAX)
		return (void)fuse_reply_err(req, offset < 0 || length <= 0 ? EINVAL : EFBIG);
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		return (void)fuse_reply_err(req, EOPNOTSUPP);
	end = off + (uint64_t)length;
	pool_volume_info(f->vol, &info);
	if (info.set[0] || info.read_only)
		return (void)fuse_reply_err(req, EROFS);
	clip = end < info.size ? end : info.size;
	if (mode & FALLOC_FL_PUNCH_HOLE) {
		if (!(mode & FALLOC_FL_KEEP_SIZE) || (mode & FALLOC_FL_ZERO_RANGE))
			return (void)fuse_reply_err(req, EOPNOTSUPP);
		if (off < clip)
			rc = pool_discard(f->vol, off, clip - off);
	} else if (mode & FALLOC_FL_ZERO_RANGE) {
		if (off < clip)
			rc = pool_zero_range(f->vol, off, clip - off);
		if (!rc && !(mode & FALLOC_FL_KEEP_SIZE))
			rc = pool_volume_grow(f->vol, end);
	} else if (!(mode & FALLOC_FL_KEEP_SIZE)) {
		rc = pool_volume_grow(f->vol, end);
	}
	if (rc) {
		char dev[DEVNAME_MAX];
		file_devname(fs, f, dev);
		fsops_refused(fs, "an fallocate", dev, rc, NULL);
	}
	fuse_reply_err(req, -rc);
}

/*
 * copy_file_range(2) between two files of this mount (coreutils' cp uses it):
 * pool_clone_range shares the source's whole blocks, copies the edges.  The
 * kernel sends it only for files of one mount; it never forwards FICLONE /
 * FICLONERANGE (the VFS answers them for a FUSE file: EOPNOTSUPP), so
 * `cp --reflink=always` fails while plain `cp` (reflink=auto) clones.
 */
static void fsops_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
				  struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
				  struct fuse_file_info *fi_out, size_t len, int flags)
{
	struct fsops *fs = fs_of(req);
	struct fsops_file *out = file_of(fi_out);
	uint64_t done = 0;
	int rc;

	if (flags || off_in < 0 || off_out < 0)
		return (void)fuse_reply_err(req, EINVAL);
	/* the reply's count is 32 bits: a longer request is answered short, at
	 * a block boundary, so the caller's next one is aligned as this one */
	if (len > UINT32_MAX)
		len = UINT32_MAX - UINT32_MAX % fs->block_size;
	/* and a request that ends inside a block (the kernel cuts long ones
	 * at a page) is answered up to the last block boundary, so that block
	 * is shared by the next request instead of copied by this one */
	uint64_t end = (uint64_t)off_out + len, cut = end - end % fs->block_size;
	if (len > fs->block_size && cut > (uint64_t)off_out)
		len = (size_t)(cut - (uint64_t)off_out);
	rc = pool_clone_range(file_of(fi_in)->vol, (uint64_t)off_in, out->vol, (uint64_t)off_out,
			      len, &done);
	if (rc && !done) {
		char dev[DEVNAME_MAX];
		file_devname(fs, out, dev);
		fsops_refused(fs, "a copy_file_range", dev, rc, NULL);
		return (void)fuse_reply_err(req, -rc);
	}
	fuse_reply_write(req, (size_t)done);
}

static void fsops_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
			struct fuse_file_info *fi)
{
	uint64_t result = 0;
	int rc;

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return (void)fuse_reply_err(req, EINVAL);
	if (off < 0)
		return (void)fuse_reply_err(req, ENXIO);
	rc = pool_seek(file_of(fi)->vol, (uint64_t)off, whence, &result);
	if (rc)
		return (void)fuse_reply_err(req, -rc);
	fuse_reply_lseek(req, (off_t)result);
}

/* ---- directories ---- */

static int listing_add(struct dir_listing *l, fuse_ino_t ino, mode_t type, const char *name)
{
	if (l->nr == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct dir_entry *e = realloc(l->e, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		l->e = e;
		l->cap = cap;
	}
	l->e[l->nr].ino = ino;
	l->e[l->nr].type = type;
	snprintf(l->e[l->nr].name, sizeof(l->e[l->nr].name), "%s", name);
	l->nr++;
	return 0;
}

static void listing_free(struct dir_listing *l)
{
	if (l) {
		free(l->e);
		free(l);
	}
}

/* Devices in set `set` ("" = top level) into the listing. */
static int list_devices(struct fsops *fs, struct dir_listing *l, const char *set)
{
	struct pool_device_info *devs = NULL;
	size_t nr = 0;
	int rc = pool_list(fs->pool, false, &devs, &nr);

	for (size_t i = 0; !rc && i < nr; i++)
		if (!strcmp(devs[i].set, set))
			rc = listing_add(l, DEV_INO_BASE + devs[i].id, S_IFREG, devs[i].name);
	free(devs);
	return rc;
}

static int list_sets(struct fsops *fs, struct dir_listing *l)
{
	struct pool_set_info *sets = NULL;
	struct fsops_node *n;
	size_t nr = 0;
	int rc = pool_list_sets(fs->pool, &sets, &nr);

	for (size_t i = 0; !rc && i < nr; i++) {
		if (sets[i].name[0] == '.')
			continue;
		pthread_mutex_lock(&fs->lock);
		n = node_set(fs, sets[i].name);
		pthread_mutex_unlock(&fs->lock);
		rc = n ? listing_add(l, n->ino, S_IFDIR, sets[i].name) : -ENOMEM;
	}
	free(sets);
	return rc;
}

static void fsops_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fsops *fs = fs_of(req);
	struct fsops_node *n = node_get(fs, ino);
	struct dir_listing *l = calloc(1, sizeof(*l));
	char set[POOL_NAME_MAX + 1];
	bool dead;
	int rc;

	if (!l)
		return (void)fuse_reply_err(req, ENOMEM);
	if (!n) {
		rc = -ESTALE;
		goto out_free;
	}
	switch (n->kind) {
	case NODE_ROOT:
		rc = listing_add(l, FUSE_ROOT_ID, S_IFDIR, ".");
		if (!rc)
			rc = listing_add(l, FUSE_ROOT_ID, S_IFDIR, "..");
		if (!rc)
			rc = listing_add(l, SNAPDIR_INO, S_IFDIR, SNAPDIR_NAME);
		if (!rc)
			rc = list_devices(fs, l, "");
		break;
	case NODE_SNAPDIR:
		rc = listing_add(l, SNAPDIR_INO, S_IFDIR, ".");
		if (!rc)
			rc = listing_add(l, FUSE_ROOT_ID, S_IFDIR, "..");
		if (!rc)
			rc = list_sets(fs, l);
		break;
	case NODE_SET:
		pthread_mutex_lock(&fs->lock);
		snprintf(set, sizeof(set), "%s", n->name);
		dead = n->dead;
		pthread_mutex_unlock(&fs->lock);
		rc = dead ? -ENOENT : listing_add(l, n->ino, S_IFDIR, ".");
		if (!rc)
			rc = listing_add(l, SNAPDIR_INO, S_IFDIR, "..");
		if (!rc)
			rc = list_devices(fs, l, set);
		break;
	default:
		rc = -ENOTDIR;
	}
	if (rc)
		goto out_free;
	fi->fh = (uintptr_t)l;
	if (fuse_reply_open(req, fi) == -ENOENT)
		listing_free(l);
	return;
out_free:
	listing_free(l);
	fuse_reply_err(req, -rc);
}

static void fsops_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			  struct fuse_file_info *fi)
{
	struct dir_listing *l = (struct dir_listing *)(uintptr_t)fi->fh;
	char *buf = malloc(size ? size : 1);
	size_t pos = 0;

	if (!buf)
		return (void)fuse_reply_err(req, ENOMEM);
	for (size_t i = off < 0 ? 0 : (size_t)off; i < l->nr; i++) {
		struct stat st = {.st_ino = l->e[i].ino, .st_mode = l->e[i].type};
		size_t len = fuse_add_direntry(req, buf + pos, size - pos, l->e[i].name, &st,
					       (off_t)(i + 1));
		if (len > size - pos)
			break;
		pos += len;
	}
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void fsops_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	listing_free((struct dir_listing *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* Administrative changes are durable when they return; still, a directory
 * fsync is a sync point and costs little. */
static void fsops_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fuse_reply_err(req, -pool_sync(fs_of(req)->pool));
}

/* ---- the pool as a whole ---- */

static void fsops_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct pool_status *st = malloc(sizeof(*st));
	struct statvfs sv;
	int rc;

	if (!st)
		return (void)fuse_reply_err(req, ENOMEM);
	rc = pool_status(fs_of(req)->pool, st);
	if (rc) {
		free(st);
		return (void)fuse_reply_err(req, -rc);
	}
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = st->block_size;
	sv.f_frsize = st->block_size;
	sv.f_blocks = st->nr_data_blocks;
	sv.f_bfree =
	    st->nr_data_blocks > st->used_blocks ? st->nr_data_blocks - st->used_blocks : 0;
	sv.f_bavail = sv.f_bfree;
	sv.f_files = st->nr_devices;
	sv.f_namemax = POOL_NAME_MAX;
	free(st);
	fuse_reply_statfs(req, &sv);
}

/* The status JSON (as `thinctl status --json` prints it) into a new buffer. */
static int status_json(struct fsops *fs, char **out)
{
	struct pool_status *st = malloc(sizeof(*st));
	char *buf = malloc(STATUS_JSON_MAX);
	int rc = st && buf ? pool_status(fs->pool, st) : -ENOMEM;

	if (!rc)
		rc = pool_status_json(st, buf, STATUS_JSON_MAX);
	free(st);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	return rc;
}

static void reply_xattr_value(fuse_req_t req, const char *val, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, val, len);
}

/* The root's "user.thinfs.status": the live status of the mounted pool. */
static void fsops_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char *json = NULL;
	int len;

	if (ino != FUSE_ROOT_ID || strcmp(name, XATTR_STATUS))
		return (void)fuse_reply_err(req, ENODATA);
	len = status_json(fs_of(req), &json);
	if (len < 0)
		return (void)fuse_reply_err(req, -len);
	reply_xattr_value(req, json, (size_t)len, size);
	free(json);
}

static void fsops_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	static const char names[] = XATTR_STATUS;

	if (ino != FUSE_ROOT_ID)
		return reply_xattr_value(req, "", 0, size);
	reply_xattr_value(req, names, sizeof(names), size);
}

const struct fuse_lowlevel_ops fsops_ll_ops = {
    .init = fsops_init,
    .lookup = fsops_lookup,
    .forget = fsops_forget,
    .forget_multi = fsops_forget_multi,
    .getattr = fsops_getattr,
    .setattr = fsops_setattr,
    .mknod = fsops_mknod,
    .mkdir = fsops_mkdir,
    .unlink = fsops_unlink,
    .rmdir = fsops_rmdir,
    .rename = fsops_rename,
    .link = fsops_link,
    .symlink = fsops_symlink,
    .open = fsops_open,
    .create = fsops_create,
    .read = fsops_read,
    .write = fsops_write,
    .flush = fsops_flush,
    .release = fsops_release,
    .fsync = fsops_fsync,
    .fallocate = fsops_fallocate,
    .lseek = fsops_lseek,
    .copy_file_range = fsops_copy_file_range,
    .opendir = fsops_opendir,
    .readdir = fsops_readdir,
    .releasedir = fsops_releasedir,
    .fsyncdir = fsops_fsyncdir,
    .statfs = fsops_statfs,
    .getxattr = fsops_getxattr,
    .listxattr = fsops_listxattr,
};

struct fsops *fsops_new(struct pool *pool, const struct fsops_config *cfg)
{
	struct fsops *fs = calloc(1, sizeof(*fs));
	struct pool_status *st = malloc(sizeof(*st));

	if (!fs || !st)
		goto out_free;
	if (pool_status(pool, st))
		goto out_free;
	if (pthread_key_create(&fs->rbuf_key, free_rbuf))
		goto out_free;
	fs->pool = pool;
	fs->cfg = *cfg;
	fs->block_size = st->block_size;
	fs->mount_time = time(NULL);
	pthread_mutex_init(&fs->lock, NULL);
	fs->root.ino = FUSE_ROOT_ID;
	fs->root.kind = NODE_ROOT;
	fs->snapdir.ino = SNAPDIR_INO;
	fs->snapdir.kind = NODE_SNAPDIR;
	free(st);
	return fs;
out_free:
	free(st);
	free(fs);
	return NULL;
}

void fsops_free(struct fsops *fs)
{
	struct fsops_node *n, *next;

	if (!fs)
		return;
	/* files the kernel never released (a signal ended the session) */
	while (fs->files) {
		struct fsops_file *f = fs->files;
		fs->files = f->next;
		free(f);
	}
	for (size_t b = 0; b < NR_BUCKETS; b++) {
		for (n = fs->buckets[b]; n; n = next) {
			next = n->hnext;
			if (n->vol)
				pool_volume_close(n->vol);
			free(n);
		}
	}
	/* the calling thread's read buffer; workers freed theirs on exit */
	if (pthread_getspecific(fs->rbuf_key))
		free_rbuf(pthread_getspecific(fs->rbuf_key));
	pthread_key_delete(fs->rbuf_key);
	fsops_refusals_free(fs);
	pthread_mutex_destroy(&fs->lock);
	free(fs);
}
