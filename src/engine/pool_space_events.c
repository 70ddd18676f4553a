/* SPDX-License-Identifier: MIT */
/*
 * pool_space_events.c - what happens as a pool fills: dm-thin's low-water
 * event and full-pool policy, LVM's autoextend.
 *
 * Events.  low_water (used blocks reach the low_water percentage: once per
 * upward crossing, again only after dropping under it), full (a write needed
 * a block and none was free: once per episode), space_back (the episode's
 * end, pool_mode.c), autoextend and autoextend_failed.  Each is logged when
 * it happens, counted (saved in the props table by the next commit), and
 * queued for the space worker (pool_autoextend.c), which the daemon runs on a
 * thread of its own and which runs the event command.  Low water and full
 * also ask the worker for an autoextend when autoextend_percent and
 * autoextend_max are set.
 *
 * Queued writes (when_full=queue).  A data write that found no free block
 * and no block awaiting release waits here, without the io lock (so a grow,
 * a delete, a commit can run), until free or freed blocks exist again, the
 * queue_timeout passes (then ENOSPC, as dm-thin's no_space_timeout), the
 * pool stops being writable, or the worker stops.  Reads, and writes to
 * blocks a device owns, never come here.
 *
 * Invariant: a queued write re-checks the free count under the pool lock before
 *      every wait, so a wake-up cannot be lost between its failed
 *      allocation and its wait.
 * Locks: the pool lock for every field of pool->sev; the condition
 * variables wait on it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pool_internal.h"
#include "util.h"

#define QUEUE_POLL_MS 1000 /* a queued write looks again at least this often */

static const char *const event_names[POOL_EVENT_NR] = {
    [POOL_EVENT_LOW_WATER] = "low_water",   [POOL_EVENT_FULL] = "full",
    [POOL_EVENT_AUTOEXTEND] = "autoextend", [POOL_EVENT_AUTOEXTEND_FAILED] = "autoextend_failed",
    [POOL_EVENT_SPACE_BACK] = "space_back",
};

const char *pool_event_name(int kind)
{
	return kind >= 0 && kind < POOL_EVENT_NR ? event_names[kind] : "unknown";
}

int64_t pool_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Wait on cv (pool lock held) until the monotonic time `until_ms`. */
void pool_wait_until(struct pool *pool, pthread_cond_t *cv, int64_t until_ms)
{
	struct timespec t = {.tv_sec = until_ms / 1000, .tv_nsec = (until_ms % 1000) * 1000000};

	pthread_cond_timedwait(cv, &pool->lock, &t);
}

void pool_space_events_init(struct pool *pool)
{
	pthread_condattr_t ca;

	memset(&pool->sev, 0, sizeof(pool->sev));
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pool->sev.space_cv, &ca);
	pthread_cond_init(&pool->sev.work_cv, &ca);
	pthread_condattr_destroy(&ca);
	pool->sev.saved = true;
}

void pool_space_events_destroy(struct pool *pool)
{
	pthread_cond_destroy(&pool->sev.space_cv);
	pthread_cond_destroy(&pool->sev.work_cv);
}

bool pool_autoextend_configured(const struct pool *pool)
{
	return pool->props.autoextend_percent && pool->props.autoextend_max;
}

void pool_event(struct pool *pool, int kind, int level, const char *fmt, ...)
{
	struct space_events *sev = &pool->sev;
	struct pool_event ev = {.kind = kind, .time = util_now()};
	va_list ap;

	va_start(ap, fmt);
	/* clang 14's valist checker misreads this (a false positive) */
	// NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
	vsnprintf(ev.detail, sizeof(ev.detail), fmt, ap);
	va_end(ap);
	ev.used_blocks = pool->space.nr_busy;
	ev.nr_data_blocks = pool->prow.nr_data_blocks;
	ev.block_size = pool->block_size;
	pool_log(pool, level, "%s", ev.detail);
	if (sev->nr_recorded - sev->nr_taken >= SPACE_EVENT_RING)
		sev->nr_taken++; /* nobody takes them: the oldest goes */
	sev->ring[sev->nr_recorded++ % SPACE_EVENT_RING] = ev;
	sev->last[kind].count++;
	sev->last[kind].last = ev;
	sev->saved = false;
	if (pool_mode_writable(pool))
		pool->dirty = true; /* the next commit saves the counts */
	if ((kind == POOL_EVENT_LOW_WATER || kind == POOL_EVENT_FULL) &&
	    pool_autoextend_configured(pool))
		sev->autoextend_wanted = true;
	pthread_cond_broadcast(&sev->work_cv);
}

bool pool_over_low_water(const struct pool *pool)
{
	uint64_t nr = pool->prow.nr_data_blocks;

	return pool->props.low_water && nr &&
	       pool->space.nr_busy * 100 >= (uint64_t)pool->props.low_water * nr;
}

void pool_space_level(struct pool *pool)
{
	struct space_events *sev = &pool->sev;
	bool over = pool_over_low_water(pool);

	if (over && !sev->low_water_crossed) {
		uint64_t nr = pool->prow.nr_data_blocks, busy = pool->space.nr_busy;
		sev->low_water_crossed = true;
		pool_event(pool, POOL_EVENT_LOW_WATER, POOL_LOG_WARNING,
			   "low water: %" PRIu64 " of %" PRIu64 " data blocks in use (%" PRIu64
			   "%%, low_water is %u%%)",
			   busy, nr, busy * 100 / nr, pool->props.low_water);
	} else if (!over && sev->low_water_crossed) {
		sev->low_water_crossed = false;
		sev->at_max_reported = false;
	}
}

