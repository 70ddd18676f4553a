/* SPDX-License-Identifier: MIT */
/*
 * interop_internal.h - what the interop sources (thin_dump.c, restore*.c,
 * thin_delta.c, send_receive.c) share: a device's view with mapping times,
 * a consistent read lock, CRC32C, and meta_interop.c's SQL.  Not for the
 * front ends.
 */
#ifndef THINFS_INTEROP_INTERNAL_H
#define THINFS_INTEROP_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "thinfs/interop.h"
#include "engine/pool_view.h"

/* One mapping of a device's view. */
#define tmap pool_view_mapping

/* A device's view: its mappings sorted by vblock. */
struct tview {
	struct tmap *m;
	size_t n;
};

/* A device as interop sees it: its committed row. */
struct idev {
	struct meta_device_row row;
};

/* interop_util.c */
/* Resolve the committed view of device d, with times (inside interop_lock). */
int interop_view(struct pool *pool, const struct idev *d, struct tview *v);
void tview_free(struct tview *v);
/* The mapping of vblock in v, or NULL (binary search). */
const struct tmap *tview_find(const struct tview *v, uint64_t vblock);
/* A consistent view of the metadata (pool_view_begin/end). */
void interop_lock(struct pool *pool);
void interop_unlock(struct pool *pool);
/* A live (not deleted) device by name, inside interop_lock: 0 or -ENOENT. */
int interop_find_device(struct pool *pool, const char *name, struct idev *out);
/* Escape s for the inside of an XML comment's quoted value (see thin_dump.c). */
void interop_put_escaped(FILE *out, const char *s);
/* Flush a written stream: 0, or why it failed (-EPIPE when the reader went
 * away, so a front end can end quietly; -EIO when the reason is lost). */
int interop_stream_done(FILE *out);

/* thin_delta.c: how two views differ, vblock by vblock */
enum delta_kind { D_SAME, D_DIFFERENT, D_LEFT_ONLY, D_RIGHT_ONLY };
typedef void (*delta_cb)(void *arg, enum delta_kind kind, uint64_t begin, uint64_t len);
/* Call cb for every maximal run of vblocks of one kind (vblocks neither view
 * maps are skipped), in vblock order. */
void delta_walk(const struct tview *a, const struct tview *b, delta_cb cb, void *arg);

/* interop_util.c: CRC32C (Castagnoli); start with crc = 0.  With SSE4.2
 * (detected at run time) by the crc32 instruction, else by tables
 * (crc32c_sw, kept for the tests to compare against). */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

/*
 * xfer_queue.c - the producer (the caller) hands XQ_ITEMS buffers in turn to
 * one consumer thread, which runs consume() on each in order; after its
 * first error it consumes nothing more and xq_get() returns NULL.
 * xq_finish() waits for the items pushed, joins, and returns that error
 * (with the vblock of the item it met).  Used by send and receive to overlap
 * the data file's I/O with the stream's.
 */
#define XQ_ITEMS 3
struct xq_item {
	unsigned char *buf; /* 4 KiB aligned, buf_bytes long */
	char type;
	uint64_t vblock, count;
	size_t len;
};
struct xq {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int (*consume)(void *arg, struct xq_item *it);
	void *arg;
	struct xq_item items[XQ_ITEMS];
	int head, count, err;
	uint64_t err_vblock;
	bool closing, running;
};
int xq_start(struct xq *q, size_t buf_bytes, int (*consume)(void *arg, struct xq_item *it),
	     void *arg);
struct xq_item *xq_get(struct xq *q);
void xq_push(struct xq *q);
int xq_finish(struct xq *q, uint64_t *err_vblock);

/*
 * meta_interop.c - a second SQLite connection to a pool's meta.db for what
 * meta.c's statements cannot say: device ids chosen by restore, and the table
 * of received identities (created on first use):
 *   interop_received(dev_id PRIMARY KEY, dev_creation_time, dev_ctime,
 *                    src_uuid, src_dev_id, src_creation_time, src_ctime, received)
 * A row describes the local device dev_id only while that device's
 * (creation_time, ctime) still match: ids are reused after deletes.
 * Use it only while the pool's own connection has no write transaction open.
 */
struct meta_ix;

struct ix_identity {
	char uuid[40];
	uint64_t dev_id;
	uint64_t creation_time;
	int64_t ctime;
	uint64_t generation; /* meta.h: moves whenever the content can change */
};

struct meta_ix_recv {
	uint64_t dev_id;
	uint64_t dev_creation_time;
	int64_t dev_ctime;
	struct ix_identity src;
	int64_t received;
};

int meta_ix_open(const char *path, bool rdonly, struct meta_ix **out);
void meta_ix_close(struct meta_ix *x);
/* Give device from[i] the id to[i], for all i, in one transaction. */
int meta_ix_recv_put(struct meta_ix *x, const struct meta_ix_recv *r);
/* -ENOENT when there is no row (or no table yet). */
int meta_ix_recv_get(struct meta_ix *x, uint64_t dev_id, struct meta_ix_recv *r);
int meta_ix_recv_del(struct meta_ix *x, uint64_t dev_id);
/* The generation device dev_id has in meta.db now (outside any view the pool
 * holds): -ENOENT when it is gone, -EINVAL on a format-1 pool. */
int meta_ix_device_generation(struct meta_ix *x, uint64_t dev_id, uint64_t *generation);

#endif
