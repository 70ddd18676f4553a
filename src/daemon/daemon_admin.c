/* SPDX-License-Identifier: MIT */
/*
 * daemon_admin.c - online administration in the daemon (daemon_admin.h).
 *
 * Control: control_server.c runs each request with admin_exec() on the
 * pool; after a change, fsops_forget_names() drops the kernel's cached
 * entries and attributes of the names involved, so the mount shows the
 * change when thinctl returns.
 *
 * Reclaim: the pool runs with background reclaim on (a delete only hides
 * the device); this thread frees deleted devices' rows one bounded
 * transaction at a time, pausing between steps so I/O on other devices
 * waits at most one step.  It wakes every RECLAIM_POLL_MS.
 *
 * Space: daemon_events.c runs autoextend and the event command.
 *
 * Locks: rc->lock guards stop; the pool's calls take their own.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon_admin.h"
#include "daemon_events.h"
#include "thinfs/control.h"

#define RECLAIM_POLL_MS 50
#define RECLAIM_PAUSE_MS 2 /* between steps: a writer's turn */

struct daemon_admin {
	struct pool *pool;
	struct fsops *fs;
	struct fuse_session *se;
	struct control_server *ctl;
	struct daemon_events *events;
	pthread_t reclaimer;
	bool reclaiming;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
};

static void changed(void *arg, const struct admin_req *req)
{
	struct daemon_admin *da = arg;
	bool sets = req->op == ADMIN_SNAPSHOT_SET || req->op == ADMIN_DELETE_SET ||
		    req->op == ADMIN_RENAME_SET;

	fsops_forget_names(da->fs, da->se, req->a, req->b, sets);
	if (req->op == ADMIN_RENAME) /* rename takes a set name too (as mv does) */
		fsops_forget_names(da->fs, da->se, req->a, req->b, true);
}

static void wait_ms(struct daemon_admin *da, int ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_nsec += (long)ms * 1000000;
	t.tv_sec += t.tv_nsec / 1000000000;
	t.tv_nsec %= 1000000000;
	while (!da->stop && pthread_cond_timedwait(&da->cond, &da->lock, &t) != ETIMEDOUT)
		;
}

static void *reclaim_loop(void *arg)
{
	struct daemon_admin *da = arg;
	bool failing = false;

	pthread_mutex_lock(&da->lock);
	while (!da->stop) {
		wait_ms(da, RECLAIM_POLL_MS);
		while (!da->stop && pool_reclaim_pending(da->pool)) {
			pthread_mutex_unlock(&da->lock);
			int rc = pool_reclaim_step(da->pool);
			if (rc && !failing)
				fprintf(stderr, "thinfs: freeing deleted space failed: %s\n",
					strerror(-rc));
			failing = rc != 0;
			pthread_mutex_lock(&da->lock);
			if (failing)
				break;
			wait_ms(da, RECLAIM_PAUSE_MS);
		}
	}
	pthread_mutex_unlock(&da->lock);
	return NULL;
}

int daemon_admin_start(struct pool *pool, const char *pool_dir, struct fsops *fs,
		       struct fuse_session *se, struct daemon_admin **out, char *msg, size_t msglen)
{
	struct daemon_admin *da = calloc(1, sizeof(*da));
	pthread_condattr_t ca;
	sigset_t block, old;
	int rc;

	if (!da)
		return -ENOMEM;
	da->pool = pool;
	da->fs = fs;
	da->se = se;
	pthread_mutex_init(&da->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&da->cond, &ca);
	pthread_condattr_destroy(&ca);
	pool_set_background_reclaim(pool, true);
	/* the exit signals must reach a FUSE thread, which ends the loop */
	sigfillset(&block);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	rc = -pthread_create(&da->reclaimer, NULL, reclaim_loop, da);
	da->reclaiming = !rc;
	if (!rc && (rc = daemon_events_start(pool, pool_dir, &da->events)))
		snprintf(msg, msglen, "cannot start the space worker: %s", strerror(-rc));
	if (!rc)
		rc = control_server_start(pool, pool_dir, changed, da, &da->ctl, msg, msglen);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		if (!msg[0])
			snprintf(msg, msglen, "cannot start the reclaimer: %s", strerror(-rc));
		daemon_admin_stop(da);
		return rc;
	}
	*out = da;
	return 0;
}

void daemon_admin_stop(struct daemon_admin *da)
{
	if (!da)
		return;
	control_server_stop(da->ctl);
	daemon_events_stop(da->events);
	if (da->reclaiming) {
		pthread_mutex_lock(&da->lock);
		da->stop = true;
		pthread_cond_signal(&da->cond);
		pthread_mutex_unlock(&da->lock);
		pthread_join(da->reclaimer, NULL);
	}
	/* deletes still pending are finished by the next open */
	pool_set_background_reclaim(da->pool, false);
	pthread_cond_destroy(&da->cond);
	pthread_mutex_destroy(&da->lock);
	free(da);
}
