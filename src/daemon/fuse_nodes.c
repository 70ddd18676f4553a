/* SPDX-License-Identifier: MIT */
/*
 * fuse_nodes.c - the node table of a mounted pool: which device or
 * directory each kernel node id is (by device id, so a renamed node still
 * finds its device), the struct volume shared by a node's openers, stat
 * attributes and entry replies.  The inode numbering and caching rules are
 * described in fuse_ops.c.  fs->lock is held by callers of the node_*
 * functions that say so, never across a pool call.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fuse_nodes.h"

/* ---- the node table (fs->lock held) ---- */

static struct fsops_node **bucket(struct fsops *fs, fuse_ino_t ino)
{
	return &fs->buckets[ino % NR_BUCKETS];
}

struct fsops_node *node_find(struct fsops *fs, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return &fs->root;
	if (ino == SNAPDIR_INO)
		return &fs->snapdir;
	for (struct fsops_node *n = *bucket(fs, ino); n; n = n->hnext)
		if (n->ino == ino)
			return n;
	return NULL;
}

static struct fsops_node *node_insert(struct fsops *fs, fuse_ino_t ino, enum node_kind kind)
{
	struct fsops_node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->ino = ino;
	n->kind = kind;
	n->hnext = *bucket(fs, ino);
	*bucket(fs, ino) = n;
	return n;
}

static void node_unhash(struct fsops *fs, struct fsops_node *n)
{
	for (struct fsops_node **pp = bucket(fs, n->ino); *pp; pp = &(*pp)->hnext) {
		if (*pp == n) {
			*pp = n->hnext;
			return;
		}
	}
}

void set_unlist(struct fsops *fs, struct fsops_node *n)
{
	for (struct fsops_node **pp = &fs->sets; *pp; pp = &(*pp)->snext) {
		if (*pp == n) {
			*pp = n->snext;
			return;
		}
	}
}

/* Free a node nobody refers to.  Device nodes come back with the same number
 * on the next lookup; live set nodes stay, so a set keeps its number. */
void node_maybe_free(struct fsops *fs, struct fsops_node *n)
{
	if (n->kind == NODE_ROOT || n->kind == NODE_SNAPDIR || n->nlookup || n->nopen)
		return;
	if (n->kind == NODE_SET && !n->dead)
		return;
	node_unhash(fs, n);
	free(n);
}

/* The node of a device the pool just described, its name brought up to date. */
struct fsops_node *node_dev(struct fsops *fs, const struct pool_device_info *info)
{
	fuse_ino_t ino = DEV_INO_BASE + info->id;
	struct fsops_node *n = node_find(fs, ino);

	if (!n && !(n = node_insert(fs, ino, NODE_DEV)))
		return NULL;
	n->id = info->id;
	n->dead = false; /* ids may be reused once a deleted device is gone */
	snprintf(n->set, sizeof(n->set), "%s", info->set);
	snprintf(n->name, sizeof(n->name), "%s", info->name);
	return n;
}

struct fsops_node *node_set(struct fsops *fs, const char *name)
{
	struct fsops_node *n;

	for (n = fs->sets; n; n = n->snext)
		if (!strcmp(n->name, name))
			return n;
	n = node_insert(fs, SET_INO_BASE + fs->next_set_ino, NODE_SET);
	if (!n)
		return NULL;
	fs->next_set_ino++;
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->snext = fs->sets;
	fs->sets = n;
	return n;
}

void devname(const struct fsops_node *n, char *buf)
{
	if (n->set[0])
		snprintf(buf, DEVNAME_MAX, "%s/%s", n->set, n->name);
	else
		snprintf(buf, DEVNAME_MAX, "%s", n->name);
}

/* A device's full name from a directory node and an entry name: -ENOENT
 * for a name no device can have. */
