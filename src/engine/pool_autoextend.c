/* SPDX-License-Identifier: MIT */
/*
 * pool_autoextend.c - LVM's thin_pool_autoextend for a thinfs pool, and the
 * space worker that runs it: low water or a full pool asks
 * (pool_space_events.c sets autoextend_wanted), the worker grows the data
 * file by autoextend_percent of its size, at most to autoextend_max, as
 * often as it takes to get under low water again (LVM's loop), and hands
 * out the events for the daemon to run the event command on.
 *
 * A grow is refused, as autoextend_failed, when the data is at
 * autoextend_max already (said once per crossing of low water), when the
 * host file system holding the data file has less free than the growth
 * (the pool would only fail later, at a write), or when pool_grow fails.
 *
 * Locks: the pool lock for pool->sev and pool->props; dropped around
 * pool_grow, which takes the admin lock itself.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pool_internal.h"
#include "util.h"

#define AUTOEXTEND_ROUNDS 16

/* One grow of the data file by autoextend_percent, at most to
 * autoextend_max: 1 grew, 0 nothing to do (or at the maximum), < 0 failed.
 * Pool lock held on entry and exit; dropped around the grow. */
static int autoextend_once(struct pool *pool)
{
	uint64_t bs = pool->block_size, cur = pool->prow.nr_data_blocks * bs;
	uint64_t max = pool->props.autoextend_max / bs * bs, want, free_bytes;
	char msg[POOL_MSG_MAX], a[64], b[64];
	int rc;

	if (!pool_autoextend_configured(pool))
		return 0;
	if (cur >= max) {
		if (!pool->sev.at_max_reported)
			pool_event(pool, POOL_EVENT_AUTOEXTEND_FAILED, POOL_LOG_ERR,
				   "autoextend: the data is %s, already at autoextend_max",
				   pool_human_size(cur, a, sizeof(a)));
		pool->sev.at_max_reported = true;
		return 0;
	}
	want = pool->prow.nr_data_blocks * pool->props.autoextend_percent / 100 * bs;
	if (want < bs)
		want = bs;
	if (want > max - cur)
		want = max - cur;
	rc = dio_host_free(pool->dio, &free_bytes);
	if (!rc && free_bytes < want) {
		pool_event(pool, POOL_EVENT_AUTOEXTEND_FAILED, POOL_LOG_ERR,
			   "autoextend: the host file system has %s free, the data file would "
			   "grow by %s",
			   pool_human_size(free_bytes, a, sizeof(a)),
			   pool_human_size(want, b, sizeof(b)));
		return -ENOSPC;
	}
	pthread_mutex_unlock(&pool->lock);
	rc = pool_grow(pool, cur + want, msg, sizeof(msg));
	pthread_mutex_lock(&pool->lock);
	if (rc) {
		pool_event(pool, POOL_EVENT_AUTOEXTEND_FAILED, POOL_LOG_ERR, "autoextend: %s", msg);
		return rc;
	}
	pool_event(pool, POOL_EVENT_AUTOEXTEND, POOL_LOG_NOTICE,
		   "autoextend: grew the data from %s to %s (autoextend_percent %u, max %s)",
		   pool_human_size(cur, a, sizeof(a)), pool_human_size(cur + want, b, sizeof(b)),
		   pool->props.autoextend_percent,
		   pool_human_size(pool->props.autoextend_max, msg, sizeof(msg)));
	return 1;
}

int pool_autoextend(struct pool *pool)
{
	int rc = 0, grew = 0;

	pthread_mutex_lock(&pool->lock);
	pool->sev.autoextend_wanted = false;
	/* as LVM does: grow until under low water again (or full no more) */
	for (int i = 0; i < AUTOEXTEND_ROUNDS; i++) {
		rc = autoextend_once(pool);
		if (rc <= 0)
			break;
		grew = 1;
		if (!pool_over_low_water(pool) && space_nr_free(&pool->space))
			break;
	}
	pthread_mutex_unlock(&pool->lock);
	return rc < 0 ? rc : grew;
}

int pool_space_worker(struct pool *pool, struct pool_event *ev, int timeout_ms)
{
	struct space_events *sev = &pool->sev;
	int64_t until = pool_now_ms() + timeout_ms;
	int rc = 0;

	pthread_mutex_lock(&pool->lock);
	while (!sev->stop && !sev->autoextend_wanted && sev->nr_taken == sev->nr_recorded &&
	       pool_now_ms() < until)
		pool_wait_until(pool, &sev->work_cv, until);
	if (sev->autoextend_wanted && !sev->stop && pool_mode_writable(pool)) {
		pthread_mutex_unlock(&pool->lock);
		pool_autoextend(pool);
		pthread_mutex_lock(&pool->lock);
	}
	if (sev->stop) {
		rc = -ESHUTDOWN;
	} else if (sev->nr_taken < sev->nr_recorded) {
		*ev = sev->ring[sev->nr_taken++ % SPACE_EVENT_RING];
		rc = 1;
	}
	pthread_mutex_unlock(&pool->lock);
	return rc;
}
