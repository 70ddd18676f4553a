/* SPDX-License-Identifier: MIT */
/*
 * xfer_queue.c - a producer and one consumer thread handing over a few big
 * buffers in turn, so a send reads the data file while the last chunk is
 * checksummed and written, and a receive reads and verifies the stream while
 * the last record goes to the data file (send_receive.c).
 *
 * Invariants: items are consumed in the order they were pushed, by the one
 * consumer thread; after the consumer's first error no item is consumed any
 * more and xq_get() returns NULL, so the producer stops; xq_finish() returns
 * only once the consumer is idle and joined.
 *
 * Locking: `lock` protects every field but the items' contents; an item
 * belongs to the producer between xq_get() and xq_push(), then to the
 * consumer until it takes the next.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "interop_internal.h"

static void *xq_loop(void *arg)
{
	struct xq *q = arg;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (!q->count && !q->closing)
			pthread_cond_wait(&q->cv, &q->lock);
		if (!q->count)
			break;
		struct xq_item *it = &q->items[q->head];
		pthread_mutex_unlock(&q->lock);
		int rc = q->err ? 0 : q->consume(q->arg, it);
		pthread_mutex_lock(&q->lock);
		if (rc && !q->err) {
			q->err = rc;
			q->err_vblock = it->vblock;
		}
		q->head = (q->head + 1) % XQ_ITEMS;
		q->count--;
		pthread_cond_broadcast(&q->cv);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

int xq_start(struct xq *q, size_t buf_bytes, int (*consume)(void *arg, struct xq_item *it),
	     void *arg)
{
	memset(q, 0, sizeof(*q));
	q->consume = consume;
	q->arg = arg;
	for (int i = 0; i < XQ_ITEMS; i++)
		if (posix_memalign((void **)&q->items[i].buf, 4096, buf_bytes ? buf_bytes : 1))
			goto nomem;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cv, NULL);
	if (pthread_create(&q->thread, NULL, xq_loop, q)) {
		pthread_mutex_destroy(&q->lock);
		pthread_cond_destroy(&q->cv);
		goto nomem;
	}
	q->running = true;
	return 0;
nomem:
	for (int i = 0; i < XQ_ITEMS; i++)
		free(q->items[i].buf);
	return -ENOMEM;
}

struct xq_item *xq_get(struct xq *q)
{
	struct xq_item *it = NULL;

	pthread_mutex_lock(&q->lock);
	while (q->count == XQ_ITEMS && !q->err)
		pthread_cond_wait(&q->cv, &q->lock);
	if (!q->err)
		it = &q->items[(q->head + q->count) % XQ_ITEMS];
	pthread_mutex_unlock(&q->lock);
	return it;
}

void xq_push(struct xq *q)
{
	pthread_mutex_lock(&q->lock);
	q->count++;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->lock);
}

int xq_finish(struct xq *q, uint64_t *err_vblock)
{
	int rc;

	if (!q->running)
		return 0;
	pthread_mutex_lock(&q->lock);
	q->closing = true;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->lock);
	pthread_join(q->thread, NULL);
	rc = q->err;
	if (err_vblock)
		*err_vblock = q->err_vblock;
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->cv);
	for (int i = 0; i < XQ_ITEMS; i++)
		free(q->items[i].buf);
	q->running = false;
	return rc;
}