int child_devname(struct fsops *fs, const struct fsops_node *dir, const char *name, char *buf)
{
	if (strlen(name) > POOL_NAME_MAX)
		return -ENAMETOOLONG;
	if (pool_name_valid(name, NULL, 0))
		return -ENOENT;
	pthread_mutex_lock(&fs->lock); /* a set's name changes with mv */
	if (dir->kind == NODE_SET)
		snprintf(buf, DEVNAME_MAX, "%s/%s", dir->name, name);
	else
		snprintf(buf, DEVNAME_MAX, "%s", name);
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

/* ---- node <-> device ---- */

/* Find device `id` by scanning the pool, for a node whose name went stale. */
static int find_by_id(struct fsops *fs, uint64_t id, struct pool_device_info *info)
{
	struct pool_device_info *devs = NULL;
	size_t nr = 0;
	int rc = pool_list(fs->pool, false, &devs, &nr);

	if (rc)
		return rc;
	rc = -ENOENT;
	for (size_t i = 0; i < nr; i++) {
		if (devs[i].id == id) {
			*info = devs[i];
			rc = 0;
			break;
		}
	}
	free(devs);
	return rc;
}

/* Take a reference on a node's open volume, if it has one (NULL: nobody has
 * the device open).  Drop it with vol_unpin(fs, n, false). */
struct volume *vol_pin(struct fsops *fs, struct fsops_node *n)
{
	struct volume *vol;

	pthread_mutex_lock(&fs->lock);
	vol = n->vol;
	if (vol)
		n->nopen++;
	pthread_mutex_unlock(&fs->lock);
	return vol;
}

/* Drop a reference on a node's volume; the last one closes it.  Only a
 * release may free the node: a request on a node holds a kernel reference
 * (nlookup) for its duration, so the others never need to. */
void vol_unpin(struct fsops *fs, struct fsops_node *n, bool release)
{
	struct volume *vol = NULL;

	pthread_mutex_lock(&fs->lock);
	if (--n->nopen == 0) {
		vol = n->vol;
		n->vol = NULL;
	}
	if (release)
		node_maybe_free(fs, n);
	pthread_mutex_unlock(&fs->lock);
	if (vol)
		pool_volume_close(vol);
}

/* The live description of a device node: from its open volume if any (also
 * after an unlink), else by name, else by id. */
int node_dev_info(struct fsops *fs, struct fsops_node *n, struct pool_device_info *info)
{
	char name[DEVNAME_MAX];
	struct volume *vol = vol_pin(fs, n);
	uint64_t id;
	bool dead;
	int rc;

	if (vol) {
		pool_volume_info(vol, info);
		vol_unpin(fs, n, false);
		return 0;
	}
	pthread_mutex_lock(&fs->lock);
	devname(n, name);
	id = n->id;
	dead = n->dead;
	pthread_mutex_unlock(&fs->lock);
	if (dead)
		return -ENOENT;
	rc = pool_device_info(fs->pool, name, info);
	if (!rc && info->id == id)
		return 0;
	rc = find_by_id(fs, id, info);
	pthread_mutex_lock(&fs->lock);
	if (!rc)
		node_dev(fs, info);
	else if (rc == -ENOENT)
		n->dead = true;
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* Open a node's volume (shared by all its openers) and take a reference. */
int vol_get(struct fsops *fs, struct fsops_node *n, struct volume **out)
{
	struct pool_device_info info;
	struct volume *vol, *extra = NULL;
	char name[DEVNAME_MAX];
	int rc;

	pthread_mutex_lock(&fs->lock);
	if (n->dead) {
		pthread_mutex_unlock(&fs->lock);
		return -ENOENT;
	}
	n->nopen++;
	vol = n->vol;
	devname(n, name);
	pthread_mutex_unlock(&fs->lock);
	if (vol) {
		*out = vol;
		return 0;
	}
	rc = pool_volume_open(fs->pool, name, &vol);
	if (!rc) {
		pool_volume_info(vol, &info);
		if (info.id != n->id) { /* renamed under us: go by id */
			pool_volume_close(vol);
			rc = find_by_id(fs, n->id, &info);
			if (!rc) {
				snprintf(name, sizeof(name), "%s%s%s", info.set,
					 info.set[0] ? "/" : "", info.name);
				rc = pool_volume_open(fs->pool, name, &vol);
			}
		}
	}
	pthread_mutex_lock(&fs->lock);
	if (rc) {
		n->nopen--;
		node_maybe_free(fs, n);
	} else if (n->vol) {
		extra = vol;
		vol = n->vol;
	} else {
		n->vol = vol;
	}
	pthread_mutex_unlock(&fs->lock);
	if (extra)
		pool_volume_close(extra);
	if (!rc)
		*out = vol;
	return rc;
}

/* ---- attributes ---- */

void dev_stat(const struct fsops *fs, const struct pool_device_info *info, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = DEV_INO_BASE + info->id;
	st->st_mode = S_IFREG | (info->mode & 07777);
	if (info->set[0] || info->read_only)
		st->st_mode &= ~(mode_t)0222;
	st->st_nlink = 1;
	st->st_uid = info->uid;
	st->st_gid = info->gid;
	st->st_size = (off_t)info->size;
	st->st_blocks = (blkcnt_t)(info->mapped_blocks * (fs->block_size / 512));
	st->st_blksize = (blksize_t)(fs->block_size < MAX_BLKSIZE ? fs->block_size : MAX_BLKSIZE);
	st->st_atim.tv_sec = info->mtime_sec;
	st->st_mtim.tv_sec = info->mtime_sec;
	st->st_ctim.tv_sec = info->ctime_sec;
}

double dev_attr_timeout(const struct fsops *fs, const struct pool_device_info *info)
{
	return info->set[0] || info->read_only ? fs->cfg.dir_attr_timeout : 0.0;
}

void dir_stat(const struct fsops *fs, fuse_ino_t ino, mode_t perm, nlink_t nlink, time_t t,
	      struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFDIR | perm;
	st->st_nlink = nlink;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_blksize = 4096;
	st->st_atim.tv_sec = st->st_mtim.tv_sec = st->st_ctim.tv_sec = t;
}

/* Find set `name`: 0 and its creation time, or -ENOENT.  Counts sets too. */
int set_lookup(struct fsops *fs, const char *name, time_t *ctime, size_t *nr_sets)
{
	struct pool_set_info *sets = NULL;
	size_t nr = 0, live = 0;
	int rc = pool_list_sets(fs->pool, &sets, &nr);

	if (rc)
		return rc;
	rc = -ENOENT;
	for (size_t i = 0; i < nr; i++) {
		if (sets[i].name[0] == '.')
			continue; /* the pool's own hidden sets */
		live++;
		if (name && !strcmp(sets[i].name, name)) {
			if (ctime)
				*ctime = sets[i].ctime_sec;
			rc = 0;
		}
	}
	free(sets);
	if (nr_sets)
		*nr_sets = live;
	return name ? rc : 0;
}

/* Attributes of any node; *timeout says how long the kernel may keep them. */
int node_stat(struct fsops *fs, struct fsops_node *n, struct stat *st, double *timeout)
{
	struct pool_device_info info;
	char name[POOL_NAME_MAX + 1];
	size_t nr_sets = 0;
	time_t ctime = 0;
	int rc;

	*timeout = fs->cfg.dir_attr_timeout;
	switch (n->kind) {
	case NODE_ROOT:
		dir_stat(fs, FUSE_ROOT_ID, 0755, 3, fs->mount_time, st);
		return 0;
	case NODE_SNAPDIR:
		rc = set_lookup(fs, NULL, NULL, &nr_sets);
		if (rc)
			return rc;
		dir_stat(fs, SNAPDIR_INO, 0755, 2 + nr_sets, fs->mount_time, st);
		*timeout = 0.0; /* nlink follows the sets */
		return 0;
	case NODE_SET:
		pthread_mutex_lock(&fs->lock);
		snprintf(name, sizeof(name), "%s", n->name);
		rc = n->dead ? -ENOENT : 0;
		pthread_mutex_unlock(&fs->lock);
		if (!rc)
			rc = set_lookup(fs, name, &ctime, NULL);
		if (!rc)
			dir_stat(fs, n->ino, 0555, 2, ctime, st);
		return rc;
	case NODE_DEV:
		rc = node_dev_info(fs, n, &info);
		if (rc)
			return rc;
		dev_stat(fs, &info, st);
		*timeout = dev_attr_timeout(fs, &info);
		return 0;
	}
	return -EIO;
}

/* Look a node up by number; *out is NULL when the kernel names a node we do
 * not know (it never should). */
struct fsops_node *node_get(struct fsops *fs, fuse_ino_t ino)
{
	struct fsops_node *n;

	pthread_mutex_lock(&fs->lock);
	n = node_find(fs, ino);
	pthread_mutex_unlock(&fs->lock);
	return n;
}

/* Reply with an entry for node n (nlookup already taken). */
void reply_entry(fuse_req_t req, struct fsops *fs, struct fsops_node *n, const struct stat *st,
		 double attr_timeout)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = n->ino;
	e.generation = 1;
	e.attr = *st;
	e.attr_timeout = attr_timeout;
	e.entry_timeout = fs->cfg.entry_timeout;
	if (fuse_reply_entry(req, &e) == -ENOENT) { /* interrupted: no FORGET will come */
		pthread_mutex_lock(&fs->lock);
		n->nlookup--;
		node_maybe_free(fs, n);
		pthread_mutex_unlock(&fs->lock);
	}
}

void reply_negative(fuse_req_t req, struct fsops *fs)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.entry_timeout = fs->cfg.entry_timeout;
	fuse_reply_entry(req, &e);
}