#define EVENT_KEY_PREFIX "event."

/* The saved count of an event: "COUNT TIME DETAIL". */
static void load_event(struct pool *pool, int kind)
{
	char key[64], v[POOL_PROP_VALUE_MAX];
	long long count = 0, time = 0;
	int off = 0;

	snprintf(key, sizeof(key), EVENT_KEY_PREFIX "%s", pool_event_name(kind));
	if (meta_prop_get(pool->meta, key, v, sizeof(v)) ||
	    sscanf(v, "%lld %lld %n", &count, &time, &off) < 2 || count < 0)
		return;
	pool->sev.last[kind].count = (uint64_t)count;
	pool->sev.last[kind].last.kind = kind;
	pool->sev.last[kind].last.time = time;
	snprintf(pool->sev.last[kind].last.detail, sizeof(pool->sev.last[kind].last.detail), "%s",
		 v + off);
}

void pool_space_events_load(struct pool *pool)
{
	for (int k = 0; k < POOL_EVENT_NR; k++)
		load_event(pool, k);
}

int pool_space_events_save(struct pool *pool)
{
	char key[64], v[POOL_PROP_VALUE_MAX];
	int rc = 0;

	if (pool->sev.saved)
		return 0;
	for (int k = 0; k < POOL_EVENT_NR && !rc; k++) {
		if (!pool->sev.last[k].count)
			continue;
		snprintf(key, sizeof(key), EVENT_KEY_PREFIX "%s", pool_event_name(k));
		snprintf(v, sizeof(v), "%" PRIu64 " %lld %s", pool->sev.last[k].count,
			 (long long)pool->sev.last[k].last.time, pool->sev.last[k].last.detail);
		rc = meta_prop_put(pool->meta, key, v);
	}
	if (!rc)
		pool->sev.saved = true;
	return rc;
}

void pool_space_changed(struct pool *pool)
{
	pool_space_level(pool);
	pthread_cond_broadcast(&pool->sev.space_cv);
}

int pool_space_wait(struct pool *pool, int64_t *deadline_ms)
{
	struct space_events *sev = &pool->sev;
	int64_t start = pool_now_ms();
	int rc = -ENOSPC, cancel;

	/* a FUSE worker is cancelled only where it reads requests: never here,
	 * with the pool lock taken again by the wait */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
	pthread_mutex_lock(&pool->lock);
	if (pool->props.when_full != WHEN_FULL_QUEUE || sev->stop)
		goto out;
	if (sev->wait_hook) { /* (outside the lock: it may start a thread) */
		pthread_mutex_unlock(&pool->lock);
		sev->wait_hook(sev->wait_arg, 1);
		pthread_mutex_lock(&pool->lock);
	}
	if (!*deadline_ms)
		*deadline_ms = pool->props.queue_timeout
				   ? start + (int64_t)pool->props.queue_timeout * 1000
				   : INT64_MAX;
	sev->nr_queued++;
	for (;;) {
		int64_t t = pool_now_ms();
		if (space_nr_free(&pool->space) || pool->space.nr_freed) {
			rc = 0; /* try again (blocks awaiting release: after a commit) */
			break;
		}
		if (t >= *deadline_ms || sev->stop || !pool_mode_writable(pool) ||
		    pool->props.when_full != WHEN_FULL_QUEUE)
			break;
		pool_wait_until(pool, &sev->space_cv,
				*deadline_ms - t < QUEUE_POLL_MS ? *deadline_ms
								 : t + QUEUE_POLL_MS);
	}
	sev->nr_queued--;
	if (rc && pool_now_ms() >= *deadline_ms)
		pool_log(pool, POOL_LOG_ERR,
			 "a write waited %u s (queue_timeout) for data space and failed with "
			 "ENOSPC",
			 pool->props.queue_timeout);
	if (sev->wait_hook) {
		pthread_mutex_unlock(&pool->lock);
		sev->wait_hook(sev->wait_arg, -1);
		pthread_mutex_lock(&pool->lock);
	}
out:
	pthread_mutex_unlock(&pool->lock);
	pthread_setcancelstate(cancel, NULL);
	return rc;
}

void pool_set_space_wait_hook(struct pool *pool, void (*fn)(void *arg, int delta), void *arg)
{
	pthread_mutex_lock(&pool->lock);
	pool->sev.wait_hook = fn;
	pool->sev.wait_arg = arg;
	pthread_mutex_unlock(&pool->lock);
}

void pool_space_worker_stop(struct pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	pool->sev.stop = true;
	pthread_cond_broadcast(&pool->sev.work_cv);
	pthread_cond_broadcast(&pool->sev.space_cv);
	pthread_mutex_unlock(&pool->lock);
}

void pool_event_command(struct pool *pool, char *buf, size_t len)
{
	pthread_mutex_lock(&pool->lock);
	snprintf(buf, len, "%s", pool->props.event_command);
	pthread_mutex_unlock(&pool->lock);
}
