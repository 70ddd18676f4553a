/* SPDX-License-Identifier: MIT */
/*
 * daemon_events.h - the daemon's space worker: autoextend and the event
 * command (daemon_events.c).
 */
#ifndef THINFS_DAEMON_EVENTS_H
#define THINFS_DAEMON_EVENTS_H

#include "thinfs/pool.h"

struct daemon_events;

/* Start the worker thread for pool (served from pool_dir). */
int daemon_events_start(struct pool *pool, const char *pool_dir, struct daemon_events **out);
/* Stop it (queued writes fail from now on); NULL is fine. */
void daemon_events_stop(struct daemon_events *de);

#endif