/* Take a lookup reference on the node of device `info` and reply with it. */
void reply_dev_entry(fuse_req_t req, struct fsops *fs, const struct pool_device_info *info)
{
	struct fsops_node *n;
	struct stat st;

	pthread_mutex_lock(&fs->lock);
	n = node_dev(fs, info);
	if (n)
		n->nlookup++;
	pthread_mutex_unlock(&fs->lock);
	if (!n)
		return (void)fuse_reply_err(req, ENOMEM);
	dev_stat(fs, info, &st);
	reply_entry(req, fs, n, &st, dev_attr_timeout(fs, info));
}

void reply_set_entry(fuse_req_t req, struct fsops *fs, const char *name, time_t ctime)
{
	struct fsops_node *n;
	struct stat st;

	pthread_mutex_lock(&fs->lock);
	n = node_set(fs, name);
	if (n)
		n->nlookup++;
	pthread_mutex_unlock(&fs->lock);
	if (!n)
		return (void)fuse_reply_err(req, ENOMEM);
	dir_stat(fs, n->ino, 0555, 2, ctime, &st);
	reply_entry(req, fs, n, &st, fs->cfg.dir_attr_timeout);
}

/* Drop what the kernel may cache of one device name ("NAME" or "SET/NAME"):
 * the entry in its directory and, if we know the node, its attributes and
 * pages.  Called without fs->lock held across the notifications. */
