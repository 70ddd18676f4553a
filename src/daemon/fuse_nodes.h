/* SPDX-License-Identifier: MIT */
/*
 * fuse_nodes.h - the daemon's per-mount state and node table, shared by
 * fuse_nodes.c (which node is which device, pinned volumes, attributes and
 * entry replies) and fuse_ops.c (the request handlers).  Private to the
 * daemon.  Locking: fs->lock guards the table and every node field; it is
 * never held across a pool call.
 */
#ifndef THINFS_FUSE_NODES_H
#define THINFS_FUSE_NODES_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "fuse_ops.h"

#define SNAPDIR_NAME ".snapshots"
#define SNAPDIR_INO 2
#define DEV_INO_BASE 16ull
#define SET_INO_BASE (1ull << 48)
#define NR_BUCKETS 1024
#define DEVNAME_MAX ((size_t)2 * (POOL_NAME_MAX + 1)) /* "SET/NAME" */
#define XATTR_STATUS "user.thinfs.status"
#define STATUS_JSON_MAX 8192
#define MAX_BLKSIZE ((uint64_t)1 << 20) /* st_blksize: preferred I/O size, capped */

enum node_kind { NODE_ROOT, NODE_SNAPDIR, NODE_SET, NODE_DEV };

struct fsops_node {
	fuse_ino_t ino;
	enum node_kind kind;
	uint64_t id;		      /* NODE_DEV: the device's pool id */
	char set[POOL_NAME_MAX + 1];  /* NODE_DEV: its set, "" at the top */
	char name[POOL_NAME_MAX + 1]; /* device name, or the set's name */
	uint64_t nlookup;	      /* references the kernel holds */
	unsigned nopen;		      /* opens and in-flight users of vol */
	struct volume *vol;	      /* while nopen > 0 (may lag behind it) */
	bool dead;		      /* deleted: the name leads elsewhere */
	struct fsops_node *hnext;     /* hash chain */
	struct fsops_node *snext;     /* NODE_SET: the live sets */
};

/* A refused request already logged (fuse_refusals.c). */
struct fsops_refusal {
	char dev[DEVNAME_MAX];
	int err;
};

struct fsops {
	struct pool *pool;
	struct fsops_config cfg;
	pthread_mutex_t lock;
	struct fsops_node *buckets[NR_BUCKETS];
	struct fsops_node root, snapdir;
	struct fsops_node *sets;  /* live set nodes */
	struct fsops_file *files; /* open files, freed at the end if never released */
	uint64_t next_set_ino;
	uint64_t block_size;
	time_t mount_time;
	pthread_key_t rbuf_key;		/* per-thread read buffer */
	struct fsops_refusal *refusals; /* [lock] logged once each */
	size_t nr_refusals, cap_refusals;
	bool refusals_full;
};

/* An open device file: fi->fh. */
struct fsops_file {
	struct fsops_node *node;
	struct volume *vol;
	int flags; /* open(2) flags */
	struct fsops_file *prev, *next;
};

/* A directory listing taken at opendir, so offsets stay stable: fi->fh. */
struct dir_entry {
	fuse_ino_t ino;
	mode_t type;
	char name[POOL_NAME_MAX + 1];
};

struct dir_listing {
	size_t nr, cap;
	struct dir_entry *e;
};

struct rbuf {
	void *p;
	size_t len;
};

static inline struct fsops *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static inline struct fsops_file *file_of(struct fuse_file_info *fi)
{
	return (struct fsops_file *)(uintptr_t)fi->fh;
}

struct fsops_node *node_find(struct fsops *fs, fuse_ino_t ino);
void set_unlist(struct fsops *fs, struct fsops_node *n);
void node_maybe_free(struct fsops *fs, struct fsops_node *n);
struct fsops_node *node_dev(struct fsops *fs, const struct pool_device_info *info);
struct fsops_node *node_set(struct fsops *fs, const char *name);
void devname(const struct fsops_node *n, char *buf);
int child_devname(struct fsops *fs, const struct fsops_node *dir, const char *name, char *buf);
struct volume *vol_pin(struct fsops *fs, struct fsops_node *n);
void vol_unpin(struct fsops *fs, struct fsops_node *n, bool release);
int node_dev_info(struct fsops *fs, struct fsops_node *n, struct pool_device_info *info);
int vol_get(struct fsops *fs, struct fsops_node *n, struct volume **out);
void dev_stat(const struct fsops *fs, const struct pool_device_info *info, struct stat *st);
double dev_attr_timeout(const struct fsops *fs, const struct pool_device_info *info);
void dir_stat(const struct fsops *fs, fuse_ino_t ino, mode_t perm, nlink_t nlink, time_t t,
	      struct stat *st);
int set_lookup(struct fsops *fs, const char *name, time_t *ctime, size_t *nr_sets);
int node_stat(struct fsops *fs, struct fsops_node *n, struct stat *st, double *timeout);
struct fsops_node *node_get(struct fsops *fs, fuse_ino_t ino);
void reply_entry(fuse_req_t req, struct fsops *fs, struct fsops_node *n, const struct stat *st,
		 double attr_timeout);
void reply_negative(fuse_req_t req, struct fsops *fs);
void reply_dev_entry(fuse_req_t req, struct fsops *fs, const struct pool_device_info *info);
void reply_set_entry(fuse_req_t req, struct fsops *fs, const char *name, time_t ctime);
/* fuse_refusals.c: log a refused request (what: "write", "resize", ...) of
 * device dev once per device and reason; ordinary errors (ENOENT, EEXIST,
 * EINVAL, ...) are not logged.  err: an errno, either sign; msg: the
 * library's reason, or NULL.  Takes fs->lock. */
void fsops_refused(struct fsops *fs, const char *what, const char *dev, int err, const char *msg);
void fsops_refusals_free(struct fsops *fs);

#endif