static void forget_devname(struct fsops *fs, struct fuse_session *se, const char *name)
{
	const char *slash = strchr(name, '/');
	fuse_ino_t parent = FUSE_ROOT_ID, ino = 0;
	const char *leaf = slash ? slash + 1 : name;

	pthread_mutex_lock(&fs->lock);
	if (slash) {
		parent = 0;
		for (struct fsops_node *n = fs->sets; n; n = n->snext)
			if (strlen(n->name) == (size_t)(slash - name) &&
			    !strncmp(n->name, name, (size_t)(slash - name)))
				parent = n->ino;
	}
	for (size_t b = 0; b < NR_BUCKETS && !ino; b++)
		for (struct fsops_node *n = fs->buckets[b]; n && !ino; n = n->hnext) {
			char full[DEVNAME_MAX];
			if (n->kind != NODE_DEV || n->dead)
				continue;
			devname(n, full);
			if (!strcmp(full, name))
				ino = n->ino;
		}
	pthread_mutex_unlock(&fs->lock);
	if (parent)
		fuse_lowlevel_notify_inval_entry(se, parent, leaf, strlen(leaf));
	if (ino)
		fuse_lowlevel_notify_inval_inode(se, ino, 0, 0);
}

void fsops_forget_names(struct fsops *fs, struct fuse_session *se, const char *a, const char *b,
			bool sets)
{
	const char *names[2] = {a, b};

	for (int i = 0; i < 2; i++) {
		if (!names[i] || !names[i][0])
			continue;
		if (sets)
			fuse_lowlevel_notify_inval_entry(se, SNAPDIR_INO, names[i],
							 strlen(names[i]));
		else
			forget_devname(fs, se, names[i]);
	}
	/* a listing's link counts and times */
	fuse_lowlevel_notify_inval_inode(se, FUSE_ROOT_ID, -1, 0);
	fuse_lowlevel_notify_inval_inode(se, SNAPDIR_INO, -1, 0);
}
